"""The challenge metric (corrected event-wise F0.5) and the figures reported beside it.

Definitions follow ESA-ADB's ESAScores (kplabs-pl/ESA-ADB, timeeval/metrics/ESA_ADB_metrics.py):

- TP_e: true events sharing at least one row with a predicted 1; FN_e: true events with none.
- FP_e: predicted runs that touch no true event.
- TNR = 1 - (rows predicted 1 whose truth is 0) / (rows whose truth is 0).
- Pr = TP_e / (TP_e + FP_e) * TNR; Re = TP_e / (TP_e + FN_e);
  F0.5 = 1.25 Pr Re / (0.25 Pr + Re); any zero denominator gives 0.

``segments`` (int64 offsets [S+1] from 0 to N, telemetry.series; None = one series): the rows are
many independent series back to back, and events and predicted runs are counted per series: a run
of 1s across an offset is two events (telemetry.events), so the end of one series and the start of
the next are never one event. Row counts (TNR, point figures) do not depend on them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from telemetry.errors import TelemetryError
from telemetry.events import event_labels, events
from telemetry.series import checked_offsets


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def f_beta(precision: float, recall: float, beta: float = 0.5) -> float:
    b2 = beta * beta
    return _div((1 + b2) * precision * recall, b2 * precision + recall)


def _check(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise TelemetryError(f"labels have {t.size} rows but predictions have {p.size}")
    for name, a in (("labels", t), ("predictions", p)):
        if a.size and not np.isin(a, (0, 1)).all():
            raise TelemetryError(f"{name} must be binary 0/1")
    return t.astype(bool), p.astype(bool)


@dataclass(frozen=True)
class EventCounts:
    tp: int  # true events detected
    fn: int  # true events missed
    fp: int  # predicted runs touching no true event
    tp_runs: int  # predicted runs touching a true event
    fp_rows: int
    nominal_rows: int


def event_counts(y_true: np.ndarray, y_pred: np.ndarray, segments=None) -> EventCounts:
    """The metric's counts; with ``segments`` events and predicted runs are counted per series."""
    t, p = _check(y_true, y_pred)
    seg = checked_offsets(segments, t.size, "labels")
    true_lab, n_true = event_labels(t, seg)
    pred_lab, n_pred = event_labels(p, seg)
    # A true event is detected if any of its rows is predicted 1.
    hit = np.zeros(n_true + 1, dtype=bool)
    hit[true_lab[p]] = True
    tp = int(hit[1:].sum())
    # A predicted run is a true positive run if any of its rows lies in a true event.
    touches = np.zeros(n_pred + 1, dtype=bool)
    touches[pred_lab[t]] = True
    tp_runs = int(touches[1:].sum())
    return EventCounts(tp=tp, fn=n_true - tp, fp=n_pred - tp_runs, tp_runs=tp_runs, fp_rows=int((p & ~t).sum()), nominal_rows=int((~t).sum()))


