"""Scoring in proportion (search/finalists.py): trials score validation only; the top K per
architecture score holdout and test afterwards from their saved model.

Unit tests (no Ray): a finalist's holdout/test scores and figures equal those of the in-trial
path (every split scored in the trial, ``search.finalists: all``), labelled and unlabelled, for a row model and a Keras model.
End to end (real Ray Tune, the shared tiny mission of tests/test_search.py): exactly the top K have
holdout/test scores, the leaderboard shows empty holdout figures for the others, the ensemble builds
with its default k, a larger k fails with the command that fixes it, ``finalize --top`` (here through
a file:// URI, as s3:// would be) fixes it, and a sweep interrupted before its finalists were scored
scores them on resume.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search import experiment as ex
from search import finalists, results, trainable
from search.schema import DEFAULT_FINALISTS
from search.__main__ import main
from search.config import parse_config
from search.runner import resume, run_sweep
from telemetry.errors import TelemetryError
from telemetry.prepare import prepare
from detection.thresholds import PARAMS
from conftest import local_ray_started
from test_search import TINY, mission, sweep  # noqa: F401 - mission is a fixture used here

ray = pytest.importorskip("ray")


# -- the finalist's scores are the old path's ---------------------------------------------------------

@pytest.fixture(scope="module")
def data(mission):  # noqa: F811 - the imported fixture
    return prepare(parse_config(sweep(mission, "unit", {"pca": {}})).data)


@pytest.fixture(scope="module")
def unlabelled(mission):  # noqa: F811
    raw = sweep(mission, "unit", {"pca": {}})
    raw["data"]["labels"] = "none"
    return prepare(parse_config(raw).data)


def _trial_as_the_sweep_leaves_it(tmp_path: Path, est, data, thr: dict) -> tuple[str, dict, dict]:
    """Score ``est`` the old way (every split, in the trial) and store it as a validation-only trial
    does (model, rule, validation scores in its final checkpoint). Returns (checkpoint, the old
    path's scores, its holdout figures)."""
    labelled = data.validation.labels is not None
    if labelled:
        full, rule, _, m_hold, _ = trainable._evaluate(est, data, thr, score_all=True)
        val_only, rule_v, _, none, _ = trainable._evaluate(est, data, thr, score_all=False)
    else:
        full, rule, _, m_hold, _ = trainable._evaluate_unlabelled(est, data, thr, {}, score_all=True)
        val_only, rule_v, _, none, _ = trainable._evaluate_unlabelled(est, data, thr, {}, score_all=False)
    assert none is None and sorted(val_only) == sorted(k for k in full if k.startswith("validation"))
    assert rule_v.to_dict() == rule.to_dict()
    ckpt = tmp_path / "trial_0" / "checkpoint_000002"
    ckpt.mkdir(parents=True)
    est.save(ckpt / ex.MODEL_DIR)
    ex.write_trial(ckpt, ex.TrialRecord(
        arch=est.name, params=est.get_params(), threshold=rule.to_dict(), validation={}, holdout=None,
        objective="f05" if labelled else "val_loss", splits=["validation"], channels=list(est.channels_),
        channel_scores="validation_channels" in full), val_only)
    return str(ckpt), full, m_hold


@pytest.mark.parametrize("arch, params, thr, labelled", [
    ("pca", {"n_components": 0.9}, {"method": "best_f05", "min_length": 2}, True),
    ("global_std", {}, {"method": "pot"}, False),
    ("dense_ae", {**TINY, "latent": 2, "epochs": 1}, {"method": "best_f05"}, True),
    ("dense_ae", {**TINY, "latent": 2, "epochs": 1}, {"method": "pot"}, False),  # the holdout loss of a loaded model
])
def test_a_finalist_scores_exactly_what_the_trial_would_have(tmp_path, data, unlabelled, arch, params, thr, labelled):
    from models import registry

    d = data if labelled else unlabelled
    est = registry.get(arch)(**params).fit(d.fit, d.validation)
    ckpt, full, m_hold = _trial_as_the_sweep_leaves_it(tmp_path, est, d, thr)
    assert ex.read_finalist(ckpt) is None

    record = finalists.score_finalist(ckpt, d, cpus=1, gpus=0)
    assert record.checkpoint == "checkpoint_000002" and record.splits == ["holdout", "test"]
    assert ex.read_finalist(ckpt) == record
    stored = np.load(tmp_path / "trial_0" / ex.FINALIST_NPZ)
    later = {k: v for k, v in full.items() if not k.startswith("validation")}
    assert sorted(stored.files) == sorted(later)  # per-channel scores too, where the trial kept them
    for key, old in later.items():
        np.testing.assert_array_equal(stored[key], old, err_msg=key)
    assert record.holdout == pytest.approx(m_hold)
    assert ({"f05", "event_recall", "auc_pr"} if labelled else {"loss", "alarm_rate"}) <= set(m_hold)
    assert sorted(p.name for p in Path(ckpt).iterdir()) == ["model", "scores.npz", "trial.json"]  # untouched

    # load_trial gives the ensemble both: validation from the checkpoint, the rest from the finalist files
    meta, scores = ex.load_trial(ckpt)
    assert sorted(scores) == sorted(full) and meta.holdout == pytest.approx(m_hold)
    assert meta.splits == ["validation", "holdout", "test"]
    np.testing.assert_array_equal(scores["validation"], full["validation"])

    # a finalist file of another checkpoint (a trial run again) is not taken for this one's
    other = Path(ckpt).parent / "checkpoint_000003"
    Path(ckpt).rename(other)
    assert ex.read_finalist(str(other)) is None and ex.load_trial(str(other))[0].holdout is None


def test_pending_takes_the_top_distinct_configurations_per_architecture():
    board = pd.DataFrame({
        "arch": ["a"] * 5 + ["b"] * 2,
        "completed": [True, True, True, True, False, True, True],
        "params": ["x", "x", "y", "z", "w", "p", "q"],  # a's second trial repeats the first configuration
        "finalist": [True, False, False, False, False, False, True],
        "trial_id": ["a1", "a2", "a3", "a4", "a5", "b1", "b2"]})
    assert finalists.pending(board, 2)["trial_id"].tolist() == ["a3", "b1"]
    assert finalists.pending(board, 3)["trial_id"].tolist() == ["a3", "a4", "b1"]
    assert finalists.pending(board, None)["trial_id"].tolist() == ["a3", "a4", "b1"]
    assert ex.top_of({}) == DEFAULT_FINALISTS == 3
    assert ex.top_of({"finalists": "all"}) is None and ex.top_of({"finalists": 5}) == 5


def test_finalize_with_a_bad_top_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["finalize", "x", "--top", "0"])
    assert stop.value.code == 2 and "--top: must be >= 1" in capsys.readouterr().err


