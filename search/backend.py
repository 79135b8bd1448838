"""Configure the Keras backend for a trial's resources, before the backend is imported.

Threads = the trial's CPUs (so concurrent trials do not oversubscribe cores); GPU memory grows
on demand, capped at the trial's GPU fraction; CPU-only trials see no GPU at all.
"""
from __future__ import annotations

import os


def trial_resources() -> tuple[float, float]:
    """(CPUs, GPUs) granted to the current Ray Tune trial; (all cores, 0) outside Tune."""
    try:
        from ray import tune

        res = tune.get_context().get_trial_resources().required_resources
        return float(res.get("CPU", 1)), float(res.get("GPU", 0))
    except Exception:  # not inside a trial
        return float(os.cpu_count() or 1), 0.0


def configure_backend(cpus: float, gpus: float) -> dict:
    """Set thread and device environment for TensorFlow, JAX or PyTorch; returns what was set."""
    threads = max(1, int(cpus))
    env = {
        "OMP_NUM_THREADS": str(threads),
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": str(min(threads, 2)),
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    if gpus <= 0:
        env["CUDA_VISIBLE_DEVICES"] = ""  # never touch a GPU from a CPU-only trial
    else:
        # JAX preallocates 75% of the GPU by default: cap it at this trial's share instead.
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{min(gpus, 1.0) * 0.95:.3f}"
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    os.environ.update(env)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
            for gpu in tf.config.list_physical_devices("GPU"):
                tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised in this process (a reused worker): keep its settings
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)
    return {"threads": threads, "gpus": gpus, "backend": backend}
