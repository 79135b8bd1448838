"""Column names of the ESA Anomaly Detection Benchmark challenge files and channel selection."""
from __future__ import annotations

import fnmatch
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


_GLOB_CHARS = frozenset("*?[")
REGEX_PREFIX = "re:"


def _pattern_items(spec) -> list:
    """Split a selection into items: ``re.Pattern`` objects, ``"re:..."`` strings (kept whole, a
    regex may hold commas), glob strings and plain strings (comma lists split as in channel_names)."""
    raw = [spec] if isinstance(spec, (str, re.Pattern)) else list(spec)
    items: list = []
    for item in raw:
        if isinstance(item, str) and not item.strip().startswith(REGEX_PREFIX):
            items.extend(p.strip() for p in item.split(",") if p.strip())
        else:
            items.append(item.strip() if isinstance(item, str) else item)
    return items


def select_channels(spec, columns: Sequence[str], source: str = "<memory>",
                    exclude: Iterable[str] = (ID, LABEL)) -> list[str]:
    """Resolve a channel selection against a file's columns, with patterns.

    Beyond :func:`channel_names` forms (ranges, numbers, names), an item may be a shell glob
    (``"device*"``, ``"sensor_[0-9]"``; matched case-sensitively against whole names) or a regular
    expression, as a compiled ``re.Pattern`` or a string ``"re:device\\d+"`` (``fullmatch``). A
    pattern selects the matching columns in the file's order, never ``exclude`` (the id and label
    columns); a pattern matching nothing is an error. Plain names are returned as given (the caller
    checks they exist, so its message can name what the file has).
    """
    if spec is None:
        return channel_names(None)
    names: list[str] = []
    for item in _pattern_items(spec):
        if isinstance(item, str) and item.startswith(REGEX_PREFIX):
            try:
                item = re.compile(item[len(REGEX_PREFIX):])
            except re.error as exc:
                raise TelemetryError(f"channel pattern {item!r} is not a valid regular expression ({exc})") from None
        if isinstance(item, re.Pattern):
            label = f"{REGEX_PREFIX}{item.pattern}"
            hits = [c for c in columns if c not in exclude and item.fullmatch(c)]
        elif isinstance(item, str) and _GLOB_CHARS & set(item):
            label = item
            hits = [c for c in columns if c not in exclude and fnmatch.fnmatchcase(c, item)]
        else:
            names.extend(channel_names([item]))
            continue
        if not hits:
            shown = ", ".join(list(columns)[:8]) + (f", ... ({len(columns)} columns)" if len(columns) > 8 else "")
            raise TelemetryError(f"{source}: channel pattern {label!r} matches no column (file has {shown})")
        names.extend(hits)
    if not names:
        raise TelemetryError(f"channel selection {spec!r} names no channel")
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise TelemetryError(f"{source}: channel selection picks {n!r} more than once")
        seen.add(n)
    return names
