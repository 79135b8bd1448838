"""The sweep file's typed schema (search/schema.py): bad files stop at the command line with one line
naming the file, the key path and the value, exit status 2, before Ray starts; the shipped configs
parse; the exported JSON Schema is the committed one."""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from models import registry
from search import schema
from search.__main__ import main
from search.config import load_config, parse_config
from telemetry.errors import TelemetryError
from telemetry.prepare import DataConfig

from conftest import write_challenge_parquet

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
SCHEMA_FILE = REPO / "configs" / "sweep.schema.json"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    write_challenge_parquet(d / "train.parquet", n=400)
    write_challenge_parquet(d / "test.parquet", n=100, labels=False, start_id=400, seed=1)
    return d


def base(files: Path) -> dict:
    """A valid sweep touching every section (relative data paths, as users write them)."""
    return {
        "name": "schema", "seed": 1, "storage": "sweeps",
        "data": {"train": "train.parquet", "test": "test.parquet", "channels": "41-43", "fractions": [0.5, 0.25, 0.25]},
        "ray": {"num_cpus": 2},
        "search": {"searcher": "tpe", "scheduler": "asha", "grace_period": 1, "reduction_factor": 2, "max_failures": 1},
        "threshold": {"method": {"choice": ["best_f05", "ndt"]}, "min_length": {"int": [1, 8]}},
        "architectures": {
            "dense_ae": {"trials": 2, "resources": {"cpu": 1, "gpu": 0},
                         "space": {"latent": {"int": [2, 4], "log": True}, "learning_rate": {"float": [1e-4, 1e-2]}},
                         "fixed": {"window": 8, "units": 4, "epochs": 1}},
            "global_std": {"trials": 1},
        },
    }


def arch(r):
    return r["architectures"]["dense_ae"]


