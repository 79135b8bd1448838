"""Ensemble: calibration, weights, submission validity, no use of holdout/test, and build end to end."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from pathlib import Path

from ensemble.calibration import Calibration, Calibrator
from ensemble.combine import Combination, DecisionLayer, Rule, load_layers
from detection.thresholds import Threshold
from ensemble.submission import write_submission
from telemetry.errors import TelemetryError


def labelled_scores(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    y = np.zeros(n, np.uint8)
    for lo in range(200, n - 100, 400):
        y[lo:lo + 2] = 1  # short events: one diluted row can miss them
    good = rng.normal(0, 1, n) + 3 * y  # separates events, not perfectly
    noise = rng.normal(0, 1, n)  # knows nothing
    return y, good, noise


@pytest.mark.parametrize("method", ["z", "robust_z", "normal", "robust_log"])
def test_calibration_puts_members_on_one_scale(method):
    y, good, _ = labelled_scores()
    a = good
    b = 1000.0 * good + 5e4  # same ranking, another scale
    ca = Calibrator(method).fit(a, y == 0).transform(a)
    cb = Calibrator(method).fit(b, y == 0).transform(b)
    np.testing.assert_allclose(ca, cb, atol=1e-3)
    nom = ca[y == 0]
    if method == "robust_log":  # back to the robust z it compresses
        nom = np.sign(nom) * np.expm1(np.abs(nom))
    assert abs(np.median(nom)) < 0.1 and 0.8 < np.std(nom) < 1.2
    assert np.all(np.diff(ca[np.argsort(a)]) >= -1e-6)  # monotone


def test_robust_log_compresses_the_robust_z_beyond_one_unit():
    nominal = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # median 3, MAD 1 -> scale 1.4826
    cal = Calibrator("robust_log").fit(nominal)
    z = (np.array([3.0, 3.0 + 1.4826, 3.0 - 2 * 1.4826, 3.0 + 99 * 1.4826]) - 3.0) / 1.4826  # 0, 1, -2, 99
    np.testing.assert_allclose(cal.transform(3.0 + 1.4826 * z), [0.0, np.log(2), -np.log(3), np.log(100)], rtol=1e-6)
    # one member at z 99 and three at 0 do not outweigh four members at z 3 (a soft vote)
    spike = np.log1p(np.array([99.0, 0, 0, 0])).mean()
    agree = np.log1p(np.array([3.0, 3, 3, 3])).mean()
    assert spike < agree and np.array([99.0, 0, 0, 0]).mean() > np.array([3.0, 3, 3, 3]).mean()


def test_weights_favour_the_informative_member_and_match_the_best_alone():
    y, good, noise = labelled_scores()
    ens = DecisionLayer(combination=Combination("weighted", weight_trials=30), seed=1).fit(np.stack([noise, good], 1), y,
                                                                                     ["noise", "good"])
    assert ens.weights_[1] > 0.7
    assert ens.predict(np.stack([noise, good], 1)).dtype == np.uint8
    d = ens.record()
    assert [m["name"] for m in d["members"]] == ["noise", "good"] and d["rule"]["method"] == "plateau"


def test_selection_drops_members_far_below_the_best_and_stacking_ignores_noise():
    y, good, noise = labelled_scores()
    s = np.stack([good, noise], 1)
    sel = DecisionLayer(combination=Combination(selection=0.8)).fit(s, y)
    np.testing.assert_array_equal(sel.weights_, [1.0, 0.0])
    np.testing.assert_allclose(sel.score(s), sel.calibrated(s)[:, 0], rtol=1e-6)
    stack = DecisionLayer(combination=Combination("stack", shrinkage=0.0)).fit(s, y)
    assert stack.weights_[0] > 0.8 and abs(stack.weights_.sum() - 1) < 1e-9
    half = DecisionLayer(combination=Combination("stack", shrinkage=0.5)).fit(s, y)  # the default: halfway to uniform
    np.testing.assert_allclose(half.weights_, 0.5 * np.full(2, 0.5) + 0.5 * stack.weights_)
    with pytest.raises(TelemetryError, match="shrinkage must be in \\[0, 1\\]"):
        Combination(shrinkage=1.5)
    with pytest.raises(TelemetryError, match="selection must be a fraction"):
        Combination(selection=2.0)
    with pytest.raises(TelemetryError, match="unknown threshold method 'edge'"):
        DecisionLayer.from_dict({"rule": {"threshold": {"method": "edge"}}})


def test_smoothing_span_is_chosen_on_validation_from_the_grid():
    y, good, noise = labelled_scores()
    ens = DecisionLayer(rule=Rule(spans=(1, 5))).fit(np.stack([good, noise], 1), y)
    assert ens.decision_.rule_.smooth in (1, 5) and ens.record()["rule"]["smooth"] == ens.decision_.rule_.smooth


def test_mean_max_and_median_combinations():
    y, good, noise = labelled_scores()
    s = np.stack([good, noise], 1)
    mean = DecisionLayer(combination=Combination("mean")).fit(s, y)
    np.testing.assert_allclose(mean.score(s), mean.calibrated(s).mean(axis=1), rtol=1e-5)
    mx = DecisionLayer(combination=Combination("max")).fit(s, y)
    np.testing.assert_allclose(mx.score(s), mx.calibrated(s).max(axis=1), rtol=1e-6)
    # median of three: one member's spike alone does not move it
    spike = noise.copy()
    spike[100] = 1e3
    s3 = np.stack([good, noise, spike], 1)
    med = DecisionLayer(combination=Combination("median")).fit(s3, y)
    c = med.calibrated(s3)
    np.testing.assert_allclose(med.score(s3), np.sort(c, axis=1)[:, 1], rtol=1e-6)
    assert med.score(s3)[100] < c[100, 2] / 10
    with pytest.raises(TelemetryError, match="unknown combination 'trimmed'"):
        Combination("trimmed")


def test_submission_is_exactly_one_binary_row_per_test_id_in_order(tmp_path):
    ids = np.array([10, 11, 12, 15])
    write_submission(tmp_path / "s.csv", ids, np.array([0, 1, 1, 0], np.uint8), ids)
    df = pd.read_csv(tmp_path / "s.csv")
    assert list(df.columns) == ["id", "is_anomaly"]
    assert df["id"].tolist() == [10, 11, 12, 15] and df["is_anomaly"].tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize("ids, labels, message", [
    ([10, 11, 12], [0, 1, 0], "3 rows but the test file has 4 ids"),
    ([10, 12, 11, 15], [0, 1, 0, 0], "differ from the test file at row 1 \\(id 12 vs 11\\)"),
    ([10, 11, 12, 15], [0, 2, 0, 0], "must be one 0/1 value"),
])
def test_submission_refuses_mismatched_ids_and_writes_nothing(tmp_path, ids, labels, message):
    (tmp_path / "s.csv").write_text("previous\n")
    with pytest.raises(TelemetryError, match=message):
        write_submission(tmp_path / "s.csv", np.array(ids), np.array(labels), np.array([10, 11, 12, 15]))
    assert (tmp_path / "s.csv").read_text() == "previous\n"  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]  # and no temp file is left


# -- per channel -------------------------------------------------------------------------------

def series_ending_in_anomalies(n_series=20, rows=100, seed=0):
    """Series back to back (offsets ``seg``), every other one ending in a 20-row anomaly (a discharge
    ending in a disruption); each series' first row scores the nominal median."""
    rng = np.random.default_rng(seed)
    seg = np.arange(0, n_series * rows + 1, rows)
    y = np.zeros(seg[-1], np.uint8)
    for end in seg[1::2]:
        y[end - 20:end] = 1
    s = np.stack([rng.normal(0, 1, y.size) + 6 * y, rng.normal(0, 1, y.size)], axis=1)  # good, noise
    s[seg[:-1]] = 0.0
    return s, y, seg


