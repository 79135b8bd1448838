"""The challenge submission: CSV ``id,is_anomaly``, one row per test id, in test order, binary."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from telemetry.atomic import atomic_path
from telemetry.errors import TelemetryError


def write_submission(path: str | os.PathLike, ids: np.ndarray, labels: np.ndarray, test_ids: np.ndarray) -> None:
    """Validate against the test file's ids, then write atomically; nothing is written on mismatch."""
    ids, labels, test_ids = np.asarray(ids), np.asarray(labels), np.asarray(test_ids)
    if ids.shape != test_ids.shape:
        raise TelemetryError(f"submission has {ids.size} rows but the test file has {test_ids.size} ids; not written")
    if not np.array_equal(ids, test_ids):
        first = int(np.flatnonzero(ids != test_ids)[0])
        raise TelemetryError(f"submission ids differ from the test file at row {first} (id {ids[first]} vs {test_ids[first]}); not written")
    if labels.shape != ids.shape or not np.isin(labels, (0, 1)).all():
        raise TelemetryError("submission labels must be one 0/1 value per test id; not written")
    df = pd.DataFrame({"id": ids.astype(np.int64), "is_anomaly": labels.astype(np.uint8)})
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def read_test_ids(path: str) -> np.ndarray:
    """Only the ``id`` column of the test file (parquet or CSV)."""
    if str(path).endswith(".csv"):
        return pd.read_csv(path, usecols=["id"])["id"].to_numpy(np.int64)
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=["id"]).column("id").to_numpy().astype(np.int64)
