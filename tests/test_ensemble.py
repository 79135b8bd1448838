"""Ensemble: calibration, weights, submission validity, no use of holdout/test, and build end to end."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from ensemble.calibration import Calibrator
from ensemble.combine import Ensemble
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


@pytest.mark.parametrize("method", ["z", "robust_z", "normal"])
def test_calibration_puts_members_on_one_scale(method):
    y, good, _ = labelled_scores()
    a = good
    b = 1000.0 * good + 5e4  # same ranking, another scale
    ca = Calibrator(method).fit(a, y == 0).transform(a)
    cb = Calibrator(method).fit(b, y == 0).transform(b)
    np.testing.assert_allclose(ca, cb, atol=1e-3)
    nom = ca[y == 0]
    assert abs(np.median(nom)) < 0.1 and 0.8 < np.std(nom) < 1.2
    assert np.all(np.diff(ca[np.argsort(a)]) >= -1e-6)  # monotone


def test_weights_favour_the_informative_member_and_match_the_best_alone():
    y, good, noise = labelled_scores()
    ens = Ensemble(weight_trials=30, seed=1).fit(np.stack([noise, good], 1), y, ["noise", "good"])
    assert ens.weights_[1] > 0.7
    assert ens.val_f05_ >= max(ens.member_val_f05_) - 1e-9
    assert ens.predict(np.stack([noise, good], 1)).dtype == np.uint8
    d = ens.to_dict()
    assert [m["name"] for m in d["members"]] == ["noise", "good"] and d["min_length"] >= 1


def test_mean_and_max_combinations():
    y, good, noise = labelled_scores()
    s = np.stack([good, noise], 1)
    mean = Ensemble(combination="mean").fit(s, y)
    np.testing.assert_allclose(mean.score(s), mean.calibrated(s).mean(axis=1), rtol=1e-5)
    mx = Ensemble(combination="max").fit(s, y)
    np.testing.assert_allclose(mx.score(s), mx.calibrated(s).max(axis=1), rtol=1e-6)
    with pytest.raises(TelemetryError, match="unknown combination 'median'"):
        Ensemble(combination="median")


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


# -- end to end from a stored experiment -------------------------------------------------------

@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    import ray

    from search.config import parse_config
    from search.runner import run_sweep
    from telemetry.synth import generate_mission

    root = tmp_path_factory.mktemp("ens")
    generate_mission(root / "m", rows=8000, seed=5, test_rows=2000)
    cfg = parse_config({
        "name": "e2e", "seed": 3,
        "data": {"train": "m/train.parquet", "test": "m/test.parquet", "test_labels": "m/test_labels.parquet",
                 "channels": "41-43", "fractions": [0.5, 0.25, 0.25]},
        "ray": {"num_cpus": 2},
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
    from search.results import leaderboard, load_sets

    exp, root = experiment
    res = build(exp, tmp_path / "out", include=("baselines",), weight_trials=10)
    sets = load_sets(exp)
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
    assert res["members"] and "holdout F0.5" in res["verdict"]


@pytest.mark.parametrize("combination", ["weighted", "mean"])
def test_a_signal_planted_only_in_holdout_and_test_is_never_used(experiment, tmp_path, combination):
    """Calibration, weights, threshold and post-processing must not move when holdout/test scores change."""
    from ensemble.build import build
    from search.results import leaderboard, load_sets

    exp, _ = experiment
    build(exp, tmp_path / "a", include=("baselines",), weight_trials=10, combination=combination)
    copy = tmp_path / "exp_copy"
    shutil.copytree(exp, copy)
    board = leaderboard(str(copy), write=False)
    sets = load_sets(str(copy))
    # global_std becomes a perfect detector on holdout and test only.
    row = board[board["arch"] == "global_std"].iloc[0]
    ckpt = row["checkpoint"]
    assert ckpt.startswith(str(copy))  # Tune stores paths relative to the experiment: we edit the copy
    sc = dict(np.load(f"{ckpt}/scores.npz"))
    sc["holdout"] = sets["holdout_labels"].astype(np.float32) * 100
    sc["test"] = sets["test_true_labels"].astype(np.float32) * 100
    np.savez(f"{ckpt}/scores.npz", **sc)
    build(str(copy), tmp_path / "b", include=("baselines",), weight_trials=10, combination=combination)
    a = yaml.safe_load((tmp_path / "a" / "ensemble.yaml").read_text())["ensemble"]
    b = yaml.safe_load((tmp_path / "b" / "ensemble.yaml").read_text())["ensemble"]
    for key in ("threshold", "min_length", "max_gap", "validation_f05"):
        assert a[key] == b[key]
    assert [(m["weight"], m["calibration"]) for m in a["members"]] == [(m["weight"], m["calibration"]) for m in b["members"]]
    if combination == "mean":  # every member counts, so the plant must show in the test scores
        pa = pd.read_parquet(tmp_path / "a" / "predictions.parquet")
        pb = pd.read_parquet(tmp_path / "b" / "predictions.parquet")
        assert not np.allclose(pa["score"], pb["score"])
