"""Sliding windows served batch by batch from one float32 array, never materialised.

A window starting at row ``s`` holds rows ``[s, s + window)``; a forecast target, if any, is rows
``[s + window, s + window + horizon)``. Only one batch of windows exists in memory at a time.
Per-window scores come back to rows with :func:`spread_to_rows` (one score per row).

Many series (``Series.segments``): windows are cut per series and never cross from one series into
the next. A series shorter than one window (and forecast horizon) gets no window of its own; it is
skipped, and its rows are scored by :func:`spread_to_rows`'s fill (see there). At least one series
must hold a window.

The rule for a window's size lives here, for the models (at fit and score time) and for the sweep
(search/config.py and search/shapes.py check a space's largest window before any trial): its bounds
(:data:`WINDOW`, :data:`STRIDE`, :data:`HORIZON`, which the sweep file's schema reads through the
models' parameter checks), and whether it fits a length (:func:`fits`, :func:`check_window_fits`,
:func:`largest_window`).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from telemetry.bounds import NON_NEGATIVE_INT, POSITIVE_INT
from telemetry.errors import TelemetryError

REDUCTIONS = ("mean", "max")
WINDOW = POSITIVE_INT  # rows in a window
STRIDE = POSITIVE_INT  # rows from one window's start to the next
HORIZON = NON_NEGATIVE_INT  # rows after a window that belong to it (a forecast's target)


def fits(n_rows: int, window: int, horizon: int = 0) -> bool:
    """Whether a window (and its forecast horizon) fits inside ``n_rows`` rows."""
    return window + horizon <= n_rows


def largest_window(n_rows: int, horizon: int = 0) -> int:
    """The largest window that fits ``n_rows`` rows with its forecast horizon (< 1: none does)."""
    return n_rows - horizon


def check_window_fits(n_rows: int, window: int, horizon: int = 0, what: str = "the series") -> None:
    """A window (and its forecast horizon) must fit inside ``what``, else a one-line error."""
    if not fits(n_rows, window, horizon):
        span = f"window {window}" + (f" + horizon {horizon}" if horizon else "")
        raise TelemetryError(f"{span} is longer than {what} ({n_rows} rows)")


def anomalous_windows(labels: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Boolean per window: does ``[start, start + length)`` hold an anomalous row? (one prefix sum)"""
    c = np.concatenate([[0], np.cumsum(np.asarray(labels), dtype=np.int64)])
    return c[starts + length] > c[starts]


def _starts_one(first: int, n_rows: int, window: int, stride: int, horizon: int) -> np.ndarray:
    last = n_rows - window - horizon
    starts = np.arange(0, last + 1, stride, dtype=np.int64)
    if starts[-1] != last:  # cover the tail, so every row gets a score
        starts = np.append(starts, last)
    return starts + first


def check_segments(segments, n_rows: int) -> np.ndarray | None:
    """``segments`` as int64 offsets from 0 to ``n_rows`` (None stays None)."""
    if segments is None:
        return None
    seg = np.asarray(segments, dtype=np.int64)
    if seg.ndim != 1 or seg.size < 2 or seg[0] != 0 or seg[-1] != n_rows or (np.diff(seg) <= 0).any():
        raise TelemetryError(f"series offsets must increase from 0 to {n_rows}, got {seg.tolist()[:8]}")
    return seg


def window_starts(n_rows: int, window: int, stride: int = 1, horizon: int = 0,
                  labels: np.ndarray | None = None, nominal_only: bool = False,
                  segments: np.ndarray | None = None) -> np.ndarray:
    """First rows of the windows (int64), strided; the last window always reaches the end of the series.

    ``nominal_only`` keeps only windows (and targets) with no anomalous row, for autoencoder training.
    ``segments`` (offsets [S+1], see telemetry.series): windows are cut per series, each series' own
    strided starts from its first row and a last window reaching its end; series shorter than
    ``window + horizon`` are skipped (an error if every one is).
    """
    if not (WINDOW.ok(window) and STRIDE.ok(stride) and HORIZON.ok(horizon)):
        raise TelemetryError(f"window ({window}) and stride ({stride}) must be >= 1 and horizon ({horizon}) >= 0")
    seg = check_segments(segments, n_rows)
    if seg is None or seg.size == 2:
        check_window_fits(n_rows, window, horizon)
        starts = _starts_one(0, n_rows, window, stride, horizon)
    else:
        lengths = np.diff(seg)
        held = fits(lengths, window, horizon)
        if not held.any():
            check_window_fits(int(lengths.max()), window, horizon, "the longest series")
        starts = np.concatenate([_starts_one(int(seg[k]), int(lengths[k]), window, stride, horizon)
                                 for k in np.flatnonzero(held)])
    if nominal_only:
        if labels is None:
            raise TelemetryError("nominal_only windows need labels")
        starts = starts[~anomalous_windows(labels, starts, window + horizon)]
    return starts


