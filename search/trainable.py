"""The Ray Tune trainable: one trial = one detector, trained, thresholded and scored.

Pure function of (config, data): reports once per epoch (``epoch``, ``loss``, ``val_loss``, and
``f05`` empty until scored; ASHA counts ``epoch``), checkpoints weights each epoch so a retried
trial continues, and makes its last report after scoring, carrying the objective (``f05`` on
validation; for unlabelled data ``val_loss``, with ``objective: "val_loss"``, see search/shapes.py)
and, in its final checkpoint, the fitted model (``model/``), its rule and figures (trial.json) and
its per-row scores (scores.npz) for the ensemble, and, for members tagged ``channel_scores``, their
per-channel scores (``<split>_channels``, [rows, C], columns named by ``channels`` in trial.json)
for per-channel detection and the channel breakdown of events.

Which splits a trial scores: validation always (the objective). Holdout and test only when the
sweep scores every trial in full (``search.finalists: all``); otherwise only the trials that can
become ensemble members get them, afterwards, from their saved model (search/finalists.py), so
discarded trials cost no holdout or test inference. trial.json's ``splits`` (and the final
report's ``scored``) say which splits the checkpoint holds. The files' names and records are
search/experiment.py's.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from search import experiment as ex
from search.backend import configure_backend, trial_resources

# Per-channel scores are C times the size of the per-row ones (float32 [rows, C]): at the challenge's
# 14.7 M rows x 6 channels that is ~350 MB per trial over all splits, x 89 channels ~5 GB. Above this
# many cells (splits together) a trial stores none; the ensemble then skips the per-channel view.
CHANNEL_SCORES_MAX_CELLS = 1 << 27  # 128 M cells = 512 MiB


def _reported(epoch: int, logs: dict, f05: float | None = None) -> dict:
    """What every ``tune.report`` carries, so that Tune's strict metric checking passes from the first
    report on: ``epoch`` (ASHA's time), ``val_loss`` (ASHA's metric; NaN for members without one,
    which ASHA never compares) and ``f05`` (the searcher's objective; None until the trial is scored,
    which the searcher and the progress line skip and a trial stopped early keeps)."""
    return {"epoch": epoch, "val_loss": math.nan, **logs, "f05": f05}


def _epoch_reporter(last_epoch: int, tmp_root: Path):
    import keras
    from ray import tune

    class EpochReporter(keras.callbacks.Callback):
        """One tune.report per epoch with a weights checkpoint; the last epoch waits for scoring."""

        def __init__(self):
            super().__init__()
            self.last_logs = {}

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            self.last_logs = logs
            done = epoch + 1
            if done >= last_epoch:
                return
            d = Path(tempfile.mkdtemp(dir=tmp_root))
            self.model.save_weights(str(d / ex.WEIGHTS_FILE))
            (d / ex.EPOCH_FILE).write_text(json.dumps({"epoch": done}))
            tune.report(_reported(done, logs), checkpoint=tune.Checkpoint.from_directory(str(d)))
            shutil.rmtree(d, ignore_errors=True)

    return EpochReporter()


def _placement(cpus: float, gpus: float) -> dict:
    """Where the trial ran and what it was granted: Tune's own ``node_ip``/``hostname`` cannot tell
    apart nodes that share an address (several raylets on one machine), the Ray node id can."""
    import ray

    out = {"node_id": None, "gpu_ids": [], "trial_cpus": cpus, "trial_gpus": gpus}
    if ray.is_initialized():
        out.update(node_id=ray.get_runtime_context().get_node_id(), gpu_ids=[str(g) for g in ray.get_gpu_ids()])
    return out


def _resume_point(tmp_root: Path) -> tuple[int, str | None]:
    """(epoch, weights file) to continue from: a retried trial's last epoch checkpoint, or (0, None)."""
    from ray import tune

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return 0, None
    with ckpt.as_directory() as d:
        if not (Path(d) / ex.EPOCH_FILE).is_file():
            return 0, None
        weights = str(tmp_root / "resume.weights.h5")
        shutil.copy(Path(d) / ex.WEIGHTS_FILE, weights)
        return json.loads((Path(d) / ex.EPOCH_FILE).read_text())["epoch"], weights


def _train(est, data, tmp_root: Path) -> tuple[dict, int, float]:
    """Fit ``est`` (Keras members: one report per epoch, continuing a retried trial).
    Returns (the last epoch's logs, the epoch it resumed from, seconds)."""
    t0 = time.perf_counter()
    if not est.tags["keras"]:
        est.fit(data.fit, data.validation)
        return {}, 0, time.perf_counter() - t0
    initial_epoch, initial_weights = _resume_point(tmp_root)
    reporter = _epoch_reporter(int(est.epochs), tmp_root)
    est.fit(data.fit, data.validation, callbacks=[reporter], initial_epoch=initial_epoch,
            initial_weights=initial_weights)
    return dict(reporter.last_logs), initial_epoch, time.perf_counter() - t0


def score_splits(est, data, splits, keep_channels: bool) -> dict[str, np.ndarray]:
    """Per-row scores of ``splits`` (names of ``data``'s splits; a missing test split is skipped)
    and, with ``keep_channels``, their per-channel scores (one pass for both: a window model
    predicts once)."""
    out = {}
    for split in splits:
        series = getattr(data, split)
        if series is None:
            continue
        if keep_channels:
            out[split], out[ex.channel_key(split)] = est.score_samples_and_channels(series)
        else:
            out[split] = est.score_samples(series)
    return out


