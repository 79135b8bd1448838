"""The decision layer: members' scores [N, M] -> one score per row -> binary predictions.

A chain of small scikit-learn compatible estimators, each with its own parameters, composed by
:class:`DecisionLayer`: :class:`~ensemble.calibration.Calibration` -> :class:`Combination` ->
:class:`Rule` (the :class:`~detection.thresholds.Threshold` chain: smoothing -> threshold ->
hysteresis -> post-processing, its smoothing span searched) -> :class:`Guard` (the cross-fitted
fallback to the best member, and what decides when the fitted decision finds no validation event).
``get_params(deep=True)``, ``set_params`` and ``sklearn.base.clone`` work on the whole layer; ``fit``
returns self and fitted state ends in ``_``. The layer is also plain data: :meth:`BaseLayer.to_dict`
and :meth:`BaseLayer.from_dict` round-trip it, section by section, each mapping a constructor's keyword
arguments (what is left out takes the constructor's default); ``ensemble build --decision FILE.yaml``
reads such a mapping (:func:`read_layer`).

Everything is fitted on the labelled rows given to ``fit`` (validation's, and with ``ensemble build
--evidence fit+validation`` the fit split's before them, each its own series); holdout and test are only
transformed.
Validation often holds a handful of events, so each step has few free choices. The default (the
constructors' defaults, chosen by the quality benchmark over synthetic missions and real series;
:data:`DEFAULT_LAYER` is its plain-data form): members calibrated on nominal rows (robust z,
compressed logarithmically beyond one unit so that no single member's spike carries the combination
alone; no labels); weights from a strongly L2-regularised logistic regression, pulled halfway toward
uniform; the score smoothed (span 1, 5 or 25, the one validation prefers); the threshold in the middle
of the near-best F0.5 range rather than at its edge, never below the POT level validation's nominal
scores exceed with probability 1e-3 per row; hysteresis, so an event lasts until the score falls
halfway back to the nominal median instead of flickering; and a cross-fitted check that falls back to
the best member alone only when validation shows, beyond its bootstrap interval, that the member is
better out of fold (ensemble.crossfit).

``fit`` ends in one of three fitted decisions, each its own class: :class:`CombinedDecision` (the rule
on the combined score), :class:`ChannelUnionDecision` (each channel's own rule, the union taken:
Telemanom's way, and the ESA-ADB paper's channel-aware view) and :class:`MemberDecision` (the guard's
choice: one member with its own rule). ``score``, ``decision_score`` and ``predict`` ask the fitted
decision (``decision_``).
"""
from __future__ import annotations

import copy
import itertools
import logging
import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, clone

from ensemble.calibration import Calibration, Calibrator
from telemetry.errors import TelemetryError
from telemetry.series import checked_offsets
from telemetry.threads import thread_map
from detection.thresholds import Threshold, f05_curve

STACK_ROWS = 500_000  # rows the stacking regression sees at most (every k-th row beyond that)
COMBINATIONS = ("mean", "median", "max", "weighted", "shrunk", "stack")
PRIORS = ("member", "architecture")
NO_EVENT = ("member", "pot")  # what decides when the fitted decision finds no validation event
_DEFAULT = "default"  # a constructor argument meaning "a fresh default component" (None switches a guard off)


def best_f05(scores: np.ndarray, labels: np.ndarray, segments=None) -> float:
    """Best corrected event-wise F0.5 over every threshold (exact, one sort), events counted per
    series of ``segments``."""
    return float(f05_curve(scores, labels, segments=segments)[1].max())


def rule_f05(rule: Threshold, scores: np.ndarray, labels: np.ndarray, segments=None) -> float:
    """Validation F0.5 of a fitted rule's own predictions (post-processing included), events counted
    per series of ``segments``."""
    return _f05(labels, rule.predict(scores, segments), segments)


def channel_margins(rules, channel_ensemble_scores: np.ndarray, segments=None) -> np.ndarray:
    """[rows, C]: each channel's smoothed ensemble score minus its own rule's threshold (>= 0: above it)."""
    e = channel_ensemble_scores
    return np.stack([r.smoothed(e[:, k], segments) - r.threshold_ for k, r in enumerate(rules)],
                    axis=1).astype(np.float32)


def _f05(labels: np.ndarray, predictions: np.ndarray, segments=None) -> float:
    from detection.metrics import corrected_event_f05

    return corrected_event_f05(labels, predictions, segments)


# -- the components ---------------------------------------------------------------------------------

