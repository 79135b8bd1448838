"""The in-memory series: ids, float32 values, optional labels, channel names, and optionally the
boundaries of the independent series (devices, runs, discharges) it is made of.

Many independent series are held back to back in one Series (one array, no copies per series) with
``segments``: int64 offsets [S+1], series k being rows ``segments[k]:segments[k+1]``. Rows on either
side of an offset are not neighbours in time: windows (telemetry.windows), lag embeddings
(models.pca) and the splits (telemetry.splits) never cross one. ``segments=None`` is one series.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from telemetry.errors import TelemetryError


def checked_offsets(segments, n: int, source: str = "scores") -> np.ndarray | None:
    """``segments`` as int64 offsets [S+1] from 0 to ``n`` (None stays None: one series), or a
    one-line error naming ``source``."""
    if segments is None:
        return None
    seg = np.asarray(segments, dtype=np.int64)
    if seg.ndim != 1 or seg.size < 2 or seg[0] != 0 or seg[-1] != n or (np.diff(seg) <= 0).any():
        raise TelemetryError(f"{source}: segments must be increasing offsets from 0 to {n} with no empty "
                             f"series, got {seg.ravel().tolist()[:8]}{'...' if seg.size > 8 else ''}")
    return seg


@dataclass(frozen=True)
class Series:
    """One contiguous stretch of telemetry.

    ids: int64 [N], strictly increasing; values: float32 [N, C]; labels: uint8 [N] or None;
    channels: C names. ``source`` names where it came from, for error messages. ``segments``: None
    (one series) or int64 offsets [S+1] from 0 to N, strictly increasing (no empty series);
    ``segment_names``: the S series' names (default "0", "1", ...).
    """

    ids: np.ndarray
    values: np.ndarray
    labels: np.ndarray | None
    channels: tuple[str, ...]
    source: str = "<memory>"
    telecommands: np.ndarray | None = field(default=None, repr=False)
    telecommand_names: tuple[str, ...] = ()
    segments: np.ndarray | None = field(default=None, repr=False)
    segment_names: tuple[str, ...] = ()

    def __post_init__(self):
        ids = np.asarray(self.ids)
        values = np.asarray(self.values)
        if ids.ndim != 1 or ids.dtype != np.int64:
            raise TelemetryError(f"{self.source}: ids must be a 1-D int64 array, got {ids.dtype}{list(ids.shape)}")
        if values.ndim != 2 or values.dtype != np.float32:
            raise TelemetryError(f"{self.source}: values must be a 2-D float32 array, got {values.dtype}{list(values.shape)}")
        if values.shape[0] != ids.shape[0]:
            raise TelemetryError(f"{self.source}: {values.shape[0]} value rows for {ids.shape[0]} ids")
        if values.shape[1] != len(self.channels):
            raise TelemetryError(f"{self.source}: {values.shape[1]} value columns for {len(self.channels)} channel names")
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.shape != ids.shape or labels.dtype != np.uint8:
                raise TelemetryError(f"{self.source}: labels must be uint8 of shape {list(ids.shape)}, got {labels.dtype}{list(labels.shape)}")
        object.__setattr__(self, "channels", tuple(self.channels))
        if self.segments is not None:
            seg = checked_offsets(self.segments, ids.shape[0], self.source)
            names = tuple(str(x) for x in self.segment_names) or tuple(str(k) for k in range(seg.size - 1))
            if len(names) != seg.size - 1:
                raise TelemetryError(f"{self.source}: {len(names)} series names for {seg.size - 1} series")
            object.__setattr__(self, "segments", seg)
            object.__setattr__(self, "segment_names", names)
        elif self.segment_names:
            raise TelemetryError(f"{self.source}: series names given without segments")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.values.shape[1])

    @property
    def nominal(self) -> np.ndarray:
        """Boolean mask of rows labelled nominal (all rows if unlabelled)."""
        if self.labels is None:
            return np.ones(len(self), dtype=bool)
        return self.labels == 0

    # -- many series ------------------------------------------------------------------------------
    @property
    def offsets(self) -> np.ndarray:
        """int64 [S+1]: the series boundaries (``[0, N]`` for one series)."""
        return self.segments if self.segments is not None else np.array([0, len(self)], dtype=np.int64)

    @property
    def n_segments(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def longest_segment(self) -> int:
        """Rows of the longest series (all rows for one series)."""
        return int(np.diff(self.offsets).max()) if len(self) else 0

    def segment_index(self) -> np.ndarray:
        """int32 [N]: which series each row belongs to."""
        return np.repeat(np.arange(self.n_segments, dtype=np.int32), np.diff(self.offsets))

    def segment(self, k: int) -> "Series":
        """Series ``k`` alone (a view)."""
        a, b = self.offsets[k], self.offsets[k + 1]
        name = self.segment_names[k] if self.segments is not None else None
        return self.slice(int(a), int(b), name=f"{self.source}#{name}" if name is not None else None)

    def take_rows(self, ranges, names, source: str) -> "Series":
        """Row ranges ``[(start, stop), ...]`` back to back (a copy), each becoming one series named
        by ``names``: what a split by series, or in time within each series, is made of."""
        ranges = [(int(a), int(b)) for a, b in ranges]
        if not ranges or any(b <= a for a, b in ranges):
            raise TelemetryError(f"{source}: no rows, or an empty series, to take from {self.source}")
        idx = np.concatenate([np.arange(a, b) for a, b in ranges])
        lengths = np.array([b - a for a, b in ranges], dtype=np.int64)
        return Series(
            ids=self.ids[idx], values=np.ascontiguousarray(self.values[idx]),
            labels=None if self.labels is None else self.labels[idx], channels=self.channels, source=source,
            telecommands=None if self.telecommands is None else self.telecommands[idx],
            telecommand_names=self.telecommand_names,
            segments=np.concatenate([[0], np.cumsum(lengths)]), segment_names=tuple(str(n) for n in names))

    def slice(self, start: int, stop: int, name: str | None = None) -> "Series":
        """Rows [start, stop) as a view (no copy of the values); series boundaries inside it are kept,
        the series cut at either end keep their names."""
        tc = None if self.telecommands is None else self.telecommands[start:stop]
        segments, seg_names = None, ()
        if self.segments is not None:
            n = len(self)
            start_, stop_ = max(0, min(int(start), n)), max(0, min(int(stop), n))
            off = self.segments
            first = int(np.searchsorted(off, start_, side="right")) - 1
            last = int(np.searchsorted(off, stop_, side="left"))  # series first..last-1 overlap the slice
            if stop_ > start_:
                inner = np.clip(off[first:last + 1], start_, stop_) - start_
                segments, seg_names = inner, self.segment_names[first:last]
        return Series(
            ids=self.ids[start:stop],
            values=self.values[start:stop],
            labels=None if self.labels is None else self.labels[start:stop],
            channels=self.channels,
            source=name or f"{self.source}[{start}:{stop}]",
            telecommands=tc,
            telecommand_names=self.telecommand_names,
            segments=segments,
            segment_names=seg_names,
        )

    def with_values(self, values: np.ndarray) -> "Series":
        """Same ids/labels/series with new values (e.g. scaled or denoised)."""
        return Series(self.ids, np.ascontiguousarray(values, dtype=np.float32), self.labels, self.channels,
                      self.source, self.telecommands, self.telecommand_names, self.segments, self.segment_names)

    def without_labels(self) -> "Series":
        """The same rows, unlabelled (``data.labels: none``)."""
        from dataclasses import replace

        return replace(self, labels=None)


def concatenate(parts, names=None, source: str = "<memory>") -> Series:
    """Independent series back to back as one Series with ``segments`` (one copy of the values).
    Each part must be a single series (no segments of its own); ids must increase across parts."""
    parts = list(parts)
    if not parts:
        raise TelemetryError(f"{source}: no series to concatenate")
    if any(p.segments is not None for p in parts):
        raise TelemetryError(f"{source}: cannot nest series that are already made of several series")
    p0 = parts[0]
    labelled = {p.labels is not None for p in parts}
    if len(labelled) > 1:
        raise TelemetryError(f"{source}: some series are labelled and others not")
    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    return Series(
        ids=np.concatenate([p.ids for p in parts]), values=np.concatenate([p.values for p in parts]),
        labels=np.concatenate([p.labels for p in parts]) if p0.labels is not None else None,
        channels=p0.channels, source=source,
        segments=np.concatenate([[0], np.cumsum(lengths)]),
        segment_names=tuple(str(n) for n in (names if names is not None else range(len(parts)))))
