"""The in-memory series: ids, float32 values, optional labels, channel names."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from telemetry.errors import TelemetryError


@dataclass(frozen=True)
class Series:
    """One contiguous stretch of telemetry.

    ids: int64 [N], strictly increasing; values: float32 [N, C]; labels: uint8 [N] or None;
    channels: C names. ``source`` names where it came from, for error messages.
    """

    ids: np.ndarray
    values: np.ndarray
    labels: np.ndarray | None
    channels: tuple[str, ...]
    source: str = "<memory>"
    telecommands: np.ndarray | None = field(default=None, repr=False)
    telecommand_names: tuple[str, ...] = ()

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

    def slice(self, start: int, stop: int, name: str | None = None) -> "Series":
        """Rows [start, stop) as a view (no copy of the values)."""
        tc = None if self.telecommands is None else self.telecommands[start:stop]
        return Series(
            ids=self.ids[start:stop],
            values=self.values[start:stop],
            labels=None if self.labels is None else self.labels[start:stop],
            channels=self.channels,
            source=name or f"{self.source}[{start}:{stop}]",
            telecommands=tc,
            telecommand_names=self.telecommand_names,
        )

    def with_values(self, values: np.ndarray) -> "Series":
        """Same ids/labels with new values (e.g. scaled or denoised)."""
        return Series(self.ids, np.ascontiguousarray(values, dtype=np.float32), self.labels, self.channels,
                      self.source, self.telecommands, self.telecommand_names)