def holdout_metrics(est, rule, holdout, scores: np.ndarray, labelled: bool) -> dict:
    """The honest figures of a fitted ``rule`` on the holdout split: labelled, the event-wise
    metrics; unlabelled, the member's loss and the share of rows its rule flags. A holdout made of
    many series is predicted and counted per series (its ``segments``), as the ensemble does."""
    pred = rule.predict(scores, holdout.segments)
    if labelled:
        from detection import metrics

        return metrics.scores(holdout.labels, pred, scores, holdout.segments)
    return {"loss": est.loss(holdout), "alarm_rate": float(pred.mean())}


def _evaluate(est, data, thr: dict, score_all: bool = True) -> tuple[dict, object, dict, dict | None, float]:
    """Threshold on validation; score holdout and test too when ``score_all``. Returns (scores per
    split, the fitted rule, validation metrics, holdout metrics or None, seconds). Validation made of
    many series is thresholded, predicted and counted per series (its ``segments``): the objective is
    the figure the ensemble's decision layer sees."""
    from detection import metrics
    from detection.thresholds import Threshold

    t0 = time.perf_counter()
    rule = Threshold(**thr)
    keep_channels = _keeps_channel_scores(est, data)
    out = score_splits(est, data, ["validation"], keep_channels)
    fit_scores = est.score_samples(data.fit) if rule.method == "max_fit" else None
    seg = data.validation.segments
    rule.fit(out["validation"], data.validation.labels, fit_scores, segments=seg)
    m_val = metrics.scores(data.validation.labels, rule.predict(out["validation"], seg), out["validation"], seg)
    m_hold = None
    if score_all:
        out.update(score_splits(est, data, ["holdout", "test"], keep_channels))
        m_hold = holdout_metrics(est, rule, data.holdout, out["holdout"], labelled=True)
    return out, rule, m_val, m_hold, time.perf_counter() - t0


def _evaluate_unlabelled(est, data, thr: dict, last_logs: dict,
                         score_all: bool = True) -> tuple[dict, object, dict, dict | None, float]:
    """No labels: an unsupervised threshold on the validation scores; the figures are the member's
    loss (validation: the objective; holdout: honest) and the share of rows its rule flags."""
    from detection.thresholds import Threshold

    t0 = time.perf_counter()
    rule = Threshold(**thr)
    if rule.method in Threshold.LABELLED:
        raise ValueError(f"threshold method {rule.method} needs labels; the data is unlabelled")
    keep_channels = _keeps_channel_scores(est, data)
    out = score_splits(est, data, ["validation"], keep_channels)
    fit_scores = est.score_samples(data.fit) if rule.method == "max_fit" else None
    seg = data.validation.segments  # smoothing and post-processing stay inside each series
    rule.fit(out["validation"], None, fit_scores, segments=seg)
    val_loss = last_logs.get("val_loss")
    m_val = {"loss": float(val_loss) if val_loss is not None else est.loss(data.validation),
             "alarm_rate": float(rule.predict(out["validation"], seg).mean())}
    m_hold = None
    if score_all:
        out.update(score_splits(est, data, ["holdout", "test"], keep_channels))
        m_hold = holdout_metrics(est, rule, data.holdout, out["holdout"], labelled=False)
    return out, rule, m_val, m_hold, time.perf_counter() - t0


def _keeps_channel_scores(est, data) -> bool:
    """Store per-channel scores when the member has them and they fit CHANNEL_SCORES_MAX_CELLS."""
    if not est.tags["channel_scores"]:
        return False
    rows = sum(len(s) for s in (data.validation, data.holdout, data.test) if s is not None)
    return rows * int(est.n_channels_) <= CHANNEL_SCORES_MAX_CELLS


def train_member(config: dict, data=None, score_all: bool = True) -> None:
    """Train, threshold on validation, score (every split when ``score_all``, else validation
    only: search/finalists.py scores the rest for the best trials), report. ``data``: a
    telemetry Prepared."""
    cpus, gpus = trial_resources()

    from ray import tune

    from models import registry

    arch, params, thr = ex.split_config(config)
    cls = registry.get(arch)  # registering models imports no deep-learning backend
    backend = configure_backend(cpus, gpus, deep_learning=bool(cls.tags["keras"]))
    est = cls(**params)
    tmp_root = Path(tempfile.mkdtemp(prefix="telesweep-trial-"))
    try:
        last_logs, initial_epoch, train_s = _train(est, data, tmp_root)
        labelled = data.validation.labels is not None
        if labelled:
            out, rule, m_val, m_hold, score_s = _evaluate(est, data, thr, score_all)
            objective = {"f05": m_val["f05"], **{f"val_{k}": v for k, v in m_val.items() if k != "f05"}}
        else:  # the objective is the validation loss; no labelled figure exists (f05 stays empty)
            out, rule, m_val, m_hold, score_s = _evaluate_unlabelled(est, data, thr, last_logs, score_all)
            objective = {"objective": "val_loss", **{f"val_{k}": v for k, v in m_val.items()}}
        splits = [s for s in ex.SPLITS if s in out]
        result = {**_reported(max(int(getattr(est, "epochs", 1) or 1), 1), last_logs), **objective,
                  **{f"holdout_{k}": v for k, v in (m_hold or {}).items()}, "scored": ex.scored_value(splits),
                  "threshold": rule.threshold_, "train_seconds": train_s, "score_seconds": score_s,
                  "resumed_from_epoch": initial_epoch, **_placement(cpus, gpus)}
        d = tmp_root / "final"
        d.mkdir()
        est.save(d / ex.MODEL_DIR)  # what search/finalists.py loads to score holdout and test later
        ex.write_trial(d, ex.TrialRecord(
            arch=arch, params=params, threshold=rule.to_dict(), validation=m_val, holdout=m_hold,
            objective="f05" if labelled else "val_loss", splits=splits, channels=list(est.channels_),
            channel_scores=ex.channel_key("validation") in out, backend=backend,
            history=getattr(est, "history_", {})), out)
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(str(d)))
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