# (change to the valid sweep, what the one-line message must contain: key path and bad value)
BAD = {
    # top level
    "unknown top-level key": (lambda r: r.update(colour="red"), "sweep.yaml: unknown key 'colour' (known: "),
    "name missing": (lambda r: r.pop("name"), "sweep.yaml: missing key 'name'"),
    "name empty": (lambda r: r.update(name=""), "sweep.yaml: name: string should have at least 1 character, got ''"),
    "seed negative": (lambda r: r.update(seed=-1), "seed: input should be greater than or equal to 0, got -1"),
    "seed a string": (lambda r: r.update(seed="7"), "seed: input should be a valid integer, got '7'"),
    # data
    "unknown data key": (lambda r: r["data"].update(colums="41-43"), "data: unknown key 'colums' (known: "),
    "missing train file": (lambda r: r["data"].update(train="nowhere/train.parquet"),
                           "data.train: file not found: "),
    "missing test file": (lambda r: r["data"].update(test="test2.parquet"), "data.test: file not found: "),
    "fractions not a list": (lambda r: r["data"].update(fractions="0.5, 0.5"),
                             "data.fractions: input should be a valid list, got '0.5, 0.5'"),
    "channels a number": (lambda r: r["data"].update(channels=41),
                          "data.channels: should be a string, a list or null, got 41"),
    "wavelet's unknown argument": (lambda r: r["data"].update(wavelet={"levle": 2}), "data.wavelet: "),
    # ray
    "unknown ray key": (lambda r: r["ray"].update(gpus=1), "ray: unknown key 'gpus' (known: num_cpus, num_gpus)"),
    "no CPUs": (lambda r: r["ray"].update(num_cpus=0), "ray.num_cpus: input should be greater than 0, got 0"),
    # search
    "unknown search key": (lambda r: r["search"].update(patience=3), "search: unknown key 'patience'"),
    "max_concurrent_trials: many": (lambda r: r["search"].update(max_concurrent_trials="many"),
                                    "search.max_concurrent_trials: input should be a valid integer, got 'many'"),
    "grace_period: two": (lambda r: r["search"].update(grace_period="two"),
                          "search.grace_period: input should be a valid integer, got 'two'"),
    "reduction_factor 1": (lambda r: r["search"].update(reduction_factor=1),
                           "search.reduction_factor: input should be greater than 1, got 1"),
    "unknown searcher": (lambda r: r["search"].update(searcher="grid"),
                         "search.searcher: input should be 'tpe' or 'random', got 'grid'"),
    "negative max_failures": (lambda r: r["search"].update(max_failures=-1),
                              "search.max_failures: input should be greater than or equal to 0, got -1"),
    "time budget a string": (lambda r: r["search"].update(time_budget_s="1h"),
                             "search.time_budget_s: input should be a valid number, got '1h'"),
    # threshold
    "unknown threshold key": (lambda r: r["threshold"].update(window=3), "threshold: unknown key 'window'"),
    "unknown threshold method": (lambda r: r["threshold"].update(method={"choice": ["best_f05", "best"]}),
                                 "threshold.method.choice[1]: input should be 'best_f05', "),
    "min_length range below 1": (lambda r: r["threshold"].update(min_length={"int": [0, 8]}),
                                 "threshold.min_length.int[0]: input should be greater than or equal to 1, got 0"),
    "hysteresis 1": (lambda r: r["threshold"].update(hysteresis=1.0),
                     "threshold.hysteresis: input should be less than 1, got 1.0"),
    # architectures
    "unknown architecture": (lambda r: r["architectures"].update(transformer={}),
                             "architectures: unknown architecture 'transformer'; known: "),
    "no architecture": (lambda r: r.update(architectures={}), "architectures: name at least one architecture"),
    "architecture not a mapping": (lambda r: r["architectures"].update(dense_ae=3),
                                   "architectures.dense_ae: should be a mapping (key: value), got 3"),
    "unknown architecture key": (lambda r: r["architectures"]["global_std"].update(epochs=3),
                                 "architectures.global_std: unknown key 'epochs'"),
    "zero trials": (lambda r: arch(r).update(trials=0),
                    "architectures.dense_ae.trials: input should be greater than or equal to 1, got 0"),
    "trials a float": (lambda r: arch(r).update(trials=2.5),
                       "architectures.dense_ae.trials: input should be a valid integer, got 2.5"),
    "architecture max_concurrent_trials: many": (lambda r: arch(r).update(max_concurrent_trials="many"),
                                                 "architectures.dense_ae.max_concurrent_trials: input should be a "
                                                 "valid integer, got 'many'"),
    "budget share zero": (lambda r: arch(r).update(budget_share=0),
                          "architectures.dense_ae.budget_share: input should be greater than 0, got 0"),
    # resources
    "unknown resources key": (lambda r: arch(r)["resources"].update(memory=4), "architectures.dense_ae.resources: "
                                                                               "unknown key 'memory' (known: cpu, gpu)"),
    "gpu 1.5": (lambda r: arch(r)["resources"].update(gpu=1.5), "architectures.dense_ae.resources.gpu: a GPU share is "
                                                                "a fraction in (0, 1] or a whole number of GPUs, got 1.5"),
    "gpu half": (lambda r: arch(r)["resources"].update(gpu="half"),
                 "architectures.dense_ae.resources.gpu: input should be a valid number, got 'half'"),
    "negative gpu": (lambda r: arch(r)["resources"].update(gpu=-1),
                     "architectures.dense_ae.resources.gpu: input should be greater than or equal to 0, got -1"),
    "no cpu": (lambda r: arch(r)["resources"].update(cpu=0),
               "architectures.dense_ae.resources.cpu: input should be greater than 0, got 0"),
    # space
    "unknown parameter searched": (lambda r: arch(r)["space"].update(kernel_size={"int": [3, 5]}),
                                   "architectures.dense_ae.space: unknown key 'kernel_size' (known: "),
    "empty choice": (lambda r: arch(r)["space"].update(units={"choice": []}),
                     "architectures.dense_ae.space.units: choice needs a non-empty list, got []"),
    "empty range": (lambda r: arch(r)["space"].update(latent={"int": [8, 2]}),
                    "architectures.dense_ae.space.latent: empty range [8, 2]"),
    "float range for an integer": (lambda r: arch(r)["space"].update(units={"float": [4, 8]}),
                                   "architectures.dense_ae.space.units: should be an integer or a search space "
                                   "{choice: [...]} or {int: [low, high]}"),
    "non-integer window in a choice": (lambda r: arch(r)["space"].update(score_stride={"choice": [4, 6.5]}),
                                       "architectures.dense_ae.space.score_stride.choice[1]: input should be a "
                                       "valid integer, got 6.5"),
    "unknown spec key": (lambda r: arch(r)["space"].update(latent={"int": [2, 4], "step": 2}),
                         "architectures.dense_ae.space.latent: unknown key 'step' (known: int, log)"),
    "log range from 0": (lambda r: arch(r)["space"].update(dropout={"float": [0, 0.5], "log": True}),
                         "architectures.dense_ae.space.dropout: a log range needs low > 0"),
    # fixed
    "unknown parameter fixed": (lambda r: arch(r)["fixed"].update(filters=8),
                                "architectures.dense_ae.fixed: unknown key 'filters'"),
    "fractional window": (lambda r: arch(r)["fixed"].update(window=8.5),
                          "architectures.dense_ae.fixed.window: input should be a valid integer, got 8.5"),
    "epochs a word": (lambda r: arch(r)["fixed"].update(epochs="two"),
                      "architectures.dense_ae.fixed.epochs: input should be a valid integer, got 'two'"),
    "a boolean as a word": (lambda r: arch(r)["fixed"].update(telecommands="yes"),
                            "architectures.dense_ae.fixed.telecommands: input should be a valid boolean, got 'yes'"),
    "searched and fixed": (lambda r: arch(r)["fixed"].update(latent=3),
                           "architectures.dense_ae: 'latent' is both searched and fixed"),
    # a member's own bounds (its _checks), which the schema reads: they fail here, not inside a trial
    "dropout 1.5": (lambda r: arch(r)["fixed"].update(dropout=1.5),
                    "architectures.dense_ae.fixed.dropout: input should be less than 1, got 1.5"),
    "batch_size 0": (lambda r: arch(r)["fixed"].update(batch_size=0),
                     "architectures.dense_ae.fixed.batch_size: input should be greater than or equal to 1, got 0"),
    "units -3 searched": (lambda r: arch(r)["space"].update(units=-3),
                          "architectures.dense_ae.space.units: input should be greater than or equal to 1, got -3"),
    "window 0 in a choice": (lambda r: arch(r)["space"].update(window={"choice": [0, 8]}),
                             "architectures.dense_ae.space.window.choice[0]: input should be greater than or equal "
                             "to 1, got 0"),
    "dropout range past 1": (lambda r: arch(r)["space"].update(dropout={"float": [0.1, 1.5]}),
                             "architectures.dense_ae.space.dropout.float[1]: input should be less than 1, got 1.5"),
    "row_reduction unknown": (lambda r: arch(r)["fixed"].update(row_reduction="median"),
                              "architectures.dense_ae.fixed.row_reduction: input should be 'mean' or 'max', "
                              "got 'median'"),
    "n_components 0": (lambda r: r["architectures"].update(pca={"fixed": {"n_components": 0}}),
                       "architectures.pca.fixed.n_components: should be an integer >= 1 or a fraction in (0, 1), got 0"),
    "n_components range from 0": (lambda r: r["architectures"].update(pca={"space": {"n_components": {"int": [0, 4]}}}),
                                  "architectures.pca.space.n_components.int[0]: input should be greater than or "
                                  "equal to 1, got 0"),
    "threshold floor_risk 0.5": (lambda r: r["threshold"].update(floor_risk=0.5),
                                 "threshold.floor_risk: input should be less than 0.02, got 0.5"),
    # fractions sum to 1 (no normalisation); names are plain folder names
    "fractions summing to 1.5": (lambda r: r["data"].update(fractions=[0.5, 0.5, 0.5]),
                                 "data.fractions: split fractions must sum to 1, got [0.5, 0.5, 0.5] (sum 1.5)"),
    "fractions summing to 1.3": (lambda r: r["data"].update(fractions=[0.5, 0.6, 0.2]),
                                 "data.fractions: split fractions must sum to 1, got [0.5, 0.6, 0.2] (sum 1.3)"),
    "a zero fraction": (lambda r: r["data"].update(fractions=[1.0, 0.0, 0.0]),
                        "data.fractions: split fractions must be three positive numbers"),
    "name escaping storage": (lambda r: r.update(name="../escaped"),
                              "name: an experiment name is a plain folder name (no '/', '\\', '..', surrounding "
                              "spaces or control characters), got '../escaped'"),
    "name with a slash": (lambda r: r.update(name="a/b"), "name: an experiment name is a plain folder name"),
    "name ..": (lambda r: r.update(name=".."), "name: an experiment name is a plain folder name"),
}


