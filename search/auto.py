"""A sweep file for new data, written from the data and a time budget (``telesweep auto``).

A user with new data should not have to size a search by hand. :func:`auto_config` reads the data
once (rows, channels, series, labelled events, split lengths) and writes a plain sweep file
(the same data a user would write, checked by the same schema):

* **Architectures by preset**: ``fast`` (pca, bilstm_ae), ``medium`` (+ lstm_forecaster, conv_ae),
  ``best`` (+ lstm_ae, dense_ae). Cheap ones run first: time they leave goes to the next.
* **Known-good configurations first** (:data:`KNOWN_GOOD`, each architecture's ``start``): the
  user's notebook (bilstm_ae, window 5, 5 epochs) and the plain PCA script (5 lags, 95 % of the
  variance) among them. They are the search's first trials, and they are what the ensemble keeps
  when validation holds too few events to tell a searched configuration from them
  (ensemble.members, ``anchored`` selection).
* **Sized from the data**: window choices that fit the shortest split (and series); strides so
  that an epoch trains on at most :data:`TRAIN_WINDOWS` windows and scoring passes at most
  :data:`SCORE_WINDOWS` per split; every trial scores every split on data of up to
  :data:`SCORE_ALL_ROWS` rows (no second pass); the trial counts from the budget.
* **Splits**: fractions 0.5 / 0.25 / 0.25 of the labelled series; when those leave validation or
  holdout without an event (few events in all), the cuts go midway between events instead, a third
  of the events to each later split.
* **The trials' own rule** is the ensemble's default rule on one member (plateau threshold with
  hysteresis and a POT floor; ``pot`` without labels), so a trial's F0.5 is the figure the
  decision layer would give that member, and nothing of the rule is searched on few events.

Nothing here reads test labels; the test file is only opened to check its columns.
"""
from __future__ import annotations

import copy
import logging
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from telemetry.errors import TelemetryError
from telemetry.prepare import DataConfig

log = logging.getLogger("search")

PRESETS = {
    "fast": ("pca", "bilstm_ae"),
    "medium": ("pca", "bilstm_ae", "lstm_forecaster", "conv_ae"),
    "best": ("pca", "bilstm_ae", "lstm_forecaster", "conv_ae", "lstm_ae", "dense_ae"),
}
TRAIN_WINDOWS = {"fast": 25_000, "medium": 50_000, "best": 100_000}  # windows per epoch at most
SCORE_WINDOWS = 500_000  # windows scored per split at most (score_stride beyond that)
SCORE_ALL_ROWS = 2_000_000  # up to this many train+test rows every trial scores every split
MAX_TRIALS = {"fast": 8, "medium": 10, "best": 16}  # per architecture; the budget usually ends it first
# The known-good trial of an architecture must end inside its share of the budget (Tune stops what is
# still running when the share is spent): its estimated time at most this part of the share (it runs
# beside other trials, and the estimate is from one process on an idle machine).
ANCHOR_SHARE = 0.4
MIN_TRAIN_WINDOWS = 2_000  # below this per epoch a window model is not worth training: left out
KERAS_START_S = 10.0  # a Keras trial's process start, backend import and model build (2 cores, idle)
FRACTIONS = [0.5, 0.25, 0.25]
# The ensemble's default rule (ensemble.combine.Rule's default threshold), which search may not import.
RULE = {"method": "plateau", "hysteresis": 0.5, "floor_risk": 1e-3}
UNLABELLED_RULE = {"method": "pot"}
# Share of the budget per architecture (time a cheap one leaves goes to the next).
BUDGET_SHARE = {"pca": 0.4, "global_std": 0.1}

