"""From files to model-ready arrays: load, validate, split, scale (and optionally denoise).

``DataConfig`` is plain data (the ``data:`` block of a sweep file). ``prepare`` does every check
before any expensive step, and fits the scaler (and the wavelet thresholds) on the fit split's
nominal rows only. The sweep hands the ``Prepared`` splits to its trials through Ray's object store
(one copy per node).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from telemetry import telecommands
from telemetry.checks import check_disjoint
from telemetry.errors import TelemetryError
from telemetry.loading import load, load_labels, made_up_ids
from telemetry.scaling import StandardScaler
from telemetry.series import Series
from telemetry.splits import SPLIT_NAMES, fractions_problem, split_series
from telemetry.wavelets import WaveletDenoiser

log = logging.getLogger("telemetry.prepare")
LABEL_MODES = ("auto", "none")  # data.labels


@dataclass
class DataConfig:
    train: str
    test: str | None = None
    test_labels: str | None = None  # only for measuring on a synthetic mission; never used to fit
    channels: str | list | None = None
    fractions: list = field(default_factory=lambda: [0.6, 0.2, 0.2])
    boundaries: list | None = None  # first id of validation and of holdout (overrides fractions)
    wavelet: dict | None = None  # {"wavelet": "db4", "level": 2, "mode": "soft", "threshold_scale": 1.0}
    # Conditioning inputs (never scored): "all", a list of telecommand names or numbers, or none;
    # each becomes exp(-rows since its last pulse / telecommand_horizon) (telemetry.telecommands).
    telecommands: str | list | None = None
    telecommand_horizon: float = 1000.0
    # "auto": the train file's is_anomaly column when it has one (a discharge JSON: its anomalyTime);
    # "none": unlabelled even if it has one. Unlabelled, a sweep minimises the validation loss and
    # every threshold is unsupervised (search/shapes.py).
    labels: Literal["auto", "none"] = "auto"
    # Many series (telemetry.splits): the series-id column of the file (a discharge JSON is one
    # series per discharge by itself); splits by whole series (fractions of the series count, or
    # these lists of names: {validation: [...], holdout: [...]}), or in time within each series.
    series: str | None = None
    split_series: dict | None = None
    split_within_series: bool = False
    warning_rows: int = 0  # discharge JSON: also label this many rows before each anomalyTime

    @classmethod
    def from_dict(cls, d: dict, base_dir: str | os.PathLike | None = None) -> "DataConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise TelemetryError(f"data: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        if "train" not in d:
            raise TelemetryError("data: missing key 'train' (path to train.parquet)")
        cfg = cls(**d)
        if base_dir is not None:  # relative paths are relative to the sweep file
            for key in ("train", "test", "test_labels"):
                v = getattr(cfg, key)
                if v and "://" not in v and not os.path.isabs(v):
                    setattr(cfg, key, str((Path(base_dir) / v).resolve()))
        if cfg.wavelet is not None:
            WaveletDenoiser(**cfg.wavelet)  # unknown keys fail here, with Python's message
        cfg.check()
        return cfg

    # Rules on one field's value, shared with the sweep file's schema (search/schema.py), which
    # reports them at the key in the file: a function of the value -> what is wrong, or None.
    FIELD_RULES = {"fractions": fractions_problem}

    def check(self) -> None:
        """The new shape keys, one line each (paths and channels are checked when loading)."""
        for key, rule in self.FIELD_RULES.items():
            problem = rule(getattr(self, key))
            if problem:
                raise TelemetryError(f"data.{key}: {problem}")
        if self.labels not in LABEL_MODES:
            raise TelemetryError(f"data.labels must be one of {', '.join(LABEL_MODES)}, got {self.labels!r}")
        if self.series is not None and (not isinstance(self.series, str) or not self.series):
            raise TelemetryError(f"data.series must be a column name, got {self.series!r}")
        if not isinstance(self.split_within_series, bool):
            raise TelemetryError(f"data.split_within_series must be true or false, got {self.split_within_series!r}")
        if self.split_series is not None:
            ok = isinstance(self.split_series, dict) and set(self.split_series) == {"validation", "holdout"}
            if not ok:
                raise TelemetryError(f"data.split_series must have exactly the keys validation and holdout (lists of "
                                     f"series names), got {self.split_series!r}")
        if isinstance(self.warning_rows, bool) or not isinstance(self.warning_rows, int) or self.warning_rows < 0:
            raise TelemetryError(f"data.warning_rows must be an integer >= 0, got {self.warning_rows!r}")

    @property
    def unlabelled(self) -> bool:
        """Asked to ignore labels (the data may still have none when this is False: see Prepared)."""
        return self.labels == "none"


@dataclass
class Prepared:
    """Scaled (and optionally denoised) splits plus the fitted preprocessing."""

    fit: Series
    validation: Series
    holdout: Series
    test: Series | None
    scaler: StandardScaler
    denoiser: WaveletDenoiser | None = None
    test_labels: np.ndarray | None = None

    @property
    def labelled(self) -> bool:
        """Whether the splits carry labels (the objective is then F0.5, else the validation loss)."""
        return self.fit.labels is not None

    def sets(self) -> dict[str, Series]:
        out = {n: getattr(self, n) for n in SPLIT_NAMES}
        if self.test is not None:
            out["test"] = self.test
        return out


def load_sets(cfg: DataConfig):
    """Load and check the files and splits (cheap relative to training; nothing is fitted)."""
    tcs = telecommands.columns(cfg.telecommands, None)
    # "auto" reads is_anomaly when the file has it; a file without it is unlabelled (the sweep's
    # objective becomes the validation loss).
    train = load(cfg.train, cfg.channels, labels=False if cfg.unlabelled else "auto", telecommands=tcs,
                 series=cfg.series, warning_rows=cfg.warning_rows)
    test = None
    if cfg.test:
        try:
            test = load(cfg.test, cfg.channels, labels=False, telecommands=train.telecommand_names or None,
                        series=cfg.series, warning_rows=cfg.warning_rows)
        except TelemetryError as exc:  # say which of the two files: the train file has loaded
            raise TelemetryError(f"data.test: {exc}") from None
        if made_up_ids(cfg.test):
            # Row numbers of a file without ids (a wide CSV, a discharge JSON) continue after the
            # train file's, so that both can be told apart (the submission uses them).
            test = replace(test, ids=test.ids + (int(train.ids[-1]) + 1 - int(test.ids[0])))
            log.info("%s: no id column; test ids are row numbers continuing the train file's: %d..%d",
                     cfg.test, test.ids[0], test.ids[-1])
    if tcs and train.telecommands is not None:  # "all" on a file without telecommand columns: none
        train, test = with_telecommand_features(train, test, cfg.telecommand_horizon)
    if test is not None:
        check_disjoint(train.ids, test.ids, cfg.train, cfg.test)
    test_labels = None
    if cfg.test_labels:
        ids, test_labels = load_labels(cfg.test_labels)
        if test is None or not np.array_equal(ids, test.ids):
            raise TelemetryError(f"{cfg.test_labels}: ids do not match the test file {cfg.test}")
    splits = split_series(train, cfg.fractions, cfg.boundaries, series_lists=cfg.split_series,
                          within_series=cfg.split_within_series)
    return splits, test, test_labels


def with_telecommand_features(train: Series, test: Series | None, horizon: float):
    """Pulses -> conditioning features on the whole train series, the test series continuing from
    the train series' last pulses (it follows train in time)."""
    from dataclasses import replace

    state = telecommands.end_state(train.telecommands)
    train = replace(train, telecommands=telecommands.features(train.telecommands, horizon))
    if test is not None:
        test = replace(test, telecommands=telecommands.features(test.telecommands, horizon, state))
    return train, test


def prepare(cfg: DataConfig) -> Prepared:
    splits, test, test_labels = load_sets(cfg)
    log.info("loaded %s: %d rows x %d channels; splits %s", cfg.train, sum(splits.lengths().values()),
             splits.fit.n_channels, splits.lengths())
    scaler = StandardScaler().fit(splits.fit.values, splits.fit.nominal)
    denoiser = WaveletDenoiser(**cfg.wavelet).fit(scaler.transform(splits.fit.values)) if cfg.wavelet else None

    def apply(s: Series) -> Series:
        v = scaler.transform(s.values)
        if denoiser is not None:  # series by series: a wavelet must not smear one series into the next
            v = np.concatenate([denoiser.transform(v[a:b]) for a, b in zip(s.offsets[:-1], s.offsets[1:])])
        return s.with_values(v)

    return Prepared(apply(splits.fit), apply(splits.validation), apply(splits.holdout),
                    apply(test) if test is not None else None, scaler, denoiser, test_labels)