class Combination(BaseEstimator):
    """Calibrated scores [N, M] -> one score per row.

    ``selection``: keep the members whose validation F0.5 alone is at least ``selection`` x the best
    member's (None keeps all). ``method``: ``mean``, ``median`` or ``max`` of the kept members'
    calibrated scores; ``weighted`` (non-negative weights searched with ``weight_trials`` trials of
    seeded Optuna TPE on validation F0.5); ``shrunk`` (those weights pulled toward uniform by
    ``shrinkage``); ``stack`` (non-negative coefficients of an L2-regularised, class-balanced logistic
    regression, ``stack_c``, pulled toward uniform by ``shrinkage``). ``prior``: what uniform means,
    equal per ``member`` or per ``architecture`` (:meth:`uniform`). Fitted: ``weights_``, ``groups_``.
    """

    def __init__(self, method: str = "stack", selection: float | None = None, shrinkage: float = 0.5,
                 stack_c: float = 0.01, weight_trials: int = 60, prior: str = "member"):
        self.method = method
        self.selection = selection
        self.shrinkage = shrinkage
        self.stack_c = stack_c
        self.weight_trials = weight_trials
        self.prior = prior
        self._check()

    def _check(self) -> None:
        if self.method not in COMBINATIONS:
            raise TelemetryError(f"unknown combination {self.method!r}; choose one of {', '.join(COMBINATIONS)}")
        if self.selection is not None and not 0.0 <= float(self.selection) <= 1.0:
            raise TelemetryError(f"selection must be a fraction in [0, 1] of the best member's F0.5, got {self.selection!r}")
        if not 0.0 <= float(self.shrinkage) <= 1.0:
            raise TelemetryError(f"shrinkage must be in [0, 1], got {self.shrinkage!r}")
        if not float(self.stack_c) > 0:
            raise TelemetryError(f"stack_c must be > 0, got {self.stack_c!r}")
        if int(self.weight_trials) < 1:
            raise TelemetryError(f"weight_trials must be >= 1, got {self.weight_trials!r}")
        if self.prior not in PRIORS:
            raise TelemetryError(f"unknown prior {self.prior!r}; choose one of {', '.join(PRIORS)}")

    def fit(self, calibrated: np.ndarray, labels: np.ndarray, groups=None, segments=None, seed: int = 0,
            member_f05=None) -> "Combination":
        """``groups``: each member's architecture (``prior="architecture"``); ``member_f05``: each
        member's validation F0.5 alone, computed here when ``selection`` needs it and it is not given."""
        self._check()
        cal = np.asarray(calibrated)
        m = cal.shape[1]
        self.groups_ = [str(g) for g in groups] if groups is not None else [f"member_{j}" for j in range(m)]
        active = np.ones(m, dtype=bool)
        if self.selection is not None:
            if member_f05 is None:
                member_f05 = [best_f05(cal[:, j], labels, segments) for j in range(m)]
            active = np.asarray(member_f05) >= float(self.selection) * max(member_f05)
        self.weights_ = self.uniform(active)
        if self.method in ("weighted", "shrunk") and active.sum() > 1:
            w = np.zeros(m)
            w[active] = self._fit_weights(cal[:, active], labels, segments, seed)
            if self.method == "shrunk":
                w = float(self.shrinkage) * self.weights_ + (1.0 - float(self.shrinkage)) * w
            self.weights_ = w
        elif self.method == "stack" and active.sum() > 1:
            w = self._fit_stack(cal, labels, active)
            self.weights_ = float(self.shrinkage) * self.weights_ + (1.0 - float(self.shrinkage)) * w
        return self

    def transform(self, calibrated: np.ndarray) -> np.ndarray:
        if self.method == "max":
            return calibrated[:, self.weights_ > 0].max(axis=1)
        if self.method == "median":  # a row scores high only where most members agree
            return np.median(calibrated[:, self.weights_ > 0], axis=1).astype(np.float32)
        return (calibrated @ self.weights_).astype(np.float32)

    def uniform(self, active: np.ndarray) -> np.ndarray:
        """The weights a combination starts from and is shrunk toward: equal per member, or with
        ``prior="architecture"`` equal per architecture (``groups_``), shared by its active members;
        two configurations of one architecture score much alike, and a single forecaster should not
        count half as much as an autoencoder architecture searched twice."""
        if self.prior == "member":
            return np.where(active, 1.0 / active.sum(), 0.0)
        groups = np.asarray(self.groups_)
        live = sorted(set(groups[active]))
        size = {g: int((groups[active] == g).sum()) for g in live}
        return np.array([1.0 / (len(live) * size[g]) if a else 0.0 for g, a in zip(groups, active)])

    def channel_weights(self, members: np.ndarray) -> np.ndarray:
        """Weights of the members that have per-channel scores (``members``: their columns): ``max``
        takes the members with weight, each as it is; otherwise the weights renormalised over them
        (uniform if those are all 0)."""
        n_p = len(members)
        w = self.weights_[members].astype(np.float64)
        if self.method == "max":
            return (w > 0).astype(np.float64) if (w > 0).any() else np.ones(n_p)
        return w / w.sum() if w.sum() > 0 else np.full(n_p, 1.0 / n_p)

    def _fit_weights(self, cal: np.ndarray, labels: np.ndarray, segments=None, seed: int = 0) -> np.ndarray:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        m = cal.shape[1]

        def weights_of(trial):
            raw = np.array([trial.suggest_float(f"w{j}", 0.0, 1.0) for j in range(m)])
            return raw / raw.sum() if raw.sum() > 0 else np.full(m, 1.0 / m)

        def objective(trial):
            return best_f05(cal @ weights_of(trial), labels, segments)

        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        study.enqueue_trial({f"w{j}": 1.0 for j in range(m)})  # the plain mean is always a candidate
        for j in range(m):  # and each member alone
            study.enqueue_trial({f"w{k}": float(k == j) for k in range(m)})
        n_trials = max(int(self.weight_trials), m + 1)
        log = logging.getLogger("ensemble")
        t0 = time.monotonic()

        def progress(study, trial):  # a long search on a full-size split is not silent
            done = trial.number + 1
            if done % 10 == 0 or done == n_trials:
                log.info("weight search: %d/%d trials, best validation F0.5 %.3f, %.0f s", done, n_trials,
                         study.best_value, time.monotonic() - t0)

        study.optimize(objective, n_trials=n_trials, callbacks=[progress])
        return weights_of(study.best_trial)

    def _fit_stack(self, cal: np.ndarray, labels: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Non-negative, normalised coefficients of a strongly L2-regularised, class-balanced logistic
        regression: a member only gains weight where it separates anomalous rows from nominal ones."""
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=float(self.stack_c), class_weight="balanced", max_iter=200)
        step = -(-cal.shape[0] // STACK_ROWS)  # a strided sample bounds the cost on full-size splits
        if not labels[::step].any():  # ...unless it would miss every anomalous row
            step = 1
        lr.fit(np.clip(cal[::step, active], -50, 50), labels[::step])
        w = np.zeros(cal.shape[1])
        w[active] = np.maximum(lr.coef_[0], 0.0)
        return w / w.sum() if w.sum() > 0 else self.uniform(active)


class Rule(BaseEstimator):
    """The combined score -> binary rows: ``threshold`` (a :class:`Threshold`, unfitted: the chain's
    method, hysteresis, floor and post-processing) with its smoothing span searched over ``spans`` (the
    span with the best validation F0.5 kept; ties keep the earlier). ``post_grid``: also search
    minimum event length x gap merging (many choices on few events). ``per_channel``: the decision is
    the union of each channel's own rule (:class:`ChannelUnionDecision`) instead of this rule on the
    combined score. The span and the seed are the rule's to set: ``threshold``'s own ``smooth`` and
    ``seed`` stay at their defaults. Fitted: ``rule_`` (the chosen :class:`Threshold`), ``val_f05_``.
    """

    SET_HERE = ("smooth", "seed")  # the threshold's parameters the rule sets (its spans, the layer's seed)

    def __init__(self, threshold: Threshold | None = None, spans=(1, 5, 25), post_grid: bool = False,
                 per_channel: bool = False):
        # None: a fresh default rule (a shared default instance would be changed by set_params).
        self.threshold = Threshold(method="plateau", hysteresis=0.5, floor_risk=1e-3) if threshold is None else threshold
        self.spans = spans
        self.post_grid = post_grid
        self.per_channel = per_channel
        self._check()

    def _check(self) -> None:
        if not isinstance(self.threshold, Threshold):
            raise TelemetryError(f"rule threshold must be a Threshold, got {self.threshold!r}")
        if self.threshold.smooth != 1 or self.threshold.seed != 0:
            raise TelemetryError("threshold smooth and seed are set by the rule (its spans) and the layer (its seed); "
                                 "leave them out")
        if isinstance(self.spans, (str, bytes)) or not len(self.spans) \
                or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in self.spans):
            raise TelemetryError(f"spans must be a list of smoothing spans >= 1, got {self.spans!r}")
        for name in ("post_grid", "per_channel"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TelemetryError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def threshold_for(self, span: int, seed: int = 0, **params) -> Threshold:
        """An unfitted copy of ``threshold`` with smoothing span ``span``, ``seed`` and ``params``."""
        return clone(self.threshold).set_params(smooth=int(span), seed=int(seed), **params)

    def fit(self, combined: np.ndarray, labels: np.ndarray, segments=None, seed: int = 0) -> "Rule":
        self._check()
        posts = itertools.product((1, 3, 10, 30), (0, 5, 20, 100)) if self.post_grid else [(None, None)]

        def fitted(choice):
            span, (min_len, gap) = choice
            extra = {} if min_len is None else {"min_length": min_len, "max_gap": gap}
            rule = self.threshold_for(span, seed, **extra).fit(combined, labels, segments=segments)
            return rule_f05(rule, combined, labels, segments), rule

        best = None
        for f, rule in thread_map(fitted, list(itertools.product([int(s) for s in self.spans], list(posts)))):
            if best is None or f > best[0] + 1e-12:  # in the serial order: ties keep the earlier
                best = (f, rule)
        self.val_f05_, self.rule_ = best
        return self


class Guard(BaseEstimator):
    """What may replace the fitted combination, each only on evidence from validation.

    The cross-fitted fallback: the layer is cross-fitted on ``folds`` contiguous folds of validation
    against the same layer on the single best member (``selection=1.0``); the member replaces the
    combination only when its out-of-fold F0.5 is higher with the whole ``level`` block-bootstrap
    interval of the difference above zero (the layer's ``fallback_`` records the figures). With few
    validation events the interval is wide and the combination stays; with hundreds, a member that
    clearly beats it is used alone. Unsegmented (series boundaries ignored): the folds are contiguous
    stretches of validation joined end to end anyway, and both sides are scored alike.

    ``no_event``: when the fitted decision finds no validation event at all (validation F0.5 0:
    nothing it does is supported by the labels). ``member`` (with ``fit``'s ``member_rules``, each
    member's own rule as its trial fitted it on validation): if a member's own rule finds some, the
    decision is the member validation picks (the best validation F0.5 with its own rule), as a sweep
    alone would decide (:class:`MemberDecision`). ``pot`` (the combined decision only): the members
    count equally and the threshold is the label-free POT level of the combination, the level its
    nominal validation scores exceed with the rule's ``floor_risk`` (1e-3 if unset), with the rule's
    smoothing and hysteresis; labels only pick the nominal rows. No figure is tuned: it acts only where
    validation shows the combination failing outright (a periodic signal whose nominal peaks every
    member reproduces, a single validation event no calibrated score reaches).
    """

    def __init__(self, folds: int = 3, level: float = 0.9, no_event: str = "member"):
        self.folds = folds
        self.level = level
        self.no_event = no_event
        self._check()

    def _check(self) -> None:
        if isinstance(self.folds, bool) or not isinstance(self.folds, (int, np.integer)) or self.folds < 2 \
                or not 0.0 < float(self.level) < 1.0:
            raise TelemetryError(f"the guard needs >= 2 folds and a level in (0, 1), got {self.folds!r}, {self.level!r}")
        if self.no_event not in NO_EVENT:
            raise TelemetryError(f"unknown no_event guard {self.no_event!r}; choose one of {', '.join(NO_EVENT)}")

    def cross_check(self, layer: "DecisionLayer", scores: np.ndarray, labels: np.ndarray) -> dict:
        """The layer against the same layer on its best member alone, out of fold (ensemble.crossfit):
        ``chosen`` is ``member`` only when the member wins beyond the interval; otherwise (or when a
        fold leaves nothing to fit) ``ensemble``."""
        from ensemble import crossfit

        self._check()

        def runner(selection):
            probe = clone(layer).set_params(guard=None, rule__per_channel=False, combination__selection=selection)

            def fit_predict(s_fit, y_fit, s_fold):
                return probe._fit_combined(s_fit, y_fit, probe.combination, layer.groups_, rank=False).predict(s_fold)
            return fit_predict

        combined, member = thread_map(lambda sel: crossfit.out_of_fold(runner(sel), scores, labels, self.folds),
                                      [layer.combination.selection, 1.0])
        if combined is None or member is None:
            return {"chosen": "ensemble", "why": f"a fold of {self.folds} leaves no event to fit on"}
        cmp = crossfit.compare(labels, member, combined, level=float(self.level), seed=layer.seed)
        chosen = "member" if cmp["candidate_wins"] else "ensemble"
        return {"chosen": chosen, "folds": self.folds, "member_oof_f05": cmp["candidate_f05"],
                "ensemble_oof_f05": cmp["incumbent_f05"], "difference": cmp["difference"],
                "interval": [cmp["lo"], cmp["hi"]], "level": cmp["level"]}

    def when_no_event(self, layer: "DecisionLayer", decision, scores, labels, member_rules=None, segments=None):
        """(decision, what it records) when ``decision`` found no validation event: the replacement
        ``no_event`` names, or ``decision`` itself and None when there is none to make."""
        if self.no_event == "pot" and isinstance(decision, CombinedDecision):
            return self._label_free(layer, decision, scores, labels, segments)
        if member_rules is not None:
            return self._member(layer, decision, scores, labels, member_rules, segments)
        return decision, None

    @staticmethod
    def _label_free(layer, decision: "CombinedDecision", scores, labels, segments=None):
        combination = copy.copy(decision.combination_)  # the fitted combination, its members counting equally
        combination.weights_ = combination.uniform(np.ones(scores.shape[1], dtype=bool))
        combined = combination.transform(decision.calibration_.transform(scores))
        risk = layer.rule.threshold.floor_risk or 1e-3
        rule = layer.rule.threshold_for(decision.rule_.smooth, layer.seed, method="pot", risk=risk, floor_risk=None)
        rule.fit(combined, labels, segments=segments)
        new = CombinedDecision(decision.calibration_, combination, rule, rule_f05(rule, combined, labels, segments),
                               decision.member_val_f05_)
        return new, {"chosen": "label_free", "combination_val_f05": float(decision.val_f05_),
                     "combination_rule": decision.rule_.to_dict(), "risk": risk}

    @staticmethod
    def _member(layer, decision, scores, labels, member_rules, segments=None):
        own = [_f05(labels, r.predict(scores[:, j], segments), segments) for j, r in enumerate(member_rules)]
        j = int(np.argmax(own))  # ties: the earlier member, as Members.picked
        if own[j] <= 0.0:
            return decision, None
        return MemberDecision(j, member_rules[j], decision.combined, float(own[j])), {
            "chosen": "member_rule", "member": layer.names_[j], "member_val_f05": float(own[j]),
            "combination_val_f05": float(decision.val_f05_), "combination_rule": decision.combined.rule_.to_dict()}


# -- the fitted decisions -----------------------------------------------------------------------------

class CombinedDecision:
    """The rule on the combined score: ``calibration_`` -> ``combination_`` -> ``rule_`` (all fitted)."""

    def __init__(self, calibration: Calibration, combination, rule: Threshold, val_f05: float, member_val_f05=None):
        self.calibration_, self.combination_, self.rule_ = calibration, combination, rule
        self.val_f05_, self.member_val_f05_ = float(val_f05), member_val_f05
        self.threshold_ = float(rule.threshold_)

    @property
    def combined(self) -> "CombinedDecision":
        return self

    def score(self, scores, channel_scores=None, segments=None) -> np.ndarray:
        """The combined score per row, before the rule's smoothing."""
        return self.combination_.transform(self.calibration_.transform(np.asarray(scores)))

    def decision_score(self, scores, channel_scores=None, segments=None) -> np.ndarray:
        return self.rule_.smoothed(self.score(scores), segments)

    def predict(self, scores, channel_scores=None, segments=None) -> np.ndarray:
        return self.rule_.predict(self.score(scores), segments)


class ChannelUnionDecision:
    """A row is anomalous when any channel's own rule fires on that channel's ensemble score
    (``channels``: a fitted :class:`ChannelView`); the score is the largest margin of a channel above
    its own threshold (the union fires where it reaches 0, before hysteresis and post-processing).
    ``combined``: the combined decision fitted beside it, which the per-channel scores are weighted by."""

    def __init__(self, combined: CombinedDecision, channels: "ChannelView"):
        self.combined, self.channels = combined, channels
        self.val_f05_, self.threshold_ = float(channels.val_f05_), 0.0

    def score(self, scores, channel_scores=None, segments=None) -> np.ndarray:
        return self.channels.margins(channel_scores, segments).max(axis=1)

    def decision_score(self, scores, channel_scores=None, segments=None) -> np.ndarray:
        return self.score(scores, channel_scores, segments)

    def predict(self, scores, channel_scores=None, segments=None) -> np.ndarray:
        return self.channels.predictions(channel_scores, segments).any(axis=1).astype(np.uint8)


class MemberDecision:
    """One member's raw score with its own fitted rule (the guard's choice); ``combined``: the
    combination fitted and recorded, not used."""

    def __init__(self, member: int, rule: Threshold, combined: CombinedDecision, val_f05: float):
        self.member, self.rule_, self.combined = int(member), rule, combined
        self.val_f05_, self.threshold_ = float(val_f05), float(rule.threshold_)

    def score(self, scores, channel_scores=None, segments=None) -> np.ndarray:
        return np.asarray(scores)[:, self.member].astype(np.float32)

    def decision_score(self, scores, channel_scores=None, segments=None) -> np.ndarray:
        return self.rule_.smoothed(self.score(scores), segments)

    def predict(self, scores, channel_scores=None, segments=None) -> np.ndarray:
        return self.rule_.predict(self.score(scores), segments).astype(np.uint8)


class ChannelView:
    """Each channel's own ensemble score and rule, from the members' per-channel scores [rows, P, C]
    (P of the members, ``members_`` their columns; members without per-channel scores, such as
    isolation_forest, are simply not among them). Channel ``c``'s score combines each member's
    channel-``c`` score calibrated on the validation nominal rows, with the combination's channel
    weights (:meth:`Combination.channel_weights`); its rule is the layer's rule fitted on that score
    with the validation labels. The rules name the channels behind each predicted event, and are the
    decision with :class:`ChannelUnionDecision`."""

    def __init__(self, members, channels, weights: np.ndarray, calibrations: list, method: str):
        self.members_, self.channels_ = np.asarray(members, dtype=np.int64), list(channels)
        self.weights_, self.calibrations_, self.method = weights, calibrations, method

    @classmethod
    def fit(cls, layer: "DecisionLayer", combined: CombinedDecision, channel_scores, labels: np.ndarray,
            channel_members=None, channels=None, segments=None) -> "ChannelView":
        cs = np.asarray(channel_scores, dtype=np.float32)
        if cs.ndim != 3 or cs.shape[0] != labels.shape[0]:
            raise TelemetryError(f"per-channel scores must be [rows, members, channels] with {labels.shape[0]} rows, "
                                 f"got {list(cs.shape)}")
        n_p, n_c = cs.shape[1:]
        m = len(layer.names_)
        members = np.arange(n_p) if channel_members is None else np.asarray(channel_members, dtype=np.int64)
        if members.shape != (n_p,) or (members.size and (members.min() < 0 or members.max() >= m)):
            raise TelemetryError(f"channel_members must name {n_p} of the {m} members, got {members.tolist()}")
        names = [str(c) for c in channels] if channels is not None else [f"channel {k}" for k in range(n_c)]
        if len(names) != n_c:
            raise TelemetryError(f"{len(names)} channel names for {n_c} per-channel score columns")
        nominal = labels == 0
        view = cls(members, names, combined.combination_.channel_weights(members),
                   [clone(layer.calibration).fit(cs[:, p, :], nominal) for p in range(n_p)],
                   combined.combination_.method)
        e = view._combine(cs)
        # As the decision (per_channel), the union's span is searched; as the breakdown of the main
        # decision's events, each channel is smoothed like the main score (a third of the work).
        spans = [int(s) for s in layer.rule.spans] if layer.rule.per_channel else [int(combined.rule_.smooth)]

        def fitted(job):
            span, k = job
            rule = layer.rule.threshold_for(span, layer.seed).fit(e[:, k], labels, segments=segments)
            return rule, rule.predict(e[:, k], segments)

        jobs = [(span, k) for span in spans for k in range(n_c)]
        done = dict(zip(jobs, thread_map(fitted, jobs)))
        best = None
        for span in spans:
            rules = [done[(span, k)][0] for k in range(n_c)]
            union = np.any([done[(span, k)][1] for k in range(n_c)], axis=0).astype(np.uint8)
            f = _f05(labels, union, segments)
            if best is None or f > best[0] + 1e-12:
                best = (f, rules, span)
        view.val_f05_, view.rules_, span = best
        view.val_f05_alone_ = [_f05(labels, done[(span, k)][1], segments) for k in range(n_c)]
        return view

    def checked(self, channel_scores) -> np.ndarray:
        if channel_scores is None:
            raise TelemetryError("the per-channel decision needs the members' per-channel scores of this split")
        cs = np.asarray(channel_scores, dtype=np.float32)
        want = (len(self.members_), len(self.channels_))
        if cs.ndim != 3 or cs.shape[1:] != want:
            raise TelemetryError(f"per-channel scores must be [rows, {want[0]} members, {want[1]} channels], "
                                 f"got {list(cs.shape)}")
        return cs

    def _combine(self, cs: np.ndarray) -> np.ndarray:
        out = None
        # Member by member: never a calibrated copy of the whole [rows, P, C] block.
        for p, cal in enumerate(self.calibrations_):
            if self.weights_[p] <= 0:
                continue
            c = cal.transform(cs[:, p, :])
            if self.method == "max":
                out = c if out is None else np.maximum(out, c)
            else:
                out = c * self.weights_[p] if out is None else out + c * self.weights_[p]
        return out.astype(np.float32)

    def ensemble_scores(self, channel_scores) -> np.ndarray:
        """Each channel's ensemble score [rows, C] (before the channel rule's smoothing)."""
        return self._combine(self.checked(channel_scores))

    def margins(self, channel_scores, segments=None) -> np.ndarray:
        """[rows, C]: each channel's smoothed ensemble score minus its own threshold (>= 0: above it)."""
        return channel_margins(self.rules_, self.ensemble_scores(channel_scores), segments)

    def predictions(self, channel_scores, segments=None) -> np.ndarray:
        """[rows, C] uint8: each channel's own rule on its own ensemble score."""
        e = self.ensemble_scores(channel_scores)
        return np.stack([r.predict(e[:, k], segments) for k, r in enumerate(self.rules_)], axis=1)

    def record(self) -> list[dict]:
        return [{"channel": n, "threshold": float(r.threshold_), "end_threshold": float(r.end_threshold_),
                 "smooth": int(r.smooth), "validation_f05_alone": float(f)}
                for n, r, f in zip(self.channels_, self.rules_, self.val_f05_alone_)]


# -- the layers -----------------------------------------------------------------------------------------

def _plain(value):
    """A parameter as plain data: a component as its mapping, tuples as lists."""
    if isinstance(value, (BaseEstimator, Threshold)):
        return _component_dict(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _component_dict(component) -> dict:
    d = {k: _plain(v) for k, v in component.get_params(deep=False).items()}
    if isinstance(component, Rule):  # its span and seed are set by the rule and the layer
        d["threshold"] = {k: v for k, v in d["threshold"].items() if k not in Rule.SET_HERE}
    elif isinstance(component, Threshold):  # a layer's own rule: its seed is the layer's
        d.pop("seed")
    return d


class BaseLayer(BaseEstimator):
    """What every decision layer shares: plain-data form (``SECTIONS``: each section's component
    class, None where the section may be null), the fitted decision's ``score``, ``decision_score``
    and ``predict``, and the per-channel view (``channel_view_``)."""

    SECTIONS: dict = {}
    NULLABLE: tuple = ()  # the sections that may be null (switched off)

    def to_dict(self) -> dict:
        """The layer as plain data: one mapping per section (null: switched off), and ``seed``.
        :meth:`from_dict` gives the same layer back."""
        return {**{name: _plain(getattr(self, name)) for name in self.SECTIONS}, "seed": int(self.seed)}

    @classmethod
    def from_dict(cls, d, source: str = "decision layer") -> "BaseLayer":
        """The layer a mapping describes (:meth:`to_dict`'s form; a section or key left out takes the
        constructor's default). A bad mapping raises one line naming ``source`` and the key."""
        if not isinstance(d, dict):
            raise TelemetryError(f"{source}: a decision layer must be a mapping of {', '.join(cls.SECTIONS)}, got {d!r}")
        unknown = [k for k in d if k not in cls.SECTIONS and k != "seed"]
        if unknown:
            raise TelemetryError(f"{source}: unknown key {unknown[0]!r}; choose one of {', '.join([*cls.SECTIONS, 'seed'])}")
        kwargs = {}
        for name, klass in cls.SECTIONS.items():
            if name in d:
                kwargs[name] = _section(klass, d[name], f"{source}: {name}", nullable=name in cls.NULLABLE,
                                        exclude=("seed",) if klass is Threshold else ())
        if "seed" in d:
            seed = d["seed"]
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise TelemetryError(f"{source}: seed must be an integer >= 0, got {seed!r}")
            kwargs["seed"] = seed
        return cls(**kwargs)

    # -- the fitted decision ----------------------------------------------------------------------
    def score(self, scores: np.ndarray, channel_scores: np.ndarray | None = None, segments=None) -> np.ndarray:
        """The raw score per row the decision thresholds (before its rule's smoothing; for the
        per-channel union, the largest margin of a channel's smoothed score above its own threshold)."""
        return self.decision_.score(scores, channel_scores, segments)

    def decision_score(self, scores: np.ndarray, channel_scores: np.ndarray | None = None, segments=None) -> np.ndarray:
        """The score as the decision thresholds it (smoothed), to plot against ``threshold_``."""
        return self.decision_.decision_score(scores, channel_scores, segments)

    def predict(self, scores: np.ndarray, channel_scores: np.ndarray | None = None, segments=None) -> np.ndarray:
        """Binary uint8 per row, by the fitted decision."""
        return self.decision_.predict(scores, channel_scores, segments)

    @property
    def threshold_(self) -> float:
        return self.decision_.threshold_

    @property
    def val_f05_(self):
        return self.decision_.val_f05_

    @property
    def weights_(self) -> np.ndarray:
        return self.decision_.combined.combination_.weights_

    def calibrated(self, scores: np.ndarray) -> np.ndarray:
        """Each member's calibrated score [rows, M]."""
        return self.decision_.combined.calibration_.transform(np.asarray(scores))

    @property
    def per_channel_decision(self) -> bool:
        """Whether the fitted decision is the per-channel union."""
        return isinstance(self.decision_, ChannelUnionDecision)

    # -- per channel ----------------------------------------------------------------------------
    @property
    def has_channels(self) -> bool:
        return getattr(self, "channel_view_", None) is not None

    @property
    def channels_(self) -> list[str] | None:
        return self.channel_view_.channels_ if self.has_channels else None

    def _view(self) -> ChannelView:
        if not self.has_channels:
            raise TelemetryError("this ensemble was fitted without per-channel scores")
        return self.channel_view_

    def channel_ensemble_scores(self, channel_scores: np.ndarray) -> np.ndarray:
        """Each channel's ensemble score [rows, C] (before the channel rule's smoothing)."""
        return self._view().ensemble_scores(channel_scores)

    def channel_margins(self, channel_scores: np.ndarray, segments=None) -> np.ndarray:
        """[rows, C]: each channel's smoothed ensemble score minus its own threshold (>= 0: above it)."""
        return self._view().margins(channel_scores, segments)

    def channel_predictions(self, channel_scores: np.ndarray, segments=None) -> np.ndarray:
        """[rows, C] uint8: each channel's own rule on its own ensemble score."""
        return self._view().predictions(channel_scores, segments)


def _section(klass, value, where: str, nullable: bool = False, exclude=()):
    """One section of a layer's mapping as its component (``klass``), or one line naming ``where``."""
    if value is None and nullable:
        return None
    if not isinstance(value, dict):
        raise TelemetryError(f"{where} must be a mapping{' or null' if nullable else ''}, got {value!r}")
    known = [k for k in klass().get_params(deep=False) if k not in exclude]
    unknown = [k for k in value if k not in known]
    if unknown:
        raise TelemetryError(f"{where}: unknown key {unknown[0]!r}; choose one of {', '.join(known)}")
    kwargs = dict(value)
    try:
        if klass is Rule and "threshold" in kwargs:
            kwargs["threshold"] = _section(Threshold, kwargs["threshold"], f"{where}.threshold", exclude=Rule.SET_HERE)
        if klass is Rule and isinstance(kwargs.get("spans"), list):
            kwargs["spans"] = tuple(kwargs["spans"])
        return klass(**kwargs)
    except TelemetryError as e:
        msg = str(e)
        raise TelemetryError(msg if msg.startswith(where) else f"{where}: {msg}") from None
    except (TypeError, ValueError) as e:
        raise TelemetryError(f"{where}: {e}") from None


class DecisionLayer(BaseLayer):
    """The labelled decision layer: ``calibration`` -> ``combination`` -> ``rule`` -> ``guard`` (None:
    no cross-fitted fallback and no guard), every random choice seeded by ``seed``. Left out, each
    component is its class's default: together, the default decision layer (:data:`DEFAULT_LAYER`).

    ``fit(scores, labels, ...)``: ``segments`` (validation's; ``predict`` and the scores: that
    split's) are the boundaries of the independent series the rows are made of (offsets [S+1],
    telemetry.series; None = one series). No rule smooths, extends or merges an event across one, and
    every validation F0.5 that ranks members, weights them or picks a rule counts events per series
    (the guard's cross-fitted check excepted). ``channel_scores`` [rows, P, C] with ``channel_members``
    and ``channels``: the per-channel view (:class:`ChannelView`, ``channel_view_``), the decision with
    ``rule.per_channel``. ``groups``: each member's architecture (default: the name before ``#``).
    ``member_rules``: each member's own fitted rule, for the guard.

    Fitted: ``decision_`` (:class:`CombinedDecision`, :class:`ChannelUnionDecision` or
    :class:`MemberDecision`), ``names_``, ``groups_``, ``member_val_f05_`` (each member's validation
    F0.5 alone), ``channel_view_``, ``fallback_`` (what the guard found; None without one).
    """

    SECTIONS = {"calibration": Calibration, "combination": Combination, "rule": Rule, "guard": Guard}
    NULLABLE = ("guard",)

    def __init__(self, calibration: Calibration | None = None, combination: Combination | None = None,
                 rule: Rule | None = None, guard: Guard | None | str = _DEFAULT, seed: int = 0):
        # None (guard: "default") gives a fresh default component each time: a shared default
        # instance would be changed for every layer by set_params.
        self.calibration = Calibration() if calibration is None else calibration
        self.combination = Combination() if combination is None else combination
        self.rule = Rule() if rule is None else rule
        self.guard = Guard() if isinstance(guard, str) and guard == _DEFAULT else guard
        self.seed = seed

    def fit(self, scores: np.ndarray, labels: np.ndarray, names=None, channel_scores: np.ndarray | None = None,
            channel_members=None, channels=None, segments=None, groups=None, member_rules=None) -> "DecisionLayer":
        scores = np.asarray(scores, dtype=np.float32)
        labels = np.asarray(labels).astype(np.uint8)
        if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
            raise TelemetryError(f"ensemble needs scores [rows, members] matching {labels.shape[0]} labels, got {list(scores.shape)}")
        segments = checked_offsets(segments, scores.shape[0], "validation scores")
        m = scores.shape[1]
        self.names_ = list(names) if names is not None else [f"member_{j}" for j in range(m)]
        # A member's group: its architecture ("conv_ae#1a2b3" -> conv_ae) unless given.
        self.groups_ = [str(g) for g in groups] if groups is not None else [n.split("#")[0] for n in self.names_]
        if len(self.groups_) != m:
            raise TelemetryError(f"{len(self.groups_)} groups for {m} members")
        if member_rules is not None and len(member_rules) != m:
            raise TelemetryError(f"{len(member_rules)} member rules for {m} members")
        self.fallback_ = None
        combined = self._fit_combined(scores, labels, self.combination, self.groups_, segments)
        if self.guard is not None and m > 1:
            self.fallback_ = self.guard.cross_check(self, scores, labels)
            if self.fallback_["chosen"] == "member":
                one = clone(self.combination).set_params(selection=1.0)
                combined = self._fit_combined(scores, labels, one, self.groups_, segments)
                self.fallback_["member"] = self.names_[int(np.argmax(combined.combination_.weights_))]
        self.member_val_f05_ = combined.member_val_f05_
        self.channel_view_ = None
        if channel_scores is not None:
            self.channel_view_ = ChannelView.fit(self, combined, channel_scores, labels, channel_members, channels,
                                                 segments)
        elif self.rule.per_channel:
            raise TelemetryError("the per-channel decision needs the members' per-channel scores; this experiment "
                                 "has none (its members score whole rows only)")
        decision = ChannelUnionDecision(combined, self.channel_view_) if self.rule.per_channel else combined
        if self.guard is not None and decision.val_f05_ <= 0.0:
            decision, found = self.guard.when_no_event(self, decision, scores, labels, member_rules, segments)
            if found is not None:
                self.fallback_ = {**(self.fallback_ or {}), **found}
        self.decision_ = decision
        return self

    def _fit_combined(self, scores: np.ndarray, labels: np.ndarray, combination: Combination, groups,
                      segments=None, rank: bool = True) -> CombinedDecision:
        """Calibrate, weight and fit the rule on the combined score. ``rank=False`` skips each member's
        own F0.5 where selection does not need it (cross-fitting)."""
        calibration = clone(self.calibration).fit(scores, labels == 0)
        cal = calibration.transform(scores)
        rank = rank or combination.selection is not None
        member_f05 = [best_f05(cal[:, j], labels, segments) for j in range(cal.shape[1])] if rank else None
        fitted = clone(combination).fit(cal, labels, groups, segments, seed=self.seed, member_f05=member_f05)
        rule = clone(self.rule).fit(fitted.transform(cal), labels, segments, seed=self.seed)
        return CombinedDecision(calibration, fitted, rule.rule_, rule.val_f05_, member_f05)

    def record(self) -> dict:
        """The fitted layer as plain data (``ensemble.yaml``'s ``ensemble``): its choices and figures,
        and ``layer``, the mapping it was made from (:meth:`to_dict`)."""
        d, combined = self.decision_, self.decision_.combined
        comb = combined.combination_
        return {
            "calibration": self.calibration.method, "combination": self.combination.method,
            "selection": self.combination.selection, "prior": self.combination.prior,
            "guard": None if self.guard is None else self.guard.no_event, "seed": self.seed,
            "members": [{"name": n, "weight": float(w), "calibration": c.to_dict(), "validation_f05_alone": f}
                        for n, w, c, f in zip(self.names_, comb.weights_, combined.calibration_.calibrators_,
                                              self.member_val_f05_)],
            # The rule the decision uses: the member's own when the guard chose one.
            "rule": d.rule_.to_dict() if isinstance(d, MemberDecision) else combined.rule_.to_dict(),
            "validation_f05": float(d.val_f05_), "per_channel": isinstance(d, ChannelUnionDecision),
            "channels": self.channel_view_.record() if self.has_channels else None,
            "channel_union_validation_f05": float(self.channel_view_.val_f05_) if self.has_channels else None,
            "fallback": self.fallback_,
            "layer": self.to_dict(),
        }


DEFAULT_LAYER = DecisionLayer().to_dict()  # the default decision layer as plain data (derived, not a second copy)


def read_yaml(path) -> object:
    """A YAML file's content, or one line naming the file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise TelemetryError(f"{p}: decision file not found")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise TelemetryError(f"{p}: not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None


def read_layer(path) -> DecisionLayer:
    """The decision layer a YAML file describes (:meth:`DecisionLayer.to_dict`'s mapping). A bad file
    raises one line naming it and the key, before anything is fitted."""
    return DecisionLayer.from_dict(read_yaml(path), source=str(path))


def load_layers(path) -> dict[str, dict]:
    """Named decision layers from a YAML file of ``name: mapping`` (benchmarks/layers.yaml), each
    checked by building it; the mappings are returned as read."""
    named = read_yaml(path)
    if not isinstance(named, dict) or not named:
        raise TelemetryError(f"{path}: expected a mapping of layer names to decision layers")
    for name, d in named.items():
        DecisionLayer.from_dict(d, source=f"{path}: {name}")
    return named