# Per architecture: the searched space (windows are cut to the data later), fixed parameters, and
# the known-good configurations run first.
SPACES = {
    "pca": {
        "space": {"lags": {"choice": [1, 3, 5, 10]}, "n_components": {"choice": [0.8, 0.9, 0.95, 0.99]}},
        "fixed": {},
        "start": [{"lags": 5, "n_components": 0.95}],  # the plain PCA script
    },
    "bilstm_ae": {
        "space": {"window": {"choice": [5, 10, 20]}, "latent": {"choice": [16, 32, 64]}, "epochs": {"int": [2, 8]}},
        "fixed": {"units": 64, "dropout": 0.2, "batch_size": 1024},
        "start": [{"window": 5, "latent": 64, "epochs": 5}],  # the user's notebook
    },
    "lstm_forecaster": {
        "space": {"window": {"choice": [8, 16, 32]}, "units": {"choice": [16, 32]}, "epochs": {"int": [1, 4]}},
        "fixed": {"batch_size": 256, "learning_rate": 0.003},
        "start": [{"window": 16, "units": 32, "epochs": 3}],
    },
    "conv_ae": {
        "space": {"window": {"choice": [16, 32, 64]}, "latent": {"choice": [8, 16, 32]}, "epochs": {"int": [1, 4]}},
        "fixed": {"batch_size": 256, "dropout": 0.1, "learning_rate": 0.002},
        "start": [{"window": 32, "latent": 16, "epochs": 3}],
    },
    "lstm_ae": {
        "space": {"window": {"choice": [8, 16, 32]}, "latent": {"choice": [4, 8, 16]}, "epochs": {"int": [1, 4]}},
        "fixed": {"units": 16, "batch_size": 256, "learning_rate": 0.003},
        "start": [{"window": 16, "latent": 8, "epochs": 3}],
    },
    "dense_ae": {
        "space": {"window": {"choice": [1, 5, 10]}, "latent": {"choice": [2, 4, 8]}, "epochs": {"int": [2, 8]}},
        "fixed": {"units": 16, "batch_size": 512},
        "start": [{"window": 5, "latent": 4, "epochs": 5}],
    },
}
KNOWN_GOOD = {arch: spec["start"] for arch, spec in SPACES.items()}
_NOT_CHANNELS = re.compile(r"^(id|is_anomaly|timestamp|time|date|datetime|index|unnamed: ?\d+)$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """``"90"`` / ``"90s"`` / ``"5m"`` / ``"1.5h"`` -> seconds (> 0)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise TelemetryError(f"--time-budget: a positive duration such as 300, 90s, 5m or 1h, got {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def default_channels(path: str):
    """The channels auto reads when none are named: the challenge's default subset where the file has
    it (channel_41..46), else every ``channel_*`` column, else every numeric column other than ids,
    labels and time stamps (a wide CSV). None where the loader decides (NAB, discharge JSON)."""
    from telemetry.schema import CHANNEL_PREFIX, DEFAULT_CHANNELS, TELECOMMAND_PREFIX

    p = str(path)
    if p.endswith(".json"):
        return None
    columns, numeric = _columns(p)
    if columns[:2] == ["timestamp", "value"]:  # a NAB file
        return None
    if all(c in columns for c in DEFAULT_CHANNELS):
        return None
    chans = [c for c in columns if c.startswith(CHANNEL_PREFIX)]
    if chans:
        return chans
    chans = [c for c in columns if c in numeric and not _NOT_CHANNELS.match(c) and not c.startswith(TELECOMMAND_PREFIX)]
    if not chans:
        raise TelemetryError(f"{p}: no numeric column to use as a channel (name them with --channels)")
    return chans


def _columns(path: str) -> tuple[list[str], set[str]]:
    """(column names, the numeric ones) of a parquet or CSV file, from its schema or first rows."""
    import pandas as pd

    if not Path(path).is_file():
        raise TelemetryError(f"{path}: file not found")
    if path.endswith((".parquet", ".pq")):
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        numeric = {f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)}
        return list(schema.names), numeric
    if path.endswith(".csv"):
        head = pd.read_csv(path, nrows=200)
        return list(head.columns), {c for c in head.columns if pd.api.types.is_numeric_dtype(head[c])}
    raise TelemetryError(f"{path}: unsupported file type (expected .parquet, .csv or .json)")


def event_cuts(labels: np.ndarray, ids: np.ndarray) -> list[int] | None:
    """Boundaries (first ids of validation and holdout) midway in the gaps before event E//3 and
    event E - E//3: a third of the events (at least one) to each later split. None with fewer than
    three events."""
    from telemetry.events import events

    ev = events(labels)
    if len(ev) < 3:
        return None
    k = max(1, len(ev) // 3)
    j = max(k + 1, len(ev) - len(ev) // 3)
    return [int(ids[(int(ev[a - 1][1]) + int(ev[a][0])) // 2]) for a in (k, j)]


def data_facts(data: DataConfig) -> dict:
    """Rows, channels, series and labelled events of the data as the sweep will cut it, and the data
    config (its fractions replaced by event cuts where fractions leave a split without an event)."""
    from telemetry.prepare import load_sets

    from telemetry.loading import load

    probe = replace(data, telecommands=None)  # the shapes only: telecommand features are not needed here
    try:
        splits, test, _ = load_sets(probe)
        short = splits.fit.labels is not None and not (_n_events(splits.validation.labels) and _n_events(splits.holdout.labels))
    except TelemetryError as exc:
        if "anomaly" not in str(exc):
            raise
        short = True
    if short and data.labels != "none" and not data.series and not data.boundaries:
        train = load(data.train, data.channels)
        cuts = event_cuts(train.labels, train.ids) if train.labels is not None else None
        if cuts is None:
            raise TelemetryError(f"{data.train}: the labelled series has {_n_events(train.labels)} anomaly event(s); "
                                 f"validation and holdout need one each and fit nominal rows: give at least 3 "
                                 f"labelled events, or run unlabelled (--labels none)") from None
        log.info("fractions %s leave validation or holdout without an anomaly event: cutting between events at ids %s",
                 data.fractions, cuts)
        data = replace(data, boundaries=cuts)
        splits, test, _ = load_sets(replace(data, telecommands=None))
    lengths = splits.lengths()
    if test is not None:
        lengths["test"] = len(test)
    # The largest window every split can hold: a window must fit the longest series of each split.
    window_room = min(_longest_series(s) for _, s in splits.items())
    if test is not None:
        window_room = min(window_room, _longest_series(test))
    labelled = splits.fit.labels is not None
    return {
        "data": data, "rows": int(sum(len(s) for _, s in splits.items())), "test_rows": int(len(test) if test is not None else 0),
        "channels": len(splits.fit.channels), "lengths": lengths, "shortest": int(min(lengths.values())),
        "longest": int(max(lengths.values())), "window_room": int(window_room), "labelled": labelled,
        "series": int(splits.fit.n_segments + splits.validation.n_segments + splits.holdout.n_segments)
        if splits.fit.segments is not None else 1,
        "events": {n: _n_events(s.labels, s.segments) for n, s in splits.items()} if labelled else None,
    }


def _has_telecommands(path: str) -> bool:
    from telemetry.schema import TELECOMMAND_PREFIX

    if not path.endswith((".parquet", ".pq", ".csv")):
        return False
    return any(c.startswith(TELECOMMAND_PREFIX) for c in _columns(path)[0])


def _n_events(labels, segments=None) -> int:
    from telemetry.events import events

    return 0 if labels is None else int(len(events(labels, segments)))


def _longest_series(s) -> int:
    if s.segments is None:
        return len(s)
    return int(np.diff(s.segments).max())


def _fit_windows(space: dict, fixed: dict, start: list[dict], cap: int) -> None:
    """Window choices above ``cap`` rows dropped (the smallest kept, then cut to ``cap``); start
    points whose window is gone take the largest left."""
    spec = space.get("window")
    if not isinstance(spec, dict):
        return
    keep = [w for w in spec["choice"] if w <= cap] or [max(1, min(min(spec["choice"]), cap))]
    space["window"] = {"choice": keep}
    for point in start:
        if "window" in point and point["window"] not in keep:
            point["window"] = max(w for w in keep if w <= point["window"]) if any(w <= point["window"] for w in keep) \
                else keep[0]


def auto_config(train: str, test: str | None = None, out: str | Path = "results/auto", time_budget_s: float = 300.0,
                preset: str = "fast", channels=None, labels: str = "auto", series: str | None = None,
                name: str = "auto", seed: int = 0, cpus: int | None = None,
                boundaries: list | None = None, measure: bool = True,
                architectures: list[str] | None = None) -> tuple[dict, dict]:
    """(sweep file as plain data, the data facts it was sized from). Paths in the file are absolute;
    storage is ``<out>/sweeps``. ``boundaries``: the first ids of validation and holdout, instead of
    fractions. ``measure``: time each window model's known-good configuration on this machine
    (search.plan.calibrate, seconds) to fit its training into the budget; off, the strides come from
    the data alone. ``architectures``: these (of :data:`SPACES`) instead of the preset's."""
    from models import registry

    if preset not in PRESETS:
        raise TelemetryError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    for a in architectures or []:
        if a not in SPACES:
            raise TelemetryError(f"--architectures: {a!r} has no automatic search space; choose from {', '.join(SPACES)}")
    if time_budget_s <= 0:
        raise TelemetryError(f"the time budget must be positive, got {time_budget_s!r} s")
    train = str(Path(train).resolve())
    test = str(Path(test).resolve()) if test else None
    if channels is None:
        channels = default_channels(train)
    data = DataConfig(train=train, test=test, channels=channels, fractions=list(FRACTIONS), labels=labels, series=series,
                      boundaries=list(boundaries) if boundaries else None)
    data.check()
    facts = data_facts(data)
    data = facts.pop("data")
    cap = max(1, facts["window_room"] // 2)  # a window at most half of what the shortest split can hold
    archs = {}
    commands = _has_telecommands(train)
    score_all = facts["rows"] + facts["test_rows"] <= SCORE_ALL_ROWS
    names = tuple(dict.fromkeys(architectures)) if architectures else PRESETS[preset]
    total_share = sum(BUDGET_SHARE.get(a, 1.0) for a in names)
    facts["left_out"] = {}
    for arch in names:
        cls = registry.get(arch)
        spec = copy.deepcopy(SPACES[arch])
        space, fixed, start = spec["space"], spec["fixed"], spec["start"]
        _fit_windows(space, fixed, start, cap)
        if arch == "pca" and commands:  # conditioning on the commands, searched, the plain script first
            space["telecommands"] = {"choice": [False, True]}
            for point in start:
                point["telecommands"] = False
        params = cls.param_names()
        if "train_stride" in params:
            fit_rows = facts["lengths"]["fit"]
            fixed["train_stride"] = max(1, math.ceil(fit_rows / TRAIN_WINDOWS[preset]))
            smallest_window = min(space["window"]["choice"])
            fixed["score_stride"] = max(1, min(smallest_window, math.ceil(facts["longest"] / SCORE_WINDOWS)))
            share = time_budget_s * BUDGET_SHARE.get(arch, 1.0) / total_share
            why = _fit_anchor(cls, fixed, start[0], facts, share, measure)
            if why:
                log.warning("%s left out: %s", arch, why)
                facts["left_out"][arch] = why
                continue
        trials = MAX_TRIALS[preset]
        if arch == "pca":
            trials = min(trials, int(np.prod([len(s["choice"]) for s in space.values()])))
        archs[arch] = {"trials": max(trials, len(start)), "resources": {"cpu": 1}, "space": space,
                       **({"fixed": fixed} if fixed else {}), "start": start,
                       **({"budget_share": BUDGET_SHARE[arch]} if arch in BUDGET_SHARE else {})}
    raw_data = {"train": data.train, **({"test": data.test} if data.test else {}),
                **({"channels": data.channels} if data.channels is not None else {}),
                **({"boundaries": data.boundaries} if data.boundaries else {"fractions": data.fractions}),
                **({"labels": data.labels} if data.labels != "auto" else {}),
                **({"series": data.series} if data.series else {}),
                **({"telecommands": "all"} if commands else {})}
    raw = {
        "name": name, "seed": int(seed), "storage": str((Path(out).resolve() / "sweeps")),
        "data": raw_data,
        **({"ray": {"num_cpus": int(cpus)}} if cpus else {}),
        "search": {"time_budget_s": float(time_budget_s), **({"finalists": "all"} if score_all else {})},
        "threshold": dict(RULE if facts["labelled"] else UNLABELLED_RULE),
        "architectures": archs,
    }
    if not archs:
        raise TelemetryError(f"no architecture of preset {preset!r} fits a time budget of {time_budget_s:.0f} s here")
    return raw, facts


def _fit_anchor(cls, fixed: dict, point: dict, facts: dict, share_s: float, measure: bool) -> str | None:
    """Raise ``fixed["train_stride"]`` until the known-good configuration ``point`` is estimated to
    train and score within ANCHOR_SHARE of its architecture's ``share_s`` seconds; the reason to leave
    the architecture out when even MIN_TRAIN_WINDOWS windows per epoch do not fit, else None."""
    if not measure:
        return None
    from search.plan import TRIAL_OVERHEAD_S, calibrate

    params = {**fixed, **point}
    train_rate, score_rate = calibrate(cls, params, facts["channels"])
    epochs = int(params.get("epochs", cls().get_params().get("epochs", 1)) or 1)
    scored = facts["lengths"]["validation"] + facts["lengths"]["holdout"] + facts["lengths"].get("test", 0)
    score_s = scored / fixed["score_stride"] / score_rate
    room = ANCHOR_SHARE * share_s - score_s - TRIAL_OVERHEAD_S - KERAS_START_S
    fit_rows = facts["lengths"]["fit"]
    windows = math.floor(room * train_rate / epochs) if room > 0 else 0
    facts.setdefault("anchor_seconds", {})[cls.name] = round(epochs * fit_rows / fixed["train_stride"] / train_rate
                                                             + score_s + TRIAL_OVERHEAD_S + KERAS_START_S, 1)
    if windows >= fit_rows / fixed["train_stride"]:
        return None
    if windows < min(MIN_TRAIN_WINDOWS, fit_rows):
        return (f"its known-good configuration needs about {facts['anchor_seconds'][cls.name]:.0f} s here, more than "
                f"its share of the budget ({share_s:.0f} s) allows; give a longer --time-budget")
    fixed["train_stride"] = max(fixed["train_stride"], math.ceil(fit_rows / windows))
    return None


def describe(facts: dict, raw: dict) -> str:
    """A few lines on what the plan was sized from."""
    ev = facts["events"]
    lines = [f"data: {facts['rows']:,} labelled-file rows ({', '.join(f'{k} {v:,}' for k, v in facts['lengths'].items())}), "
             f"{facts['channels']} channels, {facts['series']} series"
             + (f"; anomaly events fit {ev['fit']}, validation {ev['validation']}, holdout {ev['holdout']}" if ev else
                "; unlabelled")]
    for arch, spec in raw["architectures"].items():
        fixed = spec.get("fixed", {})
        strides = "" if "train_stride" not in fixed else f", train_stride {fixed['train_stride']}, score_stride {fixed['score_stride']}"
        lines.append(f"{arch}: up to {spec['trials']} trials, first {spec['start']}{strides}")
    for arch, why in facts.get("left_out", {}).items():
        lines.append(f"{arch}: left out, {why}")
    lines.append(f"time budget {raw['search']['time_budget_s']:.0f} s for the search")
    return "\n".join(lines)
