"""Integrity and bad inputs (issue 24): an experiment is bound to the sweep that started it, and every
malformed input ends with exit status 2 and one line naming the key or value, before Ray starts and,
where the file alone decides, before any data is loaded. Sweep-file schema cases (member bounds,
fractions, names, duplicate keys) are in test_sweep_schema.py; these are the ones that need storage,
an experiment or the command lines."""
from __future__ import annotations

import json

import pytest
import yaml

from search import runner
from search.__main__ import main as search_main
from search.experiment import GIVEN_FILE, SWEEP_FILE

from conftest import local_ray_started, write_challenge_parquet

ray = pytest.importorskip("ray")

EVENTS = ((100, 110), (300, 320), (500, 505))


def sweep(data_dir, **changes) -> dict:
    raw = {"name": "bound", "seed": 3,
           "data": {"train": str(data_dir / "train.parquet"), "test": str(data_dir / "test.parquet"),
                    "channels": "41-43", "fractions": [0.5, 0.25, 0.25]},
           "ray": {"num_cpus": 2},
           "architectures": {"global_std": {"trials": 1}}}
    raw.update(changes)
    return raw


def write(path, raw):
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err.rstrip("\n")


@pytest.fixture
def no_data_load(monkeypatch):
    """Fails the test if the data files are read: these inputs are decided by the file alone."""
    def refuse(*_a, **_k):
        raise AssertionError("data loaded")
    monkeypatch.setattr(runner, "prepare", refuse)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """One finished one-trial sweep (global_std): its folder, data folder and sweep file."""
    d = tmp_path_factory.mktemp("bound")
    write_challenge_parquet(d / "train.parquet", n=600, events=EVENTS)
    write_challenge_parquet(d / "test.parquet", n=200, labels=False, start_id=600, seed=1)
    path = write(d / "sweep.yaml", sweep(d))
    with local_ray_started():
        assert search_main(["run", "--config", str(path), "--storage", str(d / "sweeps")]) == 0
    return d, d / "sweeps" / "bound", path


# -- an experiment is bound to its sweep file --------------------------------------------------------

