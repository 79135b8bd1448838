"""Column names of the ESA Anomaly Detection Benchmark challenge files and channel selection."""
from __future__ import annotations

import re
from typing import Iterable, Sequence

from telemetry.errors import TelemetryError

ID = "id"
LABEL = "is_anomaly"
CHANNEL_PREFIX = "channel_"
TELECOMMAND_PREFIX = "telecommand_"
N_CHANNELS = 76
# The challenge's recommended subset: one correlated group of channels.
DEFAULT_CHANNELS = tuple(f"channel_{i}" for i in range(41, 47))

_RANGE = re.compile(r"^(?:channel_)?(\d+)\s*(?:-|\.\.)\s*(?:channel_)?(\d+)$")


def channel_names(spec: str | Sequence[str] | None) -> list[str]:
    """Resolve a channel selection to column names.

    ``None`` gives the default subset; a string may be ``"41-46"``, ``"channel_41..channel_46"``,
    or a comma-separated list (``"channel_1,channel_5"``, ``"1,5"``); a list is taken item by item
    with the same rules. NAB-style series use the channel name ``"value"``.
    """
    if spec is None:
        return list(DEFAULT_CHANNELS)
    items: Iterable[str] = spec.split(",") if isinstance(spec, str) else spec
    names: list[str] = []
    for raw in items:
        item = str(raw).strip()
        if not item:
            continue
        m = _RANGE.match(item)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise TelemetryError(f"channel range {item!r} is empty (start {lo} > end {hi})")
            names.extend(f"{CHANNEL_PREFIX}{i}" for i in range(lo, hi + 1))
        elif item.isdigit():
            names.append(f"{CHANNEL_PREFIX}{int(item)}")
        else:
            names.append(item)
    if not names:
        raise TelemetryError(f"channel selection {spec!r} names no channel")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TelemetryError(f"channel selection names {dupes[0]!r} more than once")
    return names


def sort_key(name: str) -> tuple[str, int]:
    """Order ``channel_2`` before ``channel_10``."""
    m = re.match(r"^(.*?)(\d+)$", name)
    return (m.group(1), int(m.group(2))) if m else (name, -1)
