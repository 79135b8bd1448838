"""Per-series metrics for many short independent series (discharges, runs, devices).

The question there is not "which rows are anomalous" but "was this series flagged, and how long
before the anomaly?". For each series: did it alarm at all, when was the first alarm, and the
warning time ``anomaly_time - first_alarm`` (positive: the alarm came that long before the
anomaly; negative: late; NaN: no alarm, or a normal series).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from telemetry.errors import TelemetryError

OUTCOMES = ("in time", "late", "missed", "false alarm", "quiet")


def first_alarm_times(alarms: Sequence[np.ndarray], times: Sequence[np.ndarray]) -> np.ndarray:
    """Time of the first predicted 1 of each series (NaN where it never alarms)."""
    if len(alarms) != len(times):
        raise TelemetryError(f"{len(alarms)} alarm arrays for {len(times)} time arrays")
    out = np.full(len(alarms), np.nan)
    for k, (a, t) in enumerate(zip(alarms, times)):
        a = np.asarray(a).ravel()
        t = np.asarray(t, dtype=np.float64).ravel()
        if a.shape != t.shape:
            raise TelemetryError(f"series {k}: {a.size} alarm rows but {t.size} times")
        if a.size and not np.isin(a, (0, 1)).all():
            raise TelemetryError(f"series {k}: alarms must be binary 0/1")
        hit = a.astype(bool, copy=False)
        if hit.any():
            out[k] = t[int(np.argmax(hit))]  # argmax of a bool array: first True
    return out


def detection_table(alarms: Sequence[np.ndarray], times: Sequence[np.ndarray], anomaly_times: Sequence[float | None],
                    names: Sequence[str] | None = None, *, required_warning: float = 0.0) -> pd.DataFrame:
    """One row per series: was it flagged, and with how much warning.

    ``alarms``: binary predictions per series; ``times``: the time of each row (or row numbers, for
    a warning time in rows); ``anomaly_times``: the anomaly onset per series, None/NaN for a normal
    one. ``required_warning``: an alarm counts as "in time" only if it comes at least this long
    before the onset (e.g. the time a mitigation system needs); a later one is "late".

    Columns: ``series, anomalous, flagged, first_alarm, anomaly_time, warning_time, outcome`` with
    outcome one of "in time", "late", "missed" (anomalous series) or "false alarm", "quiet"
    (normal series). ``warning_time`` = anomaly_time - first_alarm: negative when late, NaN when
    missed and for normal series.
    """
    onset = np.array([np.nan if a is None else float(a) for a in anomaly_times], dtype=np.float64)
    if onset.size != len(alarms):
        raise TelemetryError(f"{onset.size} anomaly times for {len(alarms)} series")
    first = first_alarm_times(alarms, times)
    anomalous = np.isfinite(onset)
    flagged = np.isfinite(first)
    warning = onset - first  # NaN wherever either is missing
    outcome = np.select(
        [anomalous & flagged & (warning >= required_warning), anomalous & flagged, anomalous, flagged],
        ["in time", "late", "missed", "false alarm"], default="quiet")
    return pd.DataFrame({
        "series": list(names) if names is not None else [str(k) for k in range(len(alarms))],
        "anomalous": anomalous, "flagged": flagged, "first_alarm": first, "anomaly_time": onset,
        "warning_time": warning, "outcome": outcome,
    })


def detection_summary(table: pd.DataFrame) -> dict:
    """Counts and rates from :func:`detection_table`.

    ``detection_rate``: flagged anomalous / anomalous; ``in_time_rate``: "in time" / anomalous;
    ``false_alarm_rate``: flagged normal / normal; warning times (mean, median) over the flagged
    anomalous series, late ones included as negatives. Rates with an empty denominator are NaN.
    """
    anom = table["anomalous"].to_numpy(bool)
    flag = table["flagged"].to_numpy(bool)
    out = table["outcome"]
    warn = table.loc[anom & flag, "warning_time"].to_numpy(np.float64)
    n_a, n_n = int(anom.sum()), int((~anom).sum())
    rate = lambda a, b: float(a) / b if b else float("nan")  # noqa: E731
    return {
        "anomalous": n_a, "normal": n_n,
        "detected": int((anom & flag).sum()), "in_time": int((out == "in time").sum()),
        "late": int((out == "late").sum()), "missed": int((out == "missed").sum()),
        "false_alarms": int((out == "false alarm").sum()),
        "detection_rate": rate((anom & flag).sum(), n_a), "in_time_rate": rate((out == "in time").sum(), n_a),
        "false_alarm_rate": rate((~anom & flag).sum(), n_n),
        "mean_warning_time": float(warn.mean()) if warn.size else float("nan"),
        "median_warning_time": float(np.median(warn)) if warn.size else float("nan"),
    }


def split_detection_table(split, alarms: np.ndarray, row_times: np.ndarray | None = None,
                          onsets: dict | None = None, *, required_warning: float = 0.0) -> pd.DataFrame:
    """:func:`detection_table` for each series of a split made of many series (a
    :class:`telemetry.series.Series` with ``segments``) from binary ``alarms`` over all its rows.

    ``row_times``: the time of each row (float [N]; e.g. a discharge's time base), else rows count
    from 0 within each series (warning times in rows). ``onsets``: series name -> anomaly onset on
    that axis (NaN or absent: normal), else the first labelled row of each series in this split
    (series without labels are all normal).
    """
    alarms = np.asarray(alarms).ravel()
    if alarms.shape != (len(split),):
        raise TelemetryError(f"{alarms.size} alarms for the {len(split)} rows of {split.source}")
    off = split.offsets
    names = split.segment_names or tuple(str(k) for k in range(split.n_segments))
    parts, times, onset = [], [], []
    for k, name in enumerate(names):
        a, b = int(off[k]), int(off[k + 1])
        t = np.asarray(row_times[a:b], dtype=np.float64) if row_times is not None else np.arange(b - a, dtype=np.float64)
        parts.append(alarms[a:b])
        times.append(t)
        if onsets is not None:
            onset.append(float(onsets.get(name, np.nan)))
        elif split.labels is not None and split.labels[a:b].any():
            onset.append(float(t[int(np.argmax(split.labels[a:b] > 0))]))
        else:
            onset.append(np.nan)
    return detection_table(parts, times, onset, names, required_warning=required_warning)


def discharge_detection_table(discharges, alarms, required_warning: float = 0.0) -> pd.DataFrame:
    """:func:`detection_table` for a telemetry.discharges.Discharges: alarms either one array per
    discharge or one over their concatenation, warning times in seconds of the file's time axis."""
    if not isinstance(alarms, (list, tuple)):
        alarms = discharges.split_rows(alarms)
    return detection_table(alarms, discharges.times, discharges.anomaly_times, discharges.names,
                           required_warning=required_warning)
