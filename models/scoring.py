"""From errors to row scores, one way for every member.

A member measures something per window (or per row) and channel: a reconstruction or forecast
error, a row's distance from the nominal mean, a window's anomaly probability. :class:`RowScorer`
turns that into the one float32 score per row the ensemble expects:

1. standardise each channel by the location/scale fitted on nominal data (so channels weigh
   alike; skipped when not fitted, e.g. for probabilities);
2. reduce over channels (``max``: one bad channel is enough; ``mean``: all of them together);
3. spread each window's value back to the rows it covers (``row_reduction`` over the covering
   windows, :func:`telemetry.windows.spread_to_rows`); row members skip this step.

:meth:`RowScorer.channel_row_scores` is the same without step 2: one score per row *and channel*
([n_rows, C]), for per-channel detection (each channel thresholded on its own, Telemanom style) and
for naming the channels behind an event. How it relates to the per-row score:

- row members (one "window" per row): the per-row score is exactly the channel reduction of the
  per-channel row scores (``max`` or ``mean`` over axis 1);
- window members: reducing over channels and spreading over windows commute only when both are the
  same kind of operation: ``max``/``max`` (a max of maxima) exactly, ``mean``/``mean`` (a linear map)
  up to rounding. With ``channel_reduction="max"`` and ``row_reduction="mean"`` (the default) the
  per-row score is a mean of maxima, which is at least the maximum of the per-channel means:
  ``row_scores >= channel_row_scores.max(axis=1)``, with equality where one channel dominates every
  window covering the row.
"""
from __future__ import annotations

import numpy as np

from telemetry.errors import TelemetryError
from telemetry.windows import spread_to_rows

CHANNEL_REDUCTIONS = ("max", "mean")
MIN_SCALE = 1e-6  # a channel whose nominal error never varies must not divide by zero


class RowScorer:
    """Errors [n, C] (or [n]) -> per-window scores -> per-row scores. ``loc_``/``scale_`` are the
    fitted per-channel statistics (None: no standardisation)."""

    def __init__(self, channel_reduction: str = "max", row_reduction: str = "mean"):
        self.channel_reduction = channel_reduction
        self.row_reduction = row_reduction
        self.loc_ = self.scale_ = None

    def fit(self, errors: np.ndarray, keep: np.ndarray | None = None) -> "RowScorer":
        """Per-channel mean and std of ``errors[keep]`` (every row when ``keep`` selects none)."""
        if keep is not None and keep.any():
            errors = errors[keep]
        return self.set_stats(errors.mean(axis=0), np.maximum(errors.std(axis=0), MIN_SCALE))

    def set_stats(self, loc, scale) -> "RowScorer":
        self.loc_ = np.asarray(loc).astype(np.float32)
        self.scale_ = np.asarray(scale).astype(np.float32)
        return self

    def standardised(self, errors: np.ndarray) -> np.ndarray:
        """Errors [n, C] in units of each channel's nominal spread (unchanged when not fitted)."""
        return errors if self.loc_ is None else (errors - self.loc_) / self.scale_

    def reduce(self, z: np.ndarray) -> np.ndarray:
        """Standardised errors [n, C] -> one value per window (or row); 1-D input passes through."""
        if z.ndim == 1:
            return z
        return z.max(axis=1) if self.channel_reduction == "max" else z.mean(axis=1)

    def window_scores(self, errors: np.ndarray) -> np.ndarray:
        """One value per window (or row): standardised, then reduced over channels."""
        return self.reduce(self.standardised(errors))

    def row_scores(self, errors: np.ndarray, first_rows: np.ndarray, length: int, n_rows: int,
                   segments: np.ndarray | None = None) -> np.ndarray:
        """Window ``j`` covers rows ``[first_rows[j], first_rows[j] + length)``; float32 per row.
        ``segments``: the series boundaries (rows uncovered by any window are filled within their
        own series, see :func:`telemetry.windows.spread_to_rows`)."""
        return spread_to_rows(self.window_scores(errors), first_rows, length, n_rows, how=self.row_reduction,
                              segments=segments)

    def channel_row_scores(self, errors: np.ndarray, first_rows: np.ndarray, length: int, n_rows: int,
                           segments: np.ndarray | None = None) -> np.ndarray:
        """Standardised errors [n, C] spread to rows channel by channel: float32 [n_rows, C], no
        reduction over channels. Rows covered by no window take the nearest covered row's value, as
        in :meth:`row_scores`."""
        z = self.standardised(errors)
        if z.ndim != 2:
            raise TelemetryError(f"per-channel scores need errors [windows, channels], got shape {list(z.shape)}")
        out = np.empty((n_rows, z.shape[1]), dtype=np.float32)
        # One vectorised spread per channel: C is small (6 recommended, 89 at most) and each pass
        # keeps only one channel's float64 temporaries alive instead of [n_rows, C] of them.
        for c in range(z.shape[1]):
            out[:, c] = spread_to_rows(z[:, c], first_rows, length, n_rows, how=self.row_reduction, segments=segments)
        return out
