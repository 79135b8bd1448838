import numpy as np
import pytest

from telemetry.errors import TelemetryError
from telemetry.events import event_labels, events
from detection.postprocess import drop_short, merge_gaps, postprocess
from detection.metrics import auc_pr, corrected_event_f05, event_counts, scores

A = np.array


def brute_f05(y, p, segments=None):
    """Plain-loop reference of the metric (detection/metrics.py's definitions), independent of the vectorised code; with
    ``segments`` runs are looked for in each series on its own."""
    bounds = list(segments) if segments is not None else [0, len(y)]

    def runs(b):
        out = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            i = lo
            while i < hi:
                if b[i]:
                    j = i
                    while j < hi and b[j]:
                        j += 1
                    out.append((i, j))
                    i = j
                else:
                    i += 1
        return out
    true_runs, pred_runs = runs(list(y)), runs(list(p))
    tp = sum(any(p[k] for k in range(a, b)) for a, b in true_runs)
    fn = len(true_runs) - tp
    fp = sum(not any(y[k] for k in range(a, b)) for a, b in pred_runs)
    nominal = sum(1 for v in y if v == 0)
    fp_rows = sum(1 for a, b in zip(y, p) if a == 0 and b == 1)
    tnr = 1 - fp_rows / nominal if nominal else 0.0
    pr = (tp / (tp + fp) if tp + fp else 0.0) * tnr
    re = tp / (tp + fn) if tp + fn else 0.0
    return 1.25 * pr * re / (0.25 * pr + re) if 0.25 * pr + re else 0.0


def test_all_zeros_prediction_scores_zero():
    y = A([0, 0, 1, 1, 0, 0])
    assert corrected_event_f05(y, np.zeros(6, int)) == 0.0
    c = event_counts(y, np.zeros(6, int))
    assert (c.tp, c.fn, c.fp) == (0, 1, 0)


def test_all_ones_prediction_has_zero_tnr_and_scores_zero():
    y = A([0, 0, 1, 1, 0, 0])
    c = event_counts(y, np.ones(6, int))
    assert (c.tp, c.fn, c.fp, c.fp_rows, c.nominal_rows) == (1, 0, 0, 4, 4)
    assert corrected_event_f05(y, np.ones(6, int)) == 0.0


def test_false_runs_only():
    y = A([0, 1, 1, 0, 0, 0, 0, 0])
    p = A([0, 0, 0, 0, 1, 0, 1, 0])
    c = event_counts(y, p)
    assert (c.tp, c.fn, c.fp, c.fp_rows) == (0, 1, 2, 2)
    assert corrected_event_f05(y, p) == 0.0


