"""Post-processing of binary predictions and the hysteresis rule: the last step of a decision.

``segments`` (int64 offsets [S+1] from 0 to N, telemetry.series; None = one series): the rows are
many independent series back to back; a gap is never bridged across an offset, and a run of 1s
across one is measured piece by piece.
"""
from __future__ import annotations

import numpy as np

from telemetry.events import events, from_events
from telemetry.series import checked_offsets


def merge_gaps(binary: np.ndarray, max_gap: int, segments=None) -> np.ndarray:
    """Merge events separated by fewer than ``max_gap`` rows of 0s (fills those gaps with 1s), within
    each series."""
    b = np.asarray(binary).astype(np.uint8).ravel()
    seg = checked_offsets(segments, b.size)
    if max_gap <= 1:
        return b.copy()
    ev = events(b.astype(bool), seg)
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
    ev = events(b.astype(bool), seg)
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
    ev = events(low, seg)
    if not len(ev):
        return low.astype(np.uint8)
    peaks = np.maximum.reduceat(np.where(low, s, -np.inf), ev[:, 0])
    return from_events(ev[peaks >= start], s.size)
