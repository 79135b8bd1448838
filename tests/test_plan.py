"""search plan: exact counts on a tiny sweep, ASHA's expected epochs, and a real calibration."""
import numpy as np
import pytest

from search import plan
from search.config import parse_config


def tiny(tmp_path, scheduler="asha", **search):
    return parse_config({
        "name": "p", "data": {"train": "train.parquet", "fractions": [0.5, 0.25, 0.25]},
        "search": {"scheduler": scheduler, "grace_period": 1, "reduction_factor": 2, **search},
        "architectures": {
            "dense_ae": {"trials": 3, "space": {"epochs": {"int": [1, 4]}, "latent": {"choice": [2, 4, 8]}},
                         "fixed": {"window": 10, "train_stride": 5, "score_stride": 2, "units": 8}},
            "global_std": {"trials": 1},
            "cnn_lstm_classifier": {"trials": 1, "fixed": {"window": 8, "filters": 4, "units": 4, "epochs": 1}},
        }}, base_dir=tmp_path)


def test_counts_match_a_hand_computation(tmp_path):
    rows = {"fit": 1000, "validation": 500, "holdout": 500, "test": 300}
    t = plan.plan(tiny(tmp_path), rows, n_channels=3, measure=False).set_index("arch")
    d = t.loc["dense_ae"]
    # fit: starts 0, 5, ..., 990 (199 windows) and the tail window at 990 is already there -> 199
    assert d.train_windows_per_epoch == 199
    # validation/holdout: starts 0, 2, ..., 490 -> 246 each; test: 0..290 -> 146. Every trial scores
    # validation; the 3 finalists (the default, all 3 trials here) score holdout and test afterwards.
    assert d.scored_windows_per_trial == 246
    assert d.finalists == 3 and d.finalist_windows == 246 + 146
    # ASHA with grace 1, eta 2, max 4: all trials to epoch 1, half to 2, a quarter to 4
    assert d.epochs_max == 4 and d.epochs_expected == pytest.approx(1 + 0.5 * 1 + 0.25 * 2)
    g = t.loc["global_std"]
    assert g.train_windows_per_epoch == 1000 and g.scored_windows_per_trial == 500 and g.epochs_max == 1
    assert g.finalists == 1 and g.finalist_windows == 800  # one trial: one finalist
    fifo = plan.plan(tiny(tmp_path, "fifo"), rows, n_channels=3, measure=False).set_index("arch")
    assert fifo.loc["dense_ae"].epochs_expected == 4
    # finalists 2: two of dense_ae's three trials score holdout and test; "all": every trial scores every split
    two = plan.plan(tiny(tmp_path, finalists=2), rows, n_channels=3, measure=False).set_index("arch")
    assert two.loc["dense_ae"].finalists == 2 and two.loc["global_std"].finalists == 1
    every = plan.plan(tiny(tmp_path, finalists="all"), rows, n_channels=3, measure=False).set_index("arch")
    assert every.loc["dense_ae"].scored_windows_per_trial == 246 + 246 + 146 and every.loc["dense_ae"].finalist_windows == 0
    assert every.loc["global_std"].scored_windows_per_trial == 1300


def test_helpers():
    assert plan.n_windows(100, 10, 7) == 14  # 0, 7, ..., 84 (13) plus the tail window at 90
    assert plan.n_windows(9, 10, 1) == 0
    assert plan.typical({"choice": [8, 16, 32, 64]}) == 16
    assert plan.typical({"int": [4, 64], "log": True}) == 16
    assert plan.typical({"float": [0.0, 0.4]}) == pytest.approx(0.2)
    assert plan.asha_epochs(9, 1, 3) == pytest.approx(1 + 2 / 3 + 6 / 9)


def test_calibration_times_a_real_epoch_and_estimates_hours(tmp_path):
    rows = {"fit": 4000, "validation": 1000, "holdout": 1000, "test": 1000}
    t = plan.plan(tiny(tmp_path), rows, n_channels=3, speedup=2.0).set_index("arch")
    assert (t["train_rate"] > 0).all() and (t["score_rate"] > 0).all()
    d = t.loc["dense_ae"]
    expected = (d.epochs_expected * d.train_windows_per_epoch / d.train_rate + d.scored_windows_per_trial / d.score_rate) / 2.0
    assert d.trial_seconds == pytest.approx(expected + plan.TRIAL_OVERHEAD_S, abs=0.06)
    assert d.finalist_seconds == pytest.approx(d.finalist_windows / d.score_rate / 2.0, abs=0.06)
    assert d.trial_hours == pytest.approx((3 * d.trial_seconds + 3 * d.finalist_seconds) / 3600, abs=1e-3)
    assert "total: 5 trials" in plan.report(t.reset_index(), 2.0)  # the supervised member calibrates too


def test_split_rows_of_a_discharge_file_count_resampled_rows_not_lines(tmp_path):
    from telemetry.discharges import load_discharges
    from telemetry.synthetic.discharges import write_synthetic_discharges

    path = tmp_path / "d.json"
    write_synthetic_discharges(path, n_discharges=4, seed=0)
    rows = int(load_discharges(path).offsets[-1])
    cfg = parse_config({"name": "d", "data": {"train": str(path), "fractions": [0.5, 0.25, 0.25]},
                        "architectures": {"global_std": {"trials": 1}}}, base_dir=tmp_path)
    split = plan.split_rows_of(cfg)
    assert sum(split[s] for s in ("fit", "validation", "holdout")) == rows and split["test"] == 0
    assert rows > len(path.read_text().splitlines())  # the file is a few lines of JSON
