"""Fit / validation / holdout splits of the training data, never shuffled.

One series: three time-contiguous stretches (``fractions`` or ``boundaries``).

Many series (``Series.segments``: devices, runs, discharges), two ways:

* **by whole series** (the default): every series lies in exactly one split, so a model is judged
  on series it never saw. ``fractions`` apply to the number of series, in file order (the first
  60 % of the series fit, ...); or name them: ``series_lists={"validation": [...], "holdout": [...]}``
  (the rest fit, in file order).
* **in time within each series** (``within_series=True``): each series is cut by ``fractions`` of
  its own rows; fit holds the early part of every series, holdout the late part. Use it when every
  series is needed in training (a fleet whose devices differ).

Either way each split keeps the series boundaries (windows never cross them) and names.
Labelled data: validation must hold an anomaly event (thresholds need one), holdout should, fit
needs nominal rows. Unlabelled data: no such checks (the sweep's objective is then a loss).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from telemetry.errors import TelemetryError
from telemetry.events import events
from telemetry.series import Series

SPLIT_NAMES = ("fit", "validation", "holdout")
log = logging.getLogger("telemetry.splits")


@dataclass(frozen=True)
class Splits:
    fit: Series
    validation: Series
    holdout: Series

    def items(self):
        return [(n, getattr(self, n)) for n in SPLIT_NAMES]

    def lengths(self) -> dict[str, int]:
        return {n: len(s) for n, s in self.items()}


def fractions_problem(fractions) -> str | None:
    """What is wrong with split ``fractions`` (None: nothing). They must sum to 1: [0.5, 0.5, 0.5] is
    a typo, not a request to normalise, and the sweep file's schema refuses it with this rule."""
    try:
        fr = np.asarray(fractions, dtype=float)
    except (TypeError, ValueError):
        return f"split fractions must be three numbers, got {fractions!r}"
    if fr.shape != (3,) or not np.isfinite(fr).all() or (fr <= 0).any():
        return f"split fractions must be three positive numbers (fit, validation, holdout), got {list(fractions)!r}"
    if abs(fr.sum() - 1.0) > 1e-6:
        return f"split fractions must sum to 1, got {list(fractions)!r} (sum {fr.sum():g})"
    return None


def _fraction_cuts(fractions, n: int) -> list[int]:
    problem = fractions_problem(fractions)
    if problem:
        raise TelemetryError(problem)
    fr = np.asarray(fractions, dtype=float)
    c = np.cumsum(fr / fr.sum())  # exactly 1 up to rounding
    return [int(round(c[0] * n)), int(round(c[1] * n))]


def split_series(series: Series, fractions=(0.6, 0.2, 0.2), boundaries=None, *, series_lists: dict | None = None,
                 within_series: bool = False) -> Splits:
    """Cut the training series into fit / validation / holdout (see the module docstring).

    ``fractions``: three positive numbers summing to 1, of rows (one series, or ``within_series``)
    or of series (many series). ``boundaries``: the first id of validation and of holdout, one
    series only, overriding fractions. ``series_lists``: ``{"validation": [names], "holdout":
    [names]}`` for many series. Validation and holdout must each contain at least one anomaly event
    when the data is labelled: validation must, holdout should (a warning otherwise, for series with
    very few events); fit must contain nominal rows.
    """
    many = series.segments is not None and series.n_segments > 1
    if series_lists is not None and within_series:
        raise TelemetryError("choose one way to split many series: split_series (lists of series) or "
                             "split_within_series, not both")
    if (series_lists is not None or within_series) and series.segments is None:
        raise TelemetryError(f"{series.source}: split_series / split_within_series need many series "
                             f"(data.series names the series column, or a discharge file)")
    if many and boundaries is not None:
        raise TelemetryError(f"{series.source}: split boundaries (ids) cut one series in time; with {series.n_segments} "
                             f"series use fractions, split_series or split_within_series")
    if series_lists is not None:
        parts, what = _by_named_series(series, series_lists), f"split_series {series_lists}"
    elif many and not within_series:
        parts, what = _by_series_fractions(series, fractions), f"fractions {list(fractions)} of {series.n_segments} series"
    elif many:
        parts, what = _within_series(series, fractions), f"fractions {list(fractions)} within each series"
    else:
        parts, what = _in_time(series, fractions, boundaries)
    if series.labels is not None:
        _check_labelled(series, parts, what)
    return parts