def test_the_base_sweep_is_valid(files):
    path = files / "sweep.yaml"
    path.write_text(yaml.safe_dump(base(files)))
    cfg = load_config(path, check_files=True)
    assert [a.name for a in cfg.architectures] == ["dense_ae", "global_std"]
    assert cfg.data.train == str(files / "train.parquet") and cfg.storage == str(files / "sweeps")
    assert cfg.search["reduction_factor"] == 2 and cfg.architectures[0].gpu == 0.0


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_sweep_file_exits_2_with_one_line_before_ray(files, tmp_path, capsys, case):
    mutate, message = BAD[case]
    raw = base(files)
    mutate(raw)
    path = files / "sweep.yaml"  # beside the data: its relative paths resolve there
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    store = tmp_path / "sweeps"
    started = time.monotonic()
    rc = main(["run", "--config", str(path), "--storage", str(store)])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith(f"error: {path}: ") and message in err, err
    assert err.count("\n") == 1  # one line, no traceback
    assert not ray.is_initialized() and not store.exists()
    assert elapsed < 30  # a check, not a sweep (Ray's start alone takes longer on the CI machine)


@pytest.mark.parametrize("text, message", [
    ("seed: 7\nseed: 8\n", "line 3, column 1: duplicate key 'seed' (first at line 2)"),
    ("architectures:\n  dense_ae: {trials: 1}\n  dense_ae: {trials: 2}\n",
     "line 4, column 3: duplicate key 'dense_ae' (first at line 3)"),
    ("data: {train: a.parquet, train: b.parquet}\n", "line 2, column 26: duplicate key 'train' (first at line 2)"),
    ("seed: [1, 2\n", "line 3, column 1: not valid YAML: while parsing a flow sequence expected ',' or ']', but got "
                      "'<stream end>'"),
    ("seed: 1\n\tstorage: x\n", "line 3, column 1: not valid YAML: while scanning for the next token found "
                                 "character '\\t' that cannot start any token"),
])
def test_duplicate_keys_and_yaml_errors_name_line_and_column(files, tmp_path, capsys, text, message):
    path = files / "dup.yaml"
    path.write_text("name: dup\n" + text)
    rc = main(["run", "--config", str(path), "--storage", str(tmp_path / "sweeps")])
    err = capsys.readouterr().err
    assert rc == 2 and err == f"error: {path}: {message}\n", err
    assert not ray.is_initialized() and not (tmp_path / "sweeps").exists()


