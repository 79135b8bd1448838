import numpy as np
import pytest

from telemetry.errors import TelemetryError
from detection.metrics import corrected_event_f05
from telemetry.events import events, from_events
from detection.postprocess import drop_short, hysteresis, merge_gaps, postprocess
from detection.thresholds import (Threshold, best_f05_threshold, block_resamples, bootstrap_threshold, f05_curve,
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
    import detection.thresholds as th

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


def test_floor_risk_keeps_a_labelled_threshold_out_of_the_nominal_tail():
    """best_f05 reaches down for a subtle validation event just above the largest nominal score
    (the edge later data cross); floor_risk lifts it to the POT level of the nominal rows, and
    only when that is higher."""
    rng = np.random.default_rng(3)
    s = rng.exponential(1.0, 50_000)
    y = np.zeros(s.size, np.uint8)
    subtle = s.max() + 0.1
    s[1000:1050], y[1000:1050] = subtle, 1
    s[9000:9100], y[9000:9100] = 60.0, 1  # obvious
    low = Threshold("best_f05").fit(s, y)
    assert low.threshold_ == subtle and low.to_dict()["floor"] is None
    floored = Threshold("best_f05", floor_risk=1e-5).fit(s, y)
    assert floored.floor_ == pytest.approx(pot_threshold(s[y == 0], 1e-5))
    assert floored.threshold_ == floored.floor_ > subtle  # exponential tail: -log(1e-5) = 11.5
    assert floored.predict(s)[1000:1050].sum() == 0 and floored.predict(s)[9000:9100].all()
    again = Threshold.from_dict(floored.to_dict())  # what ensemble.yaml stores
    assert again.threshold_ == floored.threshold_ and again.floor_ == floored.floor_
    under = Threshold("best_f05", floor_risk=1e-3).fit(s, y)  # a floor under the method's level changes nothing
    assert under.threshold_ == subtle and under.floor_ < subtle
    with pytest.raises(TelemetryError, match=r"floor_risk must be in \(0, 0.02\) or null, got 0.5"):
        Threshold("plateau", floor_risk=0.5)


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




# -- many series back to back (segments): nothing crosses a boundary ---------------------------------

SEG = np.array([0, 4, 8, 12])  # three series of 4 rows


def test_a_run_across_a_boundary_is_two_events():
    b = np.array([0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1], np.uint8)
    np.testing.assert_array_equal(events(b), [[2, 7], [11, 12]])
    np.testing.assert_array_equal(events(b, SEG), [[2, 4], [4, 7], [11, 12]])
    np.testing.assert_array_equal(events(np.ones(12), SEG), [[0, 4], [4, 8], [8, 12]])
    np.testing.assert_array_equal(from_events(events(b, SEG), b.size), b)  # the same rows


def test_gaps_are_never_merged_across_a_boundary():
    b = np.array([0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 1], np.uint8)
    np.testing.assert_array_equal(merge_gaps(b, 5), [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    # series 2's two events still merge; row 3 (series 1) and row 11 (series 3) stay apart
    np.testing.assert_array_equal(merge_gaps(b, 5, SEG), [0, 0, 0, 1, 0, 1, 1, 1, 0, 0, 0, 1])


def test_minimum_length_counts_each_series_piece():
    b = np.array([0, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0], np.uint8)
    np.testing.assert_array_equal(drop_short(b, 3), [0, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0])
    # rows 2-6 are 2 rows in series 1 and 3 in series 2: only the second piece is long enough
    np.testing.assert_array_equal(drop_short(b, 3, SEG), [0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(postprocess(b, 3, 2, SEG), drop_short(merge_gaps(b, 2, SEG), 3, SEG))


def test_hysteresis_ends_an_event_at_its_series_last_row():
    s = np.array([0, 1, 5, 3, 3, 3, 1, 0, 3, 6, 3, 0.])
    np.testing.assert_array_equal(hysteresis(s, 5, 2), [0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0])
    # rows 4-5 (>= 2, series 2) never reach 5 in their own series: not an event
    np.testing.assert_array_equal(hysteresis(s, 5, 2, SEG), [0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0])


def test_smoothing_restarts_at_each_series():
    x = np.array([0, 0, 0, 8, 2, 2, 2, 2.])
    seg = np.array([0, 4, 8])
    e = smooth(x, 3, "ewma", seg)  # alpha 0.5; series 2 starts at its own first value, not a blend with 8
    np.testing.assert_allclose(e, [0, 0, 0, 4, 2, 2, 2, 2])
    assert smooth(x, 3, "ewma")[4] == 3.0  # one series: 8 leaks into row 4
    np.testing.assert_allclose(smooth(x, 3, "mean", seg), [0, 0, 8 / 3, 4, 2, 2, 2, 2])  # windows clipped to the series
    np.testing.assert_allclose(smooth(x, 3, "mean")[3:5], [10 / 3, 4])
    np.testing.assert_allclose(smooth(x, 4, "mean", seg), [0, 0, 2, 8 / 3, 2, 2, 2, 2])


def test_one_series_as_segments_equals_no_segments():
    rng = np.random.default_rng(4)
    s = rng.normal(size=500)
    one = np.array([0, 500])
    for how in ("ewma", "mean"):
        np.testing.assert_array_equal(smooth(s, 7, how, one), smooth(s, 7, how))
    b = s > 0.5
    np.testing.assert_array_equal(events(b, one), events(b))
    np.testing.assert_array_equal(postprocess(b, 3, 4, one), postprocess(b, 3, 4))
    np.testing.assert_array_equal(hysteresis(s, 1.5, 0.2, one), hysteresis(s, 1.5, 0.2))


def test_many_series_smoothing_equals_each_series_alone_and_is_fast():
    import time

    rng = np.random.default_rng(5)
    lengths = rng.integers(1, 400, 5000)
    seg = np.concatenate([[0], np.cumsum(lengths)])
    s = rng.normal(size=int(seg[-1]))
    for how in ("ewma", "mean"):
        t0 = time.perf_counter()
        got = smooth(s, 25, how, seg)
        took = time.perf_counter() - t0
        alone = np.concatenate([smooth(s[a:b], 25, how) for a, b in zip(seg[:-1], seg[1:])])
        np.testing.assert_allclose(got, alone, rtol=1e-9, atol=1e-9)
        assert took < 1.0, (how, took)


def test_the_rule_keeps_each_series_to_itself():
    # series 1 ends in a high score; series 2 starts nominal
    s = np.array([0, 0, 0, 9, 9, 9, 0, 0, 0, 0, 0, 0.])
    y = np.array([0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0], np.uint8)
    seg = np.array([0, 6, 12])
    th = Threshold("best_f05", smooth=3, hysteresis=0.5)
    th.threshold_, th.center_, th.min_peak_ = 4.0, 0.0, -np.inf
    assert th.predict(s)[6] == 1  # one series: the smoothed 9s carry on into series 2
    np.testing.assert_array_equal(th.predict(s, seg), [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(th.smoothed(s, seg)[6:], np.zeros(6))
    median = Threshold("percentile", percentile=50, smooth=3)
    assert median.fit(s).threshold_ > 0.7 and median.fit(s, segments=seg).threshold_ == 0.0  # on the restarted smoothing
    fitted = Threshold("best_f05", smooth=3, min_length=2, max_gap=3).fit(s, y, segments=seg)
    assert fitted.threshold_ == 6.75  # the highest perfect one: rows 4-5 of the smoothed 0, 0, 0, 4.5, 6.75, 7.875
    np.testing.assert_array_equal(fitted.predict(s, seg), [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0])


@pytest.mark.parametrize("bad", [[0, 6], [0, 6, 6, 12], [1, 12], [0, 7, 5, 12], [[0, 12]]])
def test_bad_segments_are_a_one_line_error(bad):
    s = np.zeros(12)
    th = Threshold("percentile", percentile=50).fit(s)
    for call in (lambda: smooth(s, 3, "ewma", bad), lambda: events(s, bad), lambda: th.predict(s, bad),
                 lambda: Threshold("percentile", percentile=50).fit(s, segments=bad)):
        with pytest.raises(TelemetryError, match=r"^scores: segments must be increasing offsets from 0 to 12") as err:
            call()
        assert "\n" not in str(err.value)


# -- the metric per series: f05_curve and the labelled rules count events within each series ---------

TWO = np.array([0, 5, 10])  # series [0, 5) and [5, 10)


def many_series_case(seed):
    """Random labels and tied scores over series whose boundaries fall inside events, inside nominal
    stretches and on their borders, with some one-row series."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 80))
    y = (rng.random(n) < rng.uniform(0.1, 0.6)).astype(np.uint8)
    s = rng.integers(0, 8, n).astype(float)
    rows = np.arange(1, n)
    inside_event = rows[(y[rows - 1] == 1) & (y[rows] == 1)]
    inside_nominal = rows[(y[rows - 1] == 0) & (y[rows] == 0)]
    picks = [rng.choice(r, size=min(r.size, 3), replace=False) for r in (inside_event, inside_nominal, rows)]
    single = int(rng.integers(1, n - 1))  # the series [single, single + 1)
    seg = np.unique(np.concatenate([[0, n, single, single + 1], *picks]))
    return s, y, seg


@pytest.mark.parametrize("seed", range(40))
def test_f05_curve_with_segments_is_the_per_series_metric_at_every_threshold(seed):
    s, y, seg = many_series_case(seed)
    assert (np.diff(seg) == 1).any()
    thr, f, pr, re = f05_curve(s, y, segments=seg)
    expected = [corrected_event_f05(y, (s >= t).astype(np.uint8), seg) for t in thr]
    np.testing.assert_allclose(f, expected, atol=1e-12)
    thr2, f2, _, _ = f05_curve(s, y, np.array([3.0, 5.0]), seg)  # given thresholds alike
    np.testing.assert_allclose(f2, [corrected_event_f05(y, (s >= t).astype(np.uint8), seg) for t in thr2], atol=1e-12)
    np.testing.assert_array_equal(f05_curve(s, y, segments=[0, s.size])[1], f05_curve(s, y)[1])


def test_f05_curve_with_segments_on_hand_made_cases():
    # a run carried from series 1's event into series 2's nominal start: a false event there
    y = np.array([0, 0, 0, 1, 1, 0, 0, 0, 0, 0], np.uint8)
    s = np.array([0, 0, 0, 5, 5, 3, 3, 0, 0, 0.])
    # t=3: TP=1, FP=1, TNR=6/8 -> Pr=3/8, Re=1 -> F0.5 = 3/7; joined: FP=0 -> 15/19; t=5: perfect
    np.testing.assert_allclose(f05_curve(s, y, np.array([3.0, 5.0]), TWO)[1], [3 / 7, 1.0], atol=1e-12)
    np.testing.assert_allclose(f05_curve(s, y, np.array([3.0, 5.0]))[1], [15 / 19, 1.0], atol=1e-12)
    # mirrored: a false run at series 1's end running into series 2's event is a false event too
    np.testing.assert_allclose(f05_curve(s[::-1], y[::-1], np.array([3.0]), TWO)[1], [3 / 7], atol=1e-12)
    # an event across the boundary is two: t=5 catches only series 2's half
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0], np.uint8)
    s = np.array([0, 0, 0, 1, 1, 5, 5, 0, 0, 0.])
    np.testing.assert_allclose(f05_curve(s, y, np.array([1.0, 5.0]), TWO)[1], [1.0, 5 / 6], atol=1e-12)
    np.testing.assert_allclose(f05_curve(s, y, np.array([1.0, 5.0]))[1], [1.0, 1.0], atol=1e-12)


def test_labelled_rules_fit_the_per_series_metric():
    # One event across the boundary, weak in series 1: only the per-series count misses half of it at 5.
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0], np.uint8)
    s = np.array([0, 0, 0, 1, 1, 5, 5, 0, 0, 0.])
    assert best_f05_threshold(s, y) == (5.0, 1.0)
    assert best_f05_threshold(s, y, segments=TWO) == (1.0, 1.0)
    assert best_f05_threshold(s, y, min_length=1, max_gap=2, segments=TWO) == (1.0, 1.0)  # re-scored per series
    # plateau: thresholds (0, 5] are perfect joined, (0, 1] per series
    assert plateau_threshold(s, y, 0.0) == (2.5, 1.0)
    assert plateau_threshold(s, y, 0.0, TWO) == (0.5, 1.0)
    assert Threshold("best_f05").fit(s, y).threshold_ == 5.0
    assert Threshold("best_f05").fit(s, y, segments=TWO).threshold_ == 1.0
    assert Threshold("plateau", tolerance=0.0).fit(s, y, segments=TWO).threshold_ == 0.5
    rule = Threshold("best_f05").fit(s, y, segments=TWO)
    assert corrected_event_f05(y, rule.predict(s, TWO), TWO) == 1.0


def test_replicate_offsets_cut_where_series_change_or_restart():
    from detection.thresholds import replicate_offsets

    seg = np.array([0, 3, 10])
    idx = np.array([5, 6, 7, 1, 2, 3, 4, 0, 1, 8, 9, 3])
    # cuts: 1 (series 2 -> 1), 3 (-> series 2), 0 (series 1 restarts), 8 (-> series 2), 3 (series 2 restarts)
    assert replicate_offsets(idx, seg).tolist() == [0, 3, 5, 7, 9, 11, 12]
    assert replicate_offsets(idx, None) is None


def test_bootstrap_threshold_with_segments_counts_per_series():
    rng = np.random.default_rng(3)
    s = rng.normal(0, 0.3, 4000)
    y = np.zeros(4000, np.uint8)
    seg = np.array([0, 510, 1510, 2515, 4000])  # each event's first rows in one series, the rest in the next
    for a in (500, 1500, 2500, 3500):
        y[a:a + 20] = 1
        s[a:a + 20] += 8.0
    s[500:510] -= 6.0  # series 1's part of the first event is weak, yet above every nominal score
    assert s[y == 0].max() < s[500:510].max() < s[y == 1][10:].min()
    t_joined, f_joined = bootstrap_threshold(s, y, resamples=10, seed=0)
    t, f = bootstrap_threshold(s, y, resamples=10, seed=0, segments=seg)
    assert bootstrap_threshold(s, y, resamples=10, seed=0, segments=seg) == (t, f)
    # joined, the weak rows are part of a caught event; per series they are an event of their own
    assert f == f_joined == 1.0 and s[y == 0].max() < t <= s[500:510].max() < t_joined
    assert t == Threshold("bootstrap", resamples=10).fit(s, y, segments=seg).threshold_
