"""The fit split as labelled evidence (``ensemble build --evidence fit+validation``): what the saved
models score there, and the rows the decision layer is then fitted on.

Why this is fair: the members learn from the fit split's nominal rows only (every window model, pca
and the baselines fit on labelled-nominal rows), so its events are events no member has seen. What it
costs: those nominal rows were trained on, so members score them lower than unseen rows; a threshold
fitted there leans low, the more so for a member of high capacity. Holdout and test stay untouched.
A model that learnt from the fit split's anomalous rows (the supervised classifier; ``nominal_only:
false``) has seen those events: with such a member the layer is fitted on validation alone.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from models import registry
from search import experiment as ex
from telemetry.errors import TelemetryError

log = logging.getLogger("ensemble")
EVIDENCE = ("validation", "fit+validation")  # the labelled events the decision layer may be fitted on
EVIDENCE_CHOICES = ("auto", *EVIDENCE)  # auto: evidence_for_rows


def evidence_for_rows(rows: int) -> str:
    """``auto`` evidence for data of ``rows`` rows (train + test): the fit split's events join
    validation's where the data is small enough that every trial scored every split
    (search.auto.SCORE_ALL_ROWS). There a handful of labelled events is the rule and doubling them is
    the largest gain measured (benchmarks/RESULTS.md, scarce labels and the sweep files), while scoring
    the fit split once more costs seconds. Larger data holds more events, and scoring its fit split
    with every member would cost as much as the search's own scoring."""
    from search.auto import SCORE_ALL_ROWS

    return "fit+validation" if int(rows) <= SCORE_ALL_ROWS else "validation"


def checked_evidence(evidence: str) -> str:
    """``evidence`` itself when it is one of EVIDENCE_CHOICES; otherwise one line naming it."""
    if evidence not in EVIDENCE_CHOICES:
        raise TelemetryError(f"unknown evidence {evidence!r}; choose one of {', '.join(EVIDENCE_CHOICES)}")
    return evidence


def resolved(evidence: str, rows: int) -> str:
    """``evidence`` (one of EVIDENCE_CHOICES) with ``auto`` decided for data of ``rows`` rows."""
    return evidence_for_rows(rows) if checked_evidence(evidence) == "auto" else evidence


@dataclass
class FitEvidence:
    """The fit split as labelled evidence for the decision layer: every member's scores there
    (``scores`` [rows, M]; ``channel_scores`` [rows, P, C] for the members with per-channel scores),
    its labels and its series boundaries (offsets, None: one series)."""

    scores: np.ndarray
    labels: np.ndarray
    segments: np.ndarray | None
    channel_scores: np.ndarray | None = None

    @property
    def events(self) -> int:
        from telemetry.events import events

        return len(events(self.labels, self.segments))


def learnt_from_anomalies(arch: str, params: dict) -> bool:
    """Whether a trial's model was trained on the fit split's anomalous rows too."""
    return bool(registry.get(arch).tags.get("needs_labels")) or params.get("nominal_only") is False


def _all_unseen(members) -> bool:
    """Whether no member learnt from the fit split's anomalous rows (logs which did)."""
    seen = [m["name"] for m in members.metas if learnt_from_anomalies(m["arch"], m["params"])]
    if seen:
        log.warning("%s learnt from the fit split's anomalous rows, so its events are not unseen: the decision "
                    "layer is fitted on validation alone", ", ".join(seen))
    return not seen


