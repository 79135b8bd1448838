"""``python -m search plan <sweep file>``: what a sweep will cost, before a cluster is rented.

Per architecture: trials, epochs (the space's largest, and what ASHA is expected to leave of it),
windows trained per epoch and scored per trial (validation; holdout and test too with
``search.finalists: all``), the finalists and the holdout/test windows each scores afterwards
(search/finalists.py), and a time estimate from a short calibration on
this machine (one epoch and one scoring pass of the architecture's typical configuration on random
data), divided by ``--speedup`` for faster workers. Totals: trial-hours, and GPU-hours where trials
hold GPU shares (a trial with ``gpu: 0.25`` holds a quarter of a GPU for its duration).

The counts are exact for the split sizes given; the times are estimates (typical configuration,
random data, no data loading or Ray overhead beyond a fixed per-trial cost).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from search.experiment import LATER_SPLITS, top_of
from telemetry.errors import TelemetryError
from telemetry.windows import fits, largest_window

TRIAL_OVERHEAD_S = 4.0  # measured search machinery per trial (benchmarks/RESULTS.md, search strategies)
CALIBRATION_WINDOWS = 2048
CALIBRATION_ROWS = 200_000


@dataclass
class ArchPlan:
    arch: str
    trials: int
    epochs_max: int
    epochs_expected: float
    window: int | None
    train_windows_per_epoch: int
    scored_windows_per_trial: int
    finalists: int  # trials scored on holdout and test after the search (all of them with finalists: all)
    finalist_windows: int  # holdout and test windows (or rows) each finalist scores then; 0 when trials do it
    train_rate: float  # windows (or rows) per second on this machine
    score_rate: float
    trial_seconds: float
    finalist_seconds: float
    trial_hours: float  # the trials and the finalists' scoring
    gpu_share: float
    gpu_hours: float


def typical(spec):
    """A space's middle value: the middle choice, or the middle of a range (geometric if log)."""
    if not isinstance(spec, dict):
        return spec
    if "choice" in spec:
        vals = list(spec["choice"])
        return vals[(len(vals) - 1) // 2]
    kind = "int" if "int" in spec else "float"
    lo, hi = spec[kind]
    mid = math.sqrt(lo * hi) if spec.get("log") and lo > 0 else (lo + hi) / 2
    return int(round(mid)) if kind == "int" else float(mid)


def asha_epochs(max_t: int, grace: int, eta: float) -> float:
    """Expected epochs per trial under ASHA: every trial runs to the first rung (``grace``), a
    1/eta share of them to the next (grace * eta), and so on up to ``max_t``."""
    if max_t <= grace:
        return float(max_t)
    rungs = [grace]
    while rungs[-1] * eta < max_t:
        rungs.append(int(math.ceil(rungs[-1] * eta)))
    rungs.append(max_t)
    total, share, done = 0.0, 1.0, 0
    for r in rungs:
        total += share * (r - done)
        done, share = r, share / eta
    return total


def n_windows(rows: int, window: int, stride: int, horizon: int = 0) -> int:
    """Windows served from ``rows`` rows (the last window always reaches the end: telemetry.windows)."""
    if not fits(rows, window, horizon):
        return 0
    last = largest_window(rows, horizon) - window  # the last window's first row
    return last // stride + 1 + (1 if last % stride else 0)


def calibrate(cls, params: dict, n_channels: int, seed: int = 0) -> tuple[float, float]:
    """(train, score) throughput of one configuration on random data: windows/s for window models
    (the second epoch, timed by a callback so build, compile and tracing are excluded), rows/s for
    row models."""
    from telemetry.series import Series

    keras_model = bool(cls.tags.get("keras"))
    window = int(params.get("window", 1) or 1)
    # Row models run at millions of rows per second: time enough rows that fixed costs do not dominate.
    n = CALIBRATION_WINDOWS + window + 1 if keras_model else CALIBRATION_ROWS
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, np.uint8)
    if cls.tags.get("needs_labels"):  # a supervised member needs both classes to train on
        labels[(np.arange(n) // max(window, 8)) % 10 == 0] = 1
    s = Series(np.arange(n, dtype=np.int64), rng.standard_normal((n, n_channels)).astype(np.float32),
               labels, tuple(f"c{i}" for i in range(n_channels)), "calibration")
    # Two epochs, the second timed: the first also traces the graph.
    over = {"epochs": 2, "train_stride": 1, "score_stride": 1} if keras_model else {}
    est = cls(**{**params, **{k: v for k, v in over.items() if k in cls.param_names()}})
    if keras_model:
        import keras

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds = time.perf_counter() - self.t0

        timer = Timer()
        est.fit(s, callbacks=[timer])
        train_rate = CALIBRATION_WINDOWS / max(timer.seconds, 1e-6)
    else:
        t0 = time.perf_counter()
        est.fit(s)
        train_rate = n / max(time.perf_counter() - t0, 1e-6)
    t0 = time.perf_counter()
    est.score_samples(s)
    score_rate = (CALIBRATION_WINDOWS if keras_model else n) / max(time.perf_counter() - t0, 1e-6)
    return train_rate, score_rate


def plan(cfg, split_rows: dict[str, int], n_channels: int, speedup: float = 1.0, measure: bool = True,
         log=None) -> pd.DataFrame:
    """One row per architecture (see :class:`ArchPlan`); ``split_rows``: fit/validation/holdout/test rows."""
    from models import registry

    if speedup <= 0:
        raise TelemetryError(f"--speedup must be > 0, got {speedup}")
    grace = int(cfg.search.get("grace_period", 1))
    eta = float(cfg.search.get("reduction_factor", 3))
    fifo = cfg.search.get("scheduler", "asha") == "fifo"
    top = top_of(cfg.search)  # None: every trial scores every split itself
    per_trial = ("validation", "holdout", "test") if top is None else ("validation",)
    later = () if top is None else LATER_SPLITS
    rows = []
    for a in cfg.architectures:
        cls = registry.get(a.name)
        defaults = cls().get_params()
        params = {**defaults, **a.fixed, **{k: typical(v) for k, v in a.space.items()}}
        keras_model = bool(cls.tags.get("keras"))
        max_t = int(a.largest("epochs") or 1)
        epochs = float(max_t) if (fifo or not keras_model) else asha_epochs(max_t, min(grace, max_t), eta)
        if keras_model:
            w, horizon = int(params["window"]), int(params.get("horizon", 0) or 0)
            train_w = n_windows(split_rows["fit"], w, int(params.get("train_stride", 1)), horizon)

            def scored_in(splits):
                stride = int(params.get("score_stride", 1))
                return sum(n_windows(split_rows.get(k, 0), w, stride, horizon) for k in splits)
        else:
            w, train_w = None, split_rows["fit"]

            def scored_in(splits):
                return sum(split_rows.get(k, 0) for k in splits)
        scored, finalist_w = scored_in(per_trial), scored_in(later)
        n_final = a.trials if top is None else min(top, a.trials)
        tr, sr = calibrate(cls, params, n_channels) if measure else (float("nan"), float("nan"))
        if log:
            log(f"{a.name}: {tr:,.0f} train / {sr:,.0f} score {'windows' if keras_model else 'rows'} per second here")
        seconds = (epochs * train_w / tr + scored / sr) / speedup + TRIAL_OVERHEAD_S
        final_s = finalist_w / sr / speedup
        hours = (a.trials * seconds + n_final * final_s) / 3600.0
        rows.append(asdict(ArchPlan(a.name, a.trials, max_t if keras_model else 1, round(epochs, 2), w, train_w, scored,
                                    n_final, finalist_w, round(tr, 1), round(sr, 1), round(seconds, 1),
                                    round(final_s, 1), round(hours, 3), a.gpu, round(hours * a.gpu, 3))))
    out = pd.DataFrame(rows)
    out["window"] = out["window"].astype("Int64")
    return out


def split_rows_of(cfg, rows: int | None = None, test_rows: int | None = None) -> dict[str, int]:
    """Split sizes from the data files' metadata (no data is read), or from ``rows``/``test_rows``
    with the sweep's fractions when the files are elsewhere (a cluster's storage)."""
    from pathlib import Path

    def count(path):
        import pyarrow.parquet as pq

        if path.endswith(".parquet"):
            return pq.ParquetFile(path).metadata.num_rows
        if path.endswith(".json"):  # discharges: rows after resampling, not lines of the file
            from telemetry.discharges import load_discharges

            return int(load_discharges(path).offsets[-1])
        with open(path, "rb") as fh:
            return sum(1 for _ in fh) - 1

    if rows is None:
        if not Path(cfg.data.train).is_file():
            raise TelemetryError(f"{cfg.data.train}: not found here; give the train rows with --rows (and --test-rows)")
        rows = count(cfg.data.train)
    if test_rows is None:
        test_rows = count(cfg.data.test) if cfg.data.test and Path(cfg.data.test).is_file() else 0
    fr = np.asarray(cfg.data.fractions, dtype=float)
    cuts = np.round(np.cumsum(fr / fr.sum()) * rows).astype(int)
    return {"fit": int(cuts[0]), "validation": int(cuts[1] - cuts[0]), "holdout": int(rows - cuts[1]), "test": int(test_rows)}


def n_channels_of(cfg) -> int:
    """How many channels the sweep reads: from the train file's header when it is here, else the spec."""
    from pathlib import Path

    from telemetry.schema import channel_names, select_channels

    path = cfg.data.train
    if path.endswith(".parquet") and Path(path).is_file():
        import pyarrow.parquet as pq

        return len(select_channels(cfg.data.channels, pq.ParquetFile(path).schema_arrow.names, path))
    return len(channel_names(cfg.data.channels))


def report(table: pd.DataFrame, speedup: float) -> str:
    cols = ["arch", "trials", "epochs_max", "epochs_expected", "window", "train_windows_per_epoch",
            "scored_windows_per_trial", "finalists", "finalist_windows", "trial_seconds", "trial_hours",
            "gpu_share", "gpu_hours"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        text = table[cols].to_string(index=False)
    total_h, gpu_h = table["trial_hours"].sum(), table["gpu_hours"].sum()
    return (f"{text}\n\ntotal: {int(table['trials'].sum())} trials, {total_h:.2f} trial-hours, {gpu_h:.2f} GPU-hours "
            f"(times are this machine's divided by --speedup {speedup:g}; ASHA epochs are expectations)")
