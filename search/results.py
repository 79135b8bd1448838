"""Reading a finished (or interrupted) sweep back: trial table, leaderboard, stored scores."""
from __future__ import annotations

import io
import json
import math
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


def _within(base: str, fs_path: str) -> str:
    """``fs_path`` relative to ``base``: both as Ray's filesystem gives them (s3://bucket/x is
    bucket/x), so the result can be put under the experiment location the caller gave."""
    base = base.rstrip("/")
    if not fs_path.startswith(base + "/"):
        raise TelemetryError(f"{fs_path}: not inside the experiment {base}")
    return fs_path[len(base) + 1:]


def _number(value) -> float | None:
    """A reported metric, None where it is absent or NaN (not reported yet, or not measured)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def trial_table(exp: str) -> pd.DataFrame:
    """One row per trial of every architecture: status, parameters, metrics, checkpoint path.

    Read with Ray's public ``ExperimentAnalysis`` (it unpickles the experiment state: trusted
    storage only). Its trials' folders and checkpoints come as paths on the experiment's pyarrow
    filesystem; they are given back inside ``exp`` as the caller wrote it (a path, or a URI such as
    s3://...), so the scores are read from the same store, wherever the experiment was moved."""
    from ray.air.constants import EXPR_ERROR_FILE
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
            trial_dir = storage.join(path, _within(ea.experiment_path, t.path))
            ckpt = t.checkpoint  # the latest: a completed trial's final checkpoint holds its scores
            # f05 is reported (empty) from the first epoch on; a scored trial has a value, or, on
            # unlabelled data, the final report's objective "val_loss" (search/shapes.py)
            done = bool(ckpt) and (_number(r.get("f05")) is not None or r.get("objective") == "val_loss")
            # In the experiment's storage: Trial.error_file is the driver's Ray-session staging copy
            # (gone with the session), and it raises when Ray is not initialised (the CLI).
            error = storage.join(trial_dir, EXPR_ERROR_FILE) if t.status == "ERROR" else None
            rows.append({
                "arch": arch, "trial_id": t.trial_id, "status": t.status,
                "completed": done, "epochs": r.get("epoch"),
                "val_f05": _number(r.get("f05")), "holdout_f05": r.get("holdout_f05"),
                "val_loss": _number(r.get("val_loss")), "holdout_loss": _number(r.get("holdout_loss")),
                "objective": r.get("objective", "f05"), "holdout_event_recall": r.get("holdout_event_recall"),
                "holdout_auc_pr": r.get("holdout_auc_pr"), "train_seconds": r.get("train_seconds"), "score_seconds": r.get("score_seconds"),
                "time_total_s": r.get("time_total_s"),
                "threshold": json.dumps(thr, sort_keys=True), "params": json.dumps(params, sort_keys=True, default=str),
                "checkpoint": storage.join(path, _within(ea.experiment_path, ckpt.path)) if (ckpt and done) else None,
                "error": error if error and storage.exists(error) else None,
            })
    return pd.DataFrame(rows)


def leaderboard(exp: str, write: bool = True) -> pd.DataFrame:
    """Completed trials sorted by validation F0.5 within each architecture (by validation loss,
    lowest first, for a sweep of unlabelled data); written as CSV + parquet."""
    df = trial_table(exp)
    if df.empty:
        return df
    by_loss = "objective" in df and bool((df["objective"] == "val_loss").any())
    key, descending = ("val_loss", False) if by_loss else ("val_f05", True)
    df = df.assign(_done=df["completed"].astype(bool)).sort_values(
        ["arch", "_done", key], ascending=[True, False, not descending], na_position="last").drop(columns="_done").reset_index(drop=True)
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
