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
from search.spaces import matches
from search.finalists import read_finalist, read_finalist_scores
from search.trainable import SCORES_FILE, TRIAL_FILE, split_config
from telemetry.errors import TelemetryError

SWEEP_FILE = "sweep.yaml"  # the sweep as it runs (resolved paths, adapted to the data): resume reads it
GIVEN_FILE = "sweep.given.yaml"  # the sweep as given, before the data adapts it: a rerun is compared with it
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


def _later_splits(result: dict, checkpoint: str | None) -> tuple[bool, dict | None]:
    """(whether the trial has holdout/test scores, the holdout figures from its finalist file if
    they are there). A trial that scored every split itself (``search.finalists: all``, or one from
    before finalists) reports no ``scored`` or one naming holdout; the others have them once
    search/finalists.py scored them."""
    scored = result.get("scored")
    if scored is None or "holdout" in str(scored).split(","):
        return True, None
    record = read_finalist(checkpoint) if checkpoint else None
    return record is not None, (record or {}).get("holdout")


def start_points(exp: str) -> dict[str, list[dict]]:
    """Each architecture's known-good configurations (the sweep file's ``start``), as stored."""
    import yaml

    raw = yaml.safe_load(storage.read_text(storage.join(exp, SWEEP_FILE)))
    return {a: list((spec or {}).get("start") or []) for a, spec in raw["architectures"].items()}


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
    starts = start_points(exp)
    for arch in experiment_archs(exp):
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
            _, params, thr = split_config(t.config)
            trial_dir = storage.join(path, _within(ea.experiment_path, t.path))
            ckpt = t.checkpoint  # the latest: a completed trial's final checkpoint holds its scores
            # f05 is reported (empty) from the first epoch on; a scored trial has a value, or, on
            # unlabelled data, the final report's objective "val_loss" (search/shapes.py)
            done = bool(ckpt) and (_number(r.get("f05")) is not None or r.get("objective") == "val_loss")
            # In the experiment's storage: Trial.error_file is the driver's Ray-session staging copy
            # (gone with the session), and it raises when Ray is not initialised (the CLI).
            error = storage.join(trial_dir, EXPR_ERROR_FILE) if t.status == "ERROR" else None
            checkpoint = storage.join(path, _within(ea.experiment_path, ckpt.path)) if (ckpt and done) else None
            finalist, held = _later_splits(r, checkpoint) if done else (False, None)
            # the holdout figures: reported by a trial that scored holdout itself, else its finalist
            # file's (empty for a trial that is no finalist)
            hold = {k: r.get(f"holdout_{k}") for k in ("f05", "loss", "event_recall", "auc_pr")} if held is None \
                else {k: held.get(k) for k in ("f05", "loss", "event_recall", "auc_pr")}
            rows.append({
                "arch": arch, "trial_id": t.trial_id, "status": t.status,
                "completed": done, "epochs": r.get("epoch"),
                "val_f05": _number(r.get("f05")), "holdout_f05": hold["f05"],
                "val_loss": _number(r.get("val_loss")), "holdout_loss": _number(hold["loss"]),
                "objective": r.get("objective", "f05"), "holdout_event_recall": hold["event_recall"],
                "holdout_auc_pr": hold["auc_pr"], "train_seconds": r.get("train_seconds"), "score_seconds": r.get("score_seconds"),
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
        storage.write_text(storage.join(exp, LEADERBOARD), df.to_csv(index=False))
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        storage.write_bytes(storage.join(exp, "leaderboard.parquet"), buf.getvalue())
    return df


def load_trial(checkpoint_path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(trial.json, per-row scores by split) of a completed trial: its final checkpoint's, with the
    holdout and test scores and holdout figures of its finalist files (search/finalists.py) where
    the checkpoint has none. A trial without either has validation scores only (``holdout`` None)."""
    meta = json.loads(storage.read_text(storage.join(checkpoint_path, TRIAL_FILE)))
    scores = storage.read_npz(storage.join(checkpoint_path, SCORES_FILE))
    if meta.get("holdout") is None:  # scored validation only: a finalist has the rest beside the checkpoint
        record = read_finalist(checkpoint_path)
        if record is not None:
            scores = {**read_finalist_scores(checkpoint_path), **scores}
            meta = {**meta, "holdout": record["holdout"], "splits": [*meta.get("splits", ["validation"]), *record["splits"]]}
    return meta, scores


def load_sets(exp: str) -> dict[str, np.ndarray]:
    """ids and labels of fit/validation/holdout/test as the sweep used them."""
    return storage.read_npz(storage.join(exp, SETS_FILE))


def resolve(exp: str) -> str:
    return exp if storage.is_uri(exp) else str(Path(exp).resolve())


def default_storage() -> str:
    """$TELESWEEP_STORAGE (a path, or a URI such as s3://bucket/sweeps, kept as it is) or results/sweeps."""
    path = os.environ.get("TELESWEEP_STORAGE", "results/sweeps")
    return path if storage.is_uri(path) else os.path.abspath(path)
