"""The experiment's files (search/experiment.py): typed round trips, one-line errors for bad files,
the splits a trial scored as a list, and the one rule for holdout figures. No Ray."""
from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest

from search import experiment as ex
from telemetry.errors import TelemetryError

RUNNING = {"name": "x", "seed": 3, "data": {"train": "/data/train.parquet", "test": "/data/test.parquet"},
           "search": {"finalists": 5},
           "architectures": {"pca": {"trials": 2, "space": {"lags": {"choice": [3, 5]}}, "start": [{"lags": 3}]},
                             "global_std": {"trials": 1}}}
GIVEN = {**RUNNING, "data": {"train": "train.parquet"}}


def test_the_stored_sweep_reads_back_typed(tmp_path):
    exp = str(tmp_path / "exp")
    assert not ex.is_experiment(exp) and ex.read_sweep(exp, required=False) is None
    ex.write_sweep(exp, GIVEN, RUNNING)
    assert ex.is_experiment(exp)
    sweep = ex.read_sweep(exp)
    assert sweep.raw == RUNNING and sweep.source == f"{exp}/{ex.SWEEP_FILE}"
    assert ex.read_sweep(exp, ex.GIVEN_FILE).raw == GIVEN
    assert sweep.architectures == ["pca", "global_std"]
    assert sweep.starts == {"pca": [{"lags": 3}], "global_std": []}
    assert sweep.data.train == "/data/train.parquet" and sweep.data.test == "/data/test.parquet"
    assert sweep.finalists == 5
    cfg = sweep.config()
    assert cfg.name == "x" and cfg.seed == 3 and [a.name for a in cfg.architectures] == ["pca", "global_std"]
    assert cfg.source == sweep.source


def test_the_finalists_setting():
    assert ex.top_of(None) == ex.top_of({}) == 3
    assert ex.top_of({"finalists": "all"}) is None and ex.top_of({"finalists": 7}) == 7


def test_a_bad_stored_sweep_is_one_line_naming_the_file_and_key(tmp_path):
    exp = tmp_path / "exp"
    with pytest.raises(TelemetryError, match=r"exp: not a telesweep experiment \(sweep.yaml missing\)$"):
        ex.read_sweep(str(exp))
    exp.mkdir()
    path = exp / ex.SWEEP_FILE
    path.write_text("name: [x\n")
    with pytest.raises(TelemetryError, match=rf"^{path}: line \d+, column \d+: not valid YAML"):
        ex.read_sweep(str(exp))
    path.write_text("- a list\n")
    with pytest.raises(TelemetryError, match=rf"^{path}: a sweep file is a mapping, got list$"):
        ex.read_sweep(str(exp))
    path.write_text("name: x\narchitectures: [pca]\n")
    with pytest.raises(TelemetryError, match=rf"^{path}: architectures: a mapping, got \['pca'\]$"):
        ex.read_sweep(str(exp)).architectures
    path.write_text("name: x\narchitectures: {pca: {}}\ndata: {train: /t.parquet, colour: red}\n")
    with pytest.raises(TelemetryError, match=rf"^{path}: data: unknown key 'colour'"):
        ex.read_sweep(str(exp)).data


def _record(**over) -> ex.TrialRecord:
    return ex.TrialRecord(**{"arch": "pca", "params": {"lags": 3},
                             "threshold": {"method": "best_f05", "threshold": 1.5},
                             "validation": {"f05": 0.5}, "holdout": None, "objective": "f05",
                             "splits": ["validation"], "channels": ["a", "b"], "channel_scores": True, **over})


def test_a_trial_record_round_trips_and_a_finalist_completes_it(tmp_path):
    ckpt = tmp_path / "trial_0" / "checkpoint_000004"
    ckpt.mkdir(parents=True)
    val = {"validation": np.arange(5, dtype=np.float32), ex.channel_key("validation"): np.ones((5, 2), np.float32)}
    record = _record()
    ex.write_trial(ckpt, record, val)
    assert ex.read_trial(str(ckpt)) == record and record.labelled
    meta, scores = ex.load_trial(str(ckpt))
    assert meta == record and sorted(scores) == ["validation", "validation_channels"]  # no finalist yet

    later = {"holdout": np.full(3, 2, np.float32), "test": np.full(4, 3, np.float32)}
    finalist = ex.FinalistRecord("checkpoint_000004", ["holdout", "test"], {"f05": 0.25}, 1.0)
    ex.write_finalist(str(ckpt), finalist, later)
    assert ex.read_finalist(str(ckpt)) == finalist
    meta, scores = ex.load_trial(str(ckpt))
    assert meta.splits == ["validation", "holdout", "test"] and meta.holdout == {"f05": 0.25}
    assert sorted(scores) == ["holdout", "test", "validation", "validation_channels"]
    np.testing.assert_array_equal(scores["test"], later["test"])
    assert ex.read_trial(str(ckpt)).holdout is None  # the checkpoint's own record is untouched

    # a finalist file scored from another checkpoint (the trial run again) is not this one's
    other = ckpt.parent / "checkpoint_000005"
    ckpt.rename(other)
    assert ex.read_finalist(str(other)) is None and ex.load_trial(str(other))[0].holdout is None


