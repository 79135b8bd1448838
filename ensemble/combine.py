"""The ensemble estimator (the decision layer): calibrate members, select, combine, then one
threshold rule (smoothing -> threshold -> hysteresis -> post-processing) fitted on validation.

Everything is fitted on the validation split alone; holdout and test are only transformed.
Validation often holds a handful of events, so each step has few free choices. The default, chosen
by the quality benchmark over synthetic missions and real series: members calibrated on nominal
rows (robust z, compressed logarithmically beyond one unit so that no single member's spike carries
the combination alone; no labels); weights from a strongly L2-regularised logistic regression, pulled
halfway toward uniform; the score smoothed (span 1, 5 or 25, the one validation prefers); the
threshold in the middle of the near-best F0.5 range rather than at its edge; hysteresis, so an
event lasts until the score falls halfway back to the nominal median instead of flickering; and a
cross-fitted check that falls back to the best member alone only when validation shows, beyond its
bootstrap interval, that the member is better out of fold (ensemble.crossfit).

Per channel (Telemanom's way, and the ESA-ADB paper's channel-aware view): given the members'
per-channel scores, each channel gets its own ensemble score (each member's channel score calibrated
on the validation nominal rows, combined with the main score's weights) and its own rule (the same
:class:`Threshold` settings, fitted on validation). ``per_channel=True`` makes the decision the union
of the channels' predictions; either way those rules name the channels behind each predicted event.
"""
from __future__ import annotations

import itertools
import logging
import time

import numpy as np

from ensemble.calibration import Calibrator
from telemetry.errors import TelemetryError
from telemetry.series import checked_offsets
from telemetry.threads import thread_map
from detection.thresholds import Threshold, f05_curve

STACK_ROWS = 500_000  # rows the stacking regression sees at most (every k-th row beyond that)
COMBINATIONS = ("mean", "median", "max", "weighted", "shrunk", "stack")
PRIORS = ("member", "architecture")
GUARDS = ("member", "pot")  # what decides when the fitted decision finds no validation event
# The decision layer chosen by benchmarks/bench_quality.py (see benchmarks/RESULTS.md).
DEFAULT_RULE = {"method": "plateau", "hysteresis": 0.5, "floor_risk": 1e-3}


def best_f05(scores: np.ndarray, labels: np.ndarray, segments=None) -> float:
    """Best corrected event-wise F0.5 over every threshold (exact, one sort), events counted per
    series of ``segments``."""
    return float(f05_curve(scores, labels, segments=segments)[1].max())


