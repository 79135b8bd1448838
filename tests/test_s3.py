"""Experiments on S3 for real: an S3-protocol server on 127.0.0.1 (moto's server mode, started and
stopped here: tests/s3server.py) is the experiment storage of tiny pca sweeps (3 trials, about a
minute on 2 cores, most of it Ray starting processes).

1. sweep -> SIGKILL of the driver while a trial runs -> resume, with the server frozen for 4 s while
   a resumed trial runs -> finalists -> leaderboard -> ``ensemble build``, all through ``s3://``:
   no finished trial is lost or run again;
2. (slow) a 20 s outage during a fresh sweep, long enough to fail a trial: the experiment resumes
   complete and the ensemble builds from it.

Every process reaches the server through the environment (endpoint, credentials: ``s3.env``), as a
cluster node reaches AWS through its instance profile; nothing here touches the local disk's
``results/``.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import moto.server  # noqa: F401 - the test extra's moto[server]: missing, these tests fail, never skip
import pandas as pd
import pytest

from conftest import local_ray_started
from s3server import s3_server
from test_search import mission, subprocess_env, sweep, write_sweep  # noqa: F401 - mission is a fixture

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def s3_env(s3):
    """This process (the leaderboard, ``ensemble build``, and a local Ray's workers, which inherit
    the environment when Ray starts) reaches the server; restored afterwards."""
    saved = {k: os.environ.get(k) for k in s3.env}
    os.environ.update(s3.env)
    try:
        yield s3.env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _pca(mission, name: str, trials: int, **search) -> dict:  # noqa: F811
    """``trials`` of pca, one at a time, the top 2 finalists; TPE (the default searcher: its study's
    copy, optuna.db, goes to the experiment folder too)."""
    return sweep(mission, name, search={"max_concurrent_trials": 1, "finalists": 2, **search},
                 architectures={"pca": {"trials": trials, "fixed": {"n_components": 0.9},
                                        "space": {"lags": {"int": [1, 30]}}}})


def saved_statuses(s3, prefix: str) -> dict[str, str]:
    """trial id -> status in the experiment state Tune saved last under ``prefix`` (on the server)."""
    states = sorted(k for k in s3.keys(prefix) if k.rsplit("/", 1)[-1].startswith("experiment_state-"))
    if not states:
        return {}
    try:
        trials = json.loads(s3.read(states[-1]))["trial_data"]
    except (ValueError, KeyError):
        return {}
    return {t["trial_id"]: t["status"] for t in (json.loads(state) for state, _ in trials)}


def result_files(s3, prefix: str) -> dict[str, str]:
    """trial folder -> ETag of its result.json (what a trial run again would rewrite)."""
    return {k.rsplit("/", 2)[-2]: etag for k, etag in s3.keys(prefix).items() if k.endswith("/result.json")}


def _descendants(pid: int) -> list[int]:
    children = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int(next(line for line in (d / "status").read_text().splitlines()
                                if line.startswith("PPid:")).split()[1])
            except (OSError, StopIteration, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Outage(threading.Thread):
    """Freezes the server for ``seconds`` once Tune's saved state under ``prefix`` satisfies
    ``when(state file name, statuses)``, and notes what had finished then (``finished``: trial ids;
    ``files``: their result.json ETags)."""

    def __init__(self, s3, prefix: str, when, seconds: float = 5.0, timeout: float = 120.0):
        super().__init__(daemon=True)
        self.s3, self.prefix, self.when, self.seconds, self.timeout = s3, prefix, when, seconds, timeout
        self.finished: set[str] = set()
        self.files: dict[str, str] = {}
        self.done = threading.Event()
        self.frozen = False

    def run(self):
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline and not self.done.is_set():
            states = sorted(k for k in self.s3.keys(self.prefix) if k.rsplit("/", 1)[-1].startswith("experiment_state-"))
            statuses = saved_statuses(self.s3, self.prefix)
            if states and self.when(states[-1], statuses):
                self.finished = {t for t, st in statuses.items() if st == "TERMINATED"}
                self.files = {d: e for d, e in result_files(self.s3, self.prefix).items()
                              if any(t in d for t in self.finished)}
                with self.s3.frozen():
                    time.sleep(self.seconds)
                self.frozen = True
                return
            time.sleep(0.1)


@pytest.fixture
def local_ray(s3_env):
    """A local Ray started after the server's environment is set: its workers inherit it."""
    with local_ray_started():
        yield


@pytest.fixture
def save_state_every_step(monkeypatch):
    # Tune saves its experiment state at every step (default: at most every 10 s), so that the test
    # sees trials start and end in the stored state.
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0")