def test_the_decision_layer_never_carries_one_series_into_the_next():
    s, y, seg = series_ending_in_anomalies()
    first = seg[1:-1:2]  # each series that follows one ending in an anomaly: its first row
    cs = np.repeat(s[:, :, None], 2, axis=2)  # per-channel scores: 2 members x 2 channels
    ens = DecisionLayer(rule=Rule(spans=(25,))).fit(s, y, ["good", "noise"], channel_scores=cs, channels=["a", "b"],
                                                    segments=seg)
    pred = ens.predict(s, segments=seg)
    assert pred[first - 1].all() and not pred[first].any()
    assert ens.predict(s)[first].all()  # taken as one series, each anomaly runs on into the next series
    # the smoothing restarts: a series' first row is its own score
    np.testing.assert_allclose(ens.decision_score(s, segments=seg)[first], ens.score(s)[first], rtol=1e-6, atol=1e-6)
    assert not ens.channel_predictions(cs, seg)[first].any() and (ens.channel_margins(cs, seg)[first] < 0).all()
    union = DecisionLayer(rule=Rule(spans=(25,), per_channel=True), guard=None).fit(s, y, channel_scores=cs, segments=seg)
    assert not union.predict(s, cs, seg)[first].any() and (union.score(s, cs, seg)[first] < 0).all()
    with pytest.raises(TelemetryError, match=r"^validation scores: segments must be increasing offsets from 0 to 2000"):
        DecisionLayer().fit(s, y, segments=[0, 100, 50, 2000])


def events_across_boundaries(seed=0):
    """Ten series of 100 rows, an event across each inner boundary (its last 10 rows in one series, its
    first 10 in the next); every other event is weak in the member "good" after the boundary."""
    rng = np.random.default_rng(seed)
    seg = np.arange(0, 1001, 100)
    y = np.zeros(1000, np.uint8)
    s = np.stack([rng.normal(0, 1, 1000), rng.normal(0, 1, 1000)], axis=1)  # good, noise
    for k, end in enumerate(seg[1:-1]):
        y[end - 10:end + 10] = 1
        s[end - 10:end, 0] += 6
        s[end:end + 10, 0] += 6 if k % 2 else 1.5
    return s, y, seg


@pytest.mark.parametrize("params", [{"combination": {"method": "mean"}, "rule": {"threshold": {"method": "best_f05"},
                                                                                 "spans": [1]}, "guard": None},
                                    {}])
def test_validation_f05_counts_events_per_series(params):
    from ensemble.combine import best_f05
    from detection.metrics import corrected_event_f05

    s, y, seg = events_across_boundaries()
    ens = DecisionLayer.from_dict(params).fit(s, y, ["good", "noise"], segments=seg)
    pred = ens.predict(s, segments=seg)
    assert ens.val_f05_ == corrected_event_f05(y, pred, seg) != corrected_event_f05(y, pred)
    cal = ens.calibrated(s)
    assert ens.member_val_f05_ == [best_f05(cal[:, j], y, seg) for j in range(2)]
    assert ens.member_val_f05_[0] != best_f05(cal[:, 0], y)
    joined = DecisionLayer.from_dict(params).fit(s, y, ["good", "noise"])  # taken as one series
    assert joined.val_f05_ == corrected_event_f05(y, joined.predict(s)) > ens.val_f05_


def test_channel_union_f05_counts_events_per_series():
    from detection.metrics import corrected_event_f05

    s, y, seg = events_across_boundaries()
    cs = np.repeat(s[:, :, None], 2, axis=2)
    union = DecisionLayer(rule=Rule(spans=(1, 5), per_channel=True), guard=None).fit(s, y, channel_scores=cs, segments=seg)
    pred = union.predict(s, cs, seg)
    assert union.val_f05_ == corrected_event_f05(y, pred, seg) != corrected_event_f05(y, pred)
    e = union.channel_ensemble_scores(cs)
    view = union.channel_view_
    assert view.val_f05_alone_ == [corrected_event_f05(y, r.predict(e[:, k], seg), seg) for k, r in enumerate(view.rules_)]


