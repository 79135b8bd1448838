"""Time-contiguous fit / validation / holdout splits of the labelled series (never shuffled)."""
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


def split_series(series: Series, fractions=(0.6, 0.2, 0.2), boundaries=None) -> Splits:
    """Cut the labelled series into fit / validation / holdout, in time order.

    ``fractions``: three positive numbers (normalised). ``boundaries``: the first id of validation
    and of holdout, overriding fractions. Validation and holdout must each contain at least one
    anomaly event (thresholds and honest figures need them): validation must, holdout should (a warning
    otherwise, for series with very few events); fit must contain nominal rows.
    """
    if series.labels is None:
        raise TelemetryError(f"{series.source}: splits need labels (column 'is_anomaly')")
    n = len(series)
    if boundaries is not None:
        if len(boundaries) != 2:
            raise TelemetryError(f"split boundaries must be two ids (validation start, holdout start), got {boundaries!r}")
        cuts = [int(np.searchsorted(series.ids, b)) for b in boundaries]
        what = f"boundaries {list(boundaries)}"
    else:
        fr = np.asarray(fractions, dtype=float)
        if fr.shape != (3,) or (fr <= 0).any():
            raise TelemetryError(f"split fractions must be three positive numbers, got {list(fractions)!r}")
        c = np.cumsum(fr / fr.sum())
        cuts = [int(round(c[0] * n)), int(round(c[1] * n))]
        what = f"fractions {list(fractions)}"
    a, b = cuts
    if not 0 < a < b < n:
        raise TelemetryError(f"{series.source}: split {what} leave an empty split ({n} rows)")
    parts = Splits(series.slice(0, a, "fit"), series.slice(a, b, "validation"), series.slice(b, n, "holdout"))
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
    return parts