def _in_time(series: Series, fractions, boundaries) -> tuple[Splits, str]:
    n = len(series)
    if boundaries is not None:
        if len(boundaries) != 2:
            raise TelemetryError(f"split boundaries must be two ids (validation start, holdout start), got {boundaries!r}")
        cuts = [int(np.searchsorted(series.ids, b)) for b in boundaries]
        what = f"boundaries {list(boundaries)}"
    else:
        cuts = _fraction_cuts(fractions, n)
        what = f"fractions {list(fractions)}"
    a, b = cuts
    if not 0 < a < b < n:
        raise TelemetryError(f"{series.source}: split {what} leave an empty split ({n} rows)")
    return Splits(series.slice(0, a, "fit"), series.slice(a, b, "validation"), series.slice(b, n, "holdout")), what


def _by_series_fractions(series: Series, fractions) -> Splits:
    s = series.n_segments
    a, b = _fraction_cuts(fractions, s)
    if not 0 < a < b < s:
        raise TelemetryError(f"{series.source}: split fractions {list(fractions)} of {s} series leave a split without "
                             f"a series; use more series, other fractions, or split_within_series")
    off = series.offsets
    return Splits(series.slice(0, int(off[a]), "fit"), series.slice(int(off[a]), int(off[b]), "validation"),
                  series.slice(int(off[b]), len(series), "holdout"))


def _by_named_series(series: Series, lists: dict) -> Splits:
    if not isinstance(lists, dict) or set(lists) - {"validation", "holdout"} or not lists:
        raise TelemetryError(f"split_series must be a mapping with keys validation and holdout (lists of series names), "
                             f"got {lists!r}")
    names = list(series.segment_names)
    index = {n: k for k, n in enumerate(names)}
    chosen: dict[str, list[int]] = {}
    for split in ("validation", "holdout"):
        raw = lists.get(split) or []
        if not isinstance(raw, (list, tuple)) or not raw:
            raise TelemetryError(f"split_series.{split} must be a non-empty list of series names, got {raw!r}")
        ks = []
        for item in raw:
            if str(item) not in index:
                shown = ", ".join(names[:8]) + (f", ... ({len(names)} series)" if len(names) > 8 else "")
                raise TelemetryError(f"split_series.{split}: unknown series {item!r} (the data has {shown})")
            ks.append(index[str(item)])
        chosen[split] = sorted(set(ks))
    both = sorted(set(chosen["validation"]) & set(chosen["holdout"]))
    if both:
        raise TelemetryError(f"split_series: series {names[both[0]]!r} is in both validation and holdout")
    fit = [k for k in range(len(names)) if k not in set(chosen["validation"]) | set(chosen["holdout"])]
    if not fit:
        raise TelemetryError("split_series: every series is in validation or holdout; none is left to fit on")
    off = series.offsets

    def take(ks, name):
        return series.take_rows([(off[k], off[k + 1]) for k in ks], [names[k] for k in ks], name)

    return Splits(take(fit, "fit"), take(chosen["validation"], "validation"), take(chosen["holdout"], "holdout"))


def _within_series(series: Series, fractions) -> Splits:
    off = series.offsets
    ranges = {n: [] for n in ("fit", "validation", "holdout")}
    for k, name in enumerate(series.segment_names):
        lo, n = int(off[k]), int(off[k + 1] - off[k])
        a, b = _fraction_cuts(fractions, n)
        if not 0 < a < b < n:
            raise TelemetryError(f"{series.source}: series {name!r} has {n} rows, too few to cut by fractions "
                                 f"{list(fractions)} (each part needs a row)")
        ranges["fit"].append((lo, lo + a))
        ranges["validation"].append((lo + a, lo + b))
        ranges["holdout"].append((lo + b, lo + n))
    names = series.segment_names
    return Splits(*(series.take_rows(ranges[p], names, p) for p in SPLIT_NAMES))


def _check_labelled(series: Series, parts: Splits, what: str) -> None:
    if len(events(series.labels)) == 0:  # no split choice can help: say what can
        raise TelemetryError(f"{series.source}: is_anomaly is 0 on every row, so no threshold or F0.5 can be chosen; "
                             f"label the anomalies, or set data.labels: none for an unlabelled sweep")
    if parts.fit.nominal.sum() == 0:
        raise TelemetryError(f"{series.source}: the fit split has no nominal row to train on")
    s = parts.validation
    if len(events(s.labels)) == 0:
        raise TelemetryError(f"{series.source}: the validation split (ids {s.ids[0]}..{s.ids[-1]}) contains no anomaly event; "
                             f"change the split {what}")
    if len(events(parts.holdout.labels)) == 0:
        # A series with two or three events cannot spare one for holdout: honest holdout figures
        # are then impossible (F0.5 is 0 without true events), but the decisions still can be made.
        log.warning("%s: the holdout split (ids %d..%d) contains no anomaly event; holdout figures will be 0 or NaN",
                    series.source, parts.holdout.ids[0], parts.holdout.ids[-1])