def test_several_predicted_runs_inside_one_event_count_once_and_are_not_false():
    y = A([0, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    p = A([0, 1, 0, 1, 0, 1, 0, 0, 0, 0])
    c = event_counts(y, p)
    assert (c.tp, c.fn, c.fp, c.tp_runs) == (1, 0, 0, 3)
    assert corrected_event_f05(y, p) == 1.0


def test_event_hit_by_one_row_with_a_false_run_and_a_missed_event():
    y = A([0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0])
    p = A([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1])
    # TP=1, FN=1, FP=1, TNR=6/7 -> Pr=3/7, Re=1/2 -> F0.5 = 15/34
    assert corrected_event_f05(y, p) == pytest.approx(15 / 34, abs=1e-12)
    s = scores(y, p)
    assert s["event_recall"] == 0.5
    assert s["event_precision"] == pytest.approx(3 / 7)
    assert s["alarming_precision"] == 0.5
    assert s["point_precision"] == 0.5 and s["point_recall"] == 0.2


def test_predicted_run_spanning_an_event_border_is_not_false():
    y = A([0, 0, 1, 1, 0])
    p = A([1, 1, 1, 0, 0])
    c = event_counts(y, p)
    assert (c.tp, c.fp, c.fp_rows) == (1, 0, 2)
    assert corrected_event_f05(y, p) == pytest.approx(1.25 * (1 / 3) / (0.25 * (1 / 3) + 1))


def test_no_true_event_gives_zero():
    assert corrected_event_f05(np.zeros(5, int), A([0, 1, 0, 0, 0])) == 0.0


@pytest.mark.parametrize("seed", range(40))
def test_matches_brute_force_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    y = (rng.random(n) < rng.uniform(0.05, 0.5)).astype(np.uint8)
    p = (rng.random(n) < rng.uniform(0.05, 0.5)).astype(np.uint8)
    assert corrected_event_f05(y, p) == pytest.approx(brute_f05(y, p), abs=1e-12)


def test_rejects_mismatched_or_nonbinary_input():
    with pytest.raises(TelemetryError, match="3 rows but predictions have 2"):
        corrected_event_f05(A([0, 1, 0]), A([0, 1]))
    with pytest.raises(TelemetryError, match="binary"):
        corrected_event_f05(A([0, 1, 0]), A([0, 2, 0]))


def test_auc_pr_of_a_perfect_and_of_an_uninformative_score():
    y = A([0, 0, 1, 1, 0])
    assert auc_pr(y, A([0.1, 0.2, 0.9, 0.8, 0.3])) == 1.0
    assert auc_pr(y, np.ones(5)) == pytest.approx(0.4)
    assert np.isnan(auc_pr(np.zeros(5), np.arange(5)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_auc_pr_equals_scikit_learns_average_precision_with_ties(dtype):
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(3)
    y = rng.random(5000) < 0.1
    s = np.round(rng.normal(size=5000) + 1.5 * y, 1)  # rounded: hundreds of tied scores
    s = (s * 10).astype(dtype) if dtype is np.int64 else s.astype(dtype)
    assert auc_pr(y, s) == pytest.approx(average_precision_score(y, s.astype(np.float64)), abs=1e-12)
    # hand-computed: scores 3 (pos), 2 (neg, pos tied), 1 (pos): recall steps 1/3 at precision 1,
    # then 1/3 at 2/3, then 1/3 at 3/4
    assert auc_pr(A([1, 0, 1, 1]), np.array([3.0, 2.0, 2.0, 1.0])) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)


def test_auc_pr_refuses_non_finite_scores():
    with pytest.raises(TelemetryError, match="1 non-finite values"):
        auc_pr(A([0, 1, 0]), np.array([0.1, np.nan, 0.2]))


def test_events_and_postprocessing():
    b = A([1, 1, 0, 1, 0, 0, 0, 1, 0, 1])
    np.testing.assert_array_equal(events(b), [[0, 2], [3, 4], [7, 8], [9, 10]])
    assert events(np.zeros(0)).shape == (0, 2)
    # gaps of fewer than 2 rows merge: [0,2)+[3,4) and [7,8)+[9,10)
    np.testing.assert_array_equal(merge_gaps(b, 2), A([1, 1, 1, 1, 0, 0, 0, 1, 1, 1]))
    np.testing.assert_array_equal(drop_short(b, 2), A([1, 1, 0, 0, 0, 0, 0, 0, 0, 0]))
    np.testing.assert_array_equal(postprocess(b, min_length=3, max_gap=2), A([1, 1, 1, 1, 0, 0, 0, 1, 1, 1]))


def test_block_counts_add_up_to_the_whole_series_counts():
    from detection.metrics import _f05_rows, block_counts, bootstrap_f05, event_counts

    rng = np.random.default_rng(4)
    y = (rng.random(3000) < 0.02).astype(np.uint8)
    y = np.convolve(y, np.ones(7), "same").clip(0, 1).astype(np.uint8)  # events of ~7 rows
    p = (rng.random(3000) < 0.03).astype(np.uint8)
    c = event_counts(y, p)
    for n_blocks in (1, 7, 50):
        total = block_counts(y, p, n_blocks).sum(axis=0)
        np.testing.assert_array_equal(total, [c.tp, c.fn, c.fp, c.fp_rows, c.nominal_rows])
        assert _f05_rows(total[None])[0] == pytest.approx(corrected_event_f05(y, p))
    boot = bootstrap_f05(y, [p, y], resamples=300, n_blocks=30, seed=1)
    assert boot.shape == (300, 2) and (boot[:, 1] == 1.0).all()
    assert boot[:, 0].min() < corrected_event_f05(y, p) < boot[:, 0].max()


# -- many series back to back (segments): events and predicted runs are counted per series -----------
TWO = A([0, 5, 10])  # series [0, 5) and [5, 10)


def test_event_labels_number_a_run_across_a_boundary_as_two_events():
    lab, n = event_labels(A([0, 0, 0, 1, 1, 1, 1, 0, 1, 0]), TWO)
    assert n == 3 and lab.tolist() == [0, 0, 0, 1, 1, 2, 2, 0, 3, 0]
    lab, n = event_labels(A([0, 0, 0, 1, 1, 1, 1, 0, 1, 0]))
    assert n == 2 and lab.tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 2, 0]
    assert event_labels(np.ones(4, int), A([0, 1, 2, 3, 4]))[0].tolist() == [1, 2, 3, 4]


def test_events_either_side_of_a_boundary_are_two_true_events_and_two_detections():
    y = A([0, 0, 0, 1, 1, 1, 1, 0, 0, 0])
    p = A([0, 0, 0, 0, 1, 1, 0, 0, 0, 0])
    c = event_counts(y, p)
    assert (c.tp, c.fn, c.fp, c.tp_runs) == (1, 0, 0, 1)
    c = event_counts(y, p, TWO)
    assert (c.tp, c.fn, c.fp, c.tp_runs, c.fp_rows, c.nominal_rows) == (2, 0, 0, 2, 0, 6)
    # one detected (row 4), one missed (rows 5, 6): only with the boundary is a miss visible
    p = A([0, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    assert corrected_event_f05(y, p) == 1.0
    # TP=1, FN=1, FP=0, TNR=1 -> Pr=1, Re=1/2 -> F0.5 = 0.625 / 0.75 = 5/6
    assert corrected_event_f05(y, p, TWO) == pytest.approx(5 / 6, abs=1e-12)


def test_a_predicted_run_carried_into_the_next_series_is_a_false_event_there():
    y = A([0, 0, 0, 1, 1, 0, 0, 0, 0, 0])
    p = A([0, 0, 0, 1, 1, 1, 1, 0, 0, 0])
    c = event_counts(y, p, TWO)
    assert (c.tp, c.fn, c.fp, c.tp_runs, c.fp_rows, c.nominal_rows) == (1, 0, 1, 1, 2, 8)
    # TNR = 6/8 -> Pr = 1/2 * 3/4 = 3/8, Re = 1 -> F0.5 = (15/32) / (35/32) = 3/7
    assert corrected_event_f05(y, p, TWO) == pytest.approx(3 / 7, abs=1e-12)
    assert corrected_event_f05(y, p) == pytest.approx(15 / 19, abs=1e-12)  # joined: the run touches the event
    s = scores(y, p, segments=TWO)
    assert (s["true_events"], s["detected_events"], s["false_events"]) == (1, 1, 1)
    assert s["event_precision"] == pytest.approx(3 / 8) and s["alarming_precision"] == 0.5
    assert s["tnr"] == scores(y, p)["tnr"] == 0.75


@pytest.mark.parametrize("seed", range(40))
def test_with_segments_matches_brute_force_on_random_cases(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 80))
    y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(np.uint8)
    p = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(np.uint8)
    inner = np.sort(rng.choice(np.arange(1, n), size=int(rng.integers(1, min(n, 10))), replace=False))
    seg = np.concatenate([[0], inner, [n]])
    assert corrected_event_f05(y, p, seg) == pytest.approx(brute_f05(y, p, seg), abs=1e-12)
    assert corrected_event_f05(y, p, [0, n]) == corrected_event_f05(y, p)


def test_metric_segments_are_checked():
    with pytest.raises(TelemetryError, match=r"^labels: segments must be increasing offsets from 0 to 3"):
        corrected_event_f05(A([0, 1, 0]), A([0, 1, 0]), [0, 2])


def test_block_counts_with_segments_add_up_to_the_per_series_counts():
    from detection.metrics import block_counts, bootstrap_f05

    rng = np.random.default_rng(5)
    y = np.convolve(rng.random(3000) < 0.02, np.ones(7), "same").clip(0, 1).astype(np.uint8)
    p = np.convolve(rng.random(3000) < 0.02, np.ones(5), "same").clip(0, 1).astype(np.uint8)
    starts = np.flatnonzero(np.diff(y.astype(int), prepend=0) == 1)
    seg = np.unique(np.concatenate([[0, 3000], starts[::3] + 2, np.arange(0, 3000, 97)]))  # some inside events
    c = event_counts(y, p, seg)
    assert c.tp + c.fn > event_counts(y, p).tp + event_counts(y, p).fn
    for n_blocks in (1, 7, 50):
        total = block_counts(y, p, n_blocks, seg).sum(axis=0)
        np.testing.assert_array_equal(total, [c.tp, c.fn, c.fp, c.fp_rows, c.nominal_rows])
    boot = bootstrap_f05(y, [p, y], resamples=50, n_blocks=30, seed=1, segments=seg)
    assert (boot[:, 1] == 1.0).all()
