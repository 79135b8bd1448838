"""PCA reconstruction detector: what the strongest public ESA-ADB entries were built on.

Each row t is embedded with its ``lags - 1`` predecessors, ``[x_t, x_{t-1}, ..., x_{t-lags+1}]``
(C * lags features; the first rows repeat row 0, and with many series, the first rows of each
series repeat that series' first row: a lag never reaches into the previous series), so the
principal subspace holds the short-term
dynamics as well as the cross-channel correlations. A row whose channels each stay in range but
break the learnt correlation leaves that subspace, which no per-channel rule can see.

Fitting is exact PCA from the mean and covariance of the embedded rows, accumulated chunk by chunk
in float64 (what scikit-learn's PCA computes, without ever holding the embedded matrix: a chunk of
``CHUNK_ROWS`` rows is the most that exists at once, so 10^7-row splits stay in bounded memory).
Score: absolute reconstruction residual, averaged over each channel's lags, turned into a row score
by :class:`models.scoring.RowScorer` (standardised per channel on the validation split's nominal
rows, as for the window models, then the max or mean over channels).

With telecommand features (``telecommands=True``) the model is conditional: the embedded channels'
least-squares response to the features is taken out first, and the subspace is that of the
channels' covariance given the features (Gaussian conditioning, ``S_xx - S_xf S_ff^+ S_fx``), both
from the same accumulated moments. Appending the features to the embedding instead (as before) let
the joint PCA ignore them: a feature is near 1 for a few hundred rows per command, so its variance
is far below any kept component's and the reconstruction never used it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.base import BOOLEAN, POSITIVE_INT, either, integer, one_of, real
from models.baselines import RowDetector
from models.registry import register
from models.scoring import CHANNEL_REDUCTIONS, RowScorer
from models.window import conditioning_of
from telemetry.errors import TelemetryError
from telemetry.series import Series

CHUNK_ROWS = 1 << 17
COMPONENTS = either(integer("an integer >= 1", ge=1), real("a fraction in (0, 1)", gt=0, lt=1),
                    phrase="an integer >= 1 or a fraction in (0, 1)")


def lagged(values: np.ndarray, lags: int, lo: int = 0, hi: int | None = None,
           segments: np.ndarray | None = None) -> np.ndarray:
    """Rows [lo, hi) of the lag embedding, [rows, lags * C], lag-major (lag 0 first).

    Rows before the start of the series repeat row 0, so every row has a full embedding. With
    ``segments`` (offsets of many series), a row's lags stop at the first row of its own series.
    """
    hi = len(values) if hi is None else hi
    idx = np.arange(lo, hi)
    first = 0
    if segments is not None:
        seg = np.asarray(segments, dtype=np.int64)
        first = seg[np.searchsorted(seg, idx, side="right") - 1]
    return np.concatenate([values[np.maximum(idx - k, first)] for k in range(lags)], axis=1)


def _conditioned(cov: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """From the joint covariance of [embedded channels (d), conditioning columns]: the channels'
    least-squares coefficients on the columns [d, T] and the channels' covariance given them [d, d].
    A pseudo-inverse, because a telecommand that never fires in the training rows is a constant column."""
    cxf, cff = cov[:d, d:], cov[d:, d:]
    if cff.size == 0:
        return np.zeros((d, 0), np.float32), cov
    coef = cxf @ np.linalg.pinv(cff, rcond=1e-10, hermitian=True)
    return coef.astype(np.float32), cov[:d, :d] - coef @ cxf.T


@register("pca")
class PCADetector(RowDetector):
    """Reconstruction error of a row (with ``lags - 1`` predecessors) from its principal subspace.

    ``n_components``: an int (number of components) or a float in (0, 1) (the smallest number that
    explains that share of the variance); always fewer than the embedded width, so something is
    left to score. ``nominal_only``: fit on the labelled-nominal rows when labels are known.
    ``telecommands``: append the row's telecommand features (telemetry.telecommands) to its
    embedding, so the subspace learns how the channels sit after each command; their own residuals
    are not scored.
    """

    _tags = {"channel_scores": True}
    _checks = {"lags": POSITIVE_INT, "n_components": COMPONENTS, "channel_reduction": one_of(*CHANNEL_REDUCTIONS),
               "telecommands": BOOLEAN}
    lags: int = 1
    n_components: int | float = 0.95
    channel_reduction: str = "max"
    nominal_only: bool = True
    telecommands: bool = False

    def _embedded(self, series: Series, lo: int, hi: int) -> np.ndarray:
        """Rows [lo, hi): the lag embedding of the channels, then the conditioning columns if any."""
        x = lagged(series.values, int(self.lags), lo, hi, series.segments)
        cond = conditioning_of(self, series)
        return x if cond is None else np.concatenate([x, cond[lo:hi]], axis=1)

    def _check_length(self, n_rows: int, what: str) -> None:
        if n_rows < 2:
            raise TelemetryError(f"{self.name}: {what} has {n_rows} row(s); PCA needs at least 2")

    def _chunk_rows(self) -> int:
        return CHUNK_ROWS

    def _fit(self, train: Series, validation: Series | None) -> None:
        use = train.nominal if (self.nominal_only and train.labels is not None) else np.ones(len(train), dtype=bool)
        if use.sum() < 2:
            raise TelemetryError(f"{self.name}: {train.source} has fewer than 2 nominal rows to fit on")
        self.n_conditioning_ = None
        cond = conditioning_of(self, train)
        self.n_conditioning_ = 0 if cond is None else cond.shape[1]
        d = train.n_channels * int(self.lags) + self.n_conditioning_
        total, s1, s2 = 0, np.zeros(d), np.zeros((d, d))
        for lo in range(0, len(train), CHUNK_ROWS):
            hi = min(lo + CHUNK_ROWS, len(train))
            x = self._embedded(train, lo, hi)[use[lo:hi]].astype(np.float64)
            total += len(x)
            s1 += x.sum(axis=0)
            s2 += x.T @ x
        mean = s1 / total
        cov = (s2 - total * np.outer(mean, mean)) / max(total - 1, 1)
        d -= self.n_conditioning_
        self.coef_, cov = _conditioned(cov, d)
        var, vec = np.linalg.eigh(cov)  # ascending
        var, vec = np.maximum(var[::-1], 0.0), vec[:, ::-1]
        if isinstance(self.n_components, float):
            share = np.cumsum(var) / var.sum() if var.sum() > 0 else np.ones(d)
            k = int(np.searchsorted(share, self.n_components) + 1)
        else:
            k = int(self.n_components)
        k = max(1, min(k, d - 1)) if d > 1 else 0  # one feature: score its distance to the mean
        self.mean_ = mean.astype(np.float32)  # channels' embedding, then the conditioning columns
        self.components_ = vec[:, :k].T.astype(np.float32)  # [k, d], sklearn's layout
        self.explained_variance_ratio_ = (var[:k] / var.sum() if var.sum() > 0 else np.zeros(k)).astype(np.float32)
        ref = validation if validation is not None else train
        err = np.empty((len(ref), ref.n_channels), dtype=np.float32)
        for lo in range(0, len(ref), CHUNK_ROWS):  # chunk by chunk: never the whole embedding
            hi = min(lo + CHUNK_ROWS, len(ref))
            err[lo:hi] = self._channel_errors(ref, lo, hi)
        self.scorer_ = RowScorer(self.channel_reduction).fit(err, ref.nominal if ref.labels is not None else None)

    def _centred(self, series: Series, lo: int, hi: int) -> np.ndarray:
        """Rows [lo, hi) of the embedding less the mean and, with conditioning, less the channels'
        fitted response to it."""
        xc = self._embedded(series, lo, hi) - self.mean_
        if not self.n_conditioning_:
            return xc
        width = xc.shape[1] - self.n_conditioning_
        return xc[:, :width] - xc[:, width:] @ self.coef_.T

    def _channel_errors(self, series: Series, lo: int, hi: int) -> np.ndarray:
        """Mean absolute residual per row and channel [hi - lo, C] (over the channel's lags; the
        conditioning columns' residuals are left out)."""
        xc = self._centred(series, lo, hi)
        resid = xc - (xc @ self.components_.T) @ self.components_
        c = series.n_channels
        return np.abs(resid[:, : c * int(self.lags)]).reshape(hi - lo, int(self.lags), c).mean(axis=1)

    def _score_rows(self, series: Series, lo: int, hi: int) -> np.ndarray:
        return self.scorer_.window_scores(self._channel_errors(series, lo, hi))

    def _row_losses(self, series: Series, lo: int, hi: int) -> np.ndarray:
        """Mean squared reconstruction residual of each row's embedded channel features (the
        autoencoders' MSE, in scaled units; conditioning columns left out)."""
        xc = self._centred(series, lo, hi)
        resid = (xc - (xc @ self.components_.T) @ self.components_)[:, : series.n_channels * int(self.lags)]
        return np.square(resid, dtype=np.float64).mean(axis=1)

    def _channel_rows(self, series: Series, lo: int, hi: int) -> np.ndarray:
        return self.scorer_.standardised(self._channel_errors(series, lo, hi))

    def _save_state(self, path: Path) -> None:
        np.savez(path / "state.npz", mean=self.mean_, components=self.components_,
                 explained_variance_ratio=self.explained_variance_ratio_, error_mean=self.scorer_.loc_,
                 error_std=self.scorer_.scale_, n_conditioning=self.n_conditioning_, coef=self.coef_)

    def _load_state(self, path: Path) -> None:
        st = np.load(path / "state.npz")
        self.mean_, self.components_ = st["mean"], st["components"]
        self.explained_variance_ratio_ = st["explained_variance_ratio"]
        self.n_conditioning_ = int(st["n_conditioning"])
        self.coef_ = st["coef"]
        self.scorer_ = RowScorer(self.channel_reduction).set_stats(st["error_mean"], st["error_std"])
