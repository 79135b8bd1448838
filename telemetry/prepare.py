"""From files to model-ready arrays: load, validate, split, scale (and optionally denoise).

``DataConfig`` is plain data (the ``data:`` block of a sweep file). ``prepare`` does every check
before any expensive step, and fits the scaler (and the wavelet thresholds) on the fit split's
nominal rows only. The sweep hands the ``Prepared`` splits to its trials through Ray's object store
(one copy per node).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from telemetry import telecommands
from telemetry.checks import check_disjoint
from telemetry.errors import TelemetryError
from telemetry.loading import load, load_labels
from telemetry.scaling import StandardScaler
from telemetry.series import Series
from telemetry.splits import SPLIT_NAMES, split_series
from telemetry.wavelets import WaveletDenoiser

log = logging.getLogger("telemetry.prepare")


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
        return cfg


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

    def sets(self) -> dict[str, Series]:
        out = {n: getattr(self, n) for n in SPLIT_NAMES}
        if self.test is not None:
            out["test"] = self.test
        return out


def load_sets(cfg: DataConfig):
    """Load and check the files and splits (cheap relative to training; nothing is fitted)."""
    tcs = telecommands.columns(cfg.telecommands, None)
    train = load(cfg.train, cfg.channels, labels=True, telecommands=tcs)
    test = load(cfg.test, cfg.channels, labels=False, telecommands=train.telecommand_names or None) if cfg.test else None
    if tcs:
        train, test = with_telecommand_features(train, test, cfg.telecommand_horizon)
    if test is not None:
        check_disjoint(train.ids, test.ids, cfg.train, cfg.test)
    test_labels = None
    if cfg.test_labels:
        ids, test_labels = load_labels(cfg.test_labels)
        if test is None or not np.array_equal(ids, test.ids):
            raise TelemetryError(f"{cfg.test_labels}: ids do not match the test file {cfg.test}")
    splits = split_series(train, cfg.fractions, cfg.boundaries)
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
        return s.with_values(denoiser.transform(v) if denoiser else v)

    return Prepared(apply(splits.fit), apply(splits.validation), apply(splits.holdout),
                    apply(test) if test is not None else None, scaler, denoiser, test_labels)
