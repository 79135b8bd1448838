"""A synthetic fleet in the seed-003 shape: one wide CSV, one column per device, no labels.

``device1 .. deviceN`` are N sensors of one fleet sampled together (the user's data: 30 devices,
~9,000 rows, values between about -10 and 10). Each device has its own level and scale (so one
global mean/std over all devices, as in the user's notebook, would be wrong), a share of a common
fleet load (so the devices are correlated and a reconstruction model has something to learn), its
own slow oscillation and AR(1) noise.

**Drift:** from row ``rows // 2`` on (the second half of the whole period), ``drifting`` devices
move to a new level (``shift`` of their own standard deviations, sign chosen per device) and get
noisier (``noise_growth`` x): the shift between training and test data that makes every model
"stop reconstructing" half the test period. The rows are written as ``train.csv`` (the first
``1 - test_fraction`` of them) and ``test.csv`` (the rest), without ``id`` columns as in the
user's file (ids are row numbers; the test file's continue the train file's), plus ``fleet.json``
saying which devices drift and from which row.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from telemetry.atomic import atomic_path, write_text
from telemetry.errors import TelemetryError


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    from scipy.signal import lfilter

    e = rng.normal(0.0, sd * np.sqrt(1 - phi * phi), n)
    return lfilter([1.0], [1.0, -phi], e)


def generate_fleet(rows: int = 9000, devices: int = 30, drifting: int = 3, seed: int = 0, shift: float = 3.0,
                   noise_growth: float = 1.5) -> tuple[pd.DataFrame, dict]:
    """(the fleet's values [rows, devices] with columns device1..deviceN, a description)."""
    for name, v, lo in (("rows", rows, 40), ("devices", devices, 1), ("drifting", drifting, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise TelemetryError(f"{name} must be an integer >= {lo}, got {v!r}")
    if drifting > devices:
        raise TelemetryError(f"drifting ({drifting}) cannot exceed devices ({devices})")
    rng = np.random.default_rng([seed, 3])
    t = np.arange(rows, dtype=np.float64)
    # The common fleet load and each device's own cycle are short next to any split (a few dozen rows),
    # so a stationary device looks alike in every split and only the planted drift stands out.
    load = np.sin(2 * np.pi * t / 96.0) + 0.5 * np.sin(2 * np.pi * t / 30.0 + 1.0)
    names = [f"device{k + 1}" for k in range(devices)]
    start = rows // 2
    drifters = sorted(rng.choice(devices, size=drifting, replace=False).tolist())
    values = np.empty((rows, devices), dtype=np.float64)
    shifts = {}
    for k in range(devices):
        level, scale = rng.uniform(-2.0, 8.0), rng.uniform(0.3, 2.0)
        own = np.sin(2 * np.pi * t / rng.uniform(20, 80) + rng.uniform(0, 6.3))
        x = rng.uniform(0.5, 1.0) * load + 0.4 * own + _ar1(rng, rows, 0.9, 0.25)
        if k in drifters:
            sign = 1.0 if rng.random() < 0.5 else -1.0
            std = float(x[:start].std())
            # a ramp over 50 rows into a new level, and noisier from then on
            ramp = np.clip((t - start) / 50.0, 0.0, 1.0)
            x = x + sign * shift * std * ramp + (noise_growth - 1.0) * _ar1(rng, rows, 0.5, 0.25 * std) * (t >= start)
            shifts[names[k]] = sign * shift
        values[:, k] = level + scale * x
    info = {"rows": rows, "devices": devices, "drifting": [names[k] for k in drifters], "drift_start_row": start,
            "shift_in_std": shifts, "noise_growth": noise_growth, "seed": seed}
    return pd.DataFrame(values.astype(np.float32), columns=names), info


def write_synthetic_fleet(out: str | os.PathLike, rows: int = 9000, devices: int = 30, drifting: int = 3, seed: int = 0,
                          test_fraction: float = 1 / 3) -> dict:
    """Write ``train.csv``, ``test.csv`` and ``fleet.json`` into ``out`` (atomically); returns the
    description with the paths. The same arguments give the same files."""
    if not 0.0 < float(test_fraction) < 1.0:
        raise TelemetryError(f"test_fraction must be within (0, 1), got {test_fraction!r}")
    df, info = generate_fleet(rows, devices, drifting, seed)
    cut = int(round(rows * (1.0 - float(test_fraction))))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"train": out / "train.csv", "test": out / "test.csv", "fleet": out / "fleet.json"}
    for name, part in (("train", df.iloc[:cut]), ("test", df.iloc[cut:])):
        with atomic_path(paths[name]) as tmp:
            part.to_csv(tmp, index=False, float_format="%.5f")
    info.update(train_rows=cut, test_rows=rows - cut, paths={k: str(v) for k, v in paths.items()})
    write_text(paths["fleet"], json.dumps(info, indent=1) + "\n")
    return info
