"""Validation of series before any expensive work: each failure is one line naming file and column."""
from __future__ import annotations

import numpy as np

from telemetry.errors import TelemetryError
from telemetry.schema import ID, LABEL


def check_ids(ids: np.ndarray, source: str) -> None:
    if ids.size == 0:
        raise TelemetryError(f"{source}: file has no rows")
    d = np.diff(ids)
    bad = np.flatnonzero(d <= 0)
    if bad.size:
        i = int(bad[0])
        kind = "duplicate" if d[i] == 0 else "decreasing"
        raise TelemetryError(f"{source}: column {ID!r} is not strictly increasing ({kind} id {ids[i + 1]} after {ids[i]} at row {i + 1})")


def check_finite(values: np.ndarray, ids: np.ndarray, channels, source: str, *, id_name: str = "id") -> None:
    """Every value finite, else name the first bad column and where (``id_name``: "row" for made-up ids)."""
    # np.isfinite over the whole block is one vectorised pass; only on failure do we locate the column.
    ok = np.isfinite(values)
    if ok.all():
        return
    cols = np.flatnonzero(~ok.all(axis=0))
    c = int(cols[0])
    rows = np.flatnonzero(~ok[:, c])
    raise TelemetryError(f"{source}: column {channels[c]!r} has {rows.size} NaN/inf/missing values (first at {id_name} {ids[rows[0]]})")


def check_labels(labels: np.ndarray, ids: np.ndarray, source: str) -> None:
    bad = np.flatnonzero((labels != 0) & (labels != 1))
    if bad.size:
        raise TelemetryError(f"{source}: column {LABEL!r} must be 0/1, found {labels[bad[0]].item()!r} at id {ids[bad[0]]}")


def check_disjoint(train_ids: np.ndarray, test_ids: np.ndarray, train_source: str, test_source: str) -> None:
    """Test ids must not repeat train ids (both sorted, so a merge-style search is O(N log M))."""
    pos = np.searchsorted(train_ids, test_ids)
    pos = np.clip(pos, 0, train_ids.size - 1)
    clash = np.flatnonzero(train_ids[pos] == test_ids)
    if clash.size:
        raise TelemetryError(f"{test_source}: {clash.size} ids also appear in {train_source} (first: id {test_ids[clash[0]]})")
