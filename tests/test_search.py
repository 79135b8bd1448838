"""End-to-end tests of search/: sweeps on a tiny synthetic mission with real Ray Tune and Optuna.

One mission (8,000 train rows, channels 41-43) is shared by every test; models are tiny (window 8,
a few units, 1-2 epochs, strides 4). Ray is started by the tests themselves (a local instance or a
simulated cluster) and always shut down again, so nothing leaks into other test files.
Slow by nature (every trial is a Ray actor in a fresh process; Keras ones import TensorFlow):
about 1.5-2.5 minutes on 2 cores.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from search.__main__ import main
from search.config import load_config, parse_config
from search.experiment import LEADERBOARD, SETS_FILE, SWEEP_FILE, load_trial, read_sets
from search.results import trial_table
from search.runner import check_storage_for_cluster, run_sweep
from telemetry.errors import TelemetryError
from telemetry.synthetic.mission import generate_mission

from conftest import ctrl_c_when, local_ray_started, write_challenge_parquet

ray = pytest.importorskip("ray")

TRAIN_ROWS, TEST_ROWS = 8_000, 2_000  # fractions [0.5, 0.25, 0.25]: fit 4,000, validation 2,000, holdout 2,000
TINY = {"window": 8, "units": 4, "batch_size": 256, "train_stride": 4, "score_stride": 4}
# Every trial of it fails in fit (scikit-learn refuses max_samples 'many'); the sweep file itself passes
# the schema, which leaves that parameter's checks to scikit-learn.
BROKEN_FOREST = {"trials": 1, "fixed": {"max_samples": "many", "n_estimators": 2}}
# The leaderboard's columns that the ensemble and the CLI rely on (it may carry more).
BOARD_COLUMNS = ["arch", "rank", "trial_id", "status", "completed", "epochs", "val_f05", "holdout_f05", "val_loss",
                 "holdout_event_recall", "holdout_auc_pr", "train_seconds", "time_total_s", "threshold", "params",
                 "checkpoint", "error"]


@pytest.fixture(scope="module")
def mission(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("mission")
    generate_mission(d, rows=TRAIN_ROWS, seed=11, test_rows=TEST_ROWS, n_channels=46, n_telecommands=2)
    return d


@pytest.fixture(autouse=True)
def no_ray_before():
    """Every test starts without Ray (a leak from an earlier test would hide connect() bugs)."""
    assert not ray.is_initialized()
    yield


def sweep(mission: Path, name: str, architectures: dict, **top) -> dict:
    """A sweep file as plain data over the shared mission (absolute paths)."""
    raw = {"name": name, "seed": top.pop("seed", 3),
           "data": {"train": str(mission / "train.parquet"), "test": str(mission / "test.parquet"),
                    "test_labels": str(mission / "test_labels.parquet"),
                    "channels": "41-43", "fractions": [0.5, 0.25, 0.25]},
           "ray": {"num_cpus": 2}, "architectures": architectures}
    raw.update(top)
    return raw


def write_sweep(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def last_results(arch_dir: Path) -> dict[str, list[dict]]:
    """Results reported so far, per trial directory (result.json, one JSON object per line)."""
    out = {}
    for f in glob.glob(str(arch_dir / "*" / "result.json")):
        lines = []
        for line in Path(f).read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:  # a line being written right now
                break
        if lines:
            out[Path(f).parent.name] = lines
    return out


def saved_statuses(arch_dir: Path) -> dict[str, str]:
    """trial id -> status in the experiment state Tune saved last (what Tuner.restore resumes from)."""
    states = sorted(arch_dir.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return {}
    try:
        trials = json.loads(states[-1].read_text())["trial_data"]
    except (OSError, ValueError, KeyError):  # being written
        return {}
    return {t["trial_id"]: t["status"] for t in (json.loads(state) for state, _ in trials)}


def subprocess_env() -> dict:
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_leaderboard_ties_rank_in_the_order_tune_created_the_trials(tmp_path, monkeypatch):
    """ExperimentAnalysis lists trials in an order that changes when a sweep is resumed; trials tied
    on validation F0.5 (common with few validation events) must rank alike every time, or the
    finalists and the ensemble's members change between two builds of the same experiment."""
    import ray.tune
    from types import SimpleNamespace

    from search.results import leaderboard

    exp = tmp_path / "exp"
    (exp / "pca").mkdir(parents=True)
    (exp / SWEEP_FILE).write_text("architectures: {pca: {}}\n")

    def trial(n, trial_id, f05):
        folder = exp / "pca" / f"t{n}"
        return SimpleNamespace(trial_id=trial_id, experiment_tag=f"{n}_arch=pca,lags={n}", status="TERMINATED",
                               config={"arch": "pca", "lags": n}, path=str(folder),
                               checkpoint=SimpleNamespace(path=str(folder / "checkpoint_000000")),
                               last_result={"f05": f05, "epoch": 1})

    listed = [trial(4, "aaaa0004", 0.5), trial(2, "ffff0002", 0.5), trial(1, "cccc0001", 0.5),
              trial(3, "bbbb0003", 0.9), trial(12, "dddd0012", 0.5)]
    for order in (listed, listed[::-1], listed[2:] + listed[:2]):
        fake = SimpleNamespace(trials=order, experiment_path=str(exp / "pca"))
        monkeypatch.setattr(ray.tune, "ExperimentAnalysis", lambda path, fake=fake: fake)
        board = leaderboard(str(exp), write=False)
        # the best first, then the ties by creation number (12 after 4: a number, not a string)
        assert board["trial_id"].tolist() == ["bbbb0003", "cccc0001", "ffff0002", "aaaa0004", "dddd0012"]
        assert board["rank"].tolist() == [1, 2, 3, 4, 5]


