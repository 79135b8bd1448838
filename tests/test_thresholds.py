import numpy as np
import pytest

from telemetry.errors import TelemetryError
from telemetry.metrics import corrected_event_f05
from telemetry.events import hysteresis
from telemetry.thresholds import (Threshold, best_f05_threshold, block_resamples, bootstrap_threshold, f05_curve,
                                  plateau_threshold, pot_threshold, prune_min_peak, smooth)


@pytest.mark.parametrize("seed", range(30))
def test_f05_curve_is_exact_at_every_threshold(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(np.uint8)
    s = rng.integers(0, 8, n).astype(float)  # ties on purpose
    thr, f, _, _ = f05_curve(s, y)
    expected = [corrected_event_f05(y, (s >= t).astype(np.uint8)) for t in thr]
    np.testing.assert_allclose(f, expected, atol=1e-12)


def test_f05_curve_beyond_the_exact_limit_sweeps_a_grid_plus_every_event_maximum(monkeypatch):
    import telemetry.thresholds as th

    rng = np.random.default_rng(0)
    y = np.zeros(3000, np.uint8)
    for lo in range(100, 3000, 300):
        y[lo:lo + 5] = 1
    s = rng.normal(0, 1, 3000) + 2 * y
    exact_thr, exact_f, _, _ = f05_curve(s, y)
    monkeypatch.setattr(th, "EXACT_CANDIDATES", 200)
    thr, f, _, _ = th.f05_curve(s, y)
    ev_max = [s[lo:lo + 5].max() for lo in range(100, 3000, 300)]
    assert 200 <= thr.size <= 211 and np.isin(ev_max, thr).all() and thr[-1] == np.inf
    np.testing.assert_allclose(f, exact_f[np.searchsorted(exact_thr, thr)], atol=1e-12)  # exact where it looks


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
    assert Threshold("percentile", percentile=90).fit(v).threshold_ == 90.0
    th = Threshold("max_fit").fit(v, fit_scores=np.array([1.0, 7.5, 3.0]))
    assert th.threshold_ == 7.5
    np.testing.assert_array_equal(th.predict(np.array([7.4, 7.5, 9.0])), [0, 1, 1])


def test_rule_errors_are_clear():
    with pytest.raises(TelemetryError, match="unknown threshold method 'median'"):
        Threshold("median")
    with pytest.raises(TelemetryError, match="needs a percentile in \\[0, 100\\]"):
        Threshold("percentile", percentile=120)
    with pytest.raises(TelemetryError, match="needs validation labels"):
        Threshold("best_f05").fit(np.ones(4))
    with pytest.raises(TelemetryError, match="needs validation labels with at least one anomaly"):
        Threshold("plateau").fit(np.ones(4), np.zeros(4))
    with pytest.raises(TelemetryError, match="hysteresis must be in \\[0, 1\\)"):
        Threshold("pot", hysteresis=1.0)
    with pytest.raises(TelemetryError, match="smooth must be a span >= 1"):
        Threshold("pot", smooth=0)


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
    th = Threshold("percentile", percentile=50, min_length=2, max_gap=2)
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


def test_pot_threshold_is_the_gpd_quantile_of_the_tail():
    # Exponential scores: the tail over any level is exponential (GPD with gamma 0, sigma = scale),
    # so the POT threshold at risk q must be close to the true quantile -scale * log(q).
    rng = np.random.default_rng(1)
    s = rng.exponential(2.0, 200_000)
    t = pot_threshold(s, risk=1e-4, initial_quantile=0.98)
    assert abs(t - (-2.0 * np.log(1e-4))) < 0.6  # 18.42; the largest of 200k rows alone is ~24
    # Hand-computed from the fitted GPD: t0 + sigma/gamma * ((q n / n_t)^-gamma - 1)
    from scipy import stats
    t0 = np.quantile(s, 0.98)
    ex = s[s > t0] - t0
    g, _, sig = stats.genpareto.fit(ex, floc=0.0)
    assert t == pytest.approx(t0 + sig / g * ((1e-4 * s.size / ex.size) ** -g - 1.0))
    with pytest.raises(TelemetryError, match="POT risk must be in"):
        pot_threshold(s, risk=0.5)


def test_pot_rule_uses_nominal_rows_only():
    rng = np.random.default_rng(2)
    s = rng.exponential(1.0, 50_000)
    y = np.zeros(s.size, np.uint8)
    s[1000:1100] += 100.0  # an anomaly far out in the tail must not drag the threshold
    y[1000:1100] = 1
    t_lab = Threshold("pot", risk=1e-4).fit(s, y).threshold_
    assert t_lab == pytest.approx(pot_threshold(s[y == 0], 1e-4))
    assert 6.0 < t_lab < 14.0


def test_hysteresis_on_a_hand_made_trace():
    s = np.array([0, 3, 5, 3, 1, 3, 0, 3, 3, 0, 6, 2.5, 6, 0.])
    # start at 5, end below 2: [1..5] is one event (5 reached, stays >= 2 through the 1? no: 1 < 2)
    np.testing.assert_array_equal(hysteresis(s, 5, 2), [0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(hysteresis(s, 5, 5), (s >= 5).astype(np.uint8))
    # The rule: end = threshold - h * (threshold - nominal median)
    th = Threshold("percentile", percentile=50, hysteresis=0.5)
    th.threshold_, th.center_, th.min_peak_ = 5.0, 1.0, -np.inf
    assert th.end_threshold_ == 3.0
    np.testing.assert_array_equal(th.predict(s), [0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0])


def test_smoothing_values():
    x = np.array([0, 0, 3, 0, 0.])
    np.testing.assert_allclose(smooth(x, 3, "mean"), [0, 1, 1, 1, 0])
    e = smooth(x, 3, "ewma")  # alpha 0.5, starts at the first value
    np.testing.assert_allclose(e, [0, 0, 1.5, 0.75, 0.375])
    np.testing.assert_array_equal(smooth(x, 1), x)


def test_plateau_threshold_takes_the_middle_of_the_near_best_range():
    # Two events peaking at 10 and 9, nominal scores at most 2: every threshold in (2, 9] is perfect.
    s = np.array([0, 1, 10, 10, 0, 2, 0, 9, 0, 1.5, 0.])
    y = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0], np.uint8)
    t_edge, f_edge = best_f05_threshold(s, y)
    assert (t_edge, f_edge) == (9.0, 1.0)
    # threshold 9 stands for every t in (2, 9]: the middle is 5.5, a margin of 3.5 on both sides
    t_mid, f_mid = plateau_threshold(s, y, tolerance=0.0)
    assert t_mid == 5.5
    # a tolerance that admits t = 10 (one event missed, F0.5 0.83) widens the plateau to (2, 10]
    assert plateau_threshold(s, y, tolerance=0.2)[0] == 6.0
    assert f_mid == 1.0


def test_bootstrap_threshold_is_reproducible_and_sees_every_event():
    rng = np.random.default_rng(3)
    s = rng.normal(0, 1, 4000)
    y = np.zeros(4000, np.uint8)
    for a in (500, 1500, 2500, 3500):
        y[a:a + 20] = 1
        s[a:a + 20] += 8.0
    t1, f1 = bootstrap_threshold(s, y, resamples=20, seed=0)
    t2, f2 = bootstrap_threshold(s, y, resamples=20, seed=0)
    assert (t1, f1) == (t2, f2)
    assert s[y == 0].max() < t1 <= 8.0 + s[y == 1].min() and f1 > 0.9
    reps = block_resamples(100, 10, 3, seed=0)
    assert all(len(r) == 100 for r in reps) and all((np.diff(r.reshape(10, 10), axis=1) == 1).all() for r in reps)


def test_legacy_level_is_read_as_the_methods_own_parameter():
    assert Threshold.from_dict({"method": "percentile", "level": 90.0}).percentile == 90.0
    assert Threshold.from_dict({"method": "ndt", "level": 0.2}).prune == 0.2
    assert Threshold.from_dict({"method": "max_fit", "level": 1.5}).multiple == 1.5