def test_the_unsupervised_layer_never_carries_one_series_into_the_next():
    from ensemble.unsupervised import UnsupervisedEnsemble

    s, _, seg = series_ending_in_anomalies()
    ens = UnsupervisedEnsemble(rule=Threshold(method="percentile", percentile=90, smooth=25)).fit(s, segments=seg)
    first = seg[1:-1:2]
    assert ens.predict(s, segments=seg)[first - 1].all() and not ens.predict(s, segments=seg)[first].any()
    assert ens.predict(s)[first].all()
    np.testing.assert_allclose(ens.decision_score(s, segments=seg)[first], ens.score(s)[first], rtol=1e-6, atol=1e-6)


def test_channel_union_matches_a_hand_computed_case():
    """Two members with per-channel scores (a third without), two channels, 20 rows. Nominal rows
    alternate +-1 in every channel, so z calibration leaves them as they are; member 2 is member 0
    times 10 plus 100, which its own per-channel calibration undoes. Channel 0 peaks (4) at row 5,
    channel 1 (3) at row 15. The 95th percentile of 20 values [-1 x9, 0, 1 x9, peak] is
    1 + 0.05 (peak - 1): 1.15 for channel 0, 1.10 for channel 1; each fires on its own row only."""
    n = 20
    y = np.zeros(n, np.uint8)
    y[[4, 15]] = 1
    base = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    base[[4, 15]] = 0.0  # nominal rows: nine +1 and nine -1
    ch = np.stack([base, base], axis=1)
    ch[4, 0], ch[15, 1] = 4.0, 3.0
    cs = np.stack([ch, np.zeros_like(ch), 10 * ch + 100], axis=1)[:, [0, 2]].astype(np.float32)  # [rows, 2, 2]
    main = np.stack([ch.max(1), np.random.default_rng(0).normal(size=n), ch.max(1)], axis=1)
    rule = Threshold(method="percentile", percentile=95)
    ens = DecisionLayer(Calibration("z"), Combination("mean"), Rule(rule, spans=(1,), per_channel=True))
    ens.fit(main, y, ["a", "iforest", "b"], channel_scores=cs, channel_members=[0, 2], channels=["x", "y"])
    np.testing.assert_allclose([r.threshold_ for r in ens.channel_view_.rules_], [1.15, 1.10], rtol=1e-5)
    np.testing.assert_allclose(ens.channel_ensemble_scores(cs), ch, atol=1e-5)
    per = ens.channel_predictions(cs)
    np.testing.assert_array_equal(np.flatnonzero(per[:, 0]), [4])
    np.testing.assert_array_equal(np.flatnonzero(per[:, 1]), [15])
    union = ens.predict(main, cs)
    np.testing.assert_array_equal(np.flatnonzero(union), [4, 15])
    assert union.dtype == np.uint8 and ens.val_f05_ == ens.channel_view_.val_f05_ == 1.0 and ens.threshold_ == 0.0
    margin = ens.score(main, cs)  # the largest margin of a channel over its own threshold
    assert margin[4] == pytest.approx(4 - 1.15, abs=1e-5) and margin[15] == pytest.approx(3 - 1.10, abs=1e-5)
    assert (margin[y == 0] < 0).all()
    d = ens.record()
    assert d["per_channel"] and [c["channel"] for c in d["channels"]] == ["x", "y"]
    # the main decision keeps its own rule, and the channel rules are still there to explain it
    plain = DecisionLayer(Calibration("z"), Combination("mean"), Rule(rule, spans=(1,)))
    plain.fit(main, y, channel_scores=cs, channel_members=[0, 2], channels=["x", "y"])
    np.testing.assert_array_equal(plain.predict(main), plain.decision_.rule_.predict(plain.score(main)))
    np.testing.assert_array_equal(plain.channel_predictions(cs), per)
    # as a breakdown of the main decision, each channel is smoothed like the main score (no own search)
    smooth = DecisionLayer(Calibration("z"), Combination("mean"), Rule(rule, spans=(1, 3)))
    smooth.fit(main, y, channel_scores=cs, channel_members=[0, 2], channels=["x", "y"])
    assert {r.smooth for r in smooth.channel_view_.rules_} == {smooth.decision_.rule_.smooth}
    with pytest.raises(TelemetryError, match="per-channel decision needs the members' per-channel scores"):
        DecisionLayer(rule=Rule(rule, per_channel=True)).fit(main, y)
    with pytest.raises(TelemetryError, match="needs the members' per-channel scores of this split"):
        ens.predict(main)
    with pytest.raises(TelemetryError, match=r"must be \[rows, 2 members, 2 channels\]"):
        ens.predict(main, cs[:, :1])


def test_event_table_names_the_channels_above_their_own_threshold():
    from ensemble.report import event_table

    ids = np.arange(100, 110)
    pred = np.array([0, 1, 1, 0, 0, 1, 0, 0, 1, 1], np.uint8)
    score = np.arange(10, dtype=np.float32)
    margins = np.full((10, 3), -1.0, np.float32)
    margins[2, 1], margins[1, 2] = 2.0, 0.5  # event 1: b (2.0) then c (0.5)
    margins[5, 0] = -0.25  # event 2: no channel over its own threshold; a is the closest
    margins[9, 2] = 0.0  # event 3: c, exactly at its threshold
    margins[3, 0] = 9.0  # outside every event: ignored
    t = event_table(ids, pred, score, margins, ["a", "b", "c"])
    assert t[["start_id", "end_id", "rows", "peak_score"]].values.tolist() == [[101, 102, 2, 2], [105, 105, 1, 5],
                                                                             [108, 109, 2, 9]]
    assert t["channels"].tolist() == ["b;c", "", "c"] and t["n_channels"].tolist() == [2, 0, 1]
    assert t["top_channel"].tolist() == ["b", "a", "c"] and t["margin_a"].tolist() == [-1.0, -0.25, -1.0]
    assert list(event_table(ids, np.zeros(10), score, margins, ["a", "b", "c"]).columns)[-1] == "margin_c"
    assert list(event_table(ids, pred, score).columns) == ["event", "start_id", "end_id", "rows", "peak_score"]


