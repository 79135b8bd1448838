"""Holdout and test scores for the trials that can become ensemble members, and only for those.

A sweep whose ``search.finalists`` is a number K (the default, search.schema.DEFAULT_FINALISTS) has its trials
score validation only: the objective, which every trial needs. After an architecture's Tuner
finishes (again on resume, and on ``python -m search finalize <exp> --top K``), the top K distinct
configurations of each architecture by the sweep's objective (validation F0.5; the validation loss
on unlabelled data), in the leaderboard's order, are loaded from their final checkpoint's
``model/`` and score holdout and test (per-channel too where the trial kept per-channel scores for
validation). The trial's own fitted rule (trial.json ``threshold``) gives the holdout figures,
labelled or unlabelled as the trial was. With ``search.finalists: all`` every trial scores every
split itself, and there is nothing to finalize; so does every trial of an
architecture with no more trials than K (each of them would be a finalist anyway).

The ensemble takes the best 2 distinct configurations per architecture by default (1 of a
forecaster; ensemble/members.py), so the default K = 3 leaves one spare; a larger ``--k`` needs
``finalize --top K`` first, and says so.

Where the scores go (search/experiment.py): ``finalist.npz`` (holdout, test, and their
``_channels``) and ``finalist.json`` (the holdout figures, and the checkpoint they came from) in the
trial's folder, beside its checkpoint, written atomically through search/storage.py (local, NFS, s3://, gs://),
the JSON last: it marks a complete pair. Not inside the checkpoint: Ray owns checkpoint folders
(it replaces and deletes them, ``num_to_keep``) and the checkpoint stays as the trial left it. A
finalist file naming another checkpoint than the trial's final one is ignored and scored again.

Each finalist is scored by a Ray task holding its architecture's resources, so on a cluster they
run in parallel on the GPU workers; local mode runs the same tasks on this machine.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from search import experiment as ex
from search import results
from search.trainable import holdout_metrics, score_splits
from telemetry.errors import TelemetryError

log = logging.getLogger("search")


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


def score_finalist(checkpoint: str, data, cpus: float, gpus: float) -> ex.FinalistRecord:
    """Load one trial's fitted model from its final checkpoint, score holdout and test, write the
    finalist files beside the checkpoint. Runs as a Ray task (see :func:`finalize`)."""
    from ray import tune

    from models import registry
    from models.base import Detector
    from search.backend import configure_backend
    from detection.thresholds import Threshold

    trial = ex.read_trial(checkpoint)
    configure_backend(cpus, gpus, deep_learning=bool(registry.get(trial.arch).tags["keras"]))
    t0 = time.perf_counter()
    # Read only: a local checkpoint is used where it is, a remote one is downloaded to a temporary folder.
    with tune.Checkpoint(ex.model_dir(checkpoint)).as_directory() as model_dir:
        est = Detector.load(model_dir)
    rule = Threshold.from_dict(trial.threshold)
    out = score_splits(est, data, ex.LATER_SPLITS, keep_channels=trial.channel_scores)
    m_hold = holdout_metrics(est, rule, data.holdout, out["holdout"], labelled=trial.labelled)
    record = ex.FinalistRecord(checkpoint=ex.checkpoint_name(checkpoint),
                               splits=[s for s in ex.LATER_SPLITS if s in out], holdout=m_hold,
                               score_seconds=time.perf_counter() - t0)
    ex.write_finalist(checkpoint, record, out)
    return record


def finalize(exp: str, data_ref, resources: dict[str, tuple[float, float]], top: int | None,
             archs: list[str] | None = None) -> dict[str, dict]:
    """Score holdout and test for the finalists of ``archs`` (all of the experiment's) that lack
    them, one Ray task each with the architecture's (CPUs, GPUs) from ``resources``; ``data_ref``:
    the sweep's Prepared data in Ray's object store. Ray must be running. Returns per architecture
    {"finalists": trials with holdout/test scores, "scored": scored now, "failed": failures}.
    A failed task is logged (its trial stays without holdout/test scores) and counted, not raised."""
    import ray

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
    sets = ex.read_sets(exp)
    for split in ex.LATER_SPLITS:
        series = getattr(data, split)
        stored = sets.get(f"{split}_ids")
        now = None if series is None else series.ids
        if stored is None and now is None:
            continue
        if stored is None or now is None or not np.array_equal(stored, now):
            raise TelemetryError(f"{exp}: the {split} split prepared from the sweep's data files differs from the one "
                                 f"the sweep used ({ex.SETS_FILE}); were the data files changed?")


def finalize_summary(board: pd.DataFrame) -> dict[str, dict]:
    """Per architecture, how many trials have holdout/test scores (nothing scored now)."""
    if board.empty:
        return {}
    return {a: {"finalists": int(g["finalist"].fillna(False).astype(bool).sum()), "scored": 0, "failed": 0}
            for a, g in board.groupby("arch", sort=False)}
