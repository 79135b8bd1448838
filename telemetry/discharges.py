"""The seed-002 discharge JSON: many short multi-signal series (plasma discharges), some disrupting.

File format (as read by the user's notebook)::

    {"discharges": [
        {"id": 74900,                                  # optional; default: the discharge's index
         "signals": [{"fileName": "DES_74900_01.txt",  # sensor id = the 2nd number (DES_<shot>_<sensor>)
                      "times": [...], "values": [...]}, ...],
         "times": [...],                               # optional: used by signals without "times"
         "anomalyTime": 0.731},                        # absent or null: a normal discharge
        ...]}

What :func:`load_discharges` makes of it:

* **One Series per discharge**, in a :class:`Discharges` container. Row ids are global and
  increasing across discharges (discharge d's rows follow discharge d-1's), so
  :meth:`Discharges.concatenated` gives one valid Series plus a per-row discharge index for code
  that wants one array; windows and splits must still respect :meth:`Discharges.offsets`.
* **Channels** are named from ``fileName``: ``DES_<shot>_<sensor>`` gives ``sensor_<n>`` (the
  notebook's SignalType 1..7, see :data:`SIGNAL_TYPES`); any other name gives the file name without
  its extension. Channels are sorted (``sensor_2`` before ``sensor_10``), so the signal order in
  the file does not matter, but every discharge must have the same set.
* **Resampling**: signals may be sampled at different rates and start/stop at different times.
  Each discharge gets one time base: the grid of its finest signal (smallest median step), clipped
  to the span all signals cover ([latest start, earliest end]); every signal is linearly
  interpolated onto it with ``np.interp`` (exact where the grids coincide; never extrapolated).
* **Labels**: rows at or after ``anomalyTime`` are 1; with ``warning_rows=N`` the N rows before the
  first such row are labelled 1 too (a precursor window to detect). ``anomalyTime`` 0 is a time,
  not "no anomaly" (the notebook's truthiness test would call it normal). An ``anomalyTime`` past
  the end of the signals labels no row (plus the warning rows), but the discharge still counts as
  anomalous in detection.series_metrics.discharge_detection_table.

Every problem is a one-line TelemetryError naming the file, the discharge (index and id) and the
signal.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from telemetry.errors import TelemetryError
from telemetry.schema import sort_key
from telemetry.series import Series, concatenate

log = logging.getLogger("telemetry.discharges")

SENSOR_PATTERN = re.compile(r"DES_(\d+)_(\d+)")
# The notebook's SignalType enum, sensor id -> what it measures.
SIGNAL_TYPES = {1: "plasma current", 2: "mode lock", 3: "inductance", 4: "density",
                5: "diamagnetic energy derivative", 6: "radiated power", 7: "input power"}


def sensor_channel(file_name: str) -> str:
    """``"DES_74900_03.txt"`` -> ``"sensor_3"``; other names -> the name without its extension."""
    m = SENSOR_PATTERN.match(file_name)
    if m:
        return f"sensor_{int(m.group(2))}"
    stem = Path(file_name).name
    return stem.rsplit(".", 1)[0] if "." in stem[1:] else stem


@dataclass(frozen=True)
class Discharges:
    """Discharges loaded from one JSON file.

    ``series``: one labelled Series per discharge (float32 values, uint8 labels, global ids);
    ``names``: the discharge ids as strings; ``times``: each discharge's time base (float64, one
    entry per row); ``anomaly_times``: float64 [D], NaN for normal discharges.
    """

    series: tuple[Series, ...]
    names: tuple[str, ...]
    times: tuple[np.ndarray, ...]
    anomaly_times: np.ndarray
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.series)

    @property
    def channels(self) -> tuple[str, ...]:
        return self.series[0].channels

    @property
    def anomalous(self) -> np.ndarray:
        """Boolean [D]: the discharge has an anomalyTime."""
        return np.isfinite(self.anomaly_times)

    @property
    def offsets(self) -> np.ndarray:
        """int64 [D+1]: discharge d is rows ``offsets[d]:offsets[d+1]`` of the concatenation."""
        return np.concatenate([[0], np.cumsum([len(s) for s in self.series])]).astype(np.int64)

    def concatenated(self) -> tuple[Series, np.ndarray]:
        """One Series of all discharges back to back (one copy of the values), with ``segments`` =
        :attr:`offsets` and the discharge names as ``segment_names`` (so windows, lags and splits
        never cross from one discharge into the next), and the per-row discharge index (int32 [N])."""
        cat = concatenate(self.series, self.names, source=self.source)
        return cat, cat.segment_index()

    def row_times(self) -> np.ndarray:
        """float64 [N]: each row's time on its discharge's time base, over the concatenation (row
        ``i`` is the row with id ``i``: the file's ids are its row numbers)."""
        return np.concatenate(self.times)

    def split_rows(self, per_row: np.ndarray) -> list[np.ndarray]:
        """Cut a per-row array over the concatenation (e.g. scores, alarms) into one view per discharge."""
        per_row = np.asarray(per_row)
        off = self.offsets
        if per_row.shape[0] != off[-1]:
            raise TelemetryError(f"{self.source}: {per_row.shape[0]} rows given for {off[-1]} discharge rows")
        return [per_row[a:b] for a, b in zip(off[:-1], off[1:])]



def _number_array(raw, where: str, field: str) -> np.ndarray:
    if not isinstance(raw, list):
        raise TelemetryError(f"{where}: {field!r} must be a list of numbers, got {type(raw).__name__}")
    if None in raw:  # JSON null: numpy would quietly make it NaN
        raise TelemetryError(f"{where}: {field!r} has a null at index {raw.index(None)}")
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        bad = next((x for x in raw if isinstance(x, (str, list, dict)) or x is None), "?")
        raise TelemetryError(f"{where}: {field!r} must be a list of numbers, found {bad!r}") from None
    if arr.ndim != 1:
        raise TelemetryError(f"{where}: {field!r} must be a flat list of numbers")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise TelemetryError(f"{where}: {field!r} has {bad.size} NaN/inf values (first at index {bad[0]})")
    return arr


def _signal(sig, i_sig: int, where_d: str, fallback_times) -> tuple[str, np.ndarray, np.ndarray]:
    """(channel, times, values) of one signal, validated."""
    if not isinstance(sig, dict):
        raise TelemetryError(f"{where_d}, signal {i_sig}: not an object with fileName/times/values")
    if "fileName" not in sig:
        raise TelemetryError(f"{where_d}, signal {i_sig}: missing field 'fileName'")
    where = f"{where_d}, signal {i_sig} ({sig['fileName']!r})"
    if "values" not in sig:
        raise TelemetryError(f"{where}: missing field 'values'")
    raw_t = sig.get("times", fallback_times)
    if raw_t is None:
        raise TelemetryError(f"{where}: missing field 'times' (and the discharge has no 'times')")
    t = _number_array(raw_t, where, "times")
    v = _number_array(sig["values"], where, "values")
    if t.size != v.size:
        raise TelemetryError(f"{where}: 'times' has {t.size} entries but 'values' has {v.size}")
    if v.size == 0:
        raise TelemetryError(f"{where}: the signal is empty (no samples)")
    if v.size == 1:
        raise TelemetryError(f"{where}: the signal has only 1 sample (need at least 2 to resample)")
    step = np.diff(t)
    bad = np.flatnonzero(step <= 0)
    if bad.size:
        k = int(bad[0])
        raise TelemetryError(f"{where}: 'times' is not strictly increasing ({float(t[k + 1])!r} after {float(t[k])!r} at index {k + 1})")
    return sensor_channel(str(sig["fileName"])), t, v


def _time_base(times: list[np.ndarray], where: str) -> np.ndarray:
    """The finest signal's grid clipped to the span every signal covers."""
    start = max(t[0] for t in times)
    stop = min(t[-1] for t in times)
    if start >= stop:
        raise TelemetryError(f"{where}: the signals share no common time span (latest start {float(start)!r} >= earliest end {float(stop)!r})")
    finest = min(times, key=lambda t: float(np.median(np.diff(t))))
    base = finest[(finest >= start) & (finest <= stop)]
    if base.size < 2:
        raise TelemetryError(f"{where}: fewer than 2 samples of the finest signal fall in the common time span [{float(start)!r}, {float(stop)!r}]")
    return base


def _resample(raw: list[tuple[str, np.ndarray, np.ndarray]], where: str) -> tuple[np.ndarray, np.ndarray]:
    """(time base float64 [n], values float32 [n, C]) with channels in ``raw``'s order."""
    base = _time_base([t for _, t, _ in raw], where)
    values = np.empty((base.size, len(raw)), dtype=np.float32)
    for j, (_, t, v) in enumerate(raw):
        values[:, j] = np.interp(base, t, v)  # the base lies inside [t0, t-1]: no extrapolation
    return base, values


def load_discharges(path: str | os.PathLike, *, warning_rows: int = 0) -> Discharges:
    """Load the discharge JSON (see the module docstring) into one labelled Series per discharge.

    ``warning_rows``: also label this many rows before each anomaly onset 1 (0: only the rows at or
    after ``anomalyTime``).
    """
    path = str(path)
    if isinstance(warning_rows, bool) or not isinstance(warning_rows, (int, np.integer)) or warning_rows < 0:
        raise TelemetryError(f"warning_rows must be a non-negative integer, got {warning_rows!r}")
    if not Path(path).is_file():
        raise TelemetryError(f"{path}: file not found")
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise TelemetryError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(doc, dict) or "discharges" not in doc:
        raise TelemetryError(f"{path}: missing field 'discharges' (expected {{\"discharges\": [...]}})")
    items = doc["discharges"]
    if not isinstance(items, list) or not items:
        raise TelemetryError(f"{path}: 'discharges' must be a non-empty list")

    series, names, times, onsets = [], [], [], []
    ref_channels: tuple[str, ...] | None = None
    next_id = 0
    for i, d in enumerate(items):
        if not isinstance(d, dict):
            raise TelemetryError(f"{path}: discharge {i}: not an object with 'signals'")
        name = str(d.get("id", i))
        where = f"{path}: discharge {i}" + (f" (id {d['id']!r})" if "id" in d else "")
        sigs = d.get("signals")
        if sigs is None:
            raise TelemetryError(f"{where}: missing field 'signals'")
        if not isinstance(sigs, list) or not sigs:
            raise TelemetryError(f"{where}: 'signals' must be a non-empty list")
        raw = [_signal(s, k, where, d.get("times")) for k, s in enumerate(sigs)]
        seen: dict[str, int] = {}
        for k, (ch, _, _) in enumerate(raw):
            if ch in seen:
                raise TelemetryError(f"{where}, signal {k}: channel {ch!r} appears twice (also signal {seen[ch]})")
            seen[ch] = k
        raw.sort(key=lambda r: sort_key(r[0]))
        channels = tuple(r[0] for r in raw)
        if ref_channels is None:
            ref_channels = channels
        elif channels != ref_channels:
            missing = sorted(set(ref_channels) - set(channels), key=sort_key)
            extra = sorted(set(channels) - set(ref_channels), key=sort_key)
            what = "; ".join(p for p in (f"missing {', '.join(missing)}" if missing else "",
                                         f"extra {', '.join(extra)}" if extra else "") if p)
            raise TelemetryError(f"{where}: its signals differ from discharge 0's ({what})")
        at = d.get("anomalyTime")
        if at is not None and (isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at)):
            raise TelemetryError(f"{where}: 'anomalyTime' must be a number or null, got {at!r}")
        base, values = _resample(raw, where)
        labels = np.zeros(base.size, dtype=np.uint8)
        if at is not None:
            first = int(np.searchsorted(base, float(at), side="left"))  # first row with time >= anomalyTime
            labels[max(0, first - warning_rows):] = 1
        ids = np.arange(next_id, next_id + base.size, dtype=np.int64)
        next_id += base.size
        series.append(Series(ids, values, labels, channels, source=f"{path}#{name}"))
        names.append(name)
        times.append(base)
        onsets.append(np.nan if at is None else float(at))
    out = Discharges(tuple(series), tuple(names), tuple(times), np.asarray(onsets, dtype=np.float64), source=path)
    log.info("%s: %d discharges (%d anomalous), %d channels, %s rows", path, len(out), int(out.anomalous.sum()),
             len(ref_channels), f"{next_id:,}")
    return out
