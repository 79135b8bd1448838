"""Events (maximal runs of 1s) and the post-processing of binary predictions."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def events(binary: np.ndarray) -> np.ndarray:
    """Maximal runs of 1s as an int64 array [E, 2] of half-open ``[start, stop)`` row ranges."""
    b = np.asarray(binary).astype(bool, copy=False).ravel()
    if b.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    # Run boundaries from the sign of the first difference: vectorised, O(N).
    d = np.diff(b.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(d == 1)
    stops = np.flatnonzero(d == -1)
    return np.stack([starts, stops], axis=1).astype(np.int64)


def event_labels(binary: np.ndarray) -> tuple[np.ndarray, int]:
    """Label each row with its event number (1..E, 0 for rows outside events), as scipy.ndimage.label."""
    lab, n = ndimage.label(np.asarray(binary).astype(bool, copy=False).ravel())
    return lab, int(n)


def from_events(ranges: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`events`: a uint8 mask of length ``n``."""
    d = np.zeros(n + 1, dtype=np.int32)
    ranges = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
    np.add.at(d, ranges[:, 0], 1)
    np.add.at(d, ranges[:, 1], -1)
    return (np.cumsum(d[:n]) > 0).astype(np.uint8)


def merge_gaps(binary: np.ndarray, max_gap: int) -> np.ndarray:
    """Merge events separated by fewer than ``max_gap`` rows of 0s (fills those gaps with 1s)."""
    b = np.asarray(binary).astype(np.uint8).ravel()
    if max_gap <= 1:
        return b.copy()
    ev = events(b)
    if len(ev) < 2:
        return b.copy()
    gaps = ev[1:, 0] - ev[:-1, 1]
    keep_split = gaps >= max_gap
    # Start a new merged event wherever the gap before it is large enough.
    group_first = np.concatenate([[True], keep_split])
    group_last = np.concatenate([keep_split, [True]])
    merged = np.stack([ev[group_first, 0], ev[group_last, 1]], axis=1)
    return from_events(merged, b.size)


def drop_short(binary: np.ndarray, min_length: int) -> np.ndarray:
    """Drop predicted events shorter than ``min_length`` rows."""
    b = np.asarray(binary).astype(np.uint8).ravel()
    if min_length <= 1:
        return b.copy()
    ev = events(b)
    keep = (ev[:, 1] - ev[:, 0]) >= min_length
    return from_events(ev[keep], b.size)


def postprocess(binary: np.ndarray, min_length: int = 1, max_gap: int = 0) -> np.ndarray:
    """Gap merging first (so fragments of one event join), then the minimum event length."""
    return drop_short(merge_gaps(binary, max_gap), min_length)


def hysteresis(scores: np.ndarray, start: float, end: float) -> np.ndarray:
    """Rows in runs where the score stays >= ``end`` and reaches ``start`` somewhere (end <= start).

    An event starts when the score crosses ``start`` and lasts while it stays above ``end``, so a
    score hovering around one threshold makes one event instead of many. end == start: plain
    thresholding.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    if end >= start:
        return (s >= start).astype(np.uint8)
    low = s >= end
    if not low.any():
        return low.astype(np.uint8)
    ev = events(low)
    peaks = np.maximum.reduceat(np.where(low, s, -np.inf), ev[:, 0])
    return from_events(ev[peaks >= start], s.size)
