"""Reading a finished (or interrupted) sweep back: the trial table and the leaderboard (the
stored files themselves are search/experiment.py's)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from search import experiment as ex
from search import storage
from search.spaces import matches
from telemetry.errors import TelemetryError


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


def trial_table(exp: str, archs: list[str] | None = None) -> pd.DataFrame:
    """One row per trial of every architecture (or of ``archs``): status, parameters, metrics,
    whether it has holdout/test scores (``finalist``: search/finalists.py), checkpoint path.

    Read with Ray's public ``ExperimentAnalysis`` (it unpickles the experiment state: trusted
    storage only). Its trials' folders and checkpoints come as paths on the experiment's pyarrow
    filesystem; they are given back inside ``exp`` as the caller wrote it (a path, or a URI such as
    s3://...), so the scores are read from the same store, wherever the experiment was moved."""
    from ray.air.constants import EXPR_ERROR_FILE
    from ray.tune import ExperimentAnalysis

    rows = []
    sweep = ex.read_sweep(exp)
    starts = sweep.starts
    for arch in sweep.architectures:
        if archs is not None and arch not in archs:
            continue
        path = storage.join(exp, arch)
        if not storage.exists(path):
            continue  # not started yet
        try:
            ea = ExperimentAnalysis(path)
        except (ValueError, FileNotFoundError):  # started, but no experiment state (or results) written yet
            continue
        for t in ea.trials:
            r = t.last_result or {}
            _, params, thr = ex.split_config(t.config)
            trial_dir = storage.join(path, _within(ea.experiment_path, t.path))
            ckpt = t.checkpoint  # the latest: a completed trial's final checkpoint holds its scores
            # f05 is reported (empty) from the first epoch on; a scored trial has a value, or, on
            # unlabelled data, the final report's objective "val_loss" (search/shapes.py)
            done = bool(ckpt) and (_number(r.get("f05")) is not None or r.get("objective") == "val_loss")
            # In the experiment's storage: Trial.error_file is the driver's Ray-session staging copy
            # (gone with the session), and it raises when Ray is not initialised (the CLI).
            error = storage.join(trial_dir, EXPR_ERROR_FILE) if t.status == "ERROR" else None
            checkpoint = storage.join(path, _within(ea.experiment_path, ckpt.path)) if (ckpt and done) else None
            # holdout/test scores: the trial's own (it scored every split), or its finalist files'
            own = ex.reported_holdout(r) if done else None
            record = ex.read_finalist(checkpoint) if done and own is None else None
            finalist = done and (own is not None or record is not None)
            hold = ex.holdout_figures(own, record) or {}
            rows.append({
                "arch": arch, "trial_id": t.trial_id, "status": t.status,
                "completed": done, "epochs": r.get("epoch"),
                "val_f05": _number(r.get("f05")), "holdout_f05": hold.get("f05"),
                "val_loss": _number(r.get("val_loss")), "holdout_loss": _number(hold.get("loss")),
                "objective": r.get("objective", "f05"), "holdout_event_recall": hold.get("event_recall"),
                "holdout_auc_pr": hold.get("auc_pr"), "train_seconds": r.get("train_seconds"), "score_seconds": r.get("score_seconds"),
                "time_total_s": r.get("time_total_s"),
                "threshold": json.dumps(thr, sort_keys=True), "params": json.dumps(params, sort_keys=True, default=str),
                "checkpoint": checkpoint, "finalist": finalist,
                "start": any(matches(t.config, p) for p in starts.get(arch, [])),
                "error": error if error and storage.exists(error) else None,
                "_created": _created(t),
            })
    if not rows:
        return pd.DataFrame(rows)
    # In the order Tune created the trials: ExperimentAnalysis lists them in an order that changes
    # when a sweep is resumed, and the leaderboard's ties (trials with the same validation F0.5,
    # common on few events) must pick the same finalists and members every time.
    return pd.DataFrame(rows).sort_values(["arch", "_created", "trial_id"], kind="stable").drop(
        columns="_created").reset_index(drop=True)


def _created(trial) -> int:
    """The trial's creation number in its architecture's Tuner: the leading ``N_`` of its experiment
    tag (``3_arch=pca,lags=5``); trials without one sort last."""
    head = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
    return int(head) if head.isdigit() else 1 << 30


def leaderboard(exp: str, write: bool = True, archs: list[str] | None = None) -> pd.DataFrame:
    """Completed trials sorted by validation F0.5 within each architecture (by validation loss,
    lowest first, for a sweep of unlabelled data); written as CSV + parquet (unless ``archs``
    limits it to some architectures). Ties keep the order Tune created the trials in (a stable sort
    of :func:`trial_table`), so the finalists (search/finalists.py) and the ensemble's members are
    the same trials, however often the sweep was resumed."""
    df = trial_table(exp, archs)
    if df.empty:
        return df
    by_loss = "objective" in df and bool((df["objective"] == "val_loss").any())
    key, descending = ("val_loss", False) if by_loss else ("val_f05", True)
    df = df.assign(_done=df["completed"].astype(bool)).sort_values(
        ["arch", "_done", key], ascending=[True, False, not descending], na_position="last",
        kind="stable").drop(columns="_done").reset_index(drop=True)
    # Rank completed trials only; failed or early-stopped ones keep an empty rank.
    done = df["completed"].astype(bool)
    rank = pd.Series(np.nan, index=df.index)
    rank[done] = df[done].groupby("arch").cumcount() + 1
    df.insert(1, "rank", rank.astype("Int64"))
    if write and archs is None:
        ex.write_leaderboard(exp, df)
    return df


def resolve(exp: str) -> str:
    return exp if storage.is_uri(exp) else str(Path(exp).resolve())


def default_storage() -> str:
    """$TELESWEEP_STORAGE (a path, or a URI such as s3://bucket/sweeps, kept as it is) or results/sweeps."""
    path = os.environ.get("TELESWEEP_STORAGE", "results/sweeps")
    return path if storage.is_uri(path) else os.path.abspath(path)