# -- end to end from a stored experiment -------------------------------------------------------

PLANT = slice(1200, 1215)  # test rows given a large offset in channel_42 alone
LAYERS = load_layers(Path(__file__).resolve().parents[1] / "benchmarks" / "layers.yaml")


def layer(name: str):
    """``build``'s decision: None for the default layer, else a candidate of benchmarks/layers.yaml."""
    return None if name == "default" else LAYERS[name]

@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    import ray

    from search.config import parse_config
    from search.runner import run_sweep
    from telemetry.synthetic.mission import generate_mission

    root = tmp_path_factory.mktemp("ens")
    generate_mission(root / "m", rows=8000, seed=5, test_rows=2000)
    # A signal in one channel only (channel_42), for the per-channel view: labelled as an anomaly.
    test = pd.read_parquet(root / "m" / "test.parquet")
    x = test["channel_42"].to_numpy().copy()
    x[PLANT] += np.float32(30 * x.std())
    test["channel_42"] = x
    test.to_parquet(root / "m" / "test.parquet", index=False)
    truth = pd.read_parquet(root / "m" / "test_labels.parquet")
    y = truth["is_anomaly"].to_numpy().copy()
    y[PLANT] = 1
    truth["is_anomaly"] = y
    truth.to_parquet(root / "m" / "test_labels.parquet", index=False)
    cfg = parse_config({
        "name": "e2e", "seed": 3,
        "data": {"train": "m/train.parquet", "test": "m/test.parquet", "test_labels": "m/test_labels.parquet",
                 "channels": "41-43", "fractions": [0.5, 0.25, 0.25]},
        "ray": {"num_cpus": 2}, "search": {"max_concurrent_trials": 2},
        "architectures": {
            "dense_ae": {"trials": 2, "space": {"latent": {"choice": [2, 4]}},
                         "fixed": {"window": 8, "units": 8, "epochs": 1, "batch_size": 256, "train_stride": 4, "score_stride": 4}},
            "global_std": {"trials": 1},
        }}, base_dir=root)
    try:
        summary = run_sweep(cfg, storage_path=str(root / "sweeps"))
    finally:
        ray.shutdown()
    assert summary["architectures"]["dense_ae"]["completed"] == 2
    return summary["experiment"], root


def test_build_end_to_end_writes_a_valid_submission_and_report(experiment, tmp_path):
    from ensemble.build import build
    from search.experiment import read_sets
    from search.results import leaderboard

    exp, root = experiment
    res = build(exp, tmp_path / "out", include=("baselines",), weight_trials=10)
    sets = read_sets(exp)
    sub = pd.read_csv(tmp_path / "out" / "submission.csv")
    test_ids = pd.read_parquet(root / "m" / "test.parquet", columns=["id"])["id"].to_numpy()
    np.testing.assert_array_equal(sub["id"].to_numpy(), test_ids)
    assert set(sub["is_anomaly"].unique()) <= {0, 1}
    pred = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    assert list(pred.columns) == ["id", "score", "is_anomaly"] and len(pred) == len(sets["test_ids"])
    report = (tmp_path / "out" / "report.md").read_text()
    assert "**ensemble**" in report and "trace_holdout.png" in report and "global_std" in report
    assert (tmp_path / "out" / "trace_validation.png").stat().st_size > 10_000
    cfg = yaml.safe_load((tmp_path / "out" / "ensemble.yaml").read_text())
    board = leaderboard(exp, write=False)
    distinct_dense = board[(board.arch == "dense_ae") & board.completed]["params"].nunique()
    assert len(cfg["members"]) == min(distinct_dense, 2) + 1 and abs(sum(m["weight"] for m in cfg["ensemble"]["members"]) - 1) < 1e-6
    assert res["members"] and res["picked_member"] in res["verdict"]
    # The mission has test labels: the same comparison on test, its difference the two F0.5 apart.
    tc = res["test_comparison"]
    assert tc["reference"] == res["picked_member"] and tc["lo"] <= tc["hi"]
    assert tc["difference"] == pytest.approx(res["test_f05"] - res["picked_member_test_f05"], abs=1e-9)
    assert "(validation's pick)" in report and "f05 [90 % interval]" in report
    assert "## Drift" in report and res["drift"].startswith("The test period is")
    drift = pd.read_csv(tmp_path / "out" / "drift.csv")
    assert set(drift["split"]) == {"validation", "holdout", "test"} and len(drift) == 3 * 3  # channels 41-43
    assert (tmp_path / "out" / "score_over_time.png").stat().st_size > 10_000



@pytest.mark.parametrize("decision", ["stack-shrunk-smooth-plateau-hysteresis",
                                      "channel-union-stack-shrunk-smooth-plateau-hysteresis"])
