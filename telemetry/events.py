"""Events (maximal runs of 1s) and the post-processing of binary predictions.

``segments`` (int64 offsets [S+1] from 0 to N, telemetry.series; None = one series): the rows are
many independent series back to back. Rows on either side of an offset are not neighbours in time,
so an event never spans one: a run of 1s across it is two events, and gaps are never bridged.
"""
from __future__ import annotations

import numpy as np

from telemetry.series import checked_offsets


def events(binary: np.ndarray, segments=None) -> np.ndarray:
    """Maximal runs of 1s as an int64 array [E, 2] of half-open ``[start, stop)`` row ranges, each
    inside one series."""
    b = np.asarray(binary).astype(bool, copy=False).ravel()
    return _events(b, checked_offsets(segments, b.size))


def _events(b: np.ndarray, seg: np.ndarray | None) -> np.ndarray:
    """:func:`events` of a boolean array, ``seg`` already checked."""
    if b.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    # Run boundaries from the sign of the first difference: vectorised, O(N).
    d = np.diff(b.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(d == 1)
    stops = np.flatnonzero(d == -1)
    if seg is not None and seg.size > 2:
        inner = seg[1:-1]
        cuts = inner[b[inner - 1] & b[inner]]  # a run across a boundary: it stops and restarts there
        starts, stops = np.sort(np.concatenate([starts, cuts])), np.sort(np.concatenate([stops, cuts]))
    return np.stack([starts, stops], axis=1).astype(np.int64)


def event_labels(binary: np.ndarray, segments=None) -> tuple[np.ndarray, int]:
    """Label each row with its event number (1..E in the order of :func:`events`, 0 for rows outside
    events), as scipy.ndimage.label but with a run across a series boundary numbered as two events.
    Returns (int32 labels [N], E)."""
    b = np.asarray(binary).astype(bool, copy=False).ravel()
    ev = _events(b, checked_offsets(segments, b.size))
    starts = np.zeros(b.size, dtype=np.int8)
    starts[ev[:, 0]] = 1
    # Vectorised, O(N): the running count of event starts is the current event's number inside it.
    lab = np.cumsum(starts, dtype=np.int32)
    lab[~b] = 0
    return lab, int(len(ev))


def from_events(ranges: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`events`: a uint8 mask of length ``n``."""
    d = np.zeros(n + 1, dtype=np.int32)
    ranges = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
    np.add.at(d, ranges[:, 0], 1)
    np.add.at(d, ranges[:, 1], -1)
    return (np.cumsum(d[:n]) > 0).astype(np.uint8)


def merge_gaps(binary: np.ndarray, max_gap: int, segments=None) -> np.ndarray:
    """Merge events separated by fewer than ``max_gap`` rows of 0s (fills those gaps with 1s), within
    each series."""
    b = np.asarray(binary).astype(np.uint8).ravel()
    seg = checked_offsets(segments, b.size)
    if max_gap <= 1:
        return b.copy()
    ev = _events(b.astype(bool), seg)
    if len(ev) < 2:
        return b.copy()
    keep_split = (ev[1:, 0] - ev[:-1, 1]) >= max_gap
    if seg is not None:  # consecutive events in different series stay apart
        series = np.searchsorted(seg, ev[:, 0], side="right")
        keep_split |= series[1:] != series[:-1]
    # Start a new merged event wherever the gap before it is large enough.
    group_first = np.concatenate([[True], keep_split])
    group_last = np.concatenate([keep_split, [True]])
    merged = np.stack([ev[group_first, 0], ev[group_last, 1]], axis=1)
    return from_events(merged, b.size)


def drop_short(binary: np.ndarray, min_length: int, segments=None) -> np.ndarray:
    """Drop predicted events shorter than ``min_length`` rows (a run across series boundaries is
    measured piece by piece)."""
    b = np.asarray(binary).astype(np.uint8).ravel()
    seg = checked_offsets(segments, b.size)
    if min_length <= 1:
        return b.copy()
    ev = _events(b.astype(bool), seg)
    keep = (ev[:, 1] - ev[:, 0]) >= min_length
    return from_events(ev[keep], b.size)


def postprocess(binary: np.ndarray, min_length: int = 1, max_gap: int = 0, segments=None) -> np.ndarray:
    """Gap merging first (so fragments of one event join), then the minimum event length."""
    return drop_short(merge_gaps(binary, max_gap, segments), min_length, segments)


def hysteresis(scores: np.ndarray, start: float, end: float, segments=None) -> np.ndarray:
    """Rows in runs where the score stays >= ``end`` and reaches ``start`` somewhere (end <= start).

    An event starts when the score crosses ``start`` and lasts while it stays above ``end``, so a
    score hovering around one threshold makes one event instead of many. end == start: plain
    thresholding. With ``segments`` an event ends at its series' last row.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    seg = checked_offsets(segments, s.size)
    if end >= start:
        return (s >= start).astype(np.uint8)
    low = s >= end
    ev = _events(low, seg)
    if not len(ev):
        return low.astype(np.uint8)
    peaks = np.maximum.reduceat(np.where(low, s, -np.inf), ev[:, 0])
    return from_events(ev[peaks >= start], s.size)