def test_yaml_merge_keys_may_override():
    from search.config import load_yaml

    assert load_yaml("a: &x {b: 1}\nc:\n  <<: *x\n  b: 2\n", "s") == {"a": {"b": 1}, "c": {"b": 2}}


def test_twenty_bad_files_at_least_and_every_level_has_an_unknown_key():
    assert len(BAD) >= 20
    unknown = " ".join(m for _, m in BAD.values() if "unknown key" in m or "unknown architecture" in m)
    for level in ("sweep.yaml:", "data:", "ray:", "search:", "threshold:", "architectures:", "global_std:",
                  "resources:", "space:", "fixed:", "space.latent:"):
        assert level in unknown, level


def test_the_command_line_itself_stops_on_gpu_half(files, tmp_path):
    raw = base(files)
    arch(raw)["resources"]["gpu"] = "half"
    path = files / "gpu_half.yaml"
    path.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "search", "run", "--config", str(path), "--storage",
                           str(tmp_path / "sweeps")], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr == f"error: {path}: architectures.dense_ae.resources.gpu: input should be a valid number, got 'half'\n"
    assert proc.stdout == "" and not (tmp_path / "sweeps").exists()


def test_parse_config_raises_only_the_projects_error(files):
    raw = base(files)
    arch(raw)["resources"]["gpu"] = "half"
    with pytest.raises(TelemetryError) as err:
        parse_config(raw, base_dir=files, source="s.yaml")
    assert str(err.value).startswith("s.yaml: architectures.dense_ae.resources.gpu: ")
    with pytest.raises(TelemetryError, match="a sweep file is a mapping"):
        parse_config(["not", "a", "mapping"], source="s.yaml")


