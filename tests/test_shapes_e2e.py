"""The other data shapes end to end, as a new user runs them (tiny sizes, real Ray Tune and Optuna):

* an unlabelled sweep minimises the validation loss, runs, is interrupted (Ctrl-C) and resumed,
  ranks its leaderboard by loss, and `ensemble build` writes a submission and a report without F0.5;
* a generated 30-device fleet CSV with 3 devices drifting in the second half -> configs/fleet.yaml ->
  sweep -> build -> a report that names the drifting devices;
* generated discharge JSON -> configs/discharges.yaml (the supervised classifier and an autoencoder)
  -> sweep -> build -> a per-discharge table with warning times.

Each test starts its own Ray and shuts it down. Slow by nature (every Keras trial imports TensorFlow
in a fresh worker process).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from search.config import load_config, parse_config
from search.experiment import LEADERBOARD
from search.results import trial_table
from telemetry.errors import TelemetryError
from telemetry.synthetic.fleet import write_synthetic_fleet

ray = pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_ray_leak():
    assert not ray.is_initialized()
    yield
    if ray.is_initialized():
        ray.shutdown()


def subprocess_env() -> dict:
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def from_config(name: str, data: dict, tmp_path: Path, edit=None) -> Path:
    """configs/<name>.yaml with its data paths pointed at generated files (and tiny edits)."""
    raw = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    raw["data"].update(data)
    raw["storage"] = str(tmp_path / "sweeps")
    if edit:
        edit(raw)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# -- unlabelled: loss as the objective --------------------------------------------------------------

def small_fleet(tmp_path, rows=1200, devices=6, drifting=1):
    info = write_synthetic_fleet(tmp_path / "fleet", rows=rows, devices=devices, drifting=drifting, seed=1)
    return info, {"train": info["paths"]["train"], "test": info["paths"]["test"]}


def test_an_unlabelled_sweep_checks_before_ray_and_tpe_minimises_the_validation_loss(tmp_path):
    from search import shapes
    from search.runner import _tuner, run_sweep
    from telemetry.prepare import prepare

    _, data = small_fleet(tmp_path)
    base = {"name": "u", "data": {**data, "channels": "device*", "fractions": [0.5, 0.25, 0.25]},
            "architectures": {"pca": {"trials": 2, "space": {"lags": {"choice": [1, 3]}}}}}
    cfg = parse_config(base)
    prepared = prepare(cfg.data)
    assert not prepared.labelled  # no is_anomaly column: unlabelled without being told
    shapes.adapt(cfg, prepared)
    assert cfg.threshold["method"] == "pot"  # the sweep file named no method: the unsupervised default
    tuner = _tuner(cfg, cfg.architectures[0], lambda c: None, str(tmp_path / "exp"), 1,
                   objective=shapes.objective(prepared.labelled))
    searcher = tuner._local_tuner._tune_config.search_alg
    assert (searcher.metric, searcher.mode) == ("val_loss", "min")
    # what cannot work without labels fails before Ray starts, in one line
    for edit, message in [
        ({"threshold": {"method": "best_f05"}}, "threshold.method best_f05 needs labels, but the data is unlabelled"),
        ({"architectures": {"cnn_lstm_classifier": {"trials": 1}}}, "cnn_lstm_classifier is supervised, but the data "
                                                                    "is unlabelled"),
    ]:
        with pytest.raises(TelemetryError, match=message):
            run_sweep(parse_config({**base, **edit}), storage_path=str(tmp_path / "sweeps"))
        assert not ray.is_initialized()
    # a labelled file read with data.labels: none is unlabelled too
    from conftest import write_challenge_parquet

    write_challenge_parquet(tmp_path / "lab.parquet", n=600)
    cfg2 = parse_config({"name": "l", "data": {"train": str(tmp_path / "lab.parquet"), "channels": "41-43", "labels": "none"},
                         "architectures": {"pca": {}}})
    assert not prepare(cfg2.data).labelled


def test_unlabelled_trial_reports_its_losses_and_an_unsupervised_threshold():
    from models import registry
    from search import trainable
    from telemetry.series import Series

    rng = np.random.default_rng(0)

    def split(n, name, shift=0.0):
        return Series(np.arange(n, dtype=np.int64), (rng.normal(size=(n, 3)) + shift).astype(np.float32), None,
                      ("a", "b", "c"), source=name)

    data = SimpleNamespace(fit=split(400, "fit"), validation=split(200, "validation"), holdout=split(200, "holdout", 2.0),
                           test=split(100, "test"))
    est = registry.get("global_std")().fit(data.fit, data.validation)
    out, rule, m_val, m_hold, _ = trainable._evaluate_unlabelled(est, data, {"method": "pot", "risk": 0.01}, {})
    assert rule.method == "pot" and set(out) >= {"validation", "holdout", "test"}
    assert m_val["loss"] == pytest.approx(1.0, abs=0.2)  # mean squared z of data like the fit split's
    assert m_hold["loss"] > 3 * m_val["loss"]  # a shifted holdout is badly "reconstructed"
    assert m_val["alarm_rate"] < 0.05 < m_hold["alarm_rate"]
    with pytest.raises(ValueError, match="needs labels"):
        trainable._evaluate_unlabelled(est, data, {"method": "plateau"}, {})


@pytest.mark.slow
def test_unlabelled_sweep_runs_is_interrupted_resumes_and_builds(tmp_path, capsys):
    """As tests/test_search.py does for labelled sweeps: Ctrl-C once a trial has finished, resume runs
    only the others; the leaderboard is ordered by validation loss; build writes a submission."""
    from ensemble.build import build
    from conftest import ctrl_c_when
    from test_search import last_results, saved_statuses

    info, data = small_fleet(tmp_path)
    path = from_config("fleet", {**data, "fractions": [0.5, 0.25, 0.25]}, tmp_path, edit=lambda raw: raw.update(
        name="unlabelled", search={"max_concurrent_trials": 1, "max_failures": 0},
        architectures={"pca": {"trials": 3, "space": {"lags": {"choice": [1, 2, 3, 5]},
                                                      "n_components": {"choice": [0.5, 0.9, 0.99]}}}}))
    exp = tmp_path / "sweeps" / "unlabelled"
    arch_dir = exp / "pca"
    env = {**subprocess_env(), "TUNE_GLOBAL_CHECKPOINT_S": "0"}  # Tune saves its state at every step
    proc = subprocess.Popen([sys.executable, "-m", "search", "run", "--config", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, start_new_session=True)
    out, err = ctrl_c_when(proc, lambda: list(saved_statuses(arch_dir).values()).count("TERMINATED") >= 1)
    assert proc.returncode == 130, err[-3000:]
    assert "best validation loss" in out and "F0.5" not in out  # progress lines speak of the objective
    before = trial_table(str(exp))
    done_before = before[before["status"] == "TERMINATED"]
    # normally 1 (a second may end in the moment before the signal arrives); the rest never ran or were cut short
    assert 1 <= len(done_before) < 3 and done_before["completed"].all()
    assert (done_before["objective"] == "val_loss").all() and done_before["val_f05"].isna().all()
    kept = {d: (arch_dir / d / "result.json").read_bytes() for d, r in last_results(arch_dir).items()
            if r[-1]["trial_id"] in set(done_before["trial_id"])}

    proc = subprocess.run([sys.executable, "-m", "search", "resume", str(exp)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pca: 3/3 trials completed, 0 failed" in proc.stdout
    for d, content in kept.items():  # the finished trials were not run again
        assert (arch_dir / d / "result.json").read_bytes() == content
    board = pd.read_csv(exp / LEADERBOARD)
    assert len(board) == 3 and board["completed"].all() and board["rank"].tolist() == [1, 2, 3]
    assert set(board["trial_id"]) > set(done_before["trial_id"])
    assert board["val_loss"].is_monotonic_increasing
    # holdout scored for the best distinct configurations (search.finalists, 3): a repeat (TPE may draw one) has none
    distinct = ~board["params"].duplicated()
    assert (board["finalist"] == distinct).all() and board.loc[distinct, "holdout_loss"].notna().all()
    assert board.loc[~distinct, "holdout_loss"].isna().all()
    assert {json.loads(t)["method"] for t in board["threshold"]} == {"pot"}
    from search.__main__ import main

    assert main(["leaderboard", str(exp)]) == 0
    shown = capsys.readouterr().out
    assert "val_loss" in shown and "val_f05" not in shown

    res = build(str(exp), tmp_path / "out")
    assert res["labelled"] is False and len(res["members"]) == 2  # the 2 lowest validation losses
    best = board.iloc[0]
    assert res["members"][0] == f"pca#{best['trial_id'][-5:]}"
    sub = pd.read_csv(tmp_path / "out" / "submission.csv")
    assert sub["id"].tolist() == list(range(info["train_rows"], info["rows"]))  # test row numbers follow train's
    report = (tmp_path / "out" / "report.md").read_text()
    assert "No labelled figure exists for this data" in report
    assert not re.search(r"f05|F0\.5 \[", report.replace("no F0.5", ""), re.IGNORECASE)


# -- the seed-003 fleet, end to end -----------------------------------------------------------------

@pytest.mark.slow
def test_fleet_csv_sweep_build_names_the_drifting_devices(tmp_path):
    from ensemble.build import build
    from search.runner import run_sweep

    info = write_synthetic_fleet(tmp_path / "fleet", rows=1500, devices=30, drifting=3, seed=0)

    def tiny(raw):
        raw["architectures"]["conv_ae"].update(trials=1, space={})
        raw["architectures"]["conv_ae"]["fixed"].update(epochs=1, latent=8, units=16, train_stride=2)
        raw["architectures"]["pca"].update(trials=1, space={"lags": 3})

    path = from_config("fleet", {"train": info["paths"]["train"], "test": info["paths"]["test"]}, tmp_path, tiny)
    t0 = time.monotonic()
    summary = run_sweep(load_config(path))
    ray.shutdown()
    assert {a: s["completed"] for a, s in summary["architectures"].items()} == {"conv_ae": 1, "pca": 1, "global_std": 1}
    res = build(summary["experiment"], tmp_path / "out", include=("baselines",))
    took = time.monotonic() - t0
    drifting = info["drifting"]
    assert len(drifting) == 3
    report = (tmp_path / "out" / "report.md").read_text()
    sentence = next(line for line in report.splitlines() if line.startswith("The test period is out of the training"))
    assert "on 3 of 30 channels" in sentence and all(d in sentence for d in drifting)
    drift = pd.read_csv(tmp_path / "out" / "drift.csv")
    assert sorted(drift[drift.drifted & (drift.split == "test")].channel) == sorted(drifting)
    assert not drift[drift.split == "validation"].drifted.any()  # the drift starts with the holdout split
    # the channels furthest above their own thresholds on the flagged test rows are the drifting ones
    assert sorted(c for c, _ in res["top_channels"][:3]) == sorted(drifting)
    rates = {r["split"]: r["alarm_rate"] for r in res["alarms"]}
    assert rates["validation"] < 0.05 and rates["test"] > 0.5
    assert len(pd.read_csv(tmp_path / "out" / "submission.csv")) == info["test_rows"]
    print(f"fleet e2e: {took:.0f} s; alarm rates {rates}; top channels {res['top_channels'][:3]}; "
          f"drifting {drifting}")


# -- the seed-002 discharges, end to end ------------------------------------------------------------

@pytest.mark.slow
def test_discharge_json_sweep_with_classifier_and_autoencoder_gives_warning_times(tmp_path):
    from ensemble.build import build
    from search.runner import run_sweep
    from telemetry.synthetic.discharges import write_synthetic_discharges

    d = tmp_path / "disc"
    train = write_synthetic_discharges(d / "train.json", n_discharges=12, seed=0, dt=4e-3, disrupting_fraction=0.5)
    write_synthetic_discharges(d / "test.json", n_discharges=3, seed=1, dt=4e-3, first_shot=70_012)
    disrupting = [str(x) for x in train["disrupting"]]
    normal = [str(70_000 + k) for k in range(12) if str(70_000 + k) not in disrupting]
    # whole discharges per split, named: two disrupting and one normal in validation and in holdout
    lists = {"validation": disrupting[:2] + normal[:1], "holdout": disrupting[2:4] + normal[1:2]}

    def tiny(raw):
        raw["data"]["split_series"] = lists
        raw["threshold"] = {"method": "plateau"}
        for arch in ("cnn_lstm_classifier", "conv_ae"):
            raw["architectures"][arch].update(trials=1, space={})
            raw["architectures"][arch]["fixed"].update(window=16, epochs=1)

    path = from_config("discharges", {"train": str(d / "train.json"), "test": str(d / "test.json")}, tmp_path, tiny)
    t0 = time.monotonic()
    summary = run_sweep(load_config(path))
    ray.shutdown()
    assert summary["architectures"]["cnn_lstm_classifier"]["completed"] == 1
    assert summary["architectures"]["conv_ae"]["completed"] == 1
    res = build(summary["experiment"], tmp_path / "out", include=("supervised",))
    took = time.monotonic() - t0
    assert sorted(m.split("#")[0] for m in res["members"]) == ["cnn_lstm_classifier", "conv_ae"]
    table = pd.read_csv(tmp_path / "out" / "series_holdout.csv", dtype={"series": str})
    assert sorted(table["series"]) == sorted(lists["holdout"])
    onsets = {str(k): v for k, v in train["anomaly_times"].items()}
    for row in table.itertuples():
        assert row.anomalous == (row.series in onsets)
        if row.anomalous:
            assert row.anomaly_time == pytest.approx(onsets[row.series])
            if row.flagged:  # warning time = onset - first alarm, in seconds of the discharge's time base
                assert row.warning_time == pytest.approx(row.anomaly_time - row.first_alarm)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Per discharge: detection and warning time" in report and "warning time" in report
    assert all(s in report for s in lists["holdout"])
    assert len(pd.read_csv(tmp_path / "out" / "submission.csv")) > 0
    print(f"discharges e2e: {took:.0f} s; holdout table:\n{table.to_string(index=False)}")