def test_unfinished_trials_reads_tunes_last_saved_state(tmp_path):
    """What a resume would run again: RUNNING or PENDING in the newest experiment_state file."""
    from search.runner import unfinished_trials

    assert unfinished_trials(str(tmp_path / "none")) == 0
    def state(name, statuses):
        trials = [[json.dumps({"trial_id": str(k), "status": s}), {}] for k, s in enumerate(statuses)]
        (tmp_path / name).write_text(json.dumps({"trial_data": trials}))
    state("experiment_state-2026-12-02_10-00-00.json", ["TERMINATED", "RUNNING", "PENDING"])
    assert unfinished_trials(str(tmp_path)) == 2
    state("experiment_state-2026-12-02_10-05-00.json", ["TERMINATED", "ERROR", "TERMINATED"])  # resumed, done
    assert unfinished_trials(str(tmp_path)) == 0


@pytest.mark.slow
def test_ctrl_c_during_the_last_trial_exits_130(mission, tmp_path):
    """Tune stops every trial after saving its state, so the result grid calls the last trial, cut
    short, TERMINATED: the counts alone would look like a finished sweep (it exited 0)."""
    raw = sweep(mission, "cut", seed=5, search={"max_concurrent_trials": 1, "max_failures": 0},
                architectures={"dense_ae": {"trials": 2, "fixed": {**TINY, "latent": 2, "epochs": 40}}})
    path = write_sweep(tmp_path / "sweep.yaml", raw)
    arch_dir = tmp_path / "sweeps" / "cut" / "dense_ae"
    env = {**subprocess_env(), "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "search", "run", "--config", str(path), "--storage",
                             str(tmp_path / "sweeps")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path, start_new_session=True)

    def second_trial_started():  # the first done, the second 2 epochs in
        results = last_results(arch_dir)
        return list(saved_statuses(arch_dir).values()).count("TERMINATED") == 1 and len(results) == 2 \
            and min(map(len, results.values())) >= 2

    out, err = ctrl_c_when(proc, second_trial_started, 120)
    assert proc.returncode == 130, err[-3000:]
    assert "dense_ae: interrupted after 1 of 2 trials" in err and "trials completed" not in out
    assert sorted(saved_statuses(arch_dir).values()) == ["RUNNING", "TERMINATED"]  # what resume runs again


# -- 6. a bad sweep is rejected before Ray starts ---------------------------------------------------

def _base(mission):
    return sweep(mission, "bad", {"dense_ae": {"trials": 2, "space": {"latent": {"int": [2, 4]}},
                                               "fixed": {**TINY, "epochs": 1}},
                                  "global_std": {"trials": 1}})


