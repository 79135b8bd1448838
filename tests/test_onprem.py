"""``ray up`` for real: cluster-onprem.yaml launched by Ray's cluster launcher against three hosts of
this machine (network namespaces with their own addresses, sshd and PID namespace: tests/netns.py),
a sweep submitted as a Ray job with the token, and a worker cut off mid-trial.

    head (10.213.N.2)  Ray's head, dashboard and job server, the sweep's driver; 1 CPU for trials
    w1, w2 (.3, .4)    1 CPU each for trials
    S3 (moto, .1)      the experiment storage, on the bridge: every host reaches it

Steps: ``ray up`` (the file's setup commands on every host) -> both workers joined -> ``ray job
submit`` refused without the token, accepted with it -> once both trials have saved an epoch
checkpoint to S3, the worker running one of them loses its link and then all of its processes -> the
sweep completes; the cut trial went on from its last checkpoint on another node -> the cut worker is
started again and its link brought up: the head's autoscaler restarts Ray on it and it rejoins, while
``ensemble build s3://...`` writes the submission -> ``ray down`` and no
Ray process is left on any host; the hosts, the bridge and the S3 server go by their own names and
PIDs. Each step's time is printed (RESULTS.md "On-premises cluster").

The hosts share this machine's files: the launcher syncs the checkout and the token into each host's
own home, and runs the file's setup commands as they are: a venv of the host's own
(``~/telesweep-venv``, made by this machine's python3), the synced checkout installed into it with
pip (``-e ~/telesweep[tf,cluster]``), the venv activated in ``~/.bashrc``. The hosts reach no package
index, so their ``~/.bashrc`` (the administrator's part, written before ``ray up``) stands in for
one: the dependencies are importable from this test's venv (PYTHONPATH: links to its packages,
telesweep's own left out, so that the trials can only import the synced copy), and pip is told to
use no index (PIP_NO_INDEX) and to build the checkout with the setuptools and wheel it finds
(PIP_NO_BUILD_ISOLATION): pip then finds every dependency satisfied and installs the checkout alone.
A dependency found satisfied gets no console script in the venv, so ``ray`` on the hosts' PATH is a
two-line script that runs Ray's command line with ``python3``, the venv's once it is activated. Run
alone with ``pytest -m cluster``; needs root, openssh-server and rsync.
"""
from __future__ import annotations

import contextlib
import getpass
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

import netns
from s3server import s3_server

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # this venv: the nodes' too (the same files)
EPOCHS = 40


def _timed(times: dict, step: str, t0: float) -> float:
    now = time.monotonic()
    times[step] = round(now - t0, 1)
    print(f"onprem: {step}: {times[step]} s", flush=True)
    return now


