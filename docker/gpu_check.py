"""Fail loudly when the Keras backend of this machine sees no GPU.

    python docker/gpu_check.py            # the backend named by KERAS_BACKEND (default tensorflow)
    python docker/gpu_check.py --backend jax

cluster.yaml runs it as a GPU worker's first setup step. A worker whose NVIDIA driver is too old for
the image's CUDA wheels (an AMI older than R575), or whose container did not get the GPU
(`docker run` without --gpus), would otherwise join the cluster and run its trials on the CPU, many
times slower and without an error anywhere. Exit 0 with one line naming the GPUs; otherwise exit 1
with one line on stderr saying what is missing. The autoscaler then terminates the node ("launch
failed") and shows that line in its log (`ray monitor cluster.yaml`).

Standard library only, plus the backend it checks; it runs before the project is installed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

# TensorFlow 2.21's pip wheels bring CUDA 12.9, which needs an R575 or newer driver (docker/README.md).
MIN_DRIVER = 575
BACKENDS = ("tensorflow", "jax", "torch")


def driver_version() -> str | None:
    """The NVIDIA driver version from nvidia-smi; None if there is no nvidia-smi or it fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    versions = [line.strip() for line in out.splitlines() if line.strip()]
    return versions[0] if versions else None


def backend_gpus(backend: str) -> tuple[str, list[str]]:
    """(backend and version, names of the GPUs the backend can use)."""
    if backend == "tensorflow":
        import tensorflow as tf

        return f"TensorFlow {tf.__version__}", [d.name for d in tf.config.list_physical_devices("GPU")]
    if backend == "jax":
        import jax

        try:
            devices = jax.devices("gpu")
        except RuntimeError:  # JAX raises when no GPU platform initialises
            devices = []
        return f"JAX {jax.__version__}", [str(d) for d in devices]
    if backend == "torch":
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return f"PyTorch {torch.__version__}", [torch.cuda.get_device_name(i) for i in range(n)]
    raise ValueError(backend)


def diagnose(label: str, gpus: list[str], driver: str | None, min_gpus: int) -> tuple[bool, str]:
    """(ok, the one line to print)."""
    if len(gpus) >= min_gpus:
        return True, f"gpu_check: {label} sees {len(gpus)} GPU(s): {', '.join(gpus)} (driver {driver or 'unknown'})"
    if driver is None:
        why = "nvidia-smi finds no NVIDIA driver (no GPU instance, or the container was started without --gpus all)"
    else:
        try:
            major = int(driver.split(".")[0])
        except ValueError:
            major = None
        if major is not None and major < MIN_DRIVER:
            why = f"NVIDIA driver {driver} is older than R{MIN_DRIVER}, which the image's CUDA wheels need: use a newer AMI (cluster.yaml ImageId)"
        else:
            why = f"NVIDIA driver {driver} is present, so the backend's CUDA libraries failed to load (check the image: docker/README.md)"
    return False, f"gpu_check: FAILED: {label} sees {len(gpus)} GPU(s), needs {min_gpus}: {why}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "tensorflow"), choices=BACKENDS,
                    help="default: $KERAS_BACKEND, else tensorflow")
    ap.add_argument("--min-gpus", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        label, gpus = backend_gpus(args.backend)
    except ImportError as exc:
        print(f"gpu_check: FAILED: cannot import the {args.backend} backend: {exc}", file=sys.stderr)
        return 1
    ok, line = diagnose(label, gpus, driver_version(), args.min_gpus)
    print(line, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