BAD_SWEEPS = {
    "unknown top-level key": (lambda r: r.update(colour="red"), "sweep.yaml: unknown key 'colour'"),
    "unknown architecture key": (lambda r: r["architectures"]["global_std"].update(epochs=3),
                                 "architectures.global_std: unknown key 'epochs'"),
    "unknown parameter": (lambda r: r["architectures"]["dense_ae"]["space"].update(kernel_size={"int": [3, 5]}),
                          "architectures.dense_ae.space: unknown key 'kernel_size'"),
    "empty choice": (lambda r: r["architectures"]["dense_ae"]["space"].update(learning_rate={"choice": []}),
                     "architectures.dense_ae.space.learning_rate: choice needs a non-empty list"),
    "unknown architecture": (lambda r: r["architectures"].update(no_such_net={}), "unknown architecture 'no_such_net'"),
    "searched and fixed": (lambda r: r["architectures"]["dense_ae"]["fixed"].update(latent=3),
                           "architectures.dense_ae: 'latent' is both searched and fixed"),
    "time budget not a number": (lambda r: r.update(search={"time_budget_s": "1h"}),
                                 "search.time_budget_s: input should be a valid number, got '1h'"),
    "budget share zero": (lambda r: r["architectures"]["global_std"].update(budget_share=0),
                          "architectures.global_std.budget_share: input should be greater than 0, got 0"),
}


@pytest.mark.parametrize("case", list(BAD_SWEEPS))
def test_bad_sweep_file_rejected_before_ray(mission, tmp_path, capsys, case):
    mutate, message = BAD_SWEEPS[case]
    raw = _base(mission)
    mutate(raw)
    path = write_sweep(tmp_path / "sweep.yaml", raw)
    with pytest.raises(TelemetryError) as err:
        load_config(path)
    assert message in str(err.value) and "\n" not in str(err.value)

    rc = main(["run", "--config", str(path), "--storage", str(tmp_path / "sweeps")])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.err.startswith("error: ") and message in captured.err
    assert captured.err.count("\n") == 1  # one line
    assert not ray.is_initialized()
    assert not (tmp_path / "sweeps").exists()


