"""The data sets and sweeps of the quality benchmark (benchmarks/bench_quality.py).

Every data set becomes the files a user would hand telesweep (train.parquet with labels, test.parquet,
test_labels.parquet), so the benchmark runs the same pipeline as a user: sweep file -> sweep ->
ensemble. Test labels are used only to score the final predictions.

- ``synth-<rows>-s<seed>``: ``python -m telemetry synth`` missions (channels 41-46).
- ``nab-<series>``: the real NAB realKnownCause series with 2+ labelled windows, one channel. Each is
  cut in time by a fixed rule on the event positions alone (never on any result): the test part
  starts midway in the gap before the last event; in the train part, fit keeps at least the first
  30 % of rows, validation starts midway in the gap before the first later event, and holdout gets
  the later half of the remaining events (none when only one is left, then a warning).
- ``gutentag-ecg``: another generator's data, from a package on the registry: the GutenTAG ECG series
  (``ecg-diff-count-3``, one channel, 10,000 rows with 3 events to train and 10,000 with 3 to test)
  that the aeon wheel ships as test data, read from the wheel (``pip download aeon==1.6.0 --no-deps``,
  no install). A periodic signal whose nominal peaks every member reproduces. Cut by the same kind
  of rule: validation starts midway in the gap before the second train event, holdout before the third.
"""
from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from telemetry.atomic import atomic_path

log = logging.getLogger("bench.quality")
REPO = Path(__file__).resolve().parents[1]
NAB = REPO.parent / "shared" / "data" / "nab"
NAB_SERIES = ("ambient_temperature_system_failure", "ec2_request_latency_system_failure",
              "machine_temperature_system_failure", "nyc_taxi", "rogue_agent_key_hold", "rogue_agent_key_updown")
# cpu_utilization_asg_misconfiguration has a single labelled window: nothing for validation and test both.


@dataclass
class Dataset:
    name: str
    kind: str  # "synthetic" or "real"
    train: Path
    test: Path
    test_labels: Path
    channels: str | list
    boundaries: list | None = None  # first ids of validation and holdout; None: the sweep's fractions


