"""Events: maximal runs of 1s in a binary series (labels or predictions), and back.

The rules that post-process predictions live in detection.postprocess.

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
