"""The README's first command, at smoke size: ``python -m ensemble demo --smoke-test`` in a fresh
process, end to end (synthetic mission -> local sweep -> ensemble -> submission). About a minute."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ROWS = 8_000  # fit 4,000 / validation 2,000 / holdout 2,000; test 2,000


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", "ensemble", "demo", "--smoke-test", "--rows", str(ROWS),
                           "--out", str(out)], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, proc


def test_demo_writes_a_submission_for_every_test_id_and_a_report(demo):
    out, proc = demo
    sub = pd.read_csv(out / "submission.csv")
    test_ids = pd.read_parquet(out / "mission" / "test.parquet", columns=["id"])["id"]
    assert list(sub.columns) == ["id", "is_anomaly"]
    assert sub["id"].tolist() == test_ids.tolist() and set(sub["is_anomaly"]) <= {0, 1}
    assert (out / "report.md").is_file() and (out / "ensemble.yaml").is_file()
    assert f"submission: {out / 'submission.csv'}" in proc.stdout


def test_smoke_test_caps_trials_epochs_and_windows_and_every_trial_completes(demo):
    out, _ = demo
    from models import registry

    board = pd.read_csv(out / "sweeps" / "demo" / "leaderboard.csv")
    swept = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["architectures"]
    assert sorted(board["arch"].unique()) == sorted(swept)
    assert board["completed"].all(), board[["arch", "status", "error"]]
    assert (board.groupby("arch").size() <= 2).all()
    for row in board.itertuples():
        params = json.loads(row.params)
        if registry.get(row.arch).tags["keras"]:  # the demo's searched windows and epochs, fixed by --smoke-test
            assert params["epochs"] == 1 and params["window"] == 16, (row.arch, params)
        else:  # row models have no epochs: the smoke edits must leave them alone
            assert "epochs" not in params


def test_the_demo_is_quiet_and_shows_progress(demo):
    _, proc = demo
    lines = (proc.stdout + proc.stderr).splitlines()
    # One progress line per finished trial and the pipeline's own steps; no Tune tables, no worker
    # banners (before: over a thousand lines for the full demo).
    assert any("[pca] 2/2 trials finished" in line for line in lines), lines[-20:]
    assert not any("Trial status" in line or "oneDNN" in line for line in lines)
    assert len(lines) < 80, len(lines)