def _f05_from_counts(tp, fn, fp, fp_rows, nominal_rows):
    """Vectorised over arrays of counts (one entry per threshold)."""
    tp, fn, fp = (np.asarray(x, dtype=np.float64) for x in (tp, fn, fp))
    fp_rows = np.asarray(fp_rows, dtype=np.float64)
    tnr = 1.0 - fp_rows / nominal_rows if nominal_rows else np.zeros_like(fp_rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        pr = np.where(tp + fp > 0, tp / (tp + fp), 0.0) * tnr
        re = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f = np.where(0.25 * pr + re > 0, 1.25 * pr * re / (0.25 * pr + re), 0.0)
    return f, pr, re


def corrected_event_f05(y_true: np.ndarray, y_pred: np.ndarray, segments=None) -> float:
    """The challenge's objective: corrected event-wise F0.5 (see the module docstring); with
    ``segments``, events and predicted runs counted per series."""
    c = event_counts(y_true, y_pred, segments)
    f, _, _ = _f05_from_counts(c.tp, c.fn, c.fp, c.fp_rows, c.nominal_rows)
    return float(f)


def scores(y_true: np.ndarray, y_pred: np.ndarray, raw_score: np.ndarray | None = None, segments=None) -> dict:
    """Every figure the reports show, as a plain dict; with ``segments`` the event figures count
    per series (the row figures are the same either way).

    ``alarming_precision`` is the event-wise precision without the TNR correction: the share of
    predicted runs that touch a true event.
    """
    t, p = _check(y_true, y_pred)
    c = event_counts(t, p, segments)
    f, pr, re = _f05_from_counts(c.tp, c.fn, c.fp, c.fp_rows, c.nominal_rows)
    tp_rows = int((t & p).sum())
    point_pr = _div(tp_rows, p.sum())
    point_re = _div(tp_rows, t.sum())
    out = {
        "f05": float(f),
        "event_precision": float(pr),
        "event_recall": float(re),
        "alarming_precision": _div(c.tp_runs, c.tp_runs + c.fp),
        "tnr": 1.0 - _div(c.fp_rows, c.nominal_rows) if c.nominal_rows else 0.0,
        "point_precision": point_pr,
        "point_recall": point_re,
        "point_f1": f_beta(point_pr, point_re, beta=1.0),
        "true_events": c.tp + c.fn,
        "detected_events": c.tp,
        "false_events": c.fp,
    }
    out["auc_pr"] = auc_pr(t, raw_score) if raw_score is not None else float("nan")
    return out


def auc_pr(y_true: np.ndarray, raw_score: np.ndarray) -> float:
    """Area under the precision-recall curve of a raw score (average precision); NaN without positives."""
    t = np.asarray(y_true).ravel().astype(bool)
    s = np.asarray(raw_score).ravel()
    if s.dtype.kind != "f":
        s = s.astype(np.float64)
    if s.shape != t.shape:
        raise TelemetryError(f"labels have {t.size} rows but the score has {s.size}")
    if not np.isfinite(s).all():
        raise TelemetryError(f"the score has {int((~np.isfinite(s)).sum())} non-finite values; AUC-PR needs finite scores")
    if not t.any() or t.all():
        return float("nan")
    # scikit-learn's average precision (sum over distinct thresholds, high to low, of the recall
    # step times the precision there), from one unstable sort: ties are grouped, so order inside
    # them does not matter; several times faster on millions of rows.
    order = np.argsort(s)[::-1]
    ss = s[order]
    last = np.r_[np.flatnonzero(ss[1:] != ss[:-1]), ss.size - 1]  # the last row of each distinct score
    tps = np.cumsum(t[order], dtype=np.int64)[last]
    precision = tps / (last + 1.0)
    return float(np.sum(np.diff(tps / tps[-1], prepend=0.0) * precision))


def block_counts(y_true: np.ndarray, y_pred: np.ndarray, n_blocks: int, segments=None) -> np.ndarray:
    """The metric's counts per contiguous block of rows, [n_blocks, 5]: detected true events, missed
    true events, false predicted runs, false-positive rows, nominal rows. Events and runs count in
    the block where they start, so any multiset of blocks sums to counts the metric can use; with
    ``segments`` they are counted per series (all blocks once: :func:`event_counts`'s)."""
    t, p = _check(y_true, y_pred)
    n = t.size
    seg = checked_offsets(segments, n, "labels")
    edges = np.linspace(0, n, n_blocks + 1).astype(np.int64)
    block_of = lambda rows: np.searchsorted(edges, rows, side="right") - 1  # noqa: E731
    true_lab, n_true = event_labels(t, seg)
    pred_lab, n_pred = event_labels(p, seg)
    hit = np.zeros(n_true + 1, dtype=bool)
    hit[true_lab[p]] = True
    touches = np.zeros(n_pred + 1, dtype=bool)
    touches[pred_lab[t]] = True
    true_start, pred_start = events(t, seg)[:, 0], events(p, seg)[:, 0]  # in label order
    out = np.zeros((n_blocks, 5))
    np.add.at(out[:, 0], block_of(true_start), hit[1:])
    np.add.at(out[:, 1], block_of(true_start), ~hit[1:])
    np.add.at(out[:, 2], block_of(pred_start), ~touches[1:])
    out[:, 3] = np.add.reduceat((p & ~t).astype(np.int64), edges[:-1]) if n else 0
    out[:, 4] = np.add.reduceat((~t).astype(np.int64), edges[:-1]) if n else 0
    return out


def bootstrap_f05(y_true: np.ndarray, preds, resamples: int = 1000, n_blocks: int = 50, seed: int = 0,
                  segments=None) -> np.ndarray:
    """Corrected event-wise F0.5 of each prediction in ``preds`` on block-bootstrap replicates of the
    series, [resamples, len(preds)]. The same replicates serve every prediction, so differences
    between two predictions are paired. Blocks (rather than rows) keep events whole. ``segments``:
    events counted per series (:func:`block_counts`); the blocks are rows, not series."""
    t = np.asarray(y_true).ravel()
    n_blocks = max(1, min(int(n_blocks), t.size))
    draws = np.random.default_rng(seed).integers(0, n_blocks, (resamples, n_blocks))
    mult = np.zeros((resamples, n_blocks))
    np.add.at(mult, (np.arange(resamples)[:, None], draws), 1.0)
    out = np.empty((resamples, len(preds)))
    for k, p in enumerate(preds):
        c = mult @ block_counts(t, p, n_blocks, segments)
        out[:, k] = _f05_rows(c)
    return out


def _f05_rows(c: np.ndarray) -> np.ndarray:
    """F0.5 from rows of (tp, fn, fp, fp_rows, nominal_rows) counts."""
    tp, fn, fp, fp_rows, nom = c.T
    with np.errstate(divide="ignore", invalid="ignore"):
        tnr = np.where(nom > 0, 1.0 - fp_rows / nom, 0.0)
        pr = np.where(tp + fp > 0, tp / (tp + fp), 0.0) * tnr
        re = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        return np.where(0.25 * pr + re > 0, 1.25 * pr * re / (0.25 * pr + re), 0.0)


def interval(samples: np.ndarray, level: float = 0.9) -> tuple[float, float]:
    """Central percentile interval of bootstrap samples."""
    a = (1.0 - level) / 2.0
    return float(np.quantile(samples, a)), float(np.quantile(samples, 1.0 - a))
