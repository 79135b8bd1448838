import numpy as np
import pytest

from telemetry.errors import TelemetryError
from telemetry.metrics import corrected_event_f05
from telemetry.thresholds import Threshold, best_f05_threshold, f05_curve, prune_min_peak


@pytest.mark.parametrize("seed", range(30))
def test_f05_curve_is_exact_at_every_threshold(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(np.uint8)
    s = rng.integers(0, 8, n).astype(float)  # ties on purpose
    thr, f, _, _ = f05_curve(s, y)
    expected = [corrected_event_f05(y, (s >= t).astype(np.uint8)) for t in thr]
    np.testing.assert_allclose(f, expected, atol=1e-12)


def test_best_f05_threshold_on_a_case_with_a_known_answer():
    y = np.array([0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0], np.uint8)
    s = np.array([.1, .2, .5, .9, .3, .1, .6, .2, .8, .1, .0])
    # t=0.8 catches both events with no false row: F0.5 = 1; any lower threshold adds false rows.
    t, f = best_f05_threshold(s, y)
    assert (t, f) == (0.8, 1.0)


def test_best_f05_threshold_with_post_processing_drops_a_short_false_alarm():
    y = np.zeros(60, np.uint8)
    y[10:20] = 1
    s = np.zeros(60)
    s[10:20] = 1.0
    s[40] = 2.0  # a one-row false alarm stronger than the true event
    t, f = best_f05_threshold(s, y, min_length=3)
    assert f == 1.0 and t <= 1.0


def test_rules_percentile_and_max_fit():
    v = np.arange(101, dtype=float)
    assert Threshold("percentile", level=90).fit(v).threshold_ == 90.0
    th = Threshold("max_fit").fit(v, fit_scores=np.array([1.0, 7.5, 3.0]))
    assert th.threshold_ == 7.5
    np.testing.assert_array_equal(th.predict(np.array([7.4, 7.5, 9.0])), [0, 1, 1])


def test_rule_errors_are_clear():
    with pytest.raises(TelemetryError, match="unknown threshold method 'median'"):
        Threshold("median")
    with pytest.raises(TelemetryError, match="needs a level in \\[0, 100\\]"):
        Threshold("percentile", level=120)
    with pytest.raises(TelemetryError, match="needs validation labels"):
        Threshold("best_f05").fit(np.ones(4))
    with pytest.raises(TelemetryError, match="without anomalies"):
        Threshold("best_f05").fit(np.ones(4), np.zeros(4))


def test_ndt_flags_an_injected_spike_and_nothing_else():
    rng = np.random.default_rng(0)
    e = np.abs(rng.normal(0, 1, 5000))
    e[3000:3004] += 12.0
    th = Threshold("ndt").fit(e)
    pred = th.predict(e)
    assert pred[3000:3004].all()
    assert pred.sum() == 4


def test_ndt_pruning_keeps_peaks_followed_by_a_large_drop():
    # 30 -> 4.6 is a big drop, 4.6 -> nominal 4.5 is not: the 4.6 sequence becomes nominal
    assert prune_min_peak(np.array([4.6, 30.0]), 4.5, p=0.13) == 30.0
    assert prune_min_peak(np.array([30.0, 10.0]), 4.5, p=0.13) == 10.0
    # 30 -> 29 is small but a large drop follows 29: both stay (Telemanom resets its removal list)
    assert prune_min_peak(np.array([30.0, 29.0]), 4.5, p=0.13) == 29.0
    assert prune_min_peak(np.array([4.6]), 4.5, p=0.13) == np.inf


def test_ndt_prediction_drops_pruned_sequences():
    th = Threshold("ndt")
    th.threshold_, th.min_peak_ = 4.0, 30.0
    np.testing.assert_array_equal(th.predict(np.array([0, 4.6, 4.2, 0, 31, 5, 0])), [0, 0, 0, 0, 1, 1, 0])


def test_threshold_post_processing_applies_after_the_cut():
    th = Threshold("percentile", level=50, min_length=2, max_gap=2)
    th.fit(np.array([0.0, 1.0]))  # threshold 0.5
    np.testing.assert_array_equal(th.predict(np.array([1, 0, 1, 0, 0, 0, 1, 0.])), [1, 1, 1, 0, 0, 0, 0, 0])
    d = th.to_dict()
    assert d["threshold"] == 0.5 and d["min_length"] == 2
    again = Threshold.from_dict(d)  # what a stored trial's rule is rebuilt from
    scores = np.array([1, 0, 1, 0, 0, 0, 1, 0.])
    np.testing.assert_array_equal(again.predict(scores), th.predict(scores))
    ndt = Threshold("ndt")
    ndt.threshold_, ndt.min_peak_ = 4.0, 30.0
    np.testing.assert_array_equal(Threshold.from_dict(ndt.to_dict()).predict(np.array([0, 5, 0, 31, 0.])), [0, 0, 0, 1, 0])
