"""The Ray Tune trainable: one trial = one detector, trained, thresholded and scored.

Pure function of (config, data): reports once per epoch (``epoch``, ``loss``, ``val_loss``;
ASHA counts ``epoch``), checkpoints weights each epoch so a retried trial continues, and makes its
last report after scoring, carrying the objective ``f05`` (validation) and, in its checkpoint, the
per-row scores of validation, holdout and test for the ensemble.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from search.backend import configure_backend, trial_resources

# Keys of a trial config that are not estimator parameters.
THRESHOLD_PREFIX = "threshold_"
META_KEYS = ("arch",)
SCORES_FILE = "scores.npz"
TRIAL_FILE = "trial.json"


def split_config(config: dict) -> tuple[str, dict, dict]:
    """(architecture, estimator params, threshold rule) from a flat trial config."""
    arch = config["arch"]
    thr = {k[len(THRESHOLD_PREFIX):]: v for k, v in config.items() if k.startswith(THRESHOLD_PREFIX)}
    params = {k: v for k, v in config.items() if k not in META_KEYS and not k.startswith(THRESHOLD_PREFIX)}
    return arch, params, thr


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
            self.model.save_weights(str(d / "model.weights.h5"))
            (d / "epoch.json").write_text(json.dumps({"epoch": done}))
            tune.report({"epoch": done, **logs}, checkpoint=tune.Checkpoint.from_directory(str(d)))
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


def train_member(config: dict, data=None) -> None:
    """Train, threshold on validation, score every split, report. ``data``: a telemetry Prepared."""
    cpus, gpus = trial_resources()

    from ray import tune

    from models import registry
    from telemetry import metrics
    from telemetry.thresholds import Threshold

    arch, params, thr = split_config(config)
    cls = registry.get(arch)  # registering models imports no deep-learning backend
    backend = configure_backend(cpus, gpus, deep_learning=bool(cls.tags.get("keras")))
    est = cls(**params)
    tmp_root = Path(tempfile.mkdtemp(prefix="telesweep-trial-"))
    try:
        initial_epoch, initial_weights = 0, None
        ckpt = tune.get_checkpoint()
        if ckpt is not None:  # a retried trial continues from its last epoch
            with ckpt.as_directory() as d:
                if (Path(d) / "epoch.json").is_file():
                    initial_epoch = json.loads((Path(d) / "epoch.json").read_text())["epoch"]
                    initial_weights = str(tmp_root / "resume.weights.h5")
                    shutil.copy(Path(d) / "model.weights.h5", initial_weights)
        t0 = time.perf_counter()
        reporter = None
        if cls.tags.get("keras"):
            reporter = _epoch_reporter(int(params.get("epochs", est.epochs)), tmp_root)
            est.fit(data.fit, data.validation, callbacks=[reporter], initial_epoch=initial_epoch,
                    initial_weights=initial_weights)
        else:
            est.fit(data.fit, data.validation)
        train_s = time.perf_counter() - t0

        t1 = time.perf_counter()
        rule = Threshold(**thr)
        val_scores = est.score(data.validation)
        fit_scores = est.score(data.fit) if rule.method == "max_fit" else None
        rule.fit(val_scores, data.validation.labels, fit_scores)
        out = {"validation": val_scores, "holdout": est.score(data.holdout)}
        if data.test is not None:
            out["test"] = est.score(data.test)
        m_val = metrics.scores(data.validation.labels, rule.predict(val_scores), val_scores)
        m_hold = metrics.scores(data.holdout.labels, rule.predict(out["holdout"]), out["holdout"])
        score_s = time.perf_counter() - t1

        epochs = int(getattr(est, "epochs", 1) or 1)
        last = dict(reporter.last_logs) if reporter else {}
        result = {"epoch": max(epochs, 1), **last, "f05": m_val["f05"],
                  **{f"val_{k}": v for k, v in m_val.items() if k != "f05"},
                  **{f"holdout_{k}": v for k, v in m_hold.items()},
                  "threshold": rule.threshold_, "train_seconds": train_s, "score_seconds": score_s,
                  "resumed_from_epoch": initial_epoch, **_placement(cpus, gpus)}
        d = tmp_root / "final"
        d.mkdir()
        np.savez(d / SCORES_FILE, **out)
        est.save(d / "model")
        (d / TRIAL_FILE).write_text(json.dumps({
            "arch": arch, "params": params, "threshold": rule.to_dict(), "validation": m_val, "holdout": m_hold,
            "backend": backend, "history": getattr(est, "history_", {}),
        }, indent=1, default=float))
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(str(d)))
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