def test_a_trial_that_scored_every_split_keeps_its_own_holdout_figures(tmp_path):
    ckpt = tmp_path / "trial_0" / "checkpoint_000001"
    ckpt.mkdir(parents=True)
    own = _record(holdout={"f05": 0.75}, splits=["validation", "holdout", "test"])
    ex.write_trial(ckpt, own, {s: np.zeros(2, np.float32) for s in ex.SPLITS})
    # a stray finalist file for the same checkpoint does not override what the trial measured
    ex.write_finalist(str(ckpt), ex.FinalistRecord("checkpoint_000001", ["holdout", "test"], {"f05": 0.1}),
                      {"holdout": np.ones(2, np.float32)})
    meta, scores = ex.load_trial(str(ckpt))
    assert meta.holdout == {"f05": 0.75} and meta.splits == list(ex.SPLITS)
    assert not scores["holdout"].any()


def test_a_bad_trial_file_is_one_line_naming_the_file_and_key(tmp_path):
    ckpt = tmp_path / "t" / "checkpoint_000000"
    ckpt.mkdir(parents=True)
    path = ckpt / ex.TRIAL_FILE
    good = json.loads(json.dumps(dataclasses.asdict(_record())))
    cases = {"{": "not valid JSON", "[]": "a JSON object, got list",
             json.dumps({**good, "level": 1}): "unknown key 'level'",
             json.dumps({k: v for k, v in good.items() if k != "threshold"}): "missing key 'threshold'",
             json.dumps({**good, "splits": "validation,holdout"}): "splits: a list of names, got 'validation,holdout'"}
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(TelemetryError) as err:
            ex.read_trial(str(ckpt))
        assert str(err.value).startswith(f"{path}: {message}") and "\n" not in str(err.value), text


def test_the_splits_a_trial_scored_are_a_list():
    assert ex.scored_splits({"scored": ex.scored_value(["validation"])}) == ["validation"]
    assert ex.scored_splits({"scored": ex.scored_value(list(ex.SPLITS))}) == ["validation", "holdout", "test"]
    assert ex.scored_splits({}) == [] and ex.scored_splits({"scored": None}) == []


def test_holdout_figures_have_one_rule():
    finalist = ex.FinalistRecord("checkpoint_000000", ["holdout", "test"], {"f05": 0.2})
    assert ex.holdout_figures({"f05": 0.9}, finalist) == {"f05": 0.9}  # the trial's own win
    assert ex.holdout_figures(None, finalist) == {"f05": 0.2}
    assert ex.holdout_figures(None, None) is None
    # Tune's result holds the trial's own figures only when it scored holdout
    full = {"scored": "validation,holdout,test", "holdout_f05": 0.9, "holdout_auc_pr": 0.5, "f05": 0.7}
    assert ex.reported_holdout(full) == {"f05": 0.9, "auc_pr": 0.5}
    assert ex.reported_holdout({"scored": "validation", "f05": 0.7}) is None


def test_a_trial_config_splits_into_params_and_rule():
    config = {"arch": "pca", "lags": 3, "threshold": {"method": "plateau", "smooth": 5}}
    assert ex.split_config(config) == ("pca", {"lags": 3}, {"method": "plateau", "smooth": 5})


def test_the_sets_round_trip(tmp_path):
    exp = str(tmp_path / "exp")
    assert ex.read_sets(exp, required=False) is None
    with pytest.raises(TelemetryError, match=r"exp: sets.npz missing"):
        ex.read_sets(exp)
    split = lambda ids, labels: SimpleNamespace(ids=np.asarray(ids), labels=labels)  # noqa: E731
    data = SimpleNamespace(sets=lambda: {"fit": split([0, 1], np.array([0, 0])), "validation": split([2], None)},
                           test_labels=np.array([1]))
    ex.write_sets(exp, data)
    sets = ex.read_sets(exp)
    assert sorted(sets) == ["fit_ids", "fit_labels", "test_true_labels", "validation_ids"]
    np.testing.assert_array_equal(sets["fit_ids"], [0, 1])