def _node_env(root: Path) -> dict[str, str]:
    """What the hosts' administrator provides instead of a package index (see the module's text): a
    folder of links to this venv's packages less telesweep (the editable install's finder module
    would otherwise be imported from here, and it points at this checkout) and pip (the new venv has
    its own), and a folder with ``python3`` (this machine's Python) and ``ray``. setuptools and wheel
    stay: with build isolation off they build the checkout (a venv of Python 3.12 has no setuptools)."""
    site = Path(sysconfig.get_paths()["purelib"])
    deps, tools = root / "deps", root / "bin"
    deps.mkdir()
    tools.mkdir()
    for entry in site.iterdir():
        if not entry.name.startswith(("telesweep", "__editable__", "pip-")) and entry.name != "pip" \
                and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    (tools / "python3").symlink_to(Path(sys.base_prefix) / "bin" / "python3")
    (tools / "ray").write_text('#!/bin/sh\nexec python3 -m ray.scripts.scripts "$@"\n')
    (tools / "ray").chmod(0o755)
    # PIP_NO_BUILD_ISOLATION=0 turns build isolation off: pip reads this variable as the value of
    # `build_isolation`, not of the flag's name.
    return {"PATH": f"{tools}:$PATH", "PYTHONPATH": str(deps), "PIP_NO_INDEX": "1",
            "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _bashrc(home: Path, env: dict[str, str]) -> None:
    """The node's environment, as its administrator would set it before ``ray up`` (Ray sources
    ~/.bashrc before every command): the package stand-ins, the storage's endpoint and keys."""
    env = {"RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    (home / ".bashrc").write_text("".join(f'export {k}="{v}"\n' for k, v in env.items()))


def _cluster_file(net: netns.Hosts, path: Path) -> Path:
    cfg = yaml.safe_load((REPO / "cluster-onprem.yaml").read_text())
    cfg["cluster_name"] = net.tag
    cfg["provider"].update(head_ip=net.ip["head"], worker_ips=[net.ip["w1"], net.ip["w2"]])
    cfg["auth"] = {"ssh_user": "root", "ssh_private_key": str(net.key)}
    # Each host its own temp dir (they share this machine's /tmp) and one CPU for trials.
    own = " --temp-dir=$HOME/ray --num-cpus=1"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        cfg[key] = [c + own if "ray start" in c else c for c in cfg[key]]
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def net_tag_in(cache: Path) -> bool:
    """A cached launcher config of this test's cluster (named ts<pid>)."""
    try:
        return json.loads(cache.read_text())["config"]["cluster_name"] == f"ts{os.getpid()}"
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _run(cmd: list[str], env: dict, timeout: float, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if os.environ.get("TELESWEEP_ONPREM_LOG"):  # every command's output, for debugging
        with open(os.environ["TELESWEEP_ONPREM_LOG"], "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{res.stdout}\n{res.stderr}\n")
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:4])} exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def _alive_nodes(dashboard: str, env: dict) -> set[str]:
    res = _run([str(BIN / "ray"), "list", "nodes", "--format", "json", "--address", dashboard], env, 60, check=False)
    try:
        return {n["node_ip"] for n in json.loads(res.stdout) if n["state"] == "ALIVE"}
    except (ValueError, KeyError, TypeError):
        return set()


def _host_logs(home: Path) -> Path:
    """A host's Ray log folder as this machine sees it: ``session_latest`` links to the host's /root."""
    latest = home / "ray" / "session_latest"
    return home / os.readlink(latest).removeprefix("/root/") / "logs" if latest.is_symlink() else latest / "logs"


def _checkpoints(s3, prefix: str) -> dict[str, int]:
    """trial folder -> index of its newest checkpoint on the server."""
    out: dict[str, int] = {}
    for key in s3.keys(prefix):
        m = re.search(r"/([^/]+)/checkpoint_(\d+)/", key)
        if m:
            out[m.group(1)] = max(out.get(m.group(1), -1), int(m.group(2)))
    return out


def _trial_on(net: netns.Hosts, name: str) -> bool:
    """A Tune trial's actor process runs on that host (``ray::ImplicitFunc``, ``.train`` while it
    trains; Ray's idle workers and agents are not trials)."""
    return any(cmd.startswith("ray::") and not cmd.startswith(("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent"))
               for cmd in net.processes(name))


def _results(s3, prefix: str) -> dict[str, list[dict]]:
    out = {}
    for key in s3.keys(prefix):
        if key.endswith("/result.json"):
            out[key.rsplit("/", 2)[-2]] = [json.loads(line) for line in s3.read(key).decode().splitlines() if line]
    return out