def test_build_names_the_channel_of_a_signal_planted_in_one_channel(experiment, tmp_path, decision):
    from ensemble.build import build
    from search.experiment import read_sets

    exp, _ = experiment
    build(exp, tmp_path / "out", include=("baselines",), weight_trials=10, decision=layer(decision))
    ev = pd.read_csv(tmp_path / "out" / "events.csv", keep_default_na=False)
    test_ids = read_sets(exp)["test_ids"]
    lo, hi = test_ids[PLANT.start], test_ids[PLANT.stop - 1]
    hit = ev[(ev["start_id"] <= hi) & (ev["end_id"] >= lo)]
    assert len(hit) == 1, ev
    row = hit.iloc[0]
    assert row["top_channel"] == "channel_42" and row["channels"].split(";")[0] == "channel_42"
    assert row["margin_channel_42"] > 10 * max(row["margin_channel_41"], row["margin_channel_43"], 1.0)
    assert (ev["n_channels"] >= 1).all() or decision.startswith("stack")  # the union: every event has a channel
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Per-channel view" in report and "| channel_42 |" in report
    cfg = yaml.safe_load((tmp_path / "out" / "ensemble.yaml").read_text())["ensemble"]
    assert cfg["per_channel"] == decision.startswith("channel-union")
    assert [c["channel"] for c in cfg["channels"]] == ["channel_41", "channel_42", "channel_43"]
    if cfg["per_channel"]:
        assert "per-channel union" in report