# -- end to end --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray():
    with local_ray_started():
        yield


def _pca_sweep(mission, name, trials, finalists_k, **search):  # noqa: F811
    return parse_config(sweep(mission, name, search={"searcher": "random", "max_failures": 0,
                                                     "finalists": finalists_k, **search},
                              architectures={"pca": {"trials": trials,
                                                     "fixed": {"n_components": 0.9},
                                                     "space": {"lags": {"int": [1, 30]}}}}))


def _finalist_dirs(exp: Path) -> set[str]:
    return {p.parent.name for p in exp.glob(f"pca/*/{ex.FINALIST_JSON}")}


@pytest.fixture(scope="module")
def experiment(mission, tmp_path_factory, local_ray):  # noqa: F811
    summary = run_sweep(_pca_sweep(mission, "fin", 4, 2), storage_path=str(tmp_path_factory.mktemp("sweeps")))
    return Path(summary["experiment"]), summary


def test_only_the_top_trials_score_holdout_and_test(experiment, data):
    exp, summary = experiment
    assert summary["architectures"]["pca"] == {"trials": 4, "completed": 4, "errored": 0}
    assert summary["finalists"]["pca"] == {"finalists": 2, "scored": 2, "failed": 0}
    board = pd.read_csv(exp / ex.LEADERBOARD)
    assert board["rank"].tolist() == [1, 2, 3, 4] and board["params"].nunique() == 4
    top, rest = board[board["rank"] <= 2], board[board["rank"] > 2]
    assert top["finalist"].all() and not rest["finalist"].any()
    assert top["holdout_f05"].between(0, 1).all() and top["holdout_auc_pr"].notna().all()
    assert rest[["holdout_f05", "holdout_event_recall", "holdout_auc_pr"]].isna().all().all()  # empty, not 0
    assert _finalist_dirs(exp) == {Path(c).parent.name for c in top["checkpoint"]}

    for row in board.itertuples():
        meta, scores = ex.load_trial(row.checkpoint)
        channel_keys = {f"{s}_channels" for s in ("validation", "holdout", "test")}
        if row.finalist:
            assert set(scores) == {"validation", "holdout", "test"} | channel_keys
            assert meta.holdout["f05"] == pytest.approx(row.holdout_f05)
            assert scores["test"].shape == (len(data.test),) and np.isfinite(scores["holdout"]).all()
        else:  # validation only: no test-time inference spent on it
            assert set(scores) == {"validation", "validation_channels"} and meta.holdout is None
            assert meta.splits == ["validation"]
        # the trial itself reported only what it scored
        last = json.loads((Path(row.checkpoint).parent / "result.json").read_text().splitlines()[-1])
        assert last["scored"] == "validation" and "holdout_f05" not in last

    # The finalist's holdout figures are those of a fresh scoring of the loaded model with the old path.
    from models.base import Detector

    best = board.iloc[0]
    est = Detector.load(Path(best["checkpoint"]) / "model")
    meta = ex.read_trial(best["checkpoint"])
    rule = {k: v for k, v in meta.threshold.items() if k in PARAMS}  # the rule's parameters, not its fitted state
    full, _, m_val, m_hold, _ = trainable._evaluate(est, data, rule, score_all=True)
    _, scores = ex.load_trial(best["checkpoint"])
    for split in ("validation", "holdout", "test", "holdout_channels"):
        np.testing.assert_array_equal(scores[split], full[split], err_msg=split)
    assert m_val["f05"] == pytest.approx(best["val_f05"]) and m_hold["f05"] == pytest.approx(best["holdout_f05"])


