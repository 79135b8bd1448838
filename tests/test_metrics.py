import numpy as np
import pytest

from telemetry.errors import TelemetryError
from telemetry.events import drop_short, events, merge_gaps, postprocess
from telemetry.metrics import auc_pr, corrected_event_f05, event_counts, scores

A = np.array


def brute_f05(y, p):
    """Plain-loop reference of DESIGN.md section 3, independent of the vectorised code."""
    def runs(b):
        out, i = [], 0
        while i < len(b):
            if b[i]:
                j = i
                while j < len(b) and b[j]:
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
    from telemetry.metrics import _f05_rows, block_counts, bootstrap_f05, event_counts

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
