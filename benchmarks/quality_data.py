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
    from telemetry.synthetic.mission import generate_mission

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


# -- the scarce-label regime: multichannel data of another generator ---------------------------------

GUTENTAG = "timeeval-gutentag==1.5.0"
GT_BASES = (  # base oscillations and the anomaly kinds each admits beyond the generic ones
    ({"kind": "sine"}, ("frequency", "pattern")),
    ({"kind": "cosine"}, ("frequency", "pattern")),
    ({"kind": "ecg"}, ("frequency",)),
    ({"kind": "square"}, ("frequency", "pattern")),
    ({"kind": "sawtooth"}, ("frequency", "pattern")),
    ({"kind": "random-walk"}, ()),
    ({"kind": "cylinder-bell-funnel"}, ()),
)
GT_GENERIC = ("mean", "variance", "platform", "amplitude", "extremum")


def gutentag_config(seed: int, rows: int = 50_000, channels: int = 6, n_events: int = 12) -> dict:
    """A GutenTAG generation config drawn from ``seed``: ``channels`` base oscillations of assorted
    kinds, frequencies and noise, and ``n_events`` anomalies of assorted kinds, lengths and channels
    spread over the series (one config gives a labelled train file and a test file)."""
    rng = np.random.default_rng(seed)
    bases, kinds_of = [], []
    for c in range(channels):
        base, extra = GT_BASES[int(rng.integers(len(GT_BASES)))]
        b = {**base, "variance": float(rng.uniform(0.01, 0.08)), "amplitude": float(rng.uniform(0.5, 2.0))}
        if base["kind"] in ("sine", "cosine", "ecg", "square", "sawtooth"):
            b["frequency"] = float(rng.uniform(0.002, 0.03))
        if base["kind"] == "random-walk":
            b["smoothing"] = float(rng.uniform(0.005, 0.05))
        if base["kind"] == "cylinder-bell-funnel":
            b["avg-pattern-length"] = int(rng.integers(50, 300))
        bases.append(b)
        kinds_of.append(GT_GENERIC + extra)
    slots = np.linspace(0, rows, n_events + 2)[1:-1]
    anomalies = []
    for pos in slots:
        c = int(rng.integers(channels))
        kind = kinds_of[c][int(rng.integers(len(kinds_of[c])))]
        length = 1 if kind == "extremum" else int(rng.integers(20, 400))
        k = {"kind": kind}
        if kind == "mean":
            k["offset"] = float(rng.choice([-1, 1]) * rng.uniform(0.2, 1.0))
        elif kind == "variance":
            k["variance"] = float(rng.uniform(0.1, 0.5))
        elif kind == "platform":
            k["value"] = float(rng.uniform(-1, 1))
        elif kind == "amplitude":
            k["amplitude_factor"] = float(rng.choice([0.3, 1.6, 2.0]))
        elif kind == "extremum":
            k.update(min=bool(rng.integers(2)), local=bool(rng.integers(2)))
        elif kind == "frequency":
            k["frequency_factor"] = float(rng.choice([0.5, 1.5, 2.0]))
        elif kind == "pattern":
            b = bases[c]["kind"]
            k.update({"sine": {"sinusoid_k": 5.0}, "cosine": {"sinusoid_k": 5.0}, "square": {"square_duty": 0.2},
                      "sawtooth": {"sawtooth_width": 0.2}}[b])
        jitter = int(rng.integers(-rows // (4 * (n_events + 1)), rows // (4 * (n_events + 1))))
        anomalies.append({"exact-position": int(max(0, min(rows - length - 1, pos + jitter))), "length": length,
                          "channel": c, "kinds": [k]})
    return {"timeseries": [{"name": f"mc{seed}", "length": rows, "supervised": True, "base-oscillations": bases,
                            "anomalies": anomalies}]}


def gutentag_venv(work: Path) -> Path:
    """A virtual environment of its own holding GutenTAG (its pins differ from telesweep's)."""
    import subprocess
    import sys

    venv = work / "gutentag-venv"
    py = venv / "bin" / "python"
    if not (venv / ".ok").is_file():
        log.info("installing %s into %s", GUTENTAG, venv)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        done = subprocess.run([str(py), "-m", "pip", "install", "-q", GUTENTAG], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"gutentag: pip install {GUTENTAG} failed: "
                               f"{(done.stderr or done.stdout).strip().splitlines()[-1:]} (--no-registry skips it)")
        (venv / ".ok").write_text(GUTENTAG + "\n")
    return py


def gutentag_multichannel(work: Path, seed: int, rows: int = 50_000) -> Dataset:
    """``gt6-s<seed>``: six channels from GutenTAG (``timeeval-gutentag`` on the registry, run in a
    virtual environment of its own), ``rows`` labelled train rows and as many test rows, 12 events in
    each file; the sweep's fractions cut train (validation holds 2-4 events)."""
    import subprocess

    d = work / "data" / f"gt6-s{seed}"
    if not (d / "test_labels.parquet").is_file():
        import yaml

        py = gutentag_venv(work)
        d.mkdir(parents=True, exist_ok=True)
        (d / "gutentag.yaml").write_text(yaml.safe_dump(gutentag_config(seed, rows)))
        done = subprocess.run([str(py), "-m", "gutenTAG", "--config-yaml", str(d / "gutentag.yaml"), "--output-dir",
                               str(d / "raw"), "--seed", str(seed), "--no-plot"], capture_output=True, text=True)
        if done.returncode:
            done = subprocess.run([str(py), "-m", "gutenTAG", "--config-yaml", str(d / "gutentag.yaml"), "--output-dir",
                                   str(d / "raw"), "--seed", str(seed)], capture_output=True, text=True)
        raw = d / "raw" / f"mc{seed}"
        if done.returncode or not (raw / "test.csv").is_file():
            raise RuntimeError(f"gutentag: generating {d.name} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        train, test = pd.read_csv(raw / "train_anomaly.csv"), pd.read_csv(raw / "test.csv")
        ren = {f"value-{i}": f"channel_{i + 1}" for i in range(6)}
        n = len(train)
        tr = train.drop(columns="timestamp").rename(columns=ren).astype({c: np.float32 for c in ren.values()})
        te = test.drop(columns="timestamp").rename(columns=ren).astype({c: np.float32 for c in ren.values()})
        tr.insert(0, "id", np.arange(n))
        te.insert(0, "id", np.arange(n, n + len(te)))
        _write_parquet(d / "train.parquet", tr.astype({"is_anomaly": np.uint8}))
        _write_parquet(d / "test.parquet", te.drop(columns="is_anomaly"))
        _write_parquet(d / "test_labels.parquet", te[["id", "is_anomaly"]].astype({"is_anomaly": np.uint8}))
    return Dataset(d.name, "synthetic", d / "train.parquet", d / "test.parquet", d / "test_labels.parquet",
                   [f"channel_{i}" for i in range(1, 7)])