def test_no_more_trials_than_finalists_score_every_split_in_the_trial(mission, tmp_path, local_ray):  # noqa: F811
    """Each trial of an architecture with no more trials than K would be a finalist: it scores
    holdout and test itself, and no second pass (a process start and a model reload) follows."""
    summary = run_sweep(_pca_sweep(mission, "few", 2, 2), storage_path=str(tmp_path / "sweeps"))
    exp = Path(summary["experiment"])
    assert summary["finalists"]["pca"] == {"finalists": 2, "scored": 0, "failed": 0}
    assert not _finalist_dirs(exp)
    board = pd.read_csv(exp / ex.LEADERBOARD)
    assert len(board) == 2 and board["finalist"].all() and board["holdout_f05"].between(0, 1).all()
    for row in board.itertuples():
        last = json.loads((Path(row.checkpoint).parent / "result.json").read_text().splitlines()[-1])
        assert last["scored"] == "validation,holdout,test" and last["holdout_f05"] == pytest.approx(row.holdout_f05)
        assert {"holdout", "test"} <= set(ex.load_trial(row.checkpoint)[1])


def test_the_ensemble_builds_from_the_finalists_and_asks_for_more_when_k_is_larger(experiment, tmp_path, capsys):
    from ensemble.__main__ import main as ensemble_main
    from ensemble.build import build

    exp, _ = experiment
    res = build(str(exp), tmp_path / "k2", weight_trials=5)  # the default k = 2: no extra step
    board = results.leaderboard(str(exp), write=False)
    assert sorted(res["members"]) == sorted(f"pca#{t[-5:]}" for t in board[board["rank"] <= 2]["trial_id"])

    third = board[board["rank"] == 3].iloc[0]
    assert ensemble_main(["build", str(exp), "--out", str(tmp_path / "k3"), "--k", "3"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"member pca#{third['trial_id'][-5:]} (trial {third['trial_id']})" in errors[0]
    assert errors[0].endswith(f"python -m search finalize {exp} --top 3")
    assert not (tmp_path / "k3" / "submission.csv").exists()

    # Scored through the experiment's URI (file:// here; s3:// goes the same way through pyarrow).
    assert main(["finalize", f"file://{exp}", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "pca: 3 trials with holdout and test scores (1 scored now)" in out
    board = pd.read_csv(exp / ex.LEADERBOARD)  # written again, now with the third's holdout figures
    assert board["finalist"].tolist() == [True, True, True, False] and board["holdout_f05"].notna().sum() == 3
    res = build(str(exp), tmp_path / "k3", k=3, weight_trials=5)
    assert len(res["members"]) == 3 and (tmp_path / "k3" / "submission.csv").is_file()

    # Nothing left to score: no data loaded, no finalist file written again.
    before = {p: p.stat().st_mtime_ns for p in exp.glob(f"pca/*/{ex.FINALIST_NPZ}")}
    assert main(["finalize", str(exp), "--top", "3"]) == 0
    assert "(0 scored now)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in exp.glob(f"pca/*/{ex.FINALIST_NPZ}")} == before


def test_a_sweep_interrupted_before_its_finalists_scores_them_on_resume(mission, tmp_path, local_ray, monkeypatch):
    from ensemble.build import build

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C once the trials are done, before any finalist is scored

    monkeypatch.setattr(finalists, "finalize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(_pca_sweep(mission, "fin_resume", 3, 2), storage_path=str(tmp_path / "sweeps"))
    monkeypatch.undo()
    exp = tmp_path / "sweeps" / "fin_resume"
    before = results.leaderboard(str(exp), write=False)
    assert before["completed"].all() and not before["finalist"].any() and not _finalist_dirs(exp)
    with pytest.raises(TelemetryError, match="has no holdout/test scores"):
        build(str(exp), tmp_path / "early", weight_trials=5)

    summary = resume(str(exp))
    assert summary["finalists"]["pca"] == {"finalists": 2, "scored": 2, "failed": 0}
    board = pd.read_csv(exp / ex.LEADERBOARD)
    assert board["finalist"].tolist() == [True, True, False]
    assert (board["time_total_s"] == before.set_index("trial_id").loc[board["trial_id"], "time_total_s"].values).all()
    assert build(str(exp), tmp_path / "out", weight_trials=5)["members"]