class FitSplit:
    """A sweep's fit split read back as the sweep cut it (``data``: the prepared splits; ``labels``:
    the fit split's), and what saved models score there: each model scores it once, whoever asks."""

    def __init__(self, experiment: str, data, labels: np.ndarray):
        self.experiment, self.data, self.labels = experiment, data, np.asarray(labels).astype(np.uint8)
        self._scores: dict[tuple[str, bool], tuple[np.ndarray, np.ndarray | None]] = {}

    @classmethod
    def read(cls, experiment: str, commands: bool = False) -> FitSplit | None:
        """The fit split of ``experiment`` (telecommand features prepared when ``commands``: some
        model reads them), or None with the reason logged: no labelled event there, the data cannot be
        read back, or its rows differ from those the sweep cut."""
        from telemetry.prepare import prepare

        sets = ex.read_sets(experiment)
        labels = sets.get("fit_labels")
        if labels is None or not np.asarray(labels).any():
            log.info("the fit split holds no labelled event: the decision layer is fitted on validation alone")
            return None
        cfg = ex.read_sweep(experiment).data
        try:
            data = prepare(cfg if commands else replace(cfg, telecommands=None))
        except (OSError, TelemetryError) as e:
            log.warning("the fit split cannot be read back (%s): the decision layer is fitted on validation alone", e)
            return None
        if not np.array_equal(data.fit.ids, sets["fit_ids"]):
            log.warning("%s: its fit rows differ from those the sweep cut (the file changed?): the decision layer is "
                        "fitted on validation alone", cfg.train)
            return None
        return cls(experiment, data, labels)

    @property
    def segments(self) -> np.ndarray | None:
        return self.data.fit.segments

    def score(self, checkpoint: str, channels: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """(per-row scores, per-channel scores or None) of the model saved with ``checkpoint``."""
        from ray import tune

        from models.base import Detector

        key = (checkpoint, channels)
        if key not in self._scores:
            with tune.Checkpoint(ex.model_dir(checkpoint)).as_directory() as model_dir:
                est = Detector.load(model_dir)
            s, cs = est.score_samples_and_channels(self.data.fit) if channels else (est.score_samples(self.data.fit), None)
            self._scores[key] = (np.asarray(s, dtype=np.float32), cs)
            self._scores.setdefault((checkpoint, False), (self._scores[key][0], None))
        return self._scores[key]

    def evidence(self, members) -> FitEvidence | None:
        """Every member of ``members`` (ensemble.members.Members) scored on the fit split, or None (with
        the reason logged) when a member learnt from its anomalous rows."""
        if not _all_unseen(members):
            return None
        scores, channel_scores = [], []
        for j, meta in enumerate(members.metas):
            s, cs = self.score(meta["checkpoint"], channels=j in members.channel_members)
            scores.append(s)
            if cs is not None:
                channel_scores.append(cs)
        log.info("fit split scored by %d members: %d labelled rows join validation's", len(scores), self.labels.size)
        return FitEvidence(np.stack(scores, axis=1), self.labels, self.segments,
                           np.stack(channel_scores, axis=1) if channel_scores else None)


def fit_evidence(members) -> FitEvidence | None:
    """The fit split's labelled evidence for ``members`` (ensemble.members.Members): each member's saved
    model scores it once (telecommand features prepared only where a member reads them); None, with the
    reason logged, where it cannot serve (FitSplit.read, FitSplit.evidence)."""
    if not _all_unseen(members):
        return None
    fit = FitSplit.read(members.experiment, commands=any(m["params"].get("telecommands") for m in members.metas))
    return None if fit is None else fit.evidence(members)


def fitting_rows(scores: np.ndarray, labels: np.ndarray, segments, extra: FitEvidence | None, channels: dict | None = None):
    """What the decision layer is fitted on: (scores, labels, series offsets, per-channel inputs) of
    validation; with ``extra`` (the fit split's), the fit split's rows first, each split its own series
    (nothing is smoothed or counted across the cut)."""
    channels = channels or {}
    if extra is None:
        return scores, labels, segments, channels
    n_fit, n_val = len(extra.labels), len(labels)
    fit_seg = extra.segments if extra.segments is not None else np.array([0, n_fit])
    val_seg = segments if segments is not None else np.array([0, n_val])
    seg = np.concatenate([np.asarray(fit_seg, np.int64), np.asarray(val_seg, np.int64)[1:] + n_fit])
    if channels:
        channels = {**channels, "channel_scores": np.concatenate([extra.channel_scores, channels["channel_scores"]])}
    return (np.concatenate([extra.scores, scores]), np.concatenate([extra.labels, labels]).astype(np.uint8), seg,
            channels)
