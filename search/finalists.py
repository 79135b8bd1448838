"""Holdout and test scores for the trials that can become ensemble members, and only for those.

A sweep whose ``search.finalists`` is a number K (the default, :data:`DEFAULT`) has its trials
score validation only: the objective, which every trial needs. After an architecture's Tuner
finishes (again on resume, and on ``python -m search finalize <exp> --top K``), the top K distinct
configurations of each architecture by the sweep's objective (validation F0.5; the validation loss
on unlabelled data), in the leaderboard's order, are loaded from their final checkpoint's
``model/`` and score holdout and test (per-channel too where the trial kept per-channel scores for
validation). The trial's own fitted rule (trial.json ``threshold``) gives the holdout figures,
labelled or unlabelled as the trial was. ``search.finalists: all`` keeps the old behaviour: every
trial scores every split itself, and there is nothing to finalize; so does every trial of an
architecture with no more trials than K (each of them would be a finalist anyway).

The ensemble takes the best 2 distinct configurations per architecture by default (1 of a
forecaster; ensemble/members.py), so the default K = 3 leaves one spare; a larger ``--k`` needs
``finalize --top K`` first, and says so.

Where the scores go: ``finalist.npz`` (holdout, test, and their ``_channels``) and
``finalist.json`` (the holdout figures, and the checkpoint they came from) in the trial's folder,
beside its checkpoint, written atomically through search/storage.py (local, NFS, s3://, gs://),
the JSON last: it marks a complete pair. Not inside the checkpoint: Ray owns checkpoint folders
(it replaces and deletes them, ``num_to_keep``) and the checkpoint stays as the trial left it. A
finalist file naming another checkpoint than the trial's final one is ignored and scored again.

Each finalist is scored by a Ray task holding its architecture's resources, so on a cluster they
run in parallel on the GPU workers; local mode runs the same tasks on this machine.
"""
from __future__ import annotations

import json
import logging
import time

import numpy as np
import pandas as pd

from search import storage
from search.trainable import TRIAL_FILE, holdout_metrics, score_splits
from telemetry.errors import TelemetryError

log = logging.getLogger("search")

DEFAULT = 3  # finalists per architecture: the ensemble's default 2 members, plus one spare
ALL = "all"
FINALIST_JSON = "finalist.json"
FINALIST_NPZ = "finalist.npz"
LATER_SPLITS = ("holdout", "test")


def top_of(search: dict | None) -> int | None:
    """``search.finalists`` of a sweep: K, or None for ``all`` (every trial scores every split)."""
    value = (search or {}).get("finalists", DEFAULT)
    return None if value == ALL else int(value)


def trial_dir_of(checkpoint: str) -> str:
    """A checkpoint's trial folder (Ray keeps checkpoints as <trial>/checkpoint_NNNNNN)."""
    return checkpoint.rstrip("/").rsplit("/", 1)[0]


def _checkpoint_name(checkpoint: str) -> str:
    return checkpoint.rstrip("/").rsplit("/", 1)[1]


def read_finalist(checkpoint: str) -> dict | None:
    """finalist.json of the trial whose final checkpoint is ``checkpoint``; None when the trial has
    none, or one from another checkpoint."""
    path = storage.join(trial_dir_of(checkpoint), FINALIST_JSON)
    if not storage.exists(path):
        return None
    record = json.loads(storage.read_text(path))
    return record if record.get("checkpoint") == _checkpoint_name(checkpoint) else None


def read_finalist_scores(checkpoint: str) -> dict[str, np.ndarray]:
    return storage.read_npz(storage.join(trial_dir_of(checkpoint), FINALIST_NPZ))


def pending(board: pd.DataFrame, top: int | None) -> pd.DataFrame:
    """The leaderboard rows (``board`` in the leaderboard's order: best first within each
    architecture) that should be finalists, the top ``top`` distinct configurations per
    architecture (every completed trial for None), and lack holdout/test scores. Distinct as the
    ensemble selects (ensemble/members.py): a repeated configuration would not be a second member.
    The known-good start trials are finalists too, whatever their rank: the anchored member
    selection keeps them."""
    if board.empty:
        return board
    done = board[board["completed"].fillna(False).astype(bool)]
    chosen = done.drop_duplicates(["arch", "params"])
    if top is not None:
        starts = chosen["start"].fillna(False).astype(bool) if "start" in chosen else False
        ranked = chosen.groupby("arch", sort=False).cumcount() < top
        chosen = chosen[ranked | starts]
    return chosen[~chosen["finalist"].fillna(False).astype(bool)]


def score_finalist(checkpoint: str, data, cpus: float, gpus: float) -> dict:
    """Load one trial's fitted model from its final checkpoint, score holdout and test, write the
    finalist files beside the checkpoint. Runs as a Ray task (see :func:`finalize`)."""
    from ray import tune

    from models import registry
    from models.base import Detector
    from search.backend import configure_backend
    from detection.thresholds import Threshold

    meta = json.loads(storage.read_text(storage.join(checkpoint, TRIAL_FILE)))
    configure_backend(cpus, gpus, deep_learning=bool(registry.get(meta["arch"]).tags["keras"]))
    t0 = time.perf_counter()
    # Read only: a local checkpoint is used where it is, a remote one is downloaded to a temporary folder.
    with tune.Checkpoint(storage.join(checkpoint, "model")).as_directory() as model_dir:
        est = Detector.load(model_dir)
    rule = Threshold.from_dict(meta["threshold"])
    out = score_splits(est, data, LATER_SPLITS, keep_channels=bool(meta.get("channel_scores")))
    m_hold = holdout_metrics(est, rule, data.holdout, out["holdout"], labelled=meta.get("objective", "f05") == "f05")
    record = {"checkpoint": _checkpoint_name(checkpoint), "splits": [s for s in LATER_SPLITS if s in out],
              "holdout": m_hold, "score_seconds": time.perf_counter() - t0}
    trial_dir = trial_dir_of(checkpoint)
    storage.write_npz(storage.join(trial_dir, FINALIST_NPZ), **out)
    storage.write_text(storage.join(trial_dir, FINALIST_JSON), json.dumps(record, indent=1, default=float))
    return record