class WindowBatches:
    """Batches of windows as an indexable sequence (what ``keras.utils.PyDataset`` wants).

    ``batch[i]`` is ``x`` [B, window, C] for scoring, ``(x, x)`` for autoencoder training
    (``target="self"``), or ``(x, y)`` with y [B, horizon, C_t] for forecasting (``target="next"``).
    ``shuffle`` reorders the window order each epoch (seeded); ``values`` is never copied.
    ``conditioning`` [N, k]: columns appended to every window's inputs (x becomes [B, window, C + k])
    but never to its target, so a model can condition on them without reconstructing them.
    """

    def __init__(self, values: np.ndarray, window: int, starts: np.ndarray, batch_size: int = 256,
                 target: str | None = None, horizon: int = 1, target_channels=None,
                 shuffle: bool = False, seed: int = 0, conditioning: np.ndarray | None = None):
        if values.dtype != np.float32 or values.ndim != 2:
            raise TelemetryError(f"windows need a 2-D float32 array, got {values.dtype}{list(values.shape)}")
        if target not in (None, "self", "next"):
            raise TelemetryError(f"window target must be None, 'self' or 'next', got {target!r}")
        if batch_size < 1:
            raise TelemetryError(f"batch size must be >= 1, got {batch_size}")
        if len(starts) == 0:
            raise TelemetryError("no window to serve (series too short, or no nominal window)")
        self.values = values
        self.window = int(window)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.target = target
        self.horizon = int(horizon)
        self.target_channels = None if target_channels is None else np.asarray(target_channels)
        self.shuffle = shuffle
        if conditioning is not None and (conditioning.ndim != 2 or len(conditioning) != len(values)):
            raise TelemetryError(f"conditioning inputs must be [rows, k] with {len(values)} rows, got {list(conditioning.shape)}")
        self.conditioning = conditioning
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(self.starts)) if shuffle else None
        self._offsets = np.arange(self.window, dtype=np.int64)
        self._target_offsets = self.window + np.arange(self.horizon, dtype=np.int64)
        # A window of a C-contiguous array is one contiguous block of window*C floats: a strided
        # view whose rows are those blocks turns a batch into B memcpys (6x faster than gathering
        # B*window rows). The view allocates nothing; never np.take it (that would materialise it).
        self._blocks = self._target_blocks = None
        if values.flags.c_contiguous:
            flat = values.reshape(-1)
            c = values.shape[1]
            self._blocks = np.lib.stride_tricks.sliding_window_view(flat, self.window * c)[::c]
            if target == "next":
                self._target_blocks = np.lib.stride_tricks.sliding_window_view(flat, self.horizon * c)[::c]

    def __len__(self) -> int:
        return math.ceil(len(self.starts) / self.batch_size)

    def batch_indices(self, i: int) -> np.ndarray:
        """Positions in ``starts`` of batch ``i``'s windows (so per-window arrays index alike)."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        lo, hi = i * self.batch_size, min((i + 1) * self.batch_size, len(self.starts))
        return self._order[lo:hi] if self._order is not None else np.arange(lo, hi)

    def batch_starts(self, i: int) -> np.ndarray:
        return self.starts[self.batch_indices(i)]

    def __getitem__(self, i: int):
        s = self.batch_starts(i)
        c = self.values.shape[1]
        if self._blocks is not None:
            x = self._blocks[s].reshape(len(s), self.window, c)
        else:
            x = self.values[s[:, None] + self._offsets]  # one gather: [B, window, C]
        # Conditioning columns (e.g. telecommand features) are inputs only: never part of a target.
        x_in = x if self.conditioning is None else np.concatenate(
            [x, self.conditioning[s[:, None] + self._offsets]], axis=2)
        if self.target is None:
            return x_in
        if self.target == "self":
            return x_in, x
        if self._target_blocks is not None:
            y = self._target_blocks[s + self.window].reshape(len(s), self.horizon, c)
        else:
            y = self.values[s[:, None] + self._target_offsets]
        if self.target_channels is not None:
            y = y[:, :, self.target_channels]
        return x_in, y

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._order = self._rng.permutation(len(self.starts))


def as_keras_dataset(batches: WindowBatches, **kwargs):
    """Wrap :class:`WindowBatches` as a ``keras.utils.PyDataset`` (keras imported only here)."""
    import keras

    class _WindowDataset(keras.utils.PyDataset):
        def __init__(self, inner):
            super().__init__(**kwargs)
            self.inner = inner

        def __len__(self):
            return len(self.inner)

        def __getitem__(self, i):
            return self.inner[i]

        def on_epoch_end(self):
            self.inner.on_epoch_end()

    return _WindowDataset(batches)


def spread_to_rows(window_scores: np.ndarray, first_rows: np.ndarray, length: int, n_rows: int,
                   how: str = "mean", fill: str = "nearest", segments: np.ndarray | None = None) -> np.ndarray:
    """Map one score per window back to one score per row.

    Window ``j`` covers rows ``[first_rows[j], first_rows[j] + length)`` (for a reconstruction model:
    its own rows; for a forecaster: the rows it predicted). A row's score is the ``mean`` (default)
    or ``max`` of the scores of the windows that cover it. Rows no window covers (before the first
    forecast target, say) take the score of the nearest covered row (``fill="nearest"``) or NaN
    (``fill="nan"``). Vectorised: difference arrays for the mean, a running max filter for the max.

    With ``segments`` (many series; windows must not cross them): the nearest covered row is looked
    for in the row's own series only. A series no window covers at all (shorter than a window) gets
    the median score of all covered rows: a neutral value, so that data the model could not look at
    neither raises alarms nor hides them (it is never NaN, which no threshold could handle).
    """
    if how not in REDUCTIONS:
        raise TelemetryError(f"unknown reduction {how!r}; choose one of {', '.join(REDUCTIONS)}")
    v = np.asarray(window_scores, dtype=np.float64).ravel()
    f = np.asarray(first_rows, dtype=np.int64).ravel()
    if v.shape != f.shape:
        raise TelemetryError(f"{v.size} window scores for {f.size} windows")
    if f.size and (f.min() < 0 or f.max() + length > n_rows):
        raise TelemetryError(f"windows reach outside the series of {n_rows} rows")
    count = np.cumsum(np.bincount(f, minlength=n_rows + 1)[: n_rows + 1]
                      - np.bincount(f + length, minlength=n_rows + 1)[: n_rows + 1])[:n_rows]
    if how == "mean":
        total = np.cumsum(np.bincount(f, weights=v, minlength=n_rows + 1)[: n_rows + 1]
                          - np.bincount(f + length, weights=v, minlength=n_rows + 1)[: n_rows + 1])[:n_rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = total / count
    else:
        dense = np.full(n_rows + length, -np.inf)
        np.maximum.at(dense, f + length - 1, v)  # index by the window's last covered row
        # Row t is covered by windows whose last row lies in [t, t + length - 1].
        out = ndimage.maximum_filter1d(dense, size=length, origin=-(length // 2), mode="constant",
                                       cval=-np.inf)[:n_rows]
    out[count == 0] = np.nan
    seg = check_segments(segments, n_rows)
    if seg is not None and seg.size > 2:
        if f.size and (np.searchsorted(seg, f, side="right") != np.searchsorted(seg, f + length - 1, side="right")).any():
            raise TelemetryError("a window crosses from one series into the next")
        if fill == "nearest" and (count == 0).any() and (count > 0).any():
            return _fill_within_segments(out, count > 0, seg).astype(np.float32)
    if fill == "nearest" and (count == 0).any() and (count > 0).any():
        covered = np.flatnonzero(count > 0)
        pos = np.clip(np.searchsorted(covered, np.arange(n_rows)), 1, covered.size - 1) if covered.size > 1 else None
        if pos is None:
            out[:] = out[covered[0]]
        else:
            left, right = covered[pos - 1], covered[pos]
            idx = np.arange(n_rows)
            nearest = np.where(np.abs(idx - left) <= np.abs(right - idx), left, right)
            out = out[nearest]
    elif fill not in ("nearest", "nan"):
        raise TelemetryError(f"unknown fill {fill!r}; choose 'nearest' or 'nan'")
    return out.astype(np.float32)


def _fill_within_segments(out: np.ndarray, covered: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Uncovered rows take the nearest covered row of their own series (ties to the left); rows of
    a series with no covered row take the median of all covered rows."""
    n = out.size
    idx = np.arange(n)
    seg_of = np.searchsorted(seg, idx, side="right") - 1
    cov = np.flatnonzero(covered)
    # nearest covered row at or before / at or after each row (-1 / n when none)
    pos = np.searchsorted(cov, idx, side="right") - 1
    left = np.where(pos >= 0, cov[np.clip(pos, 0, None)], -1)
    pos_r = np.searchsorted(cov, idx, side="left")
    right = np.where(pos_r < cov.size, cov[np.clip(pos_r, None, cov.size - 1)], n)
    left_ok = (left >= 0) & (seg_of[np.clip(left, 0, n - 1)] == seg_of)
    right_ok = (right < n) & (seg_of[np.clip(right, 0, n - 1)] == seg_of)
    use_left = left_ok & (~right_ok | (idx - left <= right - idx))
    src = np.where(use_left, left, np.where(right_ok, right, -1))
    filled = np.where(src >= 0, out[np.clip(src, 0, n - 1)], np.median(out[cov]))
    return np.where(covered, out, filled)