def test_experiments_without_per_channel_scores_still_build(experiment, tmp_path):
    """Trials stored before per-channel scores existed: the build works and says there is no view."""
    from ensemble.build import build
    from search.results import leaderboard

    exp, _ = experiment
    copy = tmp_path / "old"
    shutil.copytree(exp, copy)
    for ckpt in leaderboard(str(copy), write=False)["checkpoint"].dropna():
        sc = dict(np.load(f"{ckpt}/scores.npz"))
        assert "validation_channels" in sc
        np.savez(f"{ckpt}/scores.npz", **{k: v for k, v in sc.items() if not k.endswith("_channels")})
        meta = json.loads(open(f"{ckpt}/trial.json").read())
        meta.pop("channels"), meta.pop("channel_scores")
        open(f"{ckpt}/trial.json", "w").write(json.dumps(meta))
    build(str(copy), tmp_path / "out", include=("baselines",), weight_trials=10)
    ev = pd.read_csv(tmp_path / "out" / "events.csv")
    assert list(ev.columns) == ["event", "start_id", "end_id", "rows", "peak_score"]
    assert "no per-channel breakdown" in (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(TelemetryError, match="per-channel decision needs the members' per-channel scores"):
        build(str(copy), tmp_path / "union", include=("baselines",), weight_trials=10,
              decision=LAYERS["channel-union-stack-shrunk-smooth-plateau-hysteresis"])


def _rows(ens, ref):
    return [{"member": "**ensemble**", "f05": ens}, {"member": "m#1", "f05": ref}]


@pytest.mark.parametrize("lo, hi, events, words", [
    (0.05, 0.3, 8, "is above that of the member validation would pick"),
    (-0.3, -0.05, 8, "is below that of the member validation would pick"),
    (-0.1, 0.2, 3, "cannot be told apart"),
    (0.0, 0.0, 0, "holds no anomaly event"),
])
def test_verdict_follows_the_paired_interval(lo, hi, events, words):
    from ensemble.report import verdict_text

    text = verdict_text(_rows(0.7, 0.6), {"reference": "m#1", "difference": 0.1, "lo": lo, "hi": hi, "true_events": events})
    assert words in text
    others = [w for *_, w in [(0, 0, 0, "is above"), (0, 0, 0, "is below"), (0, 0, 0, "cannot be told apart"),
                              (0, 0, 0, "holds no anomaly event")] if w not in words]
    assert not any(w in text for w in others)
    if words.startswith("is below"):  # with 8 events the verdict is stated, not advice
        assert "prefer that member" not in text and "8 holdout events are too few to act on" in text
        many = verdict_text(_rows(0.7, 0.6), {"reference": "m#1", "difference": 0.1, "lo": lo, "hi": hi,
                                              "true_events": 40})
        assert "prefer that member" in many and "too few" not in many


def test_holdout_evaluation_intervals_are_paired():
    from ensemble.build import evaluate
    from detection.metrics import corrected_event_f05

    y = np.zeros(2000, np.uint8)
    for a in range(100, 2000, 200):
        y[a:a + 10] = 1
    good = y.copy()
    bad = np.roll(y, 50)  # every event missed, every run false
    rows, cmp = evaluate(y, {"**ensemble**": good, "m#1": bad, "m#2": good}, {k: v.astype(float) for k, v in
                         {"**ensemble**": good, "m#1": bad, "m#2": good}.items()}, "m#2", resamples=200)
    ens = rows[0]
    assert ens["f05"] == corrected_event_f05(y, good) == 1.0 and ens["f05_lo"] == ens["f05_hi"] == 1.0
    assert rows[1]["f05"] == 0.0
    assert (cmp["difference"], cmp["lo"], cmp["hi"], cmp["true_events"]) == (0.0, 0.0, 0.0, 10)


def test_holdout_evaluation_counts_events_per_series():
    from ensemble.build import evaluate

    y = np.zeros(2000, np.uint8)
    for a in range(100, 2000, 200):
        y[a:a + 10] = 1
    seg = np.concatenate([[0], np.arange(105, 2000, 200), [2000]])  # every event cut in two halves
    half = y.copy()
    half[np.arange(105, 2000, 200)[:, None] + np.arange(5)] = 0  # each event's first half only
    preds = {"**ensemble**": half, "m#2": y}
    raw = {k: v.astype(float) for k, v in preds.items()}
    rows, cmp = evaluate(y, preds, raw, "m#2", resamples=200)
    assert rows[0]["f05"] == 1.0 and rows[0]["true_events"] == 10 and cmp["difference"] == 0.0
    rows, cmp = evaluate(y, preds, raw, "m#2", resamples=200, segments=seg)
    # 20 events per series, 10 detected: Pr = 1, Re = 1/2 -> F0.5 = 5/6
    assert rows[0]["f05"] == pytest.approx(5 / 6) and (rows[0]["true_events"], rows[0]["detected_events"]) == (20, 10)
    assert rows[1]["f05"] == 1.0 and cmp["difference"] == pytest.approx(-1 / 6) and cmp["true_events"] == 20
    assert rows[0]["f05_hi"] < 1.0 and cmp["hi"] < 0.0


@pytest.mark.parametrize("decision, evidence", [
    *((d, "validation") for d in ("stack-shrunk-smooth-plateau-hysteresis-fallback", "stack-shrunk-smooth-plateau-hysteresis",
                                  "mean-plateau", "legacy-weighted-edge", "mean-bootstrap", "mean-pot-1e-3",
                                  "select-mean-plateau", "channel-union-stack-shrunk-smooth-plateau-hysteresis",
                                  "logz-stack-shrunk-smooth-plateau-hysteresis-fallback", "default")),
    ("default", "fit+validation"), ("channel-union-stack-shrunk-smooth-plateau-hysteresis", "fit+validation")])
def test_a_signal_planted_only_in_holdout_and_test_is_never_used(experiment, tmp_path, decision, evidence):
    """Calibration, weights, threshold and post-processing must not move when holdout/test scores change."""
    from ensemble.build import build
    from search.experiment import read_sets
    from search.results import leaderboard

    exp, _ = experiment
    build(exp, tmp_path / "a", include=("baselines",), weight_trials=10, decision=layer(decision), evidence=evidence)
    copy = tmp_path / "exp_copy"
    shutil.copytree(exp, copy)
    board = leaderboard(str(copy), write=False)
    sets = read_sets(str(copy))
    # global_std becomes a perfect detector on holdout and test only.
    row = board[board["arch"] == "global_std"].iloc[0]
    ckpt = row["checkpoint"]
    assert ckpt.startswith(str(copy))  # Tune stores paths relative to the experiment: we edit the copy
    sc = dict(np.load(f"{ckpt}/scores.npz"))
    sc["holdout"] = sets["holdout_labels"].astype(np.float32) * 100
    sc["test"] = sets["test_true_labels"].astype(np.float32) * 100
    np.savez(f"{ckpt}/scores.npz", **sc)
    build(str(copy), tmp_path / "b", include=("baselines",), weight_trials=10, decision=layer(decision), evidence=evidence)
    a = yaml.safe_load((tmp_path / "a" / "ensemble.yaml").read_text())["ensemble"]
    b = yaml.safe_load((tmp_path / "b" / "ensemble.yaml").read_text())["ensemble"]
    assert a["rule"] == b["rule"] and a["validation_f05"] == b["validation_f05"] and a["channels"] == b["channels"]
    assert [(m["weight"], m["calibration"]) for m in a["members"]] == [(m["weight"], m["calibration"]) for m in b["members"]]
    if decision == "mean-plateau":  # every member counts, so the plant must show in the test scores
        pa = pd.read_parquet(tmp_path / "a" / "predictions.parquet")
        pb = pd.read_parquet(tmp_path / "b" / "predictions.parquet")
        assert not np.allclose(pa["score"], pb["score"])


def test_select_members_rules():
    from ensemble.members import select_members

    rows = []
    for arch, vals in {"conv_ae": [0.9, 0.8, 0.7], "lstm_forecaster": [0.6, 0.5], "global_std": [0.95],
                       "cnn_lstm_classifier": [0.99], "pca": [0.4]}.items():
        for i, v in enumerate(vals):
            rows.append({"arch": arch, "trial_id": f"{arch}_{i}", "completed": True, "val_f05": v,
                         "params": json.dumps({"i": i if v != 0.8 else 0})})  # conv_ae's 0.8 repeats the 0.9 config
    rows.append({"arch": "conv_ae", "trial_id": "stopped", "completed": False, "val_f05": 0.99, "params": "{}"})
    board = pd.DataFrame(rows)
    picked = select_members(board, k=2)
    # Best first; k distinct configurations per architecture; one forecaster; no baseline, no supervised
    # member, no early-stopped trial unless asked.
    assert picked["trial_id"].tolist() == ["conv_ae_0", "conv_ae_2", "lstm_forecaster_0", "pca_0"]
    both = select_members(board, k=1, include=("baselines", "supervised"))
    assert both["trial_id"].tolist() == ["cnn_lstm_classifier_0", "global_std_0", "conv_ae_0", "lstm_forecaster_0", "pca_0"]
    with pytest.raises(TelemetryError, match="no completed trial"):
        select_members(board.assign(completed=False))
    with pytest.raises(TelemetryError, match="no member left after selection"):
        select_members(board[board["arch"] == "global_std"])


def test_a_member_scoring_like_an_earlier_one_is_replaced_by_the_next_of_its_architecture(monkeypatch):
    """pca with and without telecommand inputs can score validation identically (commands that carry
    nothing it uses): one model twice, counted twice in the uniform part of the weights. The twin
    is left out and the architecture's next finalist (the spare) takes its place; a twin without a
    spare leaves a member fewer. Spares are read only when needed."""
    from ensemble import members as mem

    rng = np.random.default_rng(0)
    base = {name: rng.random(50).astype(np.float32) for name in ("a", "c", "d", "f")}
    scores = {"pca_a": base["a"], "pca_b": base["a"] * np.float32(1 + 1e-8), "pca_c": base["c"],
              "conv_d": base["d"], "conv_e": base["d"].copy(), "lstm_forecaster_f": base["f"]}
    rows = [("pca", "pca_a", 0.9), ("pca", "pca_b", 0.8), ("pca", "pca_c", 0.7), ("conv_ae", "conv_d", 0.85),
            ("conv_ae", "conv_e", 0.6), ("lstm_forecaster", "lstm_forecaster_f", 0.5)]
    board = pd.DataFrame([{"arch": a, "trial_id": t, "completed": True, "val_f05": v, "params": json.dumps({"t": t}),
                           "checkpoint": t, "finalist": True} for a, t, v in rows])
    read = []

    def load_trial(checkpoint):
        read.append(checkpoint)
        return {"trial": checkpoint}, {"validation": scores[checkpoint]}

    monkeypatch.setattr(mem.ex, "load_trial", load_trial)
    kept, loaded, twins = mem._without_twins("exp", mem.select_members(board, 2, spares=1), 2)
    assert [r["trial_id"] for r in kept] == ["pca_a", "conv_d", "pca_c", "lstm_forecaster_f"]
    assert [m["trial"] for m, _ in loaded] == ["pca_a", "conv_d", "pca_c", "lstm_forecaster_f"]
    assert twins == [{"name": "pca#pca_b", "twin_of": "pca#pca_a"}, {"name": "conv_ae#onv_e", "twin_of": "conv_ae#onv_d"}]
    assert sorted(read) == sorted(scores)  # each spare read once, because a twin needed it
    # No twin: the spares are never read.
    read.clear()
    scores["pca_b"], scores["conv_e"] = base["c"] + 1, base["d"] + 1
    kept, _, twins = mem._without_twins("exp", mem.select_members(board, 2, spares=1), 2)
    assert [r["trial_id"] for r in kept] == ["pca_a", "conv_d", "pca_b", "conv_e", "lstm_forecaster_f"]
    assert twins == [] and "pca_c" not in read
    assert mem.same_scores(base["a"], base["a"] * np.float32(1 + 1e-7)) and not mem.same_scores(base["a"], base["a"] + 1e-3)


def test_build_leaves_a_twin_member_out_and_says_so(experiment, tmp_path):
    """End to end: the second dense_ae made to score validation exactly like the first."""
    from ensemble.build import build
    from search.results import leaderboard

    exp, _ = experiment
    copy = tmp_path / "twins"
    shutil.copytree(exp, copy)
    board = leaderboard(str(copy), write=False)
    dense = board[(board.arch == "dense_ae") & board.completed].sort_values("rank")  # the order members are read in
    assert len(dense) == 2
    first, second = (f"{c}/scores.npz" for c in dense["checkpoint"])
    sc = dict(np.load(second))
    sc["validation"] = np.load(first)["validation"]
    np.savez(second, **sc)
    res = build(str(copy), tmp_path / "out", include=("baselines",), weight_trials=10)
    names = [f"dense_ae#{t[-5:]}" for t in dense["trial_id"]]
    assert names[1] not in res["members"] and names[0] in res["members"] and len(res["members"]) == 2
    cfg = yaml.safe_load((tmp_path / "out" / "ensemble.yaml").read_text())
    assert cfg["ensemble"]["twins"] == [{"name": names[1], "twin_of": names[0]}]
    assert f"{names[1]} (= {names[0]})" in (tmp_path / "out" / "report.md").read_text()


def test_event_table_splits_a_predicted_run_at_a_series_boundary():
    from ensemble.report import event_table

    ids = np.arange(100, 110)
    pred = np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0], dtype=np.uint8)
    score = np.array([0, 0, 0, 5, 2, 9, 1, 0, 0, 0], dtype=np.float32)
    one = event_table(ids, pred, score)
    assert one[["start_id", "end_id", "rows", "peak_score"]].values.tolist() == [[103, 106, 4, 9.0]]
    two = event_table(ids, pred, score, segments=np.array([0, 5, 10]))
    assert two[["start_id", "end_id", "rows", "peak_score"]].values.tolist() == [[103, 104, 2, 5.0], [105, 106, 2, 9.0]]