def test_whole_gpus_and_fractions_pass(files):
    for gpu in (0, 0.25, 1, 2, 2.0):
        raw = base(files)
        arch(raw)["resources"]["gpu"] = gpu
        assert parse_config(raw, base_dir=files).architectures[0].gpu == gpu


def test_data_files_are_checked_only_when_asked_and_never_for_uris(files):
    raw = base(files)
    raw["data"]["train"] = "elsewhere/train.parquet"
    assert parse_config(raw, base_dir=files).data.train == str(files / "elsewhere" / "train.parquet")  # plan --rows
    with pytest.raises(TelemetryError, match=r"data\.train: file not found: .*elsewhere/train\.parquet"):
        parse_config(raw, base_dir=files, check_files=True)
    raw["data"].update(train="s3://bucket/train.parquet", test="gs://bucket/test.parquet")
    assert parse_config(raw, base_dir=files, check_files=True).data.test == "gs://bucket/test.parquet"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_parses(path):
    cfg = load_config(path)
    assert [a.name for a in cfg.architectures] == list(yaml.safe_load(path.read_text())["architectures"])


def test_a_stored_experiment_parses_again_for_resume(tmp_path):
    """resume re-reads the sweep as the runner stored it: resolved paths, every DataConfig field (None
    included), resources as floats."""
    from search.runner import _effective_raw

    for path in CONFIGS:
        cfg = load_config(path)
        again = parse_config(json.loads(json.dumps(_effective_raw(cfg, str(tmp_path)))), base_dir="/")
        assert again.data == cfg.data and again.architectures == cfg.architectures and again.threshold == cfg.threshold


def test_a_sweep_without_epochs_gets_the_models_default_epochs(tmp_path):
    from search import plan

    windowed = [n for n in registry.names() if "epochs" in registry.get(n).param_names()]
    assert "conv_ae" in windowed
    cfg = parse_config({"name": "e", "data": {"train": "t.parquet"},
                        "architectures": {n: {"space": {"window": {"choice": [8, 16]}}} for n in windowed}
                        | {"global_std": {}}}, base_dir=tmp_path)
    defaults = {n: registry.get(n)().epochs for n in windowed}
    assert cfg.max_epochs == {**defaults, "global_std": 1}
    assert min(defaults.values()) > 1  # not ASHA max_t = 1
    rows = {"fit": 1000, "validation": 500, "holdout": 500, "test": 0}
    table = plan.plan(cfg, rows, n_channels=3, measure=False).set_index("arch")
    assert table.loc["conv_ae", "epochs_max"] == defaults["conv_ae"]


def test_the_schema_follows_the_code_it_configures():
    model = schema.sweep_model()
    data = model.model_fields["data"].annotation
    assert list(data.model_fields) == [f.name for f in dataclasses.fields(DataConfig)]
    archs = model.model_fields["architectures"].annotation
    assert sorted(archs.model_fields) == registry.names()
    for name in registry.names():
        spec = schema._models_in(archs.model_fields[name].annotation)[0]
        for section in ("space", "fixed"):
            sub = schema._models_in(spec.model_fields[section].annotation)[0]
            assert list(sub.model_fields) == registry.get(name).param_names()
    # a DataConfig field's annotation is what is checked
    raw = {"name": "d", "data": {"train": "t.parquet", "telecommand_horizon": "soon"}, "architectures": {"pca": {}}}
    with pytest.raises(TelemetryError, match=r"^s: data\.telecommand_horizon: input should be a valid number, got 'soon'$"):
        parse_config(raw, source="s")


def test_the_committed_json_schema_is_the_generated_one(capsys):
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert printed == schema.json_schema_text()
    assert SCHEMA_FILE.read_text() == printed, \
        "configs/sweep.schema.json is stale: python -m search schema > configs/sweep.schema.json"
    from ensemble import cli

    assert cli.main(["schema"]) == 0 and capsys.readouterr().out == printed  # telesweep schema


def test_the_json_schema_accepts_the_shipped_configs_and_flags_what_the_check_flags(files):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    for path in CONFIGS:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], (path.name, errors)
    for case in ("gpu 1.5", "gpu half", "unknown architecture", "unknown parameter searched", "empty choice",
                 "fractional window", "max_concurrent_trials: many", "grace_period: two"):
        raw = copy.deepcopy(base(files))
        BAD[case][0](raw)
        assert not validator.is_valid(raw), case