@pytest.mark.parametrize("edit, key, values", [
    (lambda r: r.update(seed=4), "seed", "(the experiment has 3, this file 4)"),
    (lambda r: r["data"].update(fractions=[0.6, 0.2, 0.2]), "data.fractions[0]", "(the experiment has 0.5, this file 0.6)"),
    (lambda r: r["architectures"].update(pca={"trials": 1}), "architectures.pca", "(the experiment has nothing, this file"),
    (lambda r: r["architectures"]["global_std"].update(fixed={"ddof": 1}), "architectures.global_std.fixed.ddof",
     "(the experiment has nothing, this file 1)"),
])
def test_an_edited_sweep_file_is_refused_naming_the_first_differing_key(experiment, tmp_path, capsys, no_data_load,
                                                                        edit, key, values):
    d, exp, _ = experiment
    raw = sweep(d)
    edit(raw)
    path = write(tmp_path / "edited.yaml", raw)
    before = {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file()}
    assert search_main(["run", "--config", str(path), "--storage", str(d / "sweeps")]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {path}: differs from the experiment {exp} at {key} {values}"), line
    assert line.endswith(f"give the sweep a new name, or continue the experiment as it was with: "
                         f"python -m search resume {exp}")
    assert not ray.is_initialized()
    assert {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file()} == before  # nothing rewritten


def test_the_stored_files_are_the_sweep_as_given_and_as_run(experiment):
    _, exp, _ = experiment
    given = yaml.safe_load((exp / GIVEN_FILE).read_text())
    assert given["seed"] == 3 and given["data"]["fractions"] == [0.5, 0.25, 0.25]
    assert list(yaml.safe_load((exp / SWEEP_FILE).read_text())["architectures"]) == ["global_std"]


def bound_copy(exp, copy, data_dir):
    """A copy of the experiment whose stored sweep files name the data files in ``data_dir``."""
    import shutil

    shutil.copytree(exp, copy)
    for name in (GIVEN_FILE, SWEEP_FILE):
        raw = yaml.safe_load((copy / name).read_text())
        raw["data"].update(train=str(data_dir / "train.parquet"), test=str(data_dir / "test.parquet"))
        (copy / name).write_text(yaml.safe_dump(raw, sort_keys=False))
    return copy


def test_an_edited_data_file_under_the_same_path_is_refused(experiment, tmp_path, capsys):
    d, exp, _ = experiment
    moved = tmp_path / "data"
    moved.mkdir()
    write_challenge_parquet(moved / "train.parquet", n=800, events=EVENTS + ((700, 710),))
    write_challenge_parquet(moved / "test.parquet", n=200, labels=False, start_id=800, seed=1)
    # The stored sweep names the original paths: point a copy of the experiment at the edited files.
    copy = bound_copy(exp, tmp_path / "sweeps" / "bound", moved)
    assert search_main(["resume", str(copy)]) == 2
    line = one_error_line(capsys)
    assert f"differs from the experiment {copy} at the fit split (the experiment has 300 rows, ids 0..299, " \
           f"this file 400 rows, ids 0..399); its data files changed since it started" in line, line
    assert not ray.is_initialized()


def test_the_same_file_again_continues_without_a_new_trial(experiment, capsys):
    d, exp, path = experiment
    with local_ray_started():
        assert search_main(["run", "--config", str(path), "--storage", str(d / "sweeps")]) == 0
    assert "global_std: 1/1 trials completed" in capsys.readouterr().out


def test_data_that_lost_its_labels_under_the_same_ids_is_refused(experiment, tmp_path, capsys):
    """The sweep as given is the stored one and the ids are the same, but the data adapts the sweep
    otherwise (unlabelled: an unsupervised threshold): the stored sweep as run tells them apart."""
    import shutil

    d, exp, _ = experiment
    bare = tmp_path / "bare"
    bare.mkdir()
    write_challenge_parquet(bare / "train.parquet", n=600, labels=False)
    shutil.copy(d / "test.parquet", bare / "test.parquet")
    copy = bound_copy(exp, tmp_path / "sweeps" / "bound", bare)
    path = write(tmp_path / "bare.yaml", sweep(bare))
    assert search_main(["run", "--config", str(path), "--storage", str(tmp_path / "sweeps")]) == 2
    line = one_error_line(capsys)
    assert f"differs from the experiment {copy} at threshold.method (the experiment has 'best_f05', this file 'pot')" \
        in line, line
    assert not ray.is_initialized()


def test_a_demo_folder_refuses_other_options(tmp_path, capsys, monkeypatch):
    from ensemble import __main__ as ensemble_main

    out = tmp_path / "demo"
    out.mkdir()
    (out / "demo.json").write_text(json.dumps({"rows": 200_000, "seed": 7, "smoke_test": False}))
    monkeypatch.setattr("telemetry.synthetic.mission.generate_mission", lambda *a, **k: pytest.fail("mission generated"))
    assert ensemble_main.main(["demo", "--out", str(out), "--rows", "5000"]) == 2
    assert one_error_line(capsys) == (f"error: {out}: made with --rows 200000, not 5000; use another --out, or the "
                                      f"options it was made with")
    assert ensemble_main.main(["demo", "--out", str(out), "--smoke-test"]) == 2
    assert one_error_line(capsys) == (f"error: {out}: made without --smoke-test; use another --out, or the options "
                                      f"it was made with")
    assert not ray.is_initialized() and sorted(p.name for p in out.iterdir()) == ["demo.json"]


# -- storage and resources, checked before Ray and before the data ----------------------------------

@pytest.mark.parametrize("where", ["proc", "through a file"])
def test_unwritable_storage_is_one_line_before_ray(experiment, tmp_path, capsys, no_data_load, where):
    d, _, _ = experiment
    if where == "proc":
        store = "/proc/telesweep-sweeps"
    else:
        (tmp_path / "a-file").write_text("x")
        store = str(tmp_path / "a-file" / "sweeps")
    path = write(tmp_path / "fresh.yaml", sweep(d, name="fresh"))
    assert search_main(["run", "--config", str(path), "--storage", store]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: storage {store}: cannot write the experiment {store}/fresh there ("), line
    assert not ray.is_initialized()


def test_a_storage_probe_leaves_nothing_behind(tmp_path):
    from search import storage

    storage.probe_write(str(tmp_path / "a" / "b" / "exp"))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "exp").mkdir()
    storage.probe_write(str(tmp_path / "exp"))
    assert list((tmp_path / "exp").iterdir()) == []


@pytest.mark.parametrize("resources, ray_cfg, found, message", [
    ({"gpu": 2}, {"num_cpus": 2}, 0, "architectures.global_std.resources.gpu: 2 GPUs per trial, but local mode has 0 "
                                     "(found on this machine); lower it, or run on a cluster with --address"),
    ({"gpu": 0.5}, {"num_cpus": 2}, 0, "architectures.global_std.resources.gpu: 0.5 GPUs per trial, but local mode "
                                       "has 0 (found on this machine)"),
    ({"gpu": 2}, {"num_cpus": 2, "num_gpus": 1}, 4, "architectures.global_std.resources.gpu: 2 GPUs per trial, but "
                                                    "local mode has 1 (ray.num_gpus on this machine)"),
    ({"cpu": 3}, {"num_cpus": 2}, 0, "architectures.global_std.resources.cpu: 3 CPUs per trial, but local mode has 2 "
                                     "(ray.num_cpus); lower it, or run on a cluster with --address"),
])
def test_resources_beyond_the_local_machine_are_refused_before_ray(experiment, tmp_path, capsys, monkeypatch,
                                                                  no_data_load, resources, ray_cfg, found, message):
    d, _, _ = experiment
    monkeypatch.setattr(runner, "local_gpus", lambda: found)
    raw = sweep(d, name="gpus", ray=ray_cfg)
    raw["architectures"]["global_std"]["resources"] = resources
    path = write(tmp_path / "gpus.yaml", raw)
    assert search_main(["run", "--config", str(path), "--storage", str(tmp_path / "sweeps")]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {path}: {message}"), line
    assert not ray.is_initialized() and not (tmp_path / "sweeps").exists()


def test_on_a_cluster_a_trial_no_node_type_offers_is_refused(monkeypatch, tmp_path):
    from search import capacity
    from search.config import parse_config
    from telemetry.errors import TelemetryError

    launcher = tmp_path / "bootstrap.yaml"
    launcher.write_text(yaml.safe_dump({"max_workers": 4, "head_node_type": "head", "available_node_types": {
        "head": {"resources": {"CPU": 4, "GPU": 0}}, "gpu": {"max_workers": 4, "resources": {"CPU": 4, "GPU": 1}}}}))
    monkeypatch.setenv("TELESWEEP_AUTOSCALER_CONFIG", str(launcher))
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 4.0}}])
    assert capacity.autoscaler_node_types() == {"head": {"CPU": 4.0, "GPU": 0.0}, "gpu": {"CPU": 4.0, "GPU": 1.0}}
    raw = sweep(tmp_path)
    raw["architectures"]["global_std"]["resources"] = {"gpu": 1}
    runner.check_cluster_resources(parse_config(raw, source="s.yaml"))  # one gpu worker fits it
    raw["architectures"]["global_std"]["resources"] = {"gpu": 2}
    with pytest.raises(TelemetryError) as err:
        runner.check_cluster_resources(parse_config(raw, source="s.yaml"))
    assert str(err.value) == ("s.yaml: architectures.global_std.resources: 1 CPUs and 2 GPUs per trial, but no node of "
                              "the cluster and no worker type of its autoscaler offers them (largest: 1 GPUs, 4 CPUs)")