def test_verdict_says_when_the_decision_is_one_member_and_adds_the_test_comparison():
    from ensemble.report import verdict_text

    cmp = {"reference": "m#1", "difference": -0.0, "lo": -0.01, "hi": -0.0001, "true_events": 299}
    text = verdict_text(_rows(0.81, 0.81), cmp, decision={"chosen": "member", "member": "m#1"})
    # At full scale the cross-fitted check chose the picked member itself: no "below", no advice to prefer it.
    assert text.startswith("The decision is **m#1** alone (the cross-fitted check found it better")
    assert "It is also the member validation would pick: the same holdout F0.5." in text
    assert "below" not in text and "prefer" not in text
    guard = verdict_text(_rows(0.5, 0.6), {**cmp, "difference": -0.1, "lo": -0.2, "hi": -0.05, "true_events": 40},
                         decision={"chosen": "member_rule", "member": "m#2"})
    assert guard.startswith("The decision is **m#2** alone (the combination's rule found no validation event). ")
    assert "is below that of the member validation would pick" in guard
    test = {"reference": "m#1", "difference": 0.2, "lo": 0.05, "hi": 0.3, "true_events": 20}
    both = verdict_text(_rows(0.7, 0.6), {**cmp, "difference": 0.1, "lo": -0.1, "hi": 0.2, "true_events": 7}, test_cmp=test)
    assert "cannot be told apart" in both and both.endswith(
        "On the labelled test split (20 events; labels used for this figure only) the ensemble is above that member: "
        "difference +0.200, 90 % interval [+0.050, +0.300].")