def test_sweep_killed_mid_trial_resumes_through_an_outage_and_builds_all_on_s3(
        mission, s3, save_state_every_step, local_ray, tmp_path, capsys):  # noqa: F811
    from ensemble.build import build
    from search import results
    from search.__main__ import main as search_main

    name = "killed"
    path = write_sweep(tmp_path / "sweep.yaml", _pca(mission, name, 3, max_failures=2))
    uri, prefix = s3.uri("sweeps", name), f"sweeps/{name}/pca/"
    # The driver reaches the server through its environment alone (no AWS, no local storage). It joins
    # this test's Ray, as a job's driver joins the cluster: when it dies, Ray ends its trials, and the
    # cluster (here the local Ray) lives on for the resume.
    env = {**subprocess_env(), **s3.env}
    driver = subprocess.Popen([sys.executable, "-m", "search", "run", "--config", str(path), "--storage",
                               s3.uri("sweeps"), "--address", ray.get_runtime_context().gcs_address],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                              start_new_session=True)
    ray_processes = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and driver.poll() is None:
            statuses = list(saved_statuses(s3, prefix).values())
            if statuses.count("TERMINATED") >= 1 and "RUNNING" in statuses:
                break
            time.sleep(0.1)
        assert driver.poll() is None, "the sweep ended before it could be killed: " + driver.stderr.read()[-2000:]
        ray_processes = _descendants(driver.pid)  # anything it started, stopped by us after it
        driver.send_signal(signal.SIGKILL)  # no handler runs, nothing more is saved: as when the head dies
        driver.communicate(timeout=30)
    finally:
        _kill([driver.pid] + ray_processes if driver.poll() is None else ray_processes)
        if driver.poll() is None:
            driver.communicate()
    assert driver.returncode == -signal.SIGKILL

    saved = saved_statuses(s3, prefix)
    assert "RUNNING" in saved.values() and list(saved.values()).count("TERMINATED") < 3, saved
    before = results.trial_table(uri)
    finished = before[before["status"] == "TERMINATED"]
    assert len(finished) >= 1 and finished["completed"].all()
    kept = {d: e for d, e in result_files(s3, prefix).items() if any(t in d for t in finished["trial_id"])}
    assert len(kept) == len(finished)

    # Resume (`python -m search resume s3://...`); the server freezes for 4 s once the resumed sweep
    # has saved a state of its own with a trial running.
    states_before = {k for k in s3.keys(prefix) if "experiment_state-" in k}
    outage = Outage(s3, prefix, lambda state, st: state not in states_before and "RUNNING" in st.values(), seconds=4)
    outage.start()
    try:
        assert search_main(["resume", uri]) == 0
    finally:
        outage.done.set()
        outage.join(timeout=30)
    assert outage.frozen
    assert "pca: 3/3 trials completed, 0 failed; 2 with holdout and test scores" in capsys.readouterr().out

    after = results.trial_table(uri)
    assert len(after) == 3 and after["completed"].all() and after["checkpoint"].str.startswith(uri + "/").all()
    now = result_files(s3, prefix)
    assert len(now) == 3 and all(now[d] == e for d, e in {**kept, **outage.files}.items())  # none run again
    # finalists: holdout and test scores beside the checkpoints of the top 2, on the server
    board = pd.read_csv(io.BytesIO(s3.read(f"sweeps/{name}/leaderboard.csv")))
    top = board[board["rank"] <= 2]
    assert top["finalist"].all() and not board[board["rank"] > 2]["finalist"].any()
    assert top["holdout_f05"].between(0, 1).all()
    assert {k.rsplit("/", 2)[-2] for k in s3.keys(prefix) if k.endswith("/finalist.json")} == \
        {c.rstrip("/").rsplit("/", 2)[-2] for c in top["checkpoint"]}

    assert f"{prefix}optuna.db" in s3.keys(prefix)  # the study's copy, rebuilt by the resumed searcher
    assert search_main(["finalize", uri, "--top", "3"]) == 0  # the third: loaded from and written to S3
    assert "pca: 3 trials with holdout and test scores (1 scored now)" in capsys.readouterr().out
    assert search_main(["leaderboard", uri]) == 0
    assert capsys.readouterr().out.count("TERMINATED") == 3
    board = pd.read_csv(io.BytesIO(s3.read(f"sweeps/{name}/leaderboard.csv")))  # written again
    assert board["finalist"].all() and board["holdout_f05"].notna().all()

    out = tmp_path / "ensemble"
    res = build(uri, out, weight_trials=5)  # what `python -m ensemble build s3://...` runs
    assert (out / "submission.csv").is_file() and (out / "report.md").is_file()
    assert sorted(res["members"]) == sorted(f"pca#{t[-5:]}" for t in top["trial_id"])
    assert not (tmp_path / "results").exists()  # the experiment lives on the server only


@pytest.mark.slow
def test_server_frozen_during_a_fresh_sweep_loses_no_finished_trial_and_resumes(
        mission, s3, save_state_every_step, local_ray, tmp_path):  # noqa: F811
    """A longer outage during the first run of a sweep: 20 s, long enough for pyarrow's S3 requests
    to time out (a 4 s one, as in the default test, only delays them), so the trial starting then
    fails and is retried (search.max_failures). Whatever the driver makes of it, no finished trial
    is lost and the experiment resumes complete."""
    from ensemble.build import build
    from search import results
    from search.config import parse_config
    from search.runner import resume, run_sweep

    name = "frozen"
    uri, prefix = s3.uri("sweeps", name), f"sweeps/{name}/pca/"
    outage = Outage(s3, prefix, lambda state, st: "TERMINATED" in st.values(), seconds=20)
    outage.start()
    error = None
    try:
        run_sweep(parse_config(_pca(mission, name, 4, max_failures=2)), storage_path=s3.uri("sweeps"))
    except Exception as exc:  # noqa: BLE001 - an outage may stop the driver; the resume below must recover
        error = repr(exc)
    finally:
        outage.done.set()
        outage.join(timeout=30)
    assert outage.frozen

    summary = resume(uri)
    assert summary["architectures"]["pca"]["completed"] == 4, (summary, error)
    table = results.trial_table(uri)
    assert len(table) == 4 and table["completed"].all() and outage.finished <= set(table["trial_id"])
    files = result_files(s3, prefix)
    assert all(files[d] == e for d, e in outage.files.items())  # finished before the outage: not run again
    assert build(uri, tmp_path / "out", weight_trials=5)["members"]