def test_trial_stores_per_channel_scores_only_for_members_with_them_and_under_the_cap(monkeypatch):
    from types import SimpleNamespace

    from models import registry
    from search import trainable
    from telemetry.series import Series

    rng = np.random.default_rng(0)

    def split(n, name):
        y = np.zeros(n, np.uint8)
        y[n // 2: n // 2 + 5] = 1
        return Series(np.arange(n, dtype=np.int64), rng.normal(size=(n, 3)).astype(np.float32), y,
                      ("channel_41", "channel_42", "channel_43"), source=name)

    data = SimpleNamespace(fit=split(200, "fit"), validation=split(100, "validation"), holdout=split(100, "holdout"),
                           test=split(50, "test"))
    thr = {"method": "best_f05"}
    std = registry.get("global_std")().fit(data.fit, data.validation)
    out = trainable._evaluate(std, data, thr)[0]
    assert sorted(out) == ["holdout", "holdout_channels", "test", "test_channels", "validation", "validation_channels"]
    assert out["test_channels"].shape == (50, 3)
    monkeypatch.setattr(trainable, "CHANNEL_SCORES_MAX_CELLS", 250 * 3 - 1)  # one cell short of the three splits
    assert sorted(trainable._evaluate(std, data, thr)[0]) == ["holdout", "test", "validation"]
    monkeypatch.undo()
    forest = registry.get("isolation_forest")(n_estimators=5).fit(data.fit, data.validation)
    assert sorted(trainable._evaluate(forest, data, thr)[0]) == ["holdout", "test", "validation"]


def test_window_longer_than_a_split_rejected_before_ray(mission, tmp_path):
    raw = _base(mission)
    raw["architectures"]["dense_ae"]["space"]["window"] = {"choice": [8, 2_500]}
    del raw["architectures"]["dense_ae"]["fixed"]["window"]
    message = "architectures.dense_ae: window 2500 is longer than the validation split (2000 rows)"
    with pytest.raises(TelemetryError) as err:
        run_sweep(parse_config(raw), storage_path=str(tmp_path / "sweeps"))
    assert str(err.value) == message
    assert not ray.is_initialized()
    assert not (tmp_path / "sweeps").exists()

    # The real command line: exit status 2 and the message on stderr, before any Ray output.
    path = write_sweep(tmp_path / "bad.yaml", raw)
    proc = subprocess.run([sys.executable, "-m", "search", "run", "--config", str(path), "--storage",
                           str(tmp_path / "sweeps")], capture_output=True, text=True, env=subprocess_env(),
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"error: {message}\n" in proc.stderr
    assert "Ray instance" not in proc.stderr + proc.stdout
    assert not (tmp_path / "sweeps").exists()


def test_window_longer_than_the_test_split_rejected_before_ray(tmp_path):
    """The test split is scored too: a window that fits the labelled splits but not the test file
    fails before Ray, not after training."""
    events = ((100, 110), (600, 610), (850, 860))  # one event in each labelled split
    write_challenge_parquet(tmp_path / "train.parquet", n=1_000, events=events)
    write_challenge_parquet(tmp_path / "test.parquet", n=100, labels=False, start_id=1_000, seed=1)
    raw = {"name": "short_test", "data": {"train": str(tmp_path / "train.parquet"), "test": str(tmp_path / "test.parquet"),
                                          "channels": "41-43", "fractions": [0.5, 0.25, 0.25]},
           "architectures": {"lstm_forecaster": {"trials": 1, "fixed": {"window": 100, "epochs": 1}}}}
    with pytest.raises(TelemetryError) as err:
        run_sweep(parse_config(raw), storage_path=str(tmp_path / "sweeps"))
    assert str(err.value) == ("architectures.lstm_forecaster: window 100 + horizon 1 is longer than the test split "
                              "(100 rows)")  # the forecaster's default horizon counts
    assert not ray.is_initialized() and not (tmp_path / "sweeps").exists()


# -- 1 and 4. local sweeps -------------------------------------------------------------------------

@pytest.fixture(scope="class")
def local_ray():
    """One local Ray for the tests of a class."""
    with local_ray_started():
        yield


class TestLocal:
    @pytest.fixture(autouse=True)
    def no_ray_before(self):  # overrides the module's: Ray stays up for the whole class
        yield

    def test_a_time_budget_keeps_what_finished_and_the_ensemble_builds_from_it(self, mission, tmp_path, local_ray):
        from ensemble.build import build

        raw = sweep(mission, "budget", search={"max_concurrent_trials": 1, "searcher": "random"},
                    architectures={"pca": {"trials": 40, "budget_share": 3,
                                           "space": {"n_components": {"float": [0.5, 0.99]}}},
                                   "global_std": {"trials": 1}})
        t0 = time.monotonic()
        summary = run_sweep(parse_config(raw), storage_path=str(tmp_path / "sweeps"), time_budget_s=16)
        assert time.monotonic() - t0 < 16 + 30  # stopped near the budget (plus start-up and leaderboard)
        pca = summary["architectures"]["pca"]
        assert pca["budget_s"] == pytest.approx(12, abs=1) and 1 <= pca["completed"] < 40
        res = build(summary["experiment"], tmp_path / "out")  # pca members only: no baselines
        assert res["members"] and all(m.startswith("pca#") for m in res["members"])

    def test_two_architectures_scores_and_leaderboard(self, mission, tmp_path, local_ray, capsys):
        raw = sweep(mission, "two_archs", search={"max_concurrent_trials": 2, "max_failures": 0, "grace_period": 2},
                    architectures={
                        "conv_ae": {"trials": 3,
                                    "space": {"latent": {"int": [2, 4]},
                                              "learning_rate": {"float": [0.001, 0.01], "log": True}},
                                    "fixed": {**TINY, "epochs": 2, "kernel_size": 3}},
                        "global_std": {"trials": 1}})
        summary = run_sweep(parse_config(raw), storage_path=str(tmp_path / "sweeps"))
        exp = Path(summary["experiment"])
        assert exp == tmp_path / "sweeps" / "two_archs"
        assert summary["architectures"] == {"conv_ae": {"trials": 3, "completed": 3, "errored": 0},
                                            "global_std": {"trials": 1, "completed": 1, "errored": 0}}
        assert summary["leaderboard_rows"] == 4
        assert (exp / SWEEP_FILE).is_file() and (exp / SETS_FILE).is_file()

        sets = read_sets(str(exp))
        lengths = {s: len(sets[f"{s}_ids"]) for s in ("validation", "holdout", "test")}
        assert lengths == {"validation": 2_000, "holdout": 2_000, "test": TEST_ROWS}

        csv = pd.read_csv(exp / LEADERBOARD)
        parquet = pd.read_parquet(exp / "leaderboard.parquet")
        assert list(csv.columns) == list(parquet.columns)
        for board in (csv, parquet):
            assert list(board.columns[:2]) == ["arch", "rank"]
            assert [c for c in board.columns if c in BOARD_COLUMNS] == BOARD_COLUMNS
            assert len(board) == 4
            assert board["arch"].tolist() == ["conv_ae"] * 3 + ["global_std"]
            assert board["rank"].tolist() == [1, 2, 3, 1]
            assert (board["status"] == "TERMINATED").all() and board["completed"].all()
            assert board["trial_id"].nunique() == 4
            conv = board[board["arch"] == "conv_ae"]
            assert conv["val_f05"].is_monotonic_decreasing  # sorted by validation F0.5 within the architecture
            assert conv["epochs"].tolist() == [2, 2, 2]  # nobody stopped early (grace period = max epochs)
            assert board["val_f05"].between(0, 1).all() and board["holdout_f05"].between(0, 1).all()

        for row in parquet.itertuples():
            meta, scores = load_trial(row.checkpoint)
            assert meta.arch == row.arch
            # both members have per-channel scores: stored beside the per-row ones, columns named
            assert set(scores) == {"validation", "holdout", "test", "validation_channels", "holdout_channels",
                                   "test_channels"}
            assert meta.channel_scores and meta.channels == ["channel_41", "channel_42", "channel_43"]
            for split, n in lengths.items():
                assert scores[split].shape == (n,), (row.arch, split)
                assert np.isfinite(scores[split]).all()
                ch = scores[f"{split}_channels"]
                assert ch.shape == (n, 3) and ch.dtype == np.float32
                # channel max, row mean (conv_ae) is at least the max of the channels; a row member equals it
                assert (scores[split] >= ch.max(axis=1) - 1e-4).all()
                if row.arch == "global_std":
                    np.testing.assert_array_equal(scores[split], ch.max(axis=1))
            assert meta.validation["f05"] == pytest.approx(row.val_f05)

        capsys.readouterr()  # Tune's progress tables
        assert main(["leaderboard", str(exp)]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].split()[:5] == ["arch", "rank", "status", "val_f05", "holdout_f05"]
        assert [line.split()[:2] for line in out[1:]] == [["conv_ae", "1"], ["conv_ae", "2"], ["conv_ae", "3"],
                                                         ["global_std", "1"]]

    def test_failing_trials_counted_and_cli_exit_status(self, mission, tmp_path, local_ray, capsys):
        # global_std: ddof beyond the fit rows fails in fit (the data decides, so no schema can); the
        # seed makes the 3 sequential trials draw both values. isolation_forest: fails for every trial.
        raw = sweep(mission, "some_fail", seed=1, search={"max_concurrent_trials": 1, "max_failures": 0},
                    architectures={"global_std": {"trials": 3, "space": {"ddof": {"choice": [0, 10**9]}}},
                                   "isolation_forest": BROKEN_FOREST})
        path = write_sweep(tmp_path / "some_fail.yaml", raw)
        assert main(["run", "--config", str(path), "--storage", str(tmp_path / "sweeps")]) == 0
        out = capsys.readouterr().out
        counts = re.search(r"global_std: (\d)/3 trials completed, (\d) failed", out)
        assert counts, out
        completed, failed = int(counts[1]), int(counts[2])
        assert completed >= 1 and failed >= 1 and completed + failed == 3
        assert "isolation_forest: 0/1 trials completed, 1 failed" in out

        exp = tmp_path / "sweeps" / "some_fail"
        table = trial_table(str(exp))
        assert len(table) == 4
        for row in table.itertuples():
            params = json.loads(row.params)
            bad = row.arch == "isolation_forest" or params["ddof"] > 0
            assert row.status == ("ERROR" if bad else "TERMINATED")
            assert bool(row.completed) == (not bad)
            if bad:  # the traceback, kept with the experiment (not in Ray's temporary session directory)
                assert Path(row.error).is_relative_to(exp) and Path(row.error).name == "error.txt"
                text = Path(row.error).read_text()
                assert ("'max_samples' parameter" if row.arch == "isolation_forest" else "too few for ddof=") in text
            else:
                assert pd.isna(row.error)
        board = pd.read_csv(exp / LEADERBOARD)
        assert len(board) == 4 and board["completed"].sum() == completed

        # Inspecting it later, without Ray running, works too (a separate process: Ray is up in this one).
        proc = subprocess.run([sys.executable, "-m", "search", "leaderboard", str(exp)], capture_output=True,
                              text=True, env=subprocess_env(), cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = proc.stdout.splitlines()
        statuses = [line.split()[2] for line in lines[1:] if not line.startswith("failed trials:")]
        assert sorted(statuses) == sorted(table[table["completed"]]["status"])  # ranked: completed only
        failed = table[table["status"] == "ERROR"].groupby("arch").size()
        assert lines[-1] == "failed trials: " + ", ".join(f"{a} {n}" for a, n in failed.items()) + \
            " (error.txt in each trial's folder)"

        # Nothing succeeded: exit status 1.
        raw = sweep(mission, "all_fail", search={"max_failures": 0},
                    architectures={"isolation_forest": BROKEN_FOREST})
        path = write_sweep(tmp_path / "all_fail.yaml", raw)
        assert main(["run", "--config", str(path), "--storage", str(tmp_path / "sweeps")]) == 1
        assert "isolation_forest: 0/1 trials completed, 1 failed" in capsys.readouterr().out


    def test_smoke_test_random_searcher_and_log_int_space(self, mission, tmp_path, local_ray, capsys):
        """``--smoke-test`` keeps two trials; ``searcher: random`` samples the log-int space (Tune's
        random variant generator, whose state it saves, instead of Optuna's)."""
        raw = sweep(mission, "random_log", search={"searcher": "random", "scheduler": "fifo"},
                    architectures={"isolation_forest": {"trials": 5, "space": {"n_estimators": {"int": [2, 64], "log": True}},
                                                        "fixed": {"fit_rows": 500}}})
        path = write_sweep(tmp_path / "random_log.yaml", raw)
        assert main(["run", "--config", str(path), "--storage", str(tmp_path / "sweeps"), "--smoke-test"]) == 0
        assert "isolation_forest: 2/2 trials completed, 0 failed" in capsys.readouterr().out
        arch_dir = tmp_path / "sweeps" / "random_log" / "isolation_forest"
        table = trial_table(str(arch_dir.parent))
        n_estimators = [json.loads(p)["n_estimators"] for p in table["params"]]
        assert len(n_estimators) == 2 and all(isinstance(n, int) and 2 <= n <= 64 for n in n_estimators)
        assert list(arch_dir.glob("basic-variant-state-*.json")) and not list(arch_dir.glob("searcher-state-*"))
        thresholds = [json.loads(t) for t in table["threshold"]]  # the nested threshold rule reached the trial
        assert all(t == {"method": "best_f05", "min_length": 1, "max_gap": 0} for t in thresholds)

    @pytest.mark.slow
    def test_asha_stops_a_poor_trial_and_fifo_does_not(self, mission, tmp_path, local_ray):
        """The same three seeded random configurations, run one at a time for up to 3 epochs: ASHA
        (grace 1, halving) stops a trial whose validation loss trails at a rung; FIFO runs all to the end."""
        epochs = {}
        for scheduler in ("fifo", "asha"):
            raw = sweep(mission, f"sched_{scheduler}", seed=0,
                        search={"searcher": "random", "scheduler": scheduler, "max_concurrent_trials": 1,
                                "grace_period": 1, "reduction_factor": 2, "max_failures": 0},
                        architectures={"dense_ae": {"trials": 3,
                                                    "space": {"learning_rate": {"float": [1e-5, 1e-1], "log": True}},
                                                    "fixed": {**TINY, "latent": 2, "epochs": 3}}})
            run_sweep(parse_config(raw), storage_path=str(tmp_path / "sweeps"))
            table = trial_table(str(tmp_path / "sweeps" / f"sched_{scheduler}"))
            assert (table["status"] == "TERMINATED").all()
            # a stopped trial ends between epochs: no final scores, so the ensemble never picks it
            assert (table["completed"] == (table["epochs"] == 3)).all()
            epochs[scheduler] = {json.loads(p)["learning_rate"]: e for p, e in zip(table["params"], table["epochs"])}
        assert set(epochs["fifo"]) == set(epochs["asha"])  # the same seeded configurations
        assert set(epochs["fifo"].values()) == {3}
        assert min(epochs["asha"].values()) < 3 and max(epochs["asha"].values()) == 3, epochs["asha"]


# -- 2. interrupted (Ctrl-C) and resumed ------------------------------------------------------------

def test_interrupted_sweep_resumes_only_the_remaining_trials(mission, tmp_path):
    raw = sweep(mission, "interrupted", seed=5, search={"max_concurrent_trials": 1, "max_failures": 0},
                threshold={"method": {"choice": ["best_f05", "ndt"]}, "min_length": {"int": [1, 4]}},
                architectures={"global_std": {"trials": 4}})
    path = write_sweep(tmp_path / "sweep.yaml", raw)
    exp = tmp_path / "sweeps" / "interrupted"
    arch_dir = exp / "global_std"
    # Tune saves its experiment state at most every 10 s by default: here at every step, so that the
    # test sees when trials have ended (on SIGINT it saves it anyway).
    env = {**subprocess_env(), "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    # Its own session, so the SIGINT goes to its whole process group as Ctrl-C in a terminal does.
    proc = subprocess.Popen([sys.executable, "-m", "search", "run", "--config", str(path), "--storage",
                             str(tmp_path / "sweeps")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path, start_new_session=True)
    # Interrupt once Tune's saved state has 2 trials TERMINATED. Their final line in result.json is
    # not enough: Tune writes it before it registers the final checkpoint and ends the trial, and
    # a trial interrupted in between is RUNNING in the saved state, so resume runs it again.
    out, err = ctrl_c_when(proc, lambda: list(saved_statuses(arch_dir).values()).count("TERMINATED") >= 2)
    assert proc.returncode == 130, err[-3000:]
    assert f"resume with: python -m search resume {exp}" in err and "interrupted: " in err
    assert "trials completed" not in out  # no summary as if it had finished

    before = trial_table(str(exp))
    done_before = before[before["status"] == "TERMINATED"]
    # Normally exactly 2 (a third may end in the moment before the signal arrives); the rest never ran
    # or were cut short (RUNNING or PENDING in the saved state).
    assert 2 <= len(done_before) < 4 and done_before["completed"].all()
    finished = {d: r for d, r in last_results(arch_dir).items() if r[-1]["trial_id"] in set(done_before["trial_id"])}
    assert len(finished) == len(done_before)
    kept = {d: (arch_dir / d / "result.json").read_bytes() for d in finished}

    resumed_at = time.time()
    proc = subprocess.run([sys.executable, "-m", "search", "resume", str(exp)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "global_std: 4/4 trials completed, 0 failed" in proc.stdout

    after = trial_table(str(exp))
    assert len(after) == 4 and after["trial_id"].nunique() == 4
    assert after["completed"].all() and (after["status"] == "TERMINATED").all()
    assert set(done_before["trial_id"]) <= set(after["trial_id"])
    for d, content in kept.items():  # the finished trials were not run again
        assert (arch_dir / d / "result.json").read_bytes() == content
        assert len(content.decode().splitlines()) == 1
    results = last_results(arch_dir)
    assert len(results) == 4  # no extra trial directories
    ran = {d for d, r in results.items() if r[-1]["timestamp"] >= int(resumed_at)}
    assert ran == set(results) - set(kept)  # resume ran exactly the trials that had not finished
    board = pd.read_csv(exp / LEADERBOARD)
    assert board["completed"].all()
    # and scored holdout/test for the best distinct configurations (only the rule is searched here: one)
    assert board["finalist"].sum() == min(3, board["params"].nunique()) >= 1
    assert board[board["finalist"]]["holdout_f05"].notna().all() and board[~board["finalist"]]["holdout_f05"].isna().all()


# -- 3 and 5. a simulated cluster -----------------------------------------------------------------

def _ppid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def _raylet_pid(node) -> int:
    return node.all_processes["raylet"][0].process.pid


@pytest.fixture(scope="class")
def cluster():
    """A simulated cluster: a head without CPUs (the driver only) and two 1-CPU worker nodes."""
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for _ in range(2):
            c.add_node(num_cpus=1)
        c.wait_for_nodes()
        ray.init(address=c.address, logging_level=logging.WARNING)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


class TestCluster:
    @pytest.fixture(autouse=True)
    def no_ray_before(self):
        yield

    def test_local_storage_refused_on_a_cluster(self, cluster, mission, tmp_path):
        cfg = parse_config(sweep(mission, "cluster_local", architectures={"global_std": {"trials": 1}}))
        store = tmp_path / "sweeps"
        with pytest.raises(TelemetryError) as err:
            run_sweep(cfg, storage_path=str(store))
        msg = str(err.value)
        assert "\n" not in msg
        assert msg.startswith(f"storage {store} is local to this machine but the cluster has 3 nodes")
        assert "--shared-storage" in msg and "s3://" in msg
        assert not (store / "cluster_local" / SWEEP_FILE).exists()  # refused before anything was written
        # Object stores and shared filesystems pass (the check only looks at the path: no network).
        assert check_storage_for_cluster("s3://telesweep-bucket/sweeps", shared=False) == 3
        assert check_storage_for_cluster("gs://telesweep-bucket/sweeps", shared=False) == 3
        assert check_storage_for_cluster(str(store), shared=True) == 3

    @pytest.mark.slow
    def test_node_lost_mid_trial_resumes_from_epoch_checkpoint(self, cluster, mission, tmp_path):
        epochs = 15
        raw = sweep(mission, "node_loss",
                    search={"max_concurrent_trials": 2, "max_failures": 2, "grace_period": epochs},
                    architectures={"dense_ae": {"trials": 2, "space": {"latent": {"int": [2, 4]}},
                                                "fixed": {**TINY, "train_stride": 1, "epochs": epochs}}})
        cfg = parse_config(raw)
        arch_dir = tmp_path / "sweeps" / "node_loss" / "dense_ae"
        outcome = {}

        def run():
            try:
                outcome["summary"] = run_sweep(cfg, storage_path=str(tmp_path / "sweeps"), shared_storage=True)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
                outcome["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        raylets = {_raylet_pid(n): n for n in cluster.worker_nodes}
        victim = None
        deadline = time.monotonic() + 60
        while victim is None and thread.is_alive() and time.monotonic() < deadline:
            for d, results in last_results(arch_dir).items():
                last = results[-1]
                # Epoch 2 reported: Tune registered the epoch-1 checkpoint before asking for epoch 2.
                if last.get("f05") is None and last.get("epoch", 0) >= 2:  # reported, not yet scored
                    parent = _ppid(last["pid"])
                    assert parent in raylets, f"trial process {last['pid']} is not a child of a worker node's raylet"
                    victim = (d, last["epoch"], raylets[parent])
                    break
            time.sleep(0.05)
        assert victim is not None, outcome
        trial_dir, seen_epoch, node = victim
        cluster.remove_node(node)
        cluster.add_node(num_cpus=1)  # a replacement, as an autoscaler would start
        thread.join(timeout=85)
        assert not thread.is_alive()
        if "error" in outcome:
            raise outcome["error"]
        assert outcome["summary"]["architectures"] == {"dense_ae": {"trials": 2, "completed": 2, "errored": 0}}

        results = last_results(arch_dir)
        assert len(results) == 2
        for d, res in results.items():
            final = res[-1]
            assert final["f05"] is not None and final["epoch"] == epochs
            if d == trial_dir:  # the killed trial continued from its last per-epoch checkpoint
                resumed = final["resumed_from_epoch"]
                assert seen_epoch - 1 <= resumed < epochs and resumed >= 1
                first_pid = res[0]["pid"]
                retried = [r for r in res if r["pid"] != first_pid]
                assert retried and retried[0]["epoch"] == resumed + 1  # a new process, going on from there
                assert all(r["pid"] == first_pid for r in res[: len(res) - len(retried)])
            else:
                assert final["resumed_from_epoch"] == 0
                assert len({r["pid"] for r in res}) == 1
        from ray.tune import ExperimentAnalysis

        failures = {t.storage.trial_dir_name: t.num_failures for t in ExperimentAnalysis(str(arch_dir)).trials}
        assert failures == {d: int(d == trial_dir) for d in results}
        board = pd.read_csv(tmp_path / "sweeps" / "node_loss" / LEADERBOARD)
        assert board["completed"].all() and (board["status"] == "TERMINATED").all()


def test_budget_shares_split_what_is_left():
    from search.runner import budget_shares

    cfg = parse_config({"name": "b", "data": {"train": "t.parquet"},
                        "architectures": {"pca": {"budget_share": 3}, "global_std": {}}}, base_dir="/")
    assert budget_shares(cfg, 100.0, set()) == {"pca": 75.0, "global_std": 25.0}
    assert budget_shares(cfg, 40.0, {"pca"}) == {"global_std": 40.0}  # what pca left goes on
    assert budget_shares(cfg, -5.0, {"pca"}) == {"global_std": 0.0}


@pytest.mark.parametrize("text, seconds", [("3600", 3600.0), ("90m", 5400.0), ("1.5h", 5400.0), ("45s", 45.0)])
def test_time_budget_durations(text, seconds):
    from search.__main__ import duration

    assert duration(text) == seconds


def test_a_bad_time_budget_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["run", "--config", "x.yaml", "--time-budget", "soon"])
    assert stop.value.code == 2 and "not a duration: 'soon'" in capsys.readouterr().err


def test_a_sweep_without_epochs_gives_asha_the_models_default():
    from models import registry

    cfg = parse_config({"name": "e", "data": {"train": "t.parquet"},
                        "architectures": {"conv_ae": {"space": {"latent": {"choice": [4, 8]}}},
                                          "dense_ae": {"space": {"epochs": {"int": [2, 9]}}}, "pca": {}}}, base_dir="/")
    assert cfg.max_epochs == {"conv_ae": registry.get("conv_ae")().epochs, "dense_ae": 9, "pca": 1}
    assert cfg.max_epochs["conv_ae"] > 1
