"""Configure the Keras backend for a trial's resources, before the backend is imported.

Threads = the trial's CPUs (so concurrent trials do not oversubscribe cores); CPU-only trials see
no GPU at all; a trial with a fraction of a GPU (``resources: {gpu: 0.25}``: Ray places up to four
such trials on one GPU, but only counts) gets a memory cap of that fraction of the card, so the
trials sharing it cannot starve each other; a trial with whole GPUs grows its memory on demand.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import warnings

# Each process also holds a CUDA context and library workspaces (a few hundred MiB) outside the
# framework's allocator: the cap leaves this share of the trial's fraction for them.
GPU_MEMORY_HEADROOM = 0.9


def trial_resources() -> tuple[float, float]:
    """(CPUs, GPUs) granted to the current Ray Tune trial; (all cores, 0) outside Tune."""
    from ray import tune

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # outside a trial Ray warns, then returns None
        res = tune.get_context().get_trial_resources()
    if res is None:
        return float(os.cpu_count() or 1), 0.0
    req = res.required_resources
    return float(req.get("CPU", 1)), float(req.get("GPU", 0))


def gpu_total_memory_mb(visible: str | None = None) -> float | None:
    """Memory (MiB) of the smallest GPU this process may use, from nvidia-smi; None if unknown.

    ``visible``: the CUDA_VISIBLE_DEVICES that Ray set for the trial (indexes or UUIDs, which
    ``nvidia-smi -i`` accepts both). TensorFlow has no way to ask before it initialises the GPU.
    """
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    cmd = [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    if visible:
        cmd += ["-i", visible]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True).stdout
        sizes = [float(line) for line in out.split() if line.strip()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return min(sizes) if sizes else None


def gpu_memory_limit_mb(gpus: float, total_mb: float | None) -> int | None:
    """The memory cap of a trial with ``gpus`` of one GPU of ``total_mb``; None = no cap (grow)."""
    if not 0 < gpus < 1 or not total_mb:
        return None
    return max(1, int(gpus * GPU_MEMORY_HEADROOM * total_mb))


def configure_backend(cpus: float, gpus: float, deep_learning: bool = True) -> dict:
    """Set thread and device environment for TensorFlow, JAX or PyTorch; returns what was set.

    ``deep_learning=False`` (scikit-learn / numpy members) sets the environment only and never
    imports a deep-learning backend, which would cost seconds and memory per trial for nothing.
    """
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
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{min(gpus, 1.0) * GPU_MEMORY_HEADROOM:.3f}"
        if gpus >= 1:
            env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"  # a fractional trial gets a hard cap instead
    os.environ.update(env)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    limit_mb = None
    if not deep_learning:
        return {"threads": threads, "gpus": gpus, "backend": None, "gpu_memory_limit_mb": None}
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
            devices = tf.config.list_physical_devices("GPU")
            limit_mb = gpu_memory_limit_mb(gpus, gpu_total_memory_mb()) if devices else None
            for gpu in devices:
                if limit_mb is None:
                    tf.config.experimental.set_memory_growth(gpu, True)
                else:  # one logical device of at most limit_mb (growth and a limit exclude each other)
                    tf.config.set_logical_device_configuration(
                        gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit_mb)])
        except RuntimeError:
            limit_mb = None  # already initialised in this process (a reused worker): keep its settings
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)
    return {"threads": threads, "gpus": gpus, "backend": backend, "gpu_memory_limit_mb": limit_mb}