class Ensemble:
    """Members' scores [N, M] -> one score per row -> binary predictions.

    calibration: ``z``, ``robust_z``, ``normal`` or ``robust_log`` on each member's validation nominal rows.
    selection: keep the members whose validation F0.5 alone is at least ``selection`` x the best
    member's (None keeps all). combination: ``mean`` or ``max`` of calibrated scores; ``weighted``
    (non-negative weights searched with seeded Optuna TPE on validation F0.5); ``shrunk`` (those
    weights pulled toward uniform by ``shrinkage``); ``stack`` (non-negative coefficients of an
    L2-regularised, class-balanced logistic regression, ``stack_c``, pulled toward uniform by
    ``shrinkage``). rule: a :class:`Threshold` as a dict (its
    ``smooth`` is replaced by each of ``spans`` in turn and the span with the best validation F0.5
    kept; ties keep the earlier). ``post_grid``: also search min event length x gap merging
    (the old default; many choices on few events).

    Per-channel scores ``channel_scores`` [rows, P, C] (P of the members, ``channel_members`` their
    columns in ``scores``; members without per-channel scores, such as isolation_forest, are simply
    not among them) give each channel ``c`` an ensemble score: ``max`` combination, the max over
    the P members with weight; otherwise their weights renormalised over the P (uniform if those are
    all 0) times each member's channel-``c`` score calibrated on the validation nominal rows. Each
    channel's rule is ``rule`` fitted on that score with the validation labels, the smoothing span
    (from ``spans``) being the one whose union over channels has the best validation F0.5.
    ``per_channel``: the decision is that union (a row is anomalous when any channel's own rule
    fires) instead of the main rule on the combined score; ``score`` is then the largest margin of a
    channel above its own threshold (the union fires where it reaches 0, before hysteresis and
    post-processing).

    ``fallback`` (default on): after fitting, the layer is cross-fitted on ``fallback_folds``
    contiguous folds of validation against the same layer on the single best member
    (``selection=1.0``); the member replaces the combination only when its out-of-fold F0.5 is higher
    with the whole ``fallback_level`` block-bootstrap interval of the difference above zero
    (``fallback_`` records the figures). With few validation events the interval is wide and the
    combination stays; with hundreds, a member that clearly beats it is used alone.

    ``member_rules`` (``fit``, optional: each member's own rule as its trial fitted it on validation,
    fitted :class:`Threshold` objects on the raw member scores): a guard, on with ``fallback``. When the
    fitted decision finds no validation event at all (validation F0.5 0: nothing it does is supported
    by the labels) and a member's own rule finds some, the decision is the member validation picks
    (the best validation F0.5 with its own rule) with that rule, as a sweep alone would decide; the
    combination stays fitted and recorded (``member_rule_``: (member, rule); ``fallback_``). No figure
    is tuned: it acts only where validation shows the combination failing outright (a periodic signal
    whose nominal peaks every member reproduces, a single validation event no calibrated score reaches).

    ``segments`` (``fit``: validation's; ``predict`` and the scores: that split's): the boundaries
    of the independent series the rows are made of (offsets [S+1], telemetry.series; None = one
    series). No rule smooths, extends or merges an event across one, and every validation F0.5 that
    ranks members, weights them or picks a rule counts events per series (the cross-fitted check
    excepted: :meth:`_cross_check`).
    """

    def __init__(self, calibration: str = "robust_log", combination: str = "stack", selection: float | None = None,
                 rule: dict | None = None, spans=(1, 5, 25), post_grid: bool = False, weight_trials: int = 60,
                 shrinkage: float = 0.5, stack_c: float = 0.01, per_channel: bool = False, fallback: bool = True,
                 fallback_folds: int = 3, fallback_level: float = 0.9, prior: str = "member", guard: str = "member",
                 seed: int = 0):
        if combination not in COMBINATIONS:
            raise TelemetryError(f"unknown combination {combination!r}; choose one of {', '.join(COMBINATIONS)}")
        if selection is not None and not 0.0 <= float(selection) <= 1.0:
            raise TelemetryError(f"selection must be a fraction in [0, 1] of the best member's F0.5, got {selection!r}")
        self.calibration = calibration
        self.combination = combination
        self.selection = selection
        self.rule = dict(DEFAULT_RULE if rule is None else rule)
        Threshold(**self.rule)  # a bad rule fails here, before anything is fitted
        self.spans = tuple(int(s) for s in spans)
        self.post_grid = post_grid
        self.weight_trials = weight_trials
        if not 0.0 <= float(shrinkage) <= 1.0:
            raise TelemetryError(f"shrinkage must be in [0, 1], got {shrinkage!r}")
        self.shrinkage = shrinkage
        self.stack_c = stack_c
        self.per_channel = bool(per_channel)
        self.fallback = bool(fallback)
        if int(fallback_folds) < 2 or not 0.0 < float(fallback_level) < 1.0:
            raise TelemetryError(f"fallback needs >= 2 folds and a level in (0, 1), got {fallback_folds!r}, {fallback_level!r}")
        self.fallback_folds = int(fallback_folds)
        self.fallback_level = float(fallback_level)
        if prior not in PRIORS:
            raise TelemetryError(f"unknown prior {prior!r}; choose one of {', '.join(PRIORS)}")
        self.prior = prior
        if guard not in GUARDS:
            raise TelemetryError(f"unknown guard {guard!r}; choose one of {', '.join(GUARDS)}")
        self.guard = guard
        self.seed = seed

    def get_params(self) -> dict:
        """The constructor's parameters (what a clone needs)."""
        return {k: getattr(self, k) for k in ("calibration", "combination", "selection", "rule", "spans", "post_grid",
                                              "weight_trials", "shrinkage", "stack_c", "per_channel", "fallback",
                                              "fallback_folds", "fallback_level", "prior", "guard", "seed")}

    def calibrated(self, scores: np.ndarray) -> np.ndarray:
        return np.stack([c.transform(scores[:, j]) for j, c in enumerate(self.calibrators_)], axis=1)

    def combine(self, calibrated: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        if self.combination == "max":
            return calibrated[:, self.weights_ > 0].max(axis=1)
        if self.combination == "median":  # a row scores high only where most members agree
            return np.median(calibrated[:, self.weights_ > 0], axis=1).astype(np.float32)
        w = self.weights_ if weights is None else weights
        return (calibrated @ w).astype(np.float32)

    def score(self, scores: np.ndarray, channel_scores: np.ndarray | None = None, segments=None) -> np.ndarray:
        """The raw ensemble score per row (before the rule's smoothing); with ``per_channel``, the
        largest margin of a channel's smoothed score above its own threshold."""
        if self._guarded is not None:  # the guard chose a member with its own rule: its raw score
            return np.asarray(scores)[:, self._guarded[0]].astype(np.float32)
        if self.per_channel:
            return self.channel_margins(self._need_channels(channel_scores), segments).max(axis=1)
        return self.combine(self.calibrated(np.asarray(scores)))

    def decision_score(self, scores: np.ndarray, channel_scores: np.ndarray | None = None, segments=None) -> np.ndarray:
        """The score as the decision thresholds it (smoothed), to plot against ``threshold_``."""
        if self._guarded is not None:
            return self._guarded[1].smoothed(self.score(scores), segments)
        if self.per_channel:
            return self.score(scores, channel_scores, segments)
        return self.rule_.smoothed(self.score(scores), segments)

    def predict(self, scores: np.ndarray, channel_scores: np.ndarray | None = None, segments=None) -> np.ndarray:
        """Binary uint8 per row: the main rule on the combined score, or the union over channels (or,
        where the guard chose it, the member validation picks with its own rule)."""
        if self._guarded is not None:
            return self._guarded[1].predict(self.score(scores), segments).astype(np.uint8)
        if self.per_channel:
            return self.channel_predictions(self._need_channels(channel_scores), segments).any(axis=1).astype(np.uint8)
        return self.rule_.predict(self.score(scores), segments)

    @property
    def _guarded(self):
        """(member, rule) when the guard replaced the decision (``fit``); None otherwise, and for the
        layers the cross-check fits without ``fit``."""
        return getattr(self, "member_rule_", None)

    # -- per channel --------------------------------------------------------------------------------
    @property
    def has_channels(self) -> bool:
        return getattr(self, "channel_rules_", None) is not None

    def _need_channels(self, channel_scores) -> np.ndarray:
        if not self.has_channels:
            raise TelemetryError("this ensemble was fitted without per-channel scores")
        if channel_scores is None:
            raise TelemetryError("the per-channel decision needs the members' per-channel scores of this split")
        cs = np.asarray(channel_scores, dtype=np.float32)
        want = (len(self.channel_members_), len(self.channels_))
        if cs.ndim != 3 or cs.shape[1:] != want:
            raise TelemetryError(f"per-channel scores must be [rows, {want[0]} members, {want[1]} channels], "
                                 f"got {list(cs.shape)}")
        return cs

    def channel_ensemble_scores(self, channel_scores: np.ndarray) -> np.ndarray:
        """Each channel's ensemble score [rows, C] (before the channel rule's smoothing)."""
        return self._combine_channels(self._need_channels(channel_scores))

    def _combine_channels(self, cs: np.ndarray) -> np.ndarray:
        out = None
        # Member by member: never a calibrated copy of the whole [rows, P, C] block.
        for p, cals in enumerate(self.channel_calibrators_):
            if self._channel_weights_[p] <= 0:
                continue
            cal = np.stack([c.transform(cs[:, p, k]) for k, c in enumerate(cals)], axis=1)
            if self.combination == "max":
                out = cal if out is None else np.maximum(out, cal)
            else:
                out = cal * self._channel_weights_[p] if out is None else out + cal * self._channel_weights_[p]
        return out.astype(np.float32)

    def channel_margins(self, channel_scores: np.ndarray, segments=None) -> np.ndarray:
        """[rows, C]: each channel's smoothed ensemble score minus its own threshold (>= 0: above it)."""
        return channel_margins(self.channel_rules_, self.channel_ensemble_scores(channel_scores), segments)

    def channel_predictions(self, channel_scores: np.ndarray, segments=None) -> np.ndarray:
        """[rows, C] uint8: each channel's own rule on its own ensemble score."""
        e = self.channel_ensemble_scores(channel_scores)
        return np.stack([r.predict(e[:, k], segments) for k, r in enumerate(self.channel_rules_)], axis=1)

    def _fit_channels(self, channel_scores, labels: np.ndarray, channel_members, channels, segments=None) -> None:
        cs = np.asarray(channel_scores, dtype=np.float32)
        if cs.ndim != 3 or cs.shape[0] != labels.shape[0]:
            raise TelemetryError(f"per-channel scores must be [rows, members, channels] with {labels.shape[0]} rows, "
                                 f"got {list(cs.shape)}")
        n_p, n_c = cs.shape[1:]
        members = np.arange(n_p) if channel_members is None else np.asarray(channel_members, dtype=np.int64)
        if members.shape != (n_p,) or (members.size and (members.min() < 0 or members.max() >= len(self.names_))):
            raise TelemetryError(f"channel_members must name {n_p} of the {len(self.names_)} members, got {members.tolist()}")
        self.channel_members_ = members
        self.channels_ = [str(c) for c in channels] if channels is not None else [f"channel {k}" for k in range(n_c)]
        if len(self.channels_) != n_c:
            raise TelemetryError(f"{len(self.channels_)} channel names for {n_c} per-channel score columns")
        w = self.weights_[members].astype(np.float64)
        if self.combination == "max":  # the max takes the members with weight, each as it is
            w = (w > 0).astype(np.float64) if (w > 0).any() else np.ones(n_p)
        else:
            w = w / w.sum() if w.sum() > 0 else np.full(n_p, 1.0 / n_p)
        self._channel_weights_ = w
        nominal = labels == 0
        self.channel_calibrators_ = [[Calibrator(self.calibration).fit(cs[:, p, k], nominal) for k in range(n_c)]
                                     for p in range(n_p)]
        e = self._combine_channels(cs)
        # As the decision (per_channel), the union's span is searched; as the breakdown of the main
        # decision's events, each channel is smoothed like the main score (a third of the work).
        spans = self.spans if self.per_channel else (int(self.rule_.smooth),)

        def fitted(job):
            span, k = job
            rule = Threshold(**{**self.rule, "smooth": span, "seed": self.seed}).fit(e[:, k], labels, segments=segments)
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
        self.channel_val_f05_, self.channel_rules_, span = best
        self.channel_val_f05_alone_ = [_f05(labels, done[(span, k)][1], segments) for k in range(n_c)]

    def fit(self, scores: np.ndarray, labels: np.ndarray, names=None, channel_scores: np.ndarray | None = None,
            channel_members=None, channels=None, segments=None, groups=None, member_rules=None) -> "Ensemble":
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
        self.fallback_ = None
        self.member_rule_ = None
        if member_rules is not None and len(member_rules) != m:
            raise TelemetryError(f"{len(member_rules)} member rules for {m} members")
        self._fit_main(scores, labels, self.selection, segments=segments)
        if self.fallback and m > 1:
            self.fallback_ = self._cross_check(scores, labels)
            if self.fallback_["chosen"] == "member":
                self._fit_main(scores, labels, 1.0, segments=segments)
                self.fallback_["member"] = self.names_[int(np.argmax(self.weights_))]
        self.channel_rules_ = None
        if channel_scores is not None:
            self._fit_channels(channel_scores, labels, channel_members, channels, segments)
        elif self.per_channel:
            raise TelemetryError("the per-channel decision needs the members' per-channel scores; this experiment "
                                 "has none (trials from before they were stored, or members without them)")
        if self.per_channel:  # the decision is the union: its F0.5, and margins thresholded at 0
            self.val_f05_, self.threshold_ = self.channel_val_f05_, 0.0
        if self.fallback and self.val_f05_ <= 0.0:
            if self.guard == "pot" and not self.per_channel:
                self._guard_label_free(scores, labels, segments)
            elif member_rules is not None:
                self._guard(scores, labels, member_rules, segments)
        return self

    def _guard_label_free(self, scores: np.ndarray, labels: np.ndarray, segments=None) -> None:
        """The decision found no validation event: nothing fitted on the labels is supported, so the
        members count equally and the threshold is the label-free POT level of the combination (the
        level its nominal validation scores exceed with the rule's ``floor_risk``, 1e-3 if unset), with
        the rule's smoothing and hysteresis; labels only pick the nominal rows."""
        combination_f05, combination_rule = float(self.val_f05_), self.rule_.to_dict()
        self.weights_ = self.uniform(np.ones(scores.shape[1], dtype=bool))
        combined = self.combine(self.calibrated(scores))
        risk = self.rule.get("floor_risk") or 1e-3
        params = {**self.rule, "method": "pot", "risk": risk, "floor_risk": None, "smooth": int(self.rule_.smooth),
                  "seed": self.seed}
        self.rule_ = Threshold(**params).fit(combined, labels, segments=segments)
        self.val_f05_, self.threshold_ = rule_f05(self.rule_, combined, labels, segments), self.rule_.threshold_
        self.fallback_ = {**(self.fallback_ or {}), "chosen": "label_free", "combination_val_f05": combination_f05,
                          "combination_rule": combination_rule, "risk": risk}

    def _guard(self, scores: np.ndarray, labels: np.ndarray, member_rules, segments=None) -> None:
        """The decision found no validation event: use the member validation picks with its own rule,
        if that rule finds any (see the class docstring)."""
        own = [_f05(labels, r.predict(scores[:, j], segments), segments) for j, r in enumerate(member_rules)]
        j = int(np.argmax(own))  # ties: the earlier member, as Members.picked
        if own[j] <= 0.0:
            return
        rule = member_rules[j]
        self.fallback_ = {**(self.fallback_ or {}), "chosen": "member_rule", "member": self.names_[j],
                          "member_val_f05": float(own[j]), "combination_val_f05": float(self.val_f05_),
                          "combination_rule": self.rule_.to_dict()}
        self.member_rule_ = (j, rule)
        self.val_f05_, self.threshold_ = float(own[j]), float(rule.threshold_)

    def _fit_main(self, scores: np.ndarray, labels: np.ndarray, selection: float | None, rank: bool = True,
                  segments=None) -> None:
        """Calibrate, select, weight and fit the rule on the combined score (the main decision).
        ``rank=False`` skips each member's own F0.5 where selection does not need it (cross-fitting)."""
        m = scores.shape[1]
        nominal = labels == 0
        self.calibrators_ = [Calibrator(self.calibration).fit(scores[:, j], nominal) for j in range(m)]
        cal = self.calibrated(scores)
        rank = rank or selection is not None
        self.member_val_f05_ = [best_f05(cal[:, j], labels, segments) for j in range(m)] if rank else None
        active = np.ones(m, dtype=bool)
        if selection is not None:
            active = np.asarray(self.member_val_f05_) >= float(selection) * max(self.member_val_f05_)
        self.weights_ = self.uniform(active)
        if self.combination in ("weighted", "shrunk") and active.sum() > 1:
            w = np.zeros(m)
            w[active] = self._fit_weights(cal[:, active], labels, segments)
            if self.combination == "shrunk":
                w = float(self.shrinkage) * self.weights_ + (1.0 - float(self.shrinkage)) * w
            self.weights_ = w
        elif self.combination == "stack" and active.sum() > 1:
            w = self._fit_stack(cal, labels, active)
            self.weights_ = float(self.shrinkage) * self.weights_ + (1.0 - float(self.shrinkage)) * w
        self._fit_rule(self.combine(cal), labels, segments)

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

    def _cross_check(self, scores: np.ndarray, labels: np.ndarray) -> dict:
        """Cross-fitted on validation (ensemble.crossfit): this layer against the same layer on the best
        member alone (``selection=1.0``). The member is chosen only when it is better out of fold with
        the whole ``fallback_level`` interval above zero; otherwise (or when a fold leaves nothing to fit)
        the combination stays.

        Unsegmented (series boundaries ignored): the folds are contiguous stretches of validation
        joined end to end anyway, and both sides of the comparison are scored alike."""
        from ensemble import crossfit

        base = {**self.get_params(), "fallback": False, "per_channel": False}

        def runner(selection):
            def fit_predict(s_fit, y_fit, s_fold):
                e = Ensemble(**{**base, "selection": selection})
                e.groups_ = self.groups_
                e._fit_main(s_fit, y_fit, selection, rank=False)
                return e.predict(s_fold)
            return fit_predict

        combined, member = thread_map(lambda sel: crossfit.out_of_fold(runner(sel), scores, labels, self.fallback_folds),
                                      [self.selection, 1.0])
        if combined is None or member is None:
            return {"chosen": "ensemble", "why": f"a fold of {self.fallback_folds} leaves no event to fit on"}
        cmp = crossfit.compare(labels, member, combined, level=self.fallback_level, seed=self.seed)
        chosen = "member" if cmp["candidate_wins"] else "ensemble"
        return {"chosen": chosen, "folds": self.fallback_folds, "member_oof_f05": cmp["candidate_f05"],
                "ensemble_oof_f05": cmp["incumbent_f05"], "difference": cmp["difference"],
                "interval": [cmp["lo"], cmp["hi"]], "level": cmp["level"]}

    def _fit_rule(self, combined: np.ndarray, labels: np.ndarray, segments=None) -> None:
        posts = itertools.product((1, 3, 10, 30), (0, 5, 20, 100)) if self.post_grid else [(None, None)]
        def fitted(choice):
            span, (min_len, gap) = choice
            params = {**self.rule, "smooth": span, "seed": self.seed}
            if min_len is not None:
                params.update(min_length=min_len, max_gap=gap)
            rule = Threshold(**params).fit(combined, labels, segments=segments)
            return rule_f05(rule, combined, labels, segments), rule

        best = None
        for f, rule in thread_map(fitted, list(itertools.product(self.spans, list(posts)))):
            if best is None or f > best[0] + 1e-12:  # in the serial order: ties keep the earlier
                best = (f, rule)
        self.val_f05_, self.rule_ = best
        self.threshold_ = self.rule_.threshold_

    def _fit_weights(self, cal: np.ndarray, labels: np.ndarray, segments=None) -> np.ndarray:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        m = cal.shape[1]

        def weights_of(trial):
            raw = np.array([trial.suggest_float(f"w{j}", 0.0, 1.0) for j in range(m)])
            return raw / raw.sum() if raw.sum() > 0 else np.full(m, 1.0 / m)

        def objective(trial):
            return best_f05(cal @ weights_of(trial), labels, segments)

        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=self.seed))
        study.enqueue_trial({f"w{j}": 1.0 for j in range(m)})  # the plain mean is always a candidate
        for j in range(m):  # and each member alone
            study.enqueue_trial({f"w{k}": float(k == j) for k in range(m)})
        n_trials = max(self.weight_trials, m + 1)
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

    def to_dict(self) -> dict:
        return {
            "calibration": self.calibration, "combination": self.combination, "selection": self.selection,
            "prior": self.prior, "guard": self.guard, "seed": self.seed,
            "members": [{"name": n, "weight": float(w), "calibration": c.to_dict(), "validation_f05_alone": f}
                        for n, w, c, f in zip(self.names_, self.weights_, self.calibrators_, self.member_val_f05_)],
            # The rule the decision uses: the guard's member rule when it acted (fallback: the combination's).
            "rule": (self.rule_ if self.member_rule_ is None else self.member_rule_[1]).to_dict(),
            "validation_f05": float(self.val_f05_), "per_channel": self.per_channel and self.member_rule_ is None,
            "channels": None if not self.has_channels else [
                {"channel": n, "threshold": float(r.threshold_), "end_threshold": float(r.end_threshold_),
                 "smooth": int(r.smooth), "validation_f05_alone": float(f)}
                for n, r, f in zip(self.channels_, self.channel_rules_, self.channel_val_f05_alone_)],
            "channel_union_validation_f05": float(self.channel_val_f05_) if self.has_channels else None,
            "fallback": self.fallback_,
        }


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


