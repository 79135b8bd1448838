"""Cross-fitting on validation and the ensemble's fallback to its best member."""
import numpy as np
import pytest

from ensemble import crossfit
from ensemble.calibration import Calibration
from ensemble.combine import Combination, CombinedDecision, DecisionLayer, Guard, MemberDecision, Rule
from detection.thresholds import Threshold
from telemetry.errors import TelemetryError


def test_out_of_fold_fits_on_the_other_folds_and_predicts_each_fold_once():
    y = np.zeros(9, np.uint8)
    y[[1, 4, 7]] = 1  # one event per fold
    seen = []

    def fit_predict(s_fit, y_fit, s_fold):
        seen.append((s_fit.tolist(), y_fit.tolist()))
        return (s_fold > 100).astype(np.uint8) + (s_fold == s_fold.max())  # marks each fold's largest row

    s = np.arange(9.0)
    out = crossfit.out_of_fold(fit_predict, s, y, n_folds=3)
    assert seen[0][0] == [3, 4, 5, 6, 7, 8] and seen[1][0] == [0, 1, 2, 6, 7, 8] and seen[2][0] == [0, 1, 2, 3, 4, 5]
    assert seen[1][1] == [0, 1, 0, 0, 1, 0]  # labels travel with their rows
    np.testing.assert_array_equal(out, [0, 0, 1, 0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(crossfit.fold_edges(10, 3), [0, 3, 6, 10])


def test_out_of_fold_is_none_when_a_training_part_has_no_event():
    y = np.zeros(9, np.uint8)
    y[1] = 1  # the only event is in fold 0: folds 1 and 2 cannot teach a threshold for it
    assert crossfit.out_of_fold(lambda a, b, c: np.zeros(len(c), np.uint8), np.arange(9.0), y, 3) is None


def test_compare_wins_only_when_the_whole_interval_is_above_zero():
    y = np.zeros(2000, np.uint8)
    for lo in range(20, 2000, 100):
        y[lo:lo + 5] = 1  # 20 events
    perfect = y.copy()
    worse = y.copy()
    worse[60:62] = 1  # one false run in each of the first ten gaps
    for lo in range(160, 1000, 100):
        worse[lo:lo + 2] = 1
    c = crossfit.compare(y, perfect, worse, resamples=300)
    assert c["candidate_f05"] == 1.0 and c["incumbent_f05"] < 1.0 and c["lo"] > 0 and c["candidate_wins"]
    same = crossfit.compare(y, worse, worse, resamples=300)
    assert (same["difference"], same["lo"], same["hi"], same["candidate_wins"]) == (0.0, 0.0, 0.0, False)


def spiky_validation(n=30_000, n_events=30, seed=0):
    """Member 0 separates every event cleanly; member 1 sees the events too, weaker, and fires on
    nominal spikes of its own: any weight on it adds false events."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, np.uint8)
    for lo in np.linspace(500, n - 500, n_events).astype(int):
        y[lo:lo + 20] = 1
    clean = rng.normal(0, 1, n) + 6 * y
    spiky = rng.normal(0, 1, n) + 4 * y
    for lo in rng.integers(0, n - 30, 60):
        if not y[lo:lo + 30].any():
            spiky[lo:lo + 10] += 9
    return np.stack([clean, spiky], 1).astype(np.float32), y


def test_fallback_picks_the_best_member_when_it_wins_out_of_fold():
    s, y = spiky_validation()
    # on plain robust z the spiky member's false runs carry the mean (log compression would damp them)
    plain = DecisionLayer(Calibration("robust_z"), Combination("mean"), guard=None).fit(s, y, ["clean", "spiky"])
    ens = DecisionLayer(Calibration("robust_z"), Combination("mean")).fit(s, y, ["clean", "spiky"])
    fb = ens.fallback_
    assert fb["chosen"] == "member" and fb["member"] == "clean" and fb["interval"][0] > 0
    assert fb["member_oof_f05"] > fb["ensemble_oof_f05"]
    np.testing.assert_array_equal(ens.weights_, [1.0, 0.0])
    np.testing.assert_array_equal(plain.weights_, [0.5, 0.5])
    assert ens.record()["fallback"]["member"] == "clean"
    assert ens.val_f05_ >= plain.val_f05_


def test_log_calibration_keeps_one_members_spikes_from_carrying_the_mean():
    """The same two members: on robust z the spiky member's 9-std nominal runs push the mean over
    any threshold that catches the events; log-compressed, they count for little beside the clean
    member's agreement, and a fresh draw of the same data shows fewer false events."""
    from detection.metrics import event_counts

    s, y = spiky_validation()
    s_new, y_new = spiky_validation(seed=1)
    # The calibrations alone: no extreme-value floor under the threshold (it also lifts robust z's here).
    rule = Rule(Threshold(method="plateau", hysteresis=0.5), spans=(1,))
    fitted = {cal: DecisionLayer(Calibration(cal), Combination("mean"), rule, guard=None).fit(s, y)
              for cal in ("robust_z", "robust_log")}
    false = {cal: event_counts(y_new, e.predict(s_new)).fp for cal, e in fitted.items()}
    assert fitted["robust_log"].val_f05_ > fitted["robust_z"].val_f05_ + 0.1
    assert false["robust_log"] < false["robust_z"]


def test_fallback_keeps_the_combination_without_evidence():
    s, y = spiky_validation(n_events=1)  # one event: a fold leaves nothing to fit on
    ens = DecisionLayer(combination=Combination("mean")).fit(s, y)
    assert ens.fallback_["chosen"] == "ensemble" and "no event" in ens.fallback_["why"]
    np.testing.assert_array_equal(ens.weights_, [0.5, 0.5])
    rng = np.random.default_rng(1)
    y2 = (np.arange(6000) % 300 < 10).astype(np.uint8)
    twins = np.stack([rng.normal(0, 1, 6000) + 5 * y2] * 2, 1).astype(np.float32)  # equal members: no winner
    assert DecisionLayer(combination=Combination("mean")).fit(twins, y2).fallback_["chosen"] == "ensemble"
    with pytest.raises(TelemetryError, match="the guard needs >= 2 folds"):
        Guard(folds=1)


def test_weight_search_reports_progress(caplog):
    import logging

    s, y = spiky_validation(n=6000, n_events=10)
    with caplog.at_level(logging.INFO, logger="ensemble"):
        DecisionLayer(combination=Combination("weighted", weight_trials=20), guard=None).fit(s, y)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("weight search")]
    assert [l.split(",")[0] for l in lines] == ["weight search: 10/20 trials", "weight search: 20/20 trials"]


def periodic_validation(seed: int = 0, n: int = 3000):
    """Two members of a periodic signal: both reproduce its nominal peaks (2 rows at 8, every 37 rows),
    member 0 also sees the one short event (3 rows at 4), member 1 does not. Smoothed or not, their
    combination scores the event below the nominal peaks; member 0's own rule (runs under 3 rows
    dropped) separates them."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, np.uint8)
    y[1500:1503] = 1
    peaks = (np.arange(n) % 37 < 2).astype(np.float32) * 8
    s = np.abs(rng.normal(0, 0.1, (n, 2))).astype(np.float32) + peaks[:, None]
    s[y == 1, 0] += 4
    return s, y


def test_guard_uses_the_picked_members_own_rule_when_the_combination_finds_no_validation_event():
    from detection.metrics import corrected_event_f05
    from detection.thresholds import Threshold

    s, y = periodic_validation()
    # Each member's own rule, as its trial would fit it: runs under 3 rows are dropped (the peaks).
    rules = [Threshold(method="best_f05", min_length=3).fit(s[:, j], y) for j in range(2)]
    plain = DecisionLayer().fit(s, y, ["sees", "blind"])
    assert plain.val_f05_ == 0.0  # the event stays under the floor the nominal peaks set
    ens = DecisionLayer().fit(s, y, ["sees", "blind"], member_rules=rules)
    assert isinstance(ens.decision_, MemberDecision) and ens.decision_.member == 0
    fb = ens.fallback_
    assert fb["chosen"] == "member_rule" and fb["member"] == "sees" and fb["member_val_f05"] == 1.0
    assert fb["combination_val_f05"] == 0.0 and ens.val_f05_ == 1.0 and ens.threshold_ == rules[0].threshold_
    s_new, y_new = periodic_validation(seed=1)  # fresh data: the member's rule, exactly
    np.testing.assert_array_equal(ens.predict(s_new), rules[0].predict(s_new[:, 0]))
    np.testing.assert_array_equal(ens.score(s_new), s_new[:, 0])
    assert corrected_event_f05(y_new, ens.predict(s_new)) == 1.0
    assert corrected_event_f05(y_new, plain.predict(s_new)) < 0.5
    d = ens.record()
    assert d["rule"]["min_length"] == 3 and d["fallback"]["combination_rule"]["method"] == "plateau"
    from ensemble.report import _fallback_lines

    said = _fallback_lines(d["fallback"])[0]  # the report says what decided, with both figures
    assert "finds no validation event (validation F0.5 0.000)" in said and "**sees**" in said and "F0.5 1.000" in said
    # Off without member rules, with fallback off, when no member's rule finds the event either,
    # and never where the combination finds validation events.
    assert DecisionLayer(guard=None).fit(s, y, member_rules=rules).fallback_ is None
    blind = [Threshold(method="max_fit").fit(s[:, j], y, fit_scores=s[:, j]) for j in range(2)]  # flag nothing
    assert DecisionLayer().fit(s, y, member_rules=blind).fallback_.get("chosen") != "member_rule"
    s2, y2 = spiky_validation()
    rules2 = [Threshold(method="best_f05").fit(s2[:, j], y2) for j in range(2)]
    assert DecisionLayer().fit(s2, y2, member_rules=rules2).fallback_["chosen"] != "member_rule"
    with pytest.raises(TelemetryError, match="1 member rules for 2 members"):
        DecisionLayer().fit(s, y, member_rules=rules[:1])


def test_label_free_guard_uses_equal_weights_and_the_pot_level_of_the_combination():
    from detection.thresholds import Threshold, pot_threshold

    s, y = periodic_validation()
    rules = [Threshold(method="best_f05", min_length=3).fit(s[:, j], y) for j in range(2)]
    ens = DecisionLayer(guard=Guard(no_event="pot")).fit(s, y, ["sees", "blind"], member_rules=rules)
    fb = ens.fallback_
    assert fb["chosen"] == "label_free" and fb["combination_val_f05"] == 0.0 and fb["risk"] == 1e-3
    np.testing.assert_array_equal(ens.weights_, [0.5, 0.5])  # the labels decide no weight
    combined = ens.decision_.combination_.transform(ens.calibrated(s))
    smoothed = ens.decision_.rule_.smoothed(combined)
    # The threshold is the POT level of the nominal validation rows of the combination, as smoothed:
    # no labelled choice, and no member's own rule (the member guard's decision is not taken).
    assert ens.decision_.rule_.method == "pot" and ens.threshold_ == pytest.approx(pot_threshold(smoothed[y == 0], 1e-3))
    assert isinstance(ens.decision_, CombinedDecision) and ens.record()["rule"]["method"] == "pot"
    np.testing.assert_array_equal(ens.predict(s), ens.decision_.rule_.predict(combined))
    from ensemble.report import _fallback_lines

    assert "label-free POT level" in _fallback_lines(ens.record()["fallback"])[0]
    # Where the combination finds validation events, the label-free guard does nothing.
    s2, y2 = spiky_validation()
    assert DecisionLayer(guard=Guard(no_event="pot")).fit(s2, y2).fallback_["chosen"] != "label_free"
    with pytest.raises(TelemetryError, match="unknown no_event guard 'x'"):
        Guard(no_event="x")
