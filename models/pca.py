"""PCA reconstruction detector: what the strongest public ESA-ADB entries were built on.

Each row t is embedded with its ``lags - 1`` predecessors, ``[x_t, x_{t-1}, ..., x_{t-lags+1}]``
(C * lags features; the first rows repeat row 0), so the principal subspace holds the short-term
dynamics as well as the cross-channel correlations. A row whose channels each stay in range but
break the learnt correlation leaves that subspace, which no per-channel rule can see.

Fitting is exact PCA from the mean and covariance of the embedded rows, accumulated chunk by chunk
in float64 (what scikit-learn's PCA computes, without ever holding the embedded matrix: a chunk of
``CHUNK_ROWS`` rows is the most that exists at once, so 10^7-row splits stay in bounded memory).
Score: absolute reconstruction residual, averaged over each channel's lags, standardised per
channel by its residual mean/std on the validation split's nominal rows (so channels weigh alike,
as for the window models), then the max (or mean) over channels: one float32 per row.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.base import CHANNEL_REDUCTIONS, Detector
from models.registry import register
from telemetry.errors import TelemetryError
from telemetry.series import Series

CHUNK_ROWS = 1 << 17


def lagged(values: np.ndarray, lags: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """Rows [lo, hi) of the lag embedding, [rows, lags * C], lag-major (lag 0 first).

    Rows before the start of the series repeat row 0, so every row has a full embedding.
    """
    hi = len(values) if hi is None else hi
    idx = np.arange(lo, hi)
    return np.concatenate([values[np.maximum(idx - k, 0)] for k in range(lags)], axis=1)


@register("pca")
class PCADetector(Detector):
    """Reconstruction error of a row (with ``lags - 1`` predecessors) from its principal subspace.

    ``n_components``: an int (number of components) or a float in (0, 1) (the smallest number that
    explains that share of the variance); always fewer than the embedded width, so something is
    left to score. ``nominal_only``: fit on the labelled-nominal rows when labels are known.
    """

    tags = {"needs_labels": False, "forecaster": False, "windowed": False, "keras": False}

    def __init__(self, lags: int = 1, n_components: int | float = 0.95, channel_reduction: str = "max",
                 nominal_only: bool = True):
        self.lags = lags
        self.n_components = n_components
        self.channel_reduction = channel_reduction
        self.nominal_only = nominal_only

    def _validate(self, series: Series) -> None:
        if not isinstance(self.lags, (int, np.integer)) or self.lags < 1:
            raise TelemetryError(f"{self.name}: lags must be a positive integer, got {self.lags!r}")
        nc = self.n_components
        if isinstance(nc, (bool, np.bool_)) or not (
                (isinstance(nc, (int, np.integer)) and nc >= 1) or (isinstance(nc, float) and 0.0 < nc < 1.0)):
            raise TelemetryError(f"{self.name}: n_components must be an integer >= 1 or a fraction in (0, 1), got {nc!r}")
        if self.channel_reduction not in CHANNEL_REDUCTIONS:
            raise TelemetryError(f"{self.name}: channel_reduction must be max or mean, got {self.channel_reduction!r}")
        if len(series) < 2:
            raise TelemetryError(f"{self.name}: {series.source} has {len(series)} row(s); PCA needs at least 2")

    def _chunks(self, series: Series):
        for lo in range(0, len(series), CHUNK_ROWS):
            hi = min(lo + CHUNK_ROWS, len(series))
            yield lo, hi, lagged(series.values, int(self.lags), lo, hi)

    def fit(self, fit: Series, validation: Series | None = None, callbacks=None) -> "PCADetector":
        self._validate(fit)
        use = fit.nominal if (self.nominal_only and fit.labels is not None) else np.ones(len(fit), dtype=bool)
        if use.sum() < 2:
            raise TelemetryError(f"{self.name}: {fit.source} has fewer than 2 nominal rows to fit on")
        d = fit.n_channels * int(self.lags)
        total, s1, s2 = 0, np.zeros(d), np.zeros((d, d))
        for lo, hi, x in self._chunks(fit):
            x = x[use[lo:hi]].astype(np.float64)
            total += len(x)
            s1 += x.sum(axis=0)
            s2 += x.T @ x
        mean = s1 / total
        cov = (s2 - total * np.outer(mean, mean)) / max(total - 1, 1)
        var, vec = np.linalg.eigh(cov)  # ascending
        var, vec = np.maximum(var[::-1], 0.0), vec[:, ::-1]
        if isinstance(self.n_components, float):
            share = np.cumsum(var) / var.sum() if var.sum() > 0 else np.ones(d)
            k = int(np.searchsorted(share, self.n_components) + 1)
        else:
            k = int(self.n_components)
        k = max(1, min(k, d - 1)) if d > 1 else 0  # one feature: score its distance to the mean
        self.mean_ = mean.astype(np.float32)
        self.components_ = vec[:, :k].T.astype(np.float32)  # [k, d], sklearn's layout
        self.explained_variance_ratio_ = (var[:k] / var.sum() if var.sum() > 0 else np.zeros(k)).astype(np.float32)
        self.n_channels_ = fit.n_channels
        self.channels_ = list(fit.channels)
        ref = validation if validation is not None else fit
        err = self._channel_errors(ref)
        if ref.labels is not None and ref.nominal.any():
            err = err[ref.nominal]
        self.error_mean_ = err.mean(axis=0).astype(np.float32)
        self.error_std_ = np.maximum(err.std(axis=0), 1e-6).astype(np.float32)
        self.fitted_ = True
        return self

    def _channel_errors(self, series: Series) -> np.ndarray:
        """Mean absolute residual per row and channel [N, C] (over the channel's lags)."""
        if series.n_channels != self.n_channels_:
            raise TelemetryError(f"{self.name}: fitted on {self.n_channels_} channels, got {series.n_channels}")
        out = np.empty((len(series), self.n_channels_), dtype=np.float32)
        w = self.components_
        for lo, hi, x in self._chunks(series):
            xc = x - self.mean_
            resid = xc - (xc @ w.T) @ w
            out[lo:hi] = np.abs(resid).reshape(hi - lo, int(self.lags), self.n_channels_).mean(axis=1)
        return out

    def score(self, series: Series) -> np.ndarray:
        self._check_fitted()
        self._validate(series)
        z = (self._channel_errors(series) - self.error_mean_) / self.error_std_
        return (z.max(axis=1) if self.channel_reduction == "max" else z.mean(axis=1)).astype(np.float32)

    def _save_state(self, path: Path) -> None:
        self._check_fitted()
        np.savez(path / "state.npz", mean=self.mean_, components=self.components_,
                 explained_variance_ratio=self.explained_variance_ratio_, error_mean=self.error_mean_,
                 error_std=self.error_std_, channels=np.array(self.channels_))

    def _load_state(self, path: Path) -> None:
        st = np.load(path / "state.npz")
        self.mean_, self.components_ = st["mean"], st["components"]
        self.explained_variance_ratio_ = st["explained_variance_ratio"]
        self.error_mean_, self.error_std_ = st["error_mean"], st["error_std"]
        self.channels_ = [str(c) for c in st["channels"]]
        self.n_channels_ = len(self.channels_)
        self.fitted_ = True