def test_fit_evidence_is_each_members_own_model_on_the_fit_split_and_fits_the_layer(experiment, tmp_path):
    from ensemble.build import build
    from ensemble.evidence import fit_evidence
    from ensemble.members import load_members
    from models.base import Detector
    from search.experiment import model_dir, read_sets, read_sweep
    from telemetry.events import events
    from telemetry.prepare import prepare

    exp, _ = experiment
    sets = read_sets(exp)
    n_fit_events = len(events(sets["fit_labels"]))
    assert n_fit_events >= 1  # the mission's fit split holds events: the case this is for
    members = load_members(exp, 2, ("baselines",))
    ev = fit_evidence(members)
    assert ev.scores.shape == (sets["fit_ids"].size, len(members.names)) and ev.events == n_fit_events
    np.testing.assert_array_equal(ev.labels, sets["fit_labels"])
    assert ev.channel_scores.shape == (sets["fit_ids"].size, len(members.channel_members), 3)
    # Column j is member j's model: that model scores validation exactly as member j's trial stored it.
    data = prepare(read_sweep(exp).data)
    for j, meta in enumerate(members.metas):
        est = Detector.load(model_dir(meta["checkpoint"]))
        np.testing.assert_allclose(est.score_samples(data.validation), members.scores["validation"][:, j], rtol=1e-5)
        np.testing.assert_allclose(est.score_samples(data.fit), ev.scores[:, j], rtol=1e-5)
    build(exp, tmp_path / "out", include=("baselines",), weight_trials=10, evidence="fit+validation")
    cfg = yaml.safe_load((tmp_path / "out" / "ensemble.yaml").read_text())["ensemble"]
    assert cfg["evidence"] == {"splits": ["fit", "validation"],
                               "events": {"fit": n_fit_events, "validation": len(events(sets["validation_labels"]))}}
    assert "on the fit and validation splits together" in (tmp_path / "out" / "report.md").read_text()
    build(exp, tmp_path / "val", include=("baselines",), weight_trials=10, evidence="validation")
    cfg = yaml.safe_load((tmp_path / "val" / "ensemble.yaml").read_text())["ensemble"]
    assert cfg["evidence"]["splits"] == ["validation"]


def test_build_s_default_evidence_takes_the_fit_split_on_small_data_only(experiment, tmp_path, monkeypatch):
    from ensemble.build import build
    from ensemble.evidence import evidence_for_rows
    from search.experiment import read_sets
    import search.auto

    exp, _ = experiment
    rows = sum(read_sets(exp)[f"{s}_ids"].size for s in ("fit", "validation", "holdout", "test"))
    build(exp, tmp_path / "small", include=("baselines",), weight_trials=10)  # evidence="auto", the default
    cfg = yaml.safe_load((tmp_path / "small" / "ensemble.yaml").read_text())["ensemble"]
    assert cfg["evidence"]["splits"] == ["fit", "validation"]
    monkeypatch.setattr(search.auto, "SCORE_ALL_ROWS", rows - 1)  # the same sweep as if it were one row too large
    assert evidence_for_rows(rows) == "validation" and evidence_for_rows(rows - 1) == "fit+validation"
    build(exp, tmp_path / "large", include=("baselines",), weight_trials=10)
    cfg = yaml.safe_load((tmp_path / "large" / "ensemble.yaml").read_text())["ensemble"]
    assert cfg["evidence"]["splits"] == ["validation"]


def test_no_fit_evidence_when_a_member_learnt_from_the_fit_split_s_anomalies(experiment, caplog):
    from ensemble.evidence import fit_evidence
    from ensemble.members import load_members

    exp, _ = experiment
    members = load_members(exp, 2, ("baselines",))
    j = next(j for j, m in enumerate(members.metas) if m["arch"] == "global_std")
    members.metas[j]["params"]["nominal_only"] = False  # as a sweep that fixed it so would have stored it
    with caplog.at_level("WARNING", logger="ensemble"):
        assert fit_evidence(members) is None
    assert f"{members.names[j]} learnt from the fit split's anomalous rows" in caplog.text
    members.metas[j]["params"].pop("nominal_only")
    members.metas[j]["arch"] = "cnn_lstm_classifier"  # trains on the labels themselves
    assert fit_evidence(members) is None


def test_fitting_rows_put_the_fit_split_first_each_split_its_own_series():
    from ensemble.evidence import FitEvidence, fitting_rows

    val_s, val_y = np.array([[5.0], [6.0]], np.float32), np.array([0, 1], np.uint8)
    extra = FitEvidence(np.array([[1.0], [2.0], [3.0]], np.float32), np.array([1, 0, 0], np.uint8), None,
                        np.zeros((3, 1, 2), np.float32))
    s, y, seg, ch = fitting_rows(val_s, val_y, None, None)
    assert s is val_s and seg is None and ch == {}
    s, y, seg, _ = fitting_rows(val_s, val_y, None, extra)
    np.testing.assert_array_equal(s[:, 0], [1, 2, 3, 5, 6])
    np.testing.assert_array_equal(y, [1, 0, 0, 0, 1])
    np.testing.assert_array_equal(seg, [0, 3, 5])  # an event at the end of fit never runs into validation
    _, _, seg, ch = fitting_rows(val_s, val_y, np.array([0, 1, 2]), extra,
                                 {"channel_scores": np.ones((2, 1, 2), np.float32), "channel_members": [0]})
    np.testing.assert_array_equal(seg, [0, 3, 4, 5])
    np.testing.assert_array_equal(ch["channel_scores"][:, 0, 0], [0, 0, 0, 1, 1]) and ch["channel_members"] == [0]
    extra = FitEvidence(extra.scores, extra.labels, np.array([0, 1, 3]))
    np.testing.assert_array_equal(fitting_rows(val_s, val_y, None, extra)[2], [0, 1, 3, 5])


def test_an_unknown_evidence_is_refused_before_the_members_are_read(tmp_path):
    from ensemble.__main__ import main
    from ensemble.build import build

    with pytest.raises(TelemetryError, match="unknown evidence 'holdout'; choose one of auto, validation, fit\\+validation"):
        build(str(tmp_path / "no-such-experiment"), tmp_path / "out", evidence="holdout")
    with pytest.raises(SystemExit):
        main(["build", str(tmp_path / "no-such-experiment"), "--out", str(tmp_path / "o"), "--evidence", "test"])