def finalize(exp: str, data_ref, resources: dict[str, tuple[float, float]], top: int | None,
             archs: list[str] | None = None) -> dict[str, dict]:
    """Score holdout and test for the finalists of ``archs`` (all of the experiment's) that lack
    them, one Ray task each with the architecture's (CPUs, GPUs) from ``resources``; ``data_ref``:
    the sweep's Prepared data in Ray's object store. Ray must be running. Returns per architecture
    {"finalists": trials with holdout/test scores, "scored": scored now, "failed": failures}.
    A failed task is logged (its trial stays without holdout/test scores) and counted, not raised."""
    import ray

    from search import results

    board = results.leaderboard(exp, write=False, archs=archs)
    todo = pending(board, top)
    task = ray.remote(score_finalist)
    refs = {}
    for row in todo.itertuples():
        cpus, gpus = resources.get(row.arch, (1.0, 0.0))
        refs[task.options(num_cpus=cpus, num_gpus=gpus, name=f"finalist:{row.arch}").remote(
            row.checkpoint, data_ref, cpus, gpus)] = row
    if refs:
        log.info("scoring holdout and test for %d finalist(s): %s", len(refs),
                 ", ".join(f"{a} {n}" for a, n in todo.groupby("arch", sort=False).size().items()))
    scored = {a: 0 for a in board["arch"].unique()} if not board.empty else {}
    failed = dict(scored)
    waiting = list(refs)
    try:
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            row = refs[ready[0]]
            try:
                ray.get(ready[0])
                scored[row.arch] += 1
            except Exception as exc:  # noqa: BLE001 - one trial's failure must not lose the others
                failed[row.arch] += 1
                log.warning("%s: finalist %s could not be scored: %s", row.arch, row.trial_id,
                            str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__)
    except KeyboardInterrupt:
        for ref in waiting:  # what is written is complete (atomic files); the rest is scored on resume
            ray.cancel(ref, force=True)
        raise
    before = finalize_summary(board)
    return {arch: {"finalists": before[arch]["finalists"] + scored[arch], "scored": scored[arch],
                   "failed": failed[arch]} for arch in scored}


def check_same_rows(exp: str, data) -> None:
    """The data prepared now is what the sweep scored: the same ids in holdout and test."""
    from search.results import load_sets

    sets = load_sets(exp)
    for split in LATER_SPLITS:
        series = getattr(data, split)
        stored = sets.get(f"{split}_ids")
        now = None if series is None else series.ids
        if stored is None and now is None:
            continue
        if stored is None or now is None or not np.array_equal(stored, now):
            raise TelemetryError(f"{exp}: the {split} split prepared from the sweep's data files differs from the one "
                                 f"the sweep used (sets.npz); were the data files changed?")


def finalize_experiment(exp: str, top: int | None = None, address: str | None = None, shared_storage: bool = False,
                        verbose: bool = False) -> dict:
    """``python -m search finalize``: holdout and test scores for the top ``top`` trials per
    architecture of a stored experiment (default: its sweep's ``search.finalists``), then the
    leaderboard written again."""
    import ray
    import yaml

    from search import results, runner
    from search.config import parse_config
    from telemetry.prepare import prepare

    if top is not None and top < 1:
        raise TelemetryError(f"--top must be >= 1, got {top}")
    if not storage.exists(storage.join(exp, results.SWEEP_FILE)):
        raise TelemetryError(f"{exp}: not a telesweep experiment ({results.SWEEP_FILE} missing)")
    raw = yaml.safe_load(storage.read_text(storage.join(exp, results.SWEEP_FILE)))
    cfg = parse_config(raw, base_dir="/", source=f"{exp}/{results.SWEEP_FILE}")
    if top is None:
        top = top_of(cfg.search)
    board = results.leaderboard(exp, write=False)
    if pending(board, top).empty:  # nothing to do: no data loaded, no Ray started
        return {"experiment": exp, "top": top, "architectures": finalize_summary(board)}
    data = prepare(cfg.data)
    check_same_rows(exp, data)
    started = not ray.is_initialized()
    runner.connect(address, cfg.ray, verbose)
    try:
        parent = exp.rstrip("/").rsplit("/", 1)[0]
        runner.check_storage_for_cluster(parent, shared_storage)
        resources = {a.name: (a.cpu, a.gpu) for a in cfg.architectures}
        summary = finalize(exp, ray.put(data), resources, top)
    finally:
        if started:
            ray.shutdown()
    results.leaderboard(exp)  # the stored leaderboard shows the new holdout figures
    return {"experiment": exp, "top": top, "architectures": summary}


def finalize_summary(board: pd.DataFrame) -> dict[str, dict]:
    """Per architecture, how many trials have holdout/test scores (nothing scored now)."""
    if board.empty:
        return {}
    return {a: {"finalists": int(g["finalist"].fillna(False).astype(bool).sum()), "scored": 0, "failed": 0}
            for a, g in board.groupby("arch", sort=False)}
