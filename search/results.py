"""Reading a finished (or interrupted) sweep back: trial table, leaderboard, stored scores."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from search import storage
from search.trainable import SCORES_FILE, TRIAL_FILE, split_config
from telemetry.errors import TelemetryError

SWEEP_FILE = "sweep.yaml"
SETS_FILE = "sets.npz"  # ids and labels of every split, for the ensemble
LEADERBOARD = "leaderboard.csv"


def experiment_archs(exp: str) -> list[str]:
    import yaml

    if not storage.exists(storage.join(exp, SWEEP_FILE)):
        raise TelemetryError(f"{exp}: not a telesweep experiment ({SWEEP_FILE} missing)")
    raw = yaml.safe_load(storage.read_text(storage.join(exp, SWEEP_FILE)))
    return list(raw["architectures"])


def checkpoint_uri(exp: str, path: str) -> str:
    """Ray keeps a checkpoint's path without its filesystem's scheme (s3://bucket/x -> bucket/x):
    put the experiment's scheme back, so the scores are read from the same store (not local disk)."""
    if storage.is_uri(exp) and not storage.is_uri(path):
        return f"{exp.split('://', 1)[0]}://{path}"
    return path


def trial_table(exp: str) -> pd.DataFrame:
    """One row per trial of every architecture: status, parameters, metrics, checkpoint path."""
    from ray.tune import ExperimentAnalysis

    rows = []
    for arch in experiment_archs(exp):
        path = storage.join(exp, arch)
        if not storage.exists(path):
            continue  # not started yet
        try:
            ea = ExperimentAnalysis(path)
        except (ValueError, FileNotFoundError):  # started, but no experiment state (or results) written yet
            continue
        for t in ea.trials:
            r = t.last_result or {}
            _, params, thr = split_config(t.config)
            ckpt = t.checkpoint  # the latest: a completed trial's final checkpoint holds its scores
            done = bool(ckpt) and "f05" in r
            rows.append({
                "arch": arch, "trial_id": t.trial_id, "status": t.status,
                "completed": done, "epochs": r.get("epoch"),
                "val_f05": r.get("f05"), "holdout_f05": r.get("holdout_f05"),
                "val_loss": r.get("val_loss"), "holdout_event_recall": r.get("holdout_event_recall"),
                "holdout_auc_pr": r.get("holdout_auc_pr"), "train_seconds": r.get("train_seconds"), "score_seconds": r.get("score_seconds"),
                "time_total_s": r.get("time_total_s"),
                "threshold": json.dumps(thr, sort_keys=True), "params": json.dumps(params, sort_keys=True, default=str),
                "checkpoint": checkpoint_uri(exp, ckpt.path) if (ckpt and done) else None,
                # In the experiment's storage: Trial.error_file is the driver's Ray-session staging copy
                # (gone with the session), and it raises when Ray is not initialised (the CLI).
                "error": (storage.join(path, t.storage.trial_dir_name, t.run_metadata.error_filename)
                          if t.status == "ERROR" and t.run_metadata.error_filename else None),
            })
    return pd.DataFrame(rows)


def leaderboard(exp: str, write: bool = True) -> pd.DataFrame:
    """Completed trials sorted by validation F0.5 within each architecture; written as CSV + parquet."""
    df = trial_table(exp)
    if df.empty:
        return df
    df = df.assign(_done=df["completed"].astype(bool)).sort_values(
        ["arch", "_done", "val_f05"], ascending=[True, False, False], na_position="last").drop(columns="_done").reset_index(drop=True)
    # Rank completed trials only; failed or early-stopped ones keep an empty rank.
    done = df["completed"].astype(bool)
    rank = pd.Series(np.nan, index=df.index)
    rank[done] = df[done].groupby("arch").cumcount() + 1
    df.insert(1, "rank", rank.astype("Int64"))
    if write:
        storage.write_text(storage.join(exp, LEADERBOARD), df.to_csv(index=False))
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        storage.write_bytes(storage.join(exp, "leaderboard.parquet"), buf.getvalue())
    return df


def load_trial(checkpoint_path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(trial.json, per-row scores by split) stored in a completed trial's final checkpoint."""
    meta = json.loads(storage.read_text(storage.join(checkpoint_path, TRIAL_FILE)))
    return meta, storage.read_npz(storage.join(checkpoint_path, SCORES_FILE))


def load_sets(exp: str) -> dict[str, np.ndarray]:
    """ids and labels of fit/validation/holdout/test as the sweep used them."""
    return storage.read_npz(storage.join(exp, SETS_FILE))


def resolve(exp: str) -> str:
    return exp if storage.is_uri(exp) else str(Path(exp).resolve())


def default_storage() -> str:
    """$TELESWEEP_STORAGE (a path, or a URI such as s3://bucket/sweeps, kept as it is) or results/sweeps."""
    path = os.environ.get("TELESWEEP_STORAGE", "results/sweeps")
    return path if storage.is_uri(path) else os.path.abspath(path)