# -- command-line numbers ----------------------------------------------------------------------------

@pytest.mark.parametrize("package, argv, message", [
    ("ensemble", ["build", "x", "--out", "y", "--k", "0"], "python -m ensemble build: argument --k: must be >= 1, got '0'"),
    ("ensemble", ["build", "x", "--out", "y", "--k", "-1"], "argument --k: must be >= 1, got '-1'"),
    ("ensemble", ["build", "x", "--out", "y", "--seed", "-2"], "argument --seed: must be >= 0, got '-2'"),
    ("ensemble", ["demo", "--rows", "0"], "python -m ensemble demo: argument --rows: must be >= 1, got '0'"),
    ("search", ["plan", "c.yaml", "--rows", "-5"], "python -m search plan: argument --rows: must be >= 1, got '-5'"),
    ("search", ["plan", "c.yaml", "--speedup", "0"], "argument --speedup: must be > 0, got '0'"),
    ("search", ["plan", "c.yaml", "--speedup", "nan"], "argument --speedup: not a finite number: 'nan'"),
    ("search", ["leaderboard", "x", "--top", "0"], "python -m search leaderboard: argument --top: must be >= 1, got '0'"),
    ("search", ["leaderboard", "x", "--watch", "5", "--watch-count", "0"], "argument --watch-count: must be >= 1"),
    ("telemetry", ["synth", "--out", "o", "--rows", "1e3"], "python -m telemetry synth: argument --rows: not an "
                                                            "integer: '1e3'"),
    ("telemetry", ["synth-discharges", "--out", "o", "--disrupting", "1.5"], "argument --disrupting: must be in [0, 1]"),
    ("telemetry", ["synth-fleet", "--out", "o", "--devices", "0"], "argument --devices: must be >= 1, got '0'"),
    ("telemetry", ["check", "--train", "t.parquet", "--fractions", "a,b"], "python -m telemetry check: argument "
                                                                           "--fractions: not comma-separated numbers: 'a,b'"),
])
def test_command_line_numbers_are_checked_in_one_line(package, argv, message, capsys):
    import importlib

    entry = importlib.import_module(f"{package}.__main__").main
    with pytest.raises(SystemExit) as stop:
        entry(argv)
    assert stop.value.code == 2
    line = one_error_line(capsys)
    assert message in line and line.endswith("--help)"), line


