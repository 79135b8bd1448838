import os

# Quiet TensorFlow and keep Ray from prompting or attaching to anything outside the test.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Under pytest-xdist each worker process gets one core's worth of threads: two workers on two cores,
# each with TensorFlow's and BLAS's default pools of one thread per core, oversubscribe the machine.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")

# .ci/run's JAX job shares the venv that has TensorFlow: TELESWEEP_BLOCK_TENSORFLOW=1 makes
# `import tensorflow` fail as if it were not installed, so a member that reaches past Keras to
# TensorFlow fails there (a JAX-only install, such as the GPU device image, has no TensorFlow).
if os.environ.get("TELESWEEP_BLOCK_TENSORFLOW"):
    import sys

    sys.modules["tensorflow"] = None  # an import of it now raises ImportError

import contextlib  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
NAB_FILES = ("art_daily_small_noise.csv", "art_daily_jumpsup.csv", "combined_windows.json")


@contextlib.contextmanager
def local_ray_started():
    """A one-node local Ray for some tests (never a bare ray.init(), which can attach to another
    instance on the machine); run_sweep's connect() reuses it. Each module's ``local_ray`` fixture
    wraps this with the scope it needs."""
    import ray

    assert not ray.is_initialized()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def nab_dir() -> Path:
    """The NAB files the reference tests need, beside the repository in ../shared/data/nab.

    Missing data fails (never skips): a CI run without it would otherwise pass without testing.
    """
    nab = SHARED / "data" / "nab"
    missing = [f for f in NAB_FILES if not (nab / f).is_file()]
    if missing:
        pytest.fail(f"NAB data missing: {', '.join(missing)} not found under {nab}. Put the NAB files "
                    f"(github.com/numenta/NAB: data/artificial*/ and labels/combined_windows.json) there.",
                    pytrace=False)
    return nab


def write_challenge_parquet(path, n=400, channels=(41, 42, 43), labels=True, start_id=0, seed=0, events=((150, 170), (300, 305))):
    """A small challenge-schema parquet file with anomalies at the given row ranges."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"id": np.arange(start_id, start_id + n, dtype=np.int64)})
    for c in channels:
        df[f"channel_{c}"] = (np.sin(np.arange(n) / 10 + c) + rng.normal(0, 0.1, n)).astype(np.float32)
    df["telecommand_1"] = np.zeros(n, dtype=np.uint8)
    if labels:
        lab = np.zeros(n, dtype=np.uint8)
        for lo, hi in events:
            lab[lo:hi] = 1
        df["is_anomaly"] = lab
    df.to_parquet(path, index=False)
    return df


@pytest.fixture
def challenge_files(tmp_path):
    write_challenge_parquet(tmp_path / "train.parquet", n=600, events=((100, 110), (300, 320), (500, 505)))
    write_challenge_parquet(tmp_path / "test.parquet", n=200, labels=False, start_id=600, seed=1)
    return tmp_path


def ctrl_c_when(proc, ready, seconds: float = 80):
    """Send SIGINT to ``proc``'s process group (as Ctrl-C in a terminal does; start it with
    ``start_new_session=True``) once ``ready()`` holds; returns its (stdout, stderr)."""
    import signal
    import time

    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()