def test_ray_up_sweep_node_loss_ray_down(tmp_path):
    why = netns.missing()
    if why:
        pytest.fail(f"the on-premises cluster test {why}", pytrace=False)
    from telemetry.synthetic.mission import generate_mission

    from test_search import TINY, sweep, write_sweep

    times: dict[str, float] = {}
    root = Path(f"/tmp/ts{os.getpid()}")  # short: Ray's socket paths under each host's temp dir
    laptop = root / "laptop"               # the user's machine: its HOME (token), where `ray up` runs
    caches = set(Path("/tmp").glob("ray-config-*"))  # what `ray up` caches there; its own removed below
    try:
        with netns.hosts(["head", "w1", "w2"], root / "net") as net, s3_server(host=net.bridge_ip) as s3:
            try:
                _scenario(net, s3, root, laptop, tmp_path, times, generate_mission, TINY, sweep, write_sweep)
            finally:
                print(f"onprem: times {json.dumps(times)}", flush=True)
                for name, home in net.home.items():  # Ray's logs of each host, kept with pytest's tmp_path
                    logs = _host_logs(home)
                    if logs.is_dir():
                        shutil.copytree(logs, tmp_path / f"logs-{name}", symlinks=True, dirs_exist_ok=True,
                                        ignore_dangling_symlinks=True)
    finally:  # the hosts (and their mounts) are gone: only this test's own files are left to remove
        shutil.rmtree(root, ignore_errors=True)
        for suffix in ("state", "lock"):  # the on-premises provider's record of the cluster, on the launcher
            Path(f"/tmp/ray/cluster-ts{os.getpid()}.{suffix}").unlink(missing_ok=True)
        # The launcher's (and the head autoscaler's: same /tmp) SSH control sockets of this cluster.
        user, cluster = (hashlib.sha256(x.encode()).hexdigest()[:10] for x in (getpass.getuser(), f"ts{os.getpid()}"))
        shutil.rmtree(f"/tmp/ray_ssh_{user}/{cluster}", ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(f"/tmp/ray_ssh_{user}")  # only if no other cluster's are there
        for cache in set(Path("/tmp").glob("ray-config-*")) - caches:
            if net_tag_in(cache):
                cache.unlink(missing_ok=True)


def _scenario(net, s3, root, laptop, tmp_path, times, generate_mission, TINY, sweep, write_sweep):
    laptop.mkdir(parents=True)
    mission = root / "mission"
    generate_mission(mission, rows=8_000, seed=11, test_rows=2_000, n_channels=46, n_telecommands=2)
    launcher = {**os.environ, "HOME": str(laptop), "PATH": f"{BIN}:{os.environ['PATH']}",
                "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    launcher.pop("RAY_ADDRESS", None)
    _run([str(BIN / "ray"), "get-auth-token", "--generate"], launcher, 60)
    assert (laptop / ".ray" / "auth_token").is_file()
    # Lost nodes are noticed in a few seconds rather than Ray's default half minute, and the head's
    # autoscaler restarts Ray on a worker 15 s (not 30 s) after its last heartbeat.
    fast_health = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                   "RAY_health_check_failure_threshold": "3", "AUTOSCALER_HEARTBEAT_TIMEOUT_S": "15"}
    node_env = _node_env(root)
    for name, home in net.home.items():
        _bashrc(home, {**node_env, **s3.env, **(fast_health if name == "head" else {})})
    cluster = _cluster_file(net, root / "cluster.yaml")
    dashboard = f"http://{net.ip['head']}:8265"
    ray = str(BIN / "ray")
    up = False
    try:
        t = time.monotonic()
        _run([ray, "up", "-y", "--no-config-cache", str(cluster)], launcher, 240)
        up = True
        t = _timed(times, "ray up (head)", t)
        want = {net.ip[n] for n in ("head", "w1", "w2")}
        deadline = time.monotonic() + 150
        while (alive := _alive_nodes(dashboard, launcher)) != want and time.monotonic() < deadline:
            time.sleep(2)
        assert alive == want, f"nodes alive: {alive}"
        t = _timed(times, "workers joined", t)
        for name, home in net.home.items():  # the launcher's file mounts reached every host
            assert (home / ".ray" / "auth_token").read_text() == (laptop / ".ray" / "auth_token").read_text()
            assert (home / "telesweep" / "cluster-onprem.yaml").is_file() and not (home / "telesweep" / ".git").exists()
            # The setup commands made the venv, installed the synced checkout into it and activated
            # it: Ray runs on the venv's python, which finds telesweep in the host's own copy.
            assert (home / ".bashrc").read_text().endswith("source ~/telesweep-venv/bin/activate\n")
            site = next((home / "telesweep-venv" / "lib").glob("python3*/site-packages"))
            assert "'/root/telesweep/search'" in "".join(f.read_text() for f in site.glob("__editable__*telesweep*finder.py"))
            assert any(c.startswith("/root/telesweep-venv/bin/python") for c in net.processes(name)), \
                [c[:80] for c in net.processes(name)]

        # Without the token: refused.
        res = _run([ray, "job", "submit", "--address", dashboard, "--", "echo", "hi"],
                   {**launcher, "RAY_AUTH_MODE": "disabled"}, 120, check=False)
        assert res.returncode != 0, res.stdout
        assert "Unauthorized: Missing authentication token" in res.stderr, res.stdout + res.stderr

        epochs = EPOCHS
        raw = sweep(mission, "onprem", search={"max_concurrent_trials": 2, "max_failures": 2, "grace_period": epochs,
                                               "finalists": 2},
                    architectures={"dense_ae": {"trials": 2, "space": {"latent": {"int": [2, 4]}},
                                                "fixed": {**TINY, "train_stride": 2, "epochs": epochs}}})
        raw.pop("ray")
        sweep_file = write_sweep(root / "onprem.yaml", raw)
        storage = s3.uri("sweeps")
        job = f"{net.tag}-sweep"
        t = time.monotonic()
        _run([ray, "job", "submit", "--address", dashboard, "--submission-id", job, "--no-wait", "--",
              "python", "-m", "search", "run", "--config", str(sweep_file), "--address", "auto",
              "--storage", storage], launcher, 120)
        t = _timed(times, "job submitted", t)

        # Both trials have saved a checkpoint after epoch 2 or later: cut a worker that runs one.
        prefix = "sweeps/onprem/dense_ae/"
        victim = None
        deadline = time.monotonic() + 180
        while victim is None and time.monotonic() < deadline:
            ckpts = _checkpoints(s3, prefix)
            if len(ckpts) == 2 and min(ckpts.values()) >= 1:
                victim = next((n for n in ("w1", "w2") if _trial_on(net, n)), None)
            time.sleep(0.5)
        assert victim is not None, f"no worker with a checkpointed trial: {_checkpoints(s3, prefix)}, " + \
            f"{ {n: [c[:60] for c in net.processes(n)] for n in ('w1', 'w2')} }, {_job_logs(ray, job, dashboard, launcher)}"
        cut_at = dict(ckpts)
        t = _timed(times, "to both trials checkpointed", t)
        cut_wall = time.time()  # results carry wall-clock timestamps
        net.cut(victim)

        logs = _run([ray, "job", "logs", "--address", dashboard, "--follow", job], launcher, 300, check=False)
        status = _run([ray, "job", "status", "--address", dashboard, job], launcher, 60, check=False)
        assert "succeeded" in (status.stdout + status.stderr),  f"{status.stdout}\n{logs.stdout[-4000:]}"
        t = _timed(times, "sweep, from the cut to the job's end", t)

        # Every finished trial is in the leaderboard; the cut one went on from its checkpoint elsewhere.
        board = pd.read_csv(io.BytesIO(s3.read("sweeps/onprem/leaderboard.csv")))
        assert len(board) == 2 and board["completed"].all() and (board["status"] == "TERMINATED").all()
        results = _results(s3, prefix)
        assert len(results) == 2
        cut_ip = net.ip[victim]
        moved = {d: r for d, r in results.items() if r[0]["node_ip"] == cut_ip}
        assert len(moved) == 1, {d: [x["node_ip"] for x in r] for d, r in results.items()}
        (trial_dir, res), = moved.items()
        final = res[-1]
        assert final["epoch"] == epochs and final["node_ip"] != cut_ip
        assert 1 <= final["resumed_from_epoch"] < epochs and final["resumed_from_epoch"] >= cut_at[trial_dir]
        first_retry = next(r for r in res if r["node_ip"] != cut_ip)
        assert first_retry["epoch"] == final["resumed_from_epoch"] + 1
        times["node loss to the cut trial's first epoch elsewhere"] = round(first_retry["timestamp"] - cut_wall, 1)
        print(f"onprem: cut trial {trial_dir[:30]}: epoch {first_retry['epoch']} on {first_retry['node_ip']}, "
              f"{first_retry['timestamp'] - cut_wall:.0f} s after the cut", flush=True)
        for d, r in results.items():
            if d != trial_dir:
                assert r[-1]["resumed_from_epoch"] == 0 and r[-1]["epoch"] == epochs

        # The cut worker comes back (started again, its disk kept, its link up): the head's
        # autoscaler, which has had no heartbeat from it, runs the worker start commands on it
        # again over SSH and it rejoins. It is brought back now, while the ensemble is built.
        back = time.monotonic()
        net.restore(victim)

        # The ensemble from s3://, on the user's machine.
        out = tmp_path / "ensemble"
        t = time.monotonic()
        _run([sys.executable, "-m", "ensemble", "build", "s3://" + s3.bucket + "/sweeps/onprem", "--out", str(out)],
             {**os.environ, **s3.env, "PYTHONPATH": str(REPO)}, 240)
        assert (out / "submission.csv").is_file()
        t = _timed(times, "ensemble build", t)

        deadline = back + 120
        while (alive := _alive_nodes(dashboard, launcher)) != want and time.monotonic() < deadline:
            time.sleep(2)
        assert alive == want, f"the cut worker, back, did not rejoin: nodes alive {alive}"
        assert any(c.startswith("/root/telesweep-venv/bin/python") for c in net.processes(victim))
        assert "No recent heartbeat, restarting Ray to recover" in (_host_logs(net.home["head"]) / "monitor.log").read_text()
        _timed(times, "cut worker back to rejoined", back)
    finally:
        if up:
            t = time.monotonic()
            down = _run([ray, "down", "-y", str(cluster)], launcher, 120, check=False)
            _timed(times, "ray down", t)
    assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
    deadline = time.monotonic() + 60  # the workers' watchers: about 15 s
    left = {}
    while time.monotonic() < deadline:
        left = {n: p for n in ("head", "w1", "w2") if net.alive(n) and (p := net.processes(n))}
        if not left:
            break
        time.sleep(1)
    assert not left, f"processes left after ray down: {left}"
    _timed(times, "workers' Ray gone, from ray down's start", t)
    if os.environ.get("TELESWEEP_ONPREM_RESULTS"):  # e.g. benchmarks/RESULTS.md: the steps' times, appended
        _record(Path(os.environ["TELESWEEP_ONPREM_RESULTS"]), times)


def _record(out: Path, times: dict) -> None:
    sys.path.insert(0, str(REPO))
    from benchmarks.common import machine

    rows = "".join(f"| {step} | {sec} |\n" for step, sec in times.items())
    out.open("a").write(
        f"\n## On-premises cluster: `ray up cluster-onprem.yaml` on three network namespaces, a worker cut off\n\n"
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}\n- machine: {machine()}\n"
        f"- command: `TELESWEEP_ONPREM_RESULTS={out.relative_to(REPO) if out.is_relative_to(REPO) else out} "
        "python -m pytest -q -s -m cluster tests/test_onprem.py`\n\n"
        "The file's setup commands on every host (a venv, the synced checkout installed into it); two dense_ae "
        "trials (1 CPU each; head, w1 and w2 1 CPU each), 40 epochs, S3 (moto) on the bridge; the cut: the worker's "
        "link down, then every process on it killed; afterwards it is started again with its link up. Every figure is "
        "seconds from the step before (the resumed trial's: from the cut to its first epoch reported from another "
        "node; the rejoin: from the cut worker's start to all three nodes alive).\n\n"
        f"| step | seconds |\n|---|---|\n{rows}")


def _job_logs(ray, job, dashboard, env) -> str:
    return _run([ray, "job", "logs", "--address", dashboard, job], env, 60, check=False).stdout[-4000:]
