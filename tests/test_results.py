"""Reading a stored experiment back (search/results.py), Tune's strict metric checking, the Optuna
study file and ``leaderboard --watch``, on one tiny sweep run once for the module.

The sweep: dense_ae (3 trials of 3 epochs, TPE + ASHA) and global_std (3 trials, TPE, some fail in
fit), run with Tune's strict metric checking on (TUNE_DISABLE_STRICT_METRIC_CHECKING absent).
About a minute on 2 cores (the Keras trials import TensorFlow).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from search import experiment as ex
from search import results
from search.__main__ import main, watch_leaderboard
from search.config import parse_config
from search.runner import resume, run_sweep
from search.experiment import split_config
from conftest import local_ray_started
from test_search import TINY, mission, sweep  # noqa: F401 - mission is a fixture used here

pytestmark = pytest.mark.slow  # a sweep per module: `pytest -m slow` (see README)

ray = pytest.importorskip("ray")
STRICT = "TUNE_DISABLE_STRICT_METRIC_CHECKING"


def old_trial_table(exp: str, archs=None) -> pd.DataFrame:
    """The reader this module replaces (Ray's private Trial internals, URI schemes re-attached by
    hand), kept as the reference. One line differs: a trial is scored when ``f05`` has a value,
    since reports carry ``f05`` (empty) from the first epoch on. And one addition: a trial that
    scored validation only takes its holdout figures from its finalist file (search/finalists.py),
    read here by hand. And the rows come in the order Tune created the trials."""
    from ray.tune import ExperimentAnalysis

    def checkpoint_uri(exp: str, path: str) -> str:
        if results.storage.is_uri(exp) and not results.storage.is_uri(path):
            return f"{exp.split('://', 1)[0]}://{path}"
        return path

    assert archs is None  # every architecture, as the leaderboard reads them
    rows = []
    for arch in ex.read_sweep(exp).architectures:
        path = results.storage.join(exp, arch)
        if not results.storage.exists(path):
            continue
        try:
            ea = ExperimentAnalysis(path)
        except (ValueError, FileNotFoundError):
            continue
        for t in ea.trials:
            r = t.last_result or {}
            _, params, thr = split_config(t.config)
            ckpt = t.checkpoint
            done = bool(ckpt) and r.get("f05") is not None  # was: "f05" in r
            checkpoint = checkpoint_uri(exp, ckpt.path) if (ckpt and done) else None
            held, finalist = r, done
            if checkpoint and r.get("scored") == "validation":
                fin = results.storage.join(checkpoint.rsplit("/", 1)[0], "finalist.json")
                record = json.loads(results.storage.read_text(fin)) if results.storage.exists(fin) else None
                finalist = record is not None and record["checkpoint"] == checkpoint.rsplit("/", 1)[1]
                held = {f"holdout_{k}": v for k, v in record["holdout"].items()} if finalist else {}
            rows.append({
                "arch": arch, "trial_id": t.trial_id, "status": t.status,
                "completed": done, "epochs": r.get("epoch"),
                "val_f05": r.get("f05"), "holdout_f05": held.get("holdout_f05"),
                "val_loss": r.get("val_loss"), "holdout_loss": held.get("holdout_loss"),  # (and objective: unlabelled sweeps)
                "objective": r.get("objective", "f05"), "holdout_event_recall": held.get("holdout_event_recall"),
                "holdout_auc_pr": held.get("holdout_auc_pr"), "train_seconds": r.get("train_seconds"),
                "score_seconds": r.get("score_seconds"), "time_total_s": r.get("time_total_s"),
                "threshold": json.dumps(thr, sort_keys=True), "params": json.dumps(params, sort_keys=True, default=str),
                "checkpoint": checkpoint, "finalist": finalist,
                "error": (results.storage.join(path, t.storage.trial_dir_name, t.run_metadata.error_filename)
                          if t.status == "ERROR" and t.run_metadata.error_filename else None),
                "_created": int(t.experiment_tag.split("_", 1)[0]),
            })
    # And the rows in the order Tune created the trials (the leaderboard's tie order).
    return pd.DataFrame(rows).sort_values(["arch", "_created", "trial_id"], kind="stable").drop(
        columns="_created").reset_index(drop=True)


def old_leaderboard(exp: str, monkeypatch) -> pd.DataFrame:
    """The leaderboard from :func:`old_trial_table`, less the ``start`` column, which that reader
    never had (test_auto checks it: the known-good start trials are marked)."""
    with monkeypatch.context() as m:
        m.setattr(results, "trial_table", old_trial_table)
        return results.leaderboard(exp, write=False)


@pytest.fixture(scope="module")
def local_ray():
    with local_ray_started():
        yield


@pytest.fixture(scope="module")
def experiment(mission, tmp_path_factory, local_ray):  # noqa: F811 - the imported fixture
    strict = os.environ.pop(STRICT, None)  # Tune's default: strict checking on
    try:
        raw = sweep(mission, "stored", seed=1, search={"max_concurrent_trials": 1, "max_failures": 0,
                                                       "grace_period": 1, "reduction_factor": 2},
                    architectures={
                        "dense_ae": {"trials": 3, "space": {"learning_rate": {"float": [1e-5, 1e-1], "log": True}},
                                     "fixed": {**TINY, "latent": 2, "epochs": 3}},
                        "global_std": {"trials": 3, "space": {"ddof": {"choice": [0, 10**9]}}}})
        summary = run_sweep(parse_config(raw), storage_path=str(tmp_path_factory.mktemp("sweeps")))
        assert STRICT not in os.environ  # the runner does not switch it off either
        yield Path(summary["experiment"]), summary
    finally:
        if strict is not None:
            os.environ[STRICT] = strict


def result_lines(trial_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line]


# -- strict metric checking --------------------------------------------------------------------------

def test_the_sweep_ran_with_strict_metric_checking_and_every_report_carries_the_objective(experiment):
    exp, summary = experiment
    arch = summary["architectures"]
    assert arch["dense_ae"] == {"trials": 3, "completed": arch["dense_ae"]["completed"], "errored": 0}
    assert arch["dense_ae"]["completed"] >= 1  # ASHA may stop one or two early
    assert arch["global_std"]["completed"] >= 1 and arch["global_std"]["errored"] >= 1
    assert arch["global_std"]["completed"] + arch["global_std"]["errored"] == 3
    for name in ("dense_ae", "global_std"):
        dirs = [d for d in (exp / name).iterdir() if (d / "result.json").is_file() and (d / "result.json").stat().st_size]
        assert dirs
        for d in dirs:
            lines = result_lines(d)
            for line in lines:  # ASHA's metric and the searcher's, from the first report on
                assert {"epoch", "val_loss", "f05"} <= set(line), (d.name, line)
            assert all(line["f05"] is None for line in lines[:-1])  # empty until scored
    dense = [result_lines(d) for d in (exp / "dense_ae").iterdir() if (d / "result.json").is_file()]
    assert all(isinstance(line["val_loss"], float) and line["val_loss"] > 0 for lines in dense for line in lines)


def test_without_the_objective_in_every_report_strict_checking_fails_the_trial(tmp_path, local_ray, monkeypatch):
    """The control: strict checking is really on here, so the sweep above passed it by reporting."""
    from ray import tune

    from search.searcher import FinalMetricOptunaSearch

    monkeypatch.delenv(STRICT, raising=False)

    def reports_loss_only(config):
        tune.report({"epoch": 1, "val_loss": config["x"]})  # no f05: the old per-epoch report

    tuner = tune.Tuner(reports_loss_only, param_space={"x": tune.uniform(0, 1)},
                       tune_config=tune.TuneConfig(search_alg=FinalMetricOptunaSearch(metric="f05", mode="max"),
                                                   num_samples=1),
                       run_config=tune.RunConfig(name="strict", storage_path=str(tmp_path), verbose=0))
    with pytest.raises(Exception, match="did not include the specified metric"):
        grid = tuner.fit()
        raise grid[0].error or AssertionError("the trial passed strict checking")


# -- results through the public API --------------------------------------------------------------------

def test_leaderboard_read_through_the_public_api_equals_the_old_reader(experiment, monkeypatch):
    exp, _ = experiment
    new = results.leaderboard(str(exp), write=False)
    pd.testing.assert_frame_equal(new.drop(columns="start"), old_leaderboard(str(exp), monkeypatch))

    assert set(new["status"]) == {"TERMINATED", "ERROR"} and len(new) == 6
    for row in new.itertuples():
        if row.status == "ERROR":  # the traceback, in the experiment's own folder
            assert Path(row.error).is_relative_to(exp) and Path(row.error).name == "error.txt"
            assert "too few for ddof=" in Path(row.error).read_text()
            assert not row.completed and pd.isna(row.checkpoint)
        elif row.completed:  # the scores the ensemble reads, from the trial's final checkpoint
            meta, scores = ex.load_trial(row.checkpoint)
            assert meta.arch == row.arch and meta.params == json.loads(row.params)
            assert meta.validation["f05"] == pytest.approx(row.val_f05)
            # holdout and test: for the best distinct configurations (search.finalists, 3 by default)
            assert (set(scores) >= {"validation", "holdout", "test"}) == row.finalist
            assert row.finalist == (not new[new.completed & (new.arch == row.arch)]
                                    .drop_duplicates("params")[lambda d: d.trial_id == row.trial_id].empty)
        else:  # stopped early by ASHA: no score, never ranked
            assert row.arch == "dense_ae" and row.epochs < 3 and pd.isna(row.val_f05) and pd.isna(row.rank)

    # What the CLI writes is the same table.
    assert main(["leaderboard", str(exp)]) == 0
    assert (exp / ex.LEADERBOARD).read_text() == new.to_csv(index=False)


def test_a_uri_experiment_and_a_moved_one_are_read_from_where_they_are(experiment, monkeypatch, tmp_path):
    """Checkpoints and error files come back inside the experiment as it was given: the URI's store
    (file:// here, s3:// alike: pyarrow resolves both), or the folder it was copied to."""
    exp, _ = experiment
    uri = "file://" + str(exp)
    board = results.leaderboard(uri, write=False)
    pd.testing.assert_frame_equal(board.drop(columns="start"), old_leaderboard(uri, monkeypatch))
    local = results.leaderboard(str(exp), write=False)
    for col in ("checkpoint", "error"):
        assert board[col].dropna().tolist() == ["file://" + p for p in local[col].dropna()]
    meta, _ = ex.load_trial(board["checkpoint"].dropna().iloc[0])
    assert meta.arch in ("dense_ae", "global_std")

    copy = tmp_path / "moved"
    shutil.copytree(exp, copy)
    moved = results.leaderboard(str(copy), write=False)
    assert moved["checkpoint"].dropna().tolist() == [p.replace(str(exp), str(copy), 1)
                                                     for p in local["checkpoint"].dropna()]
    assert all(Path(p).is_relative_to(copy) for p in moved["error"].dropna())


# -- the Optuna study on disk ------------------------------------------------------------------------

def _study(path: Path, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{path}")


def test_the_optuna_study_is_kept_beside_each_architecture(experiment):
    import optuna

    exp, _ = experiment
    table = results.trial_table(str(exp))
    for arch in ("dense_ae", "global_std"):
        trials = _study(exp / arch / "optuna.db", arch).get_trials()
        rows = table[table["arch"] == arch].set_index("trial_id")
        assert sorted(t.user_attrs["tune_trial_id"] for t in trials) == sorted(rows.index)
        for t in trials:
            row = rows.loc[t.user_attrs["tune_trial_id"]]
            if row["completed"]:
                assert t.state == optuna.trial.TrialState.COMPLETE and t.value == pytest.approx(row["val_f05"])
            elif row["status"] == "ERROR":
                assert t.state == optuna.trial.TrialState.FAIL
            else:  # stopped by ASHA
                assert t.state == optuna.trial.TrialState.PRUNED
            assert t.params == {k: v for k, v in json.loads(row["params"]).items() if k in t.params}
    assert not list(exp.rglob(".optuna.db.tmp"))


def test_the_study_file_is_rebuilt_on_resume(experiment, tmp_path):
    """A resumed sweep (here: one with nothing left to run) writes the study again from the
    searcher's restored state, with the same trials."""
    exp, _ = experiment
    copy = tmp_path / "stored"
    shutil.copytree(exp, copy)
    before = {a: _study(copy / a / "optuna.db", a).get_trials() for a in ("dense_ae", "global_std")}
    for a in before:
        (copy / a / "optuna.db").unlink()
    summary = resume(str(copy))
    assert summary["experiment"] == str(copy)
    for a, trials in before.items():
        after = _study(copy / a / "optuna.db", a).get_trials()
        assert [(t.user_attrs, t.state, t.params, t.values) for t in after] == \
            [(t.user_attrs, t.state, t.params, t.values) for t in trials]


# -- leaderboard --watch and the trusted-storage warnings ------------------------------------------

def test_leaderboard_watch_reprints_until_its_count_and_writes_nothing(experiment, capsys):
    exp, _ = experiment
    written = (exp / ex.LEADERBOARD).stat().st_mtime_ns
    capsys.readouterr()
    assert main(["leaderboard", str(exp), "--watch", "0.05", "--watch-count", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count(f"{exp} at ") == 2 and out.count("every 0.05 s, Ctrl-C to stop") == 2
    assert out.count("failed trials: global_std") == 2
    assert (exp / ex.LEADERBOARD).stat().st_mtime_ns == written


def test_leaderboard_watch_exits_0_on_ctrl_c(experiment, capsys):
    exp, _ = experiment
    naps = []

    def sleep(seconds):
        naps.append(seconds)
        if len(naps) == 3:
            raise KeyboardInterrupt

    assert watch_leaderboard(str(exp), 5, 7.0, sleep=sleep) == 0
    assert naps == [7.0, 7.0, 7.0] and capsys.readouterr().out.count("every 7 s") == 3


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_a_bad_watch_interval_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["leaderboard", "x", "--watch", value])
    assert stop.value.code == 2 and "--watch" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["search", "leaderboard"], ["search", "resume"], ["ensemble", "build"]])
def test_commands_reading_an_experiment_say_trusted_storage_only(argv, capsys):
    import ensemble.__main__
    import search.__main__

    entry = {"search": search.__main__.main, "ensemble": ensemble.__main__.main}[argv[0]]
    with pytest.raises(SystemExit) as stop:
        entry([argv[1], "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert stop.value.code == 0
    assert "Trusted storage only" in out and "unpickl" in out and "others can write to" in out