def test_load_members_refuses_k_below_one_itself():
    from ensemble.members import load_members
    from telemetry.errors import TelemetryError

    with pytest.raises(TelemetryError, match=r"^k \(trials per architecture\) must be an integer >= 1, got 0$"):
        load_members("nowhere", k=0)


# -- messages that name the right file and the way on -------------------------------------------------

def test_a_train_file_without_any_anomaly_is_not_told_to_change_fractions(tmp_path):
    from telemetry.errors import TelemetryError
    from telemetry.prepare import DataConfig, load_sets

    write_challenge_parquet(tmp_path / "train.parquet", n=600, events=())
    with pytest.raises(TelemetryError) as err:
        load_sets(DataConfig(train=str(tmp_path / "train.parquet"), channels="41-43"))
    assert str(err.value) == (f"{tmp_path / 'train.parquet'}: is_anomaly is 0 on every row, so no threshold or F0.5 "
                              f"can be chosen; label the anomalies, or set data.labels: none for an unlabelled sweep")


def test_a_test_file_missing_channels_is_named_as_the_test_file(tmp_path):
    from telemetry.errors import TelemetryError
    from telemetry.prepare import DataConfig, load_sets

    write_challenge_parquet(tmp_path / "train.parquet", n=600, channels=range(1, 77), events=EVENTS)
    write_challenge_parquet(tmp_path / "test.parquet", n=200, channels=(1, 2, 3), labels=False, start_id=600)
    with pytest.raises(TelemetryError) as err:
        load_sets(DataConfig(train=str(tmp_path / "train.parquet"), test=str(tmp_path / "test.parquet")))
    assert str(err.value) == (f"data.test: {tmp_path / 'test.parquet'}: unknown channel 'channel_41' "
                              f"(file has channel_1..channel_3)")