def _write_parquet(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def synthetic(work: Path, rows: int, seed: int) -> Dataset:
    from telemetry.synth import generate_mission

    d = work / "data" / f"synth-{rows}-s{seed}"
    if not (d / "mission.json").is_file():
        log.info("generating %s", d.name)
        generate_mission(d, rows=rows, seed=seed)
    return Dataset(d.name, "synthetic", d / "train.parquet", d / "test.parquet", d / "test_labels.parquet", "41-46")


def _midgap(prev_end: int, next_start: int) -> int:
    return (prev_end + next_start) // 2


def nab_cuts(n: int, ev: list[tuple[int, int]]) -> tuple[int, int, int]:
    """(validation start, holdout start, test start) rows of a NAB series with events ``ev`` (see module doc)."""
    if len(ev) < 2:
        raise ValueError("a NAB series needs two labelled windows: one for validation, one for test")
    test = _midgap(ev[-2][1], ev[-1][0])
    train_ev = [e for e in ev[:-1] if e[0] >= 0.3 * test] or [ev[-2]]
    first = ev.index(train_ev[0])
    val = max(int(0.3 * test), _midgap(ev[first - 1][1] if first else 0, train_ev[0][0]))
    n_hold = len(train_ev) // 2
    if n_hold:
        a = train_ev[-n_hold - 1]
        hold = _midgap(a[1], train_ev[-n_hold][0])
    else:
        hold = _midgap(train_ev[-1][1], test)
    return val, hold, test


def nab(work: Path, series: str) -> Dataset:
    from telemetry.loading import load_nab

    d = work / "data" / f"nab-{series}"
    if not (d / "test_labels.parquet").is_file():
        s = load_nab(NAB / "realKnownCause" / f"{series}.csv", NAB / "combined_windows.json")
        lab = s.labels
        d_ = np.diff(lab.astype(np.int8), prepend=0, append=0)
        ev = list(zip(np.flatnonzero(d_ == 1).tolist(), np.flatnonzero(d_ == -1).tolist()))
        val, hold, test = nab_cuts(len(s), ev)
        df = pd.DataFrame({"id": s.ids, "channel_1": s.values[:, 0]})
        d.mkdir(parents=True, exist_ok=True)
        _write_parquet(d / "train.parquet", df.iloc[:test].assign(is_anomaly=lab[:test]))
        _write_parquet(d / "test.parquet", df.iloc[test:])
        _write_parquet(d / "test_labels.parquet", pd.DataFrame({"id": s.ids[test:], "is_anomaly": lab[test:]}))
        (d / "cuts.json").write_text(json.dumps({"validation": val, "holdout": hold, "test": test, "events": ev}))
    cuts = json.loads((d / "cuts.json").read_text())
    return Dataset(d.name, "real", d / "train.parquet", d / "test.parquet", d / "test_labels.parquet",
                   ["channel_1"], [cuts["validation"], cuts["holdout"]])


AEON_WHEEL = "aeon==1.6.0"
_ECG = "aeon/datasets/data/UnitTest/ecg-diff-count-3_{}.csv"


def registry_cuts(ev: list[tuple[int, int]]) -> tuple[int, int]:
    """(validation start, holdout start) of a labelled train part with 3+ events: midway in the gaps
    before event E//3 and event E - E//3 (a third of the events to each later split, at least one)."""
    if len(ev) < 3:
        raise ValueError("a train part needs three events: one each for fit, validation and holdout")
    k = max(1, len(ev) // 3)
    j = max(k + 1, len(ev) - len(ev) // 3)
    return _midgap(ev[k - 1][1], ev[k][0]), _midgap(ev[j - 1][1], ev[j][0])


def gutentag_ecg(work: Path) -> Dataset:
    import subprocess
    import sys
    import zipfile

    d = work / "data" / "gutentag-ecg"
    if not (d / "cuts.json").is_file():
        dl = work / "downloads"
        wheels = sorted(dl.glob("aeon-*.whl"))
        if not wheels:
            log.info("downloading %s (its test data only is read)", AEON_WHEEL)
            done = subprocess.run([sys.executable, "-m", "pip", "download", AEON_WHEEL, "--no-deps", "-q", "-d", str(dl)],
                                  capture_output=True, text=True)
            wheels = sorted(dl.glob("aeon-*.whl"))
            if done.returncode or not wheels:
                raise RuntimeError(f"gutentag-ecg: pip download {AEON_WHEEL} failed: "
                                   f"{(done.stderr or done.stdout).strip().splitlines()[-1:]} (--no-registry skips it)")
        with zipfile.ZipFile(wheels[-1]) as z:
            train, test = (pd.read_csv(z.open(_ECG.format(part))) for part in ("TRAIN_A", "TEST"))
        lab = train["is_anomaly"].to_numpy().astype(np.uint8)
        d_ = np.diff(lab.astype(np.int8), prepend=0, append=0)
        ev = list(zip(np.flatnonzero(d_ == 1).tolist(), np.flatnonzero(d_ == -1).tolist()))
        val, hold = registry_cuts(ev)
        n = len(train)
        ids = np.arange(n + len(test))
        d.mkdir(parents=True, exist_ok=True)
        _write_parquet(d / "train.parquet", pd.DataFrame({"id": ids[:n], "channel_1": train["value-0"].astype(np.float32),
                                                          "is_anomaly": lab}))
        _write_parquet(d / "test.parquet", pd.DataFrame({"id": ids[n:], "channel_1": test["value-0"].astype(np.float32)}))
        _write_parquet(d / "test_labels.parquet", pd.DataFrame({"id": ids[n:], "is_anomaly": test["is_anomaly"].astype(np.uint8)}))
        (d / "cuts.json").write_text(json.dumps({"validation": val, "holdout": hold, "events": ev, "source": wheels[-1].name}))
    cuts = json.loads((d / "cuts.json").read_text())
    return Dataset(d.name, "synthetic", d / "train.parquet", d / "test.parquet", d / "test_labels.parquet",
                   ["channel_1"], [cuts["validation"], cuts["holdout"]])


def sweep_config(base, ds: Dataset, archs: tuple[str, ...] | None = None):
    """The user's sweep file pointed at ``ds`` (optionally only some architectures)."""
    from telemetry.prepare import DataConfig

    cfg = copy.deepcopy(base)
    cfg.name = f"bench-{ds.name}"
    cfg.data = DataConfig(train=str(ds.train), test=str(ds.test), test_labels=str(ds.test_labels),
                          channels=ds.channels, fractions=list(base.data.fractions), boundaries=ds.boundaries)
    if archs is not None:
        cfg.architectures = [a for a in cfg.architectures if a.name in archs]
    return cfg


def fit_windows(cfg, shortest: int):
    """Window choices longer than half the shortest split are dropped (the smallest is kept), so
    short real series run the same spaces as far as they fit."""
    cap = max(2, shortest // 2)
    for a in cfg.architectures:
        spec = a.space.get("window")
        if isinstance(spec, dict) and "choice" in spec:
            keep = [w for w in spec["choice"] if w <= cap] or [min(spec["choice"])]
            a.space["window"] = {"choice": keep}
        elif isinstance(a.fixed.get("window"), int) and a.fixed["window"] > cap:
            a.fixed["window"] = cap
    return cfg