# Named decision layers compared by the quality benchmark (benchmarks/bench_quality.py); the first is
# the default of Ensemble() and of `ensemble build`. Each lists every choice it makes.
_PLAIN = {"calibration": "robust_z", "combination": "mean", "selection": None, "shrinkage": 0.0, "spans": (1,),
          "rule": {"method": "plateau"}, "post_grid": False, "per_channel": False, "fallback": False}
_SPANS = (1, 5, 25)
_HYST = {"method": "plateau", "hysteresis": 0.5}
# Members on log-compressed robust z (one member's spike cannot carry the combination alone:
# ensemble.calibration), stacked with weights shrunk toward uniform, smoothing span and plateau
# threshold with hysteresis, cross-checked on validation against the best member alone
# (ensemble.crossfit), which replaces it only when better out of fold beyond doubt.
_LOGZ_STACK = {**_PLAIN, "calibration": "robust_log", "combination": "stack", "shrinkage": 0.5, "spans": _SPANS,
               "rule": _HYST, "fallback": True}
VARIANTS = {
    # The default: _LOGZ_STACK with the threshold never below the POT level that validation's
    # nominal scores exceed with probability 1e-3 per row (a labelled threshold reaching down for a
    # subtle validation event otherwise sits among the nominal peaks later data reach).
    "logz-stack-shrunk-smooth-plateau-hysteresis-fallback-floor-1e-3": {**_LOGZ_STACK,
                                                                        "rule": {**_HYST, "floor_risk": 1e-3}},
    # The default with equal prior weight per architecture instead of per member (Ensemble.uniform).
    "logz-stack-shrunk-smooth-plateau-hysteresis-fallback-floor-1e-3-archprior": {
        **_LOGZ_STACK, "rule": {**_HYST, "floor_risk": 1e-3}, "prior": "architecture"},
    # A higher floor: binds more often (fewer false events, fewer subtle events found).
    "logz-stack-shrunk-smooth-plateau-hysteresis-fallback-floor-1e-4": {**_LOGZ_STACK,
                                                                        "rule": {**_HYST, "floor_risk": 1e-4}},
    # The default's calibration, rule and floor on the max of the members instead of their stack:
    # an event that one member alone sees strongly is not averaged away (the recall the stack gives
    # up on the demo's forecaster-only events), at the price of every member's nominal peaks.
    "logz-max-smooth-plateau-hysteresis-fallback-floor-1e-3": {**_LOGZ_STACK, "combination": "max",
                                                               "rule": {**_HYST, "floor_risk": 1e-3}},
    # Without the floor (the default until the quality benchmark of 2026-12-02 16:30).
    "logz-stack-shrunk-smooth-plateau-hysteresis-fallback": dict(_LOGZ_STACK),
    # The same on plain robust z (the default until the quality benchmark of 2026-12-02 14:40).
    "stack-shrunk-smooth-plateau-hysteresis-fallback": {**_PLAIN, "combination": "stack", "shrinkage": 0.5,
                                                        "spans": _SPANS, "rule": _HYST, "fallback": True},
    "stack-shrunk-smooth-plateau-hysteresis": {**_PLAIN, "combination": "stack", "shrinkage": 0.5, "spans": _SPANS,
                                               "rule": _HYST},
    "legacy-weighted-edge": {**_PLAIN, "combination": "weighted", "rule": {"method": "best_f05"}, "post_grid": True},
    "mean-edge": {**_PLAIN, "rule": {"method": "best_f05"}},
    "mean-plateau": dict(_PLAIN),
    "mean-bootstrap": {**_PLAIN, "rule": {"method": "bootstrap"}},
    "mean-pot-1e-3": {**_PLAIN, "rule": {"method": "pot", "risk": 1e-3}},
    "mean-pot-1e-4": {**_PLAIN, "rule": {"method": "pot", "risk": 1e-4}},
    "mean-pot-1e-3-smooth": {**_PLAIN, "rule": {"method": "pot", "risk": 1e-3}, "spans": _SPANS},
    "mean-smooth-plateau": {**_PLAIN, "spans": _SPANS},
    "mean-plateau-hysteresis": {**_PLAIN, "rule": _HYST},
    "mean-smooth-plateau-hysteresis": {**_PLAIN, "rule": _HYST, "spans": _SPANS},
    "select-mean-plateau": {**_PLAIN, "selection": 0.8},
    "shrunk-plateau": {**_PLAIN, "combination": "shrunk", "shrinkage": 0.5},
    "stack-plateau": {**_PLAIN, "combination": "stack"},
    "stack-smooth-plateau": {**_PLAIN, "combination": "stack", "spans": _SPANS},
    "stack-shrunk-smooth-plateau": {**_PLAIN, "combination": "stack", "shrinkage": 0.5, "spans": _SPANS},
    "max-plateau": {**_PLAIN, "combination": "max"},
    "median-smooth-plateau-hysteresis": {**_PLAIN, "combination": "median", "spans": _SPANS, "rule": _HYST},
    "rankmean-plateau": {**_PLAIN, "calibration": "normal"},
    "logz-mean-smooth-plateau-hysteresis": {**_PLAIN, "calibration": "robust_log", "rule": _HYST, "spans": _SPANS},
    # The default's choices, but each channel thresholded on its own and the union taken (Telemanom);
    # needs the members' per-channel scores.
    "channel-union-stack-shrunk-smooth-plateau-hysteresis": {**_PLAIN, "combination": "stack", "shrinkage": 0.5,
                                                             "spans": _SPANS, "rule": _HYST, "per_channel": True},
}
