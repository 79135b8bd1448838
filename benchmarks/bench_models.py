"""Speed and memory of every registered detector, on synthetic 6-channel telemetry.

Throughput (default mode), per architecture, default hyperparameters except window/batch:
  train windows/s   one epoch over enough windows for about ``--seconds`` of training (sized from
                    a short calibration run); the first batch (graph tracing) is left out of the timing
  score windows/s   ``score()`` over the same series, after a warm-up (so no tracing inside)
Row models (isolation_forest, global_std) have no windows: their columns count rows.

Peak memory (``--rss ARCH [ARCH ...]``; none named = all): each architecture in a fresh subprocess
fits briefly on 4,096 rows, then scores a 521,280-row series at window 256; reports ru_maxrss before
and after scoring (the scoring cost is the growth, since windows are never materialised: the
materialised windows would take rows x window x channels x 4 bytes, shown for comparison).

    python benchmarks/bench_models.py [--arch dense_ae lstm_ae] [--out benchmarks/RESULTS.md]
    python benchmarks/bench_models.py --rss lstm_forecaster [--out benchmarks/RESULTS.md]
    python benchmarks/bench_models.py --smoke            # 2 architectures, a few batches: proves it runs

Thread counts: TensorFlow intra/inter-op threads (and OMP) are set to the machine's core count
(``--threads`` overrides) before TensorFlow loads; isolation_forest gets ``n_jobs`` the same.
Run it on an otherwise idle machine; timings taken while other work runs are not comparable.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time

ESA_ROWS = 521_280
RSS_WINDOW = 256
RSS_FIT_ROWS = 4096
CHANNELS = 6


def core_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(n: int, tf_config: bool = True) -> None:
    """Before TensorFlow is imported: its env knobs; then tf.config (if TF is the backend and wanted)."""
    for var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(min(n, 2))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if tf_config and os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(min(n, 2))


def max_rss_mib() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024  # bytes on macOS, KiB on Linux


# -- data and members --------------------------------------------------------------------------------

def synthetic(n_rows: int, channels: int = CHANNELS, seed: int = 0, labelled: bool = False):
    """Sines of different periods plus noise (float32, built channel by channel); optional labelled
    30-row offsets every 2,000 rows (at least one), for the supervised member."""
    import numpy as np

    from telemetry.series import Series

    rng = np.random.default_rng(seed)
    values = np.empty((n_rows, channels), dtype=np.float32)
    t = np.arange(n_rows, dtype=np.float32)
    for c in range(channels):
        values[:, c] = np.sin(t / (20.0 + 7 * c) + c) + rng.normal(0, 0.05, n_rows).astype(np.float32)
    labels = None
    if labelled:
        labels = np.zeros(n_rows, dtype=np.uint8)
        for lo in range(min(1000, n_rows // 2), n_rows - 30, 2000):
            labels[lo:lo + 30] = 1
            values[lo:lo + 30] += 2.0
    return Series(np.arange(n_rows, dtype=np.int64), values, labels,
                  tuple(f"channel_{41 + c}" for c in range(channels)), source="synthetic")


def member(name: str, window: int, batch: int, threads: int, epochs: int = 1):
    from models import registry

    cls = registry.get(name)
    wanted = {"window": window, "batch_size": batch, "epochs": epochs, "verbose": 0, "n_jobs": threads}
    names = set(cls.param_names())
    return cls(**{k: v for k, v in wanted.items() if k in names})


def n_params(est) -> str:
    model = getattr(est, "model_", None)
    return f"{model.count_params():,}" if model is not None else "-"


def series_rows(est, n_windows: int) -> int:
    return n_windows + int(getattr(est, "window", 1)) - 1 + int(getattr(est, "horizon", 0) or 0)


# -- throughput --------------------------------------------------------------------------------------

def _timer_callback():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Times an epoch from the end of its first batch (tracing excluded) to its end."""

        def on_epoch_begin(self, epoch, logs=None):
            self.t_first = None
            self.batches = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1
            if self.t_first is None:
                self.t_first = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.t_first

    return EpochTimer()


def _keras_train_rate(name, window, batch, threads, n_batches):
    """(windows/s of one epoch, first batch excluded; the fitted estimator; its series)."""
    est = member(name, window, batch, threads)
    series = synthetic(series_rows(est, n_batches * batch), labelled=est.tags.get("needs_labels", False))
    timer = _timer_callback()
    est.fit(series, callbacks=[timer])
    return (timer.batches - 1) * batch / max(timer.seconds, 1e-9), est, series


def bench_throughput(name, window, batch, threads, seconds, smoke):
    import numpy as np

    probe = member(name, window, batch, threads)
    if probe.tags.get("keras"):
        if smoke:
            n_batches = 3
            rate, est, series = _keras_train_rate(name, window, batch, threads, n_batches)
        else:  # calibrate on 8 batches, then size one epoch for ~`seconds`
            rate, _, _ = _keras_train_rate(name, window, batch, threads, 8)
            n_batches = int(np.clip(round(rate * seconds / batch), 8, 20_000))
            rate, est, series = _keras_train_rate(name, window, batch, threads, n_batches)
        train_units, unit = (n_batches - 1) * batch, "windows"
    else:
        rows = 20_000 if smoke else ESA_ROWS
        series = synthetic(rows)
        est = member(name, window, batch, threads)
        t0 = time.perf_counter()
        est.fit(series)
        rate = rows / (time.perf_counter() - t0)
        train_units, unit = rows, "rows"
    # scoring: warm up on a short slice (tracing, lazy init), then time the whole series
    est.score_samples(series.slice(0, min(len(series), series_rows(est, 2 * batch))))
    t0 = time.perf_counter()
    scores = est.score_samples(series)
    score_s = time.perf_counter() - t0
    n_score = len(series) - (series_rows(est, 1) - 1) if unit == "windows" else len(series)
    assert scores.shape == (len(series),) and scores.dtype == np.float32
    return {"architecture": name, "params": n_params(est), "unit": unit, "train": train_units,
            "train_per_s": rate, "score": n_score, "score_s": score_s, "score_per_s": n_score / score_s}


def throughput_table(rows, window, batch) -> str:
    out = [f"Throughput: synthetic {CHANNELS}-channel series, window {window}, batch {batch}, 1 epoch.", "",
           "| architecture | weights | unit | trained | train /s | scored | score s | score /s |",
           "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['architecture']} | {r['params']} | {r['unit']} | {r['train']:,} | {r['train_per_s']:,.0f} "
                   f"| {r['score']:,} | {r['score_s']:.2f} | {r['score_per_s']:,.0f} |")
    return "\n".join(out)


# -- peak memory -------------------------------------------------------------------------------------

def rss_child(name, rows, window, threads, stride) -> dict:
    """In a fresh process: fit briefly, then score ``rows`` rows; peak RSS before and after scoring."""
    from models import registry

    set_threads(threads, tf_config=bool(registry.get(name).tags.get("keras")))  # row models: no TF loaded
    import numpy as np

    est = member(name, window, 256, threads, epochs=1)
    if "score_stride" in est.param_names():
        est.score_stride = stride
    fit = synthetic(RSS_FIT_ROWS, seed=1, labelled=est.tags.get("needs_labels", False))
    est.fit(fit)
    series = synthetic(rows)
    est.score_samples(fit)  # warm up scoring on the small series
    before = max_rss_mib()
    t0 = time.perf_counter()
    s = est.score_samples(series)
    score_s = time.perf_counter() - t0
    after = max_rss_mib()
    assert s.shape == (rows,) and s.dtype == np.float32 and np.isfinite(s).all()
    windowed = bool(est.tags.get("windowed"))
    materialised = rows * window * CHANNELS * 4 / 2**20 if windowed else 0.0
    return {"architecture": name, "rows": rows, "window": window if windowed else "-", "before": before,
            "after": after, "score_s": score_s, "series_mib": series.values.nbytes / 2**20,
            "materialised_mib": materialised}


def bench_rss(names, rows, window, threads, stride) -> list[dict]:
    out = []
    for name in names:  # one fresh interpreter each, so peaks do not carry over
        cmd = [sys.executable, os.path.abspath(__file__), "--rss-child", name, "--rows", str(rows),
               "--rss-window", str(window), "--threads", str(threads), "--rss-stride", str(stride)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise SystemExit(f"rss run for {name} failed (exit {proc.returncode}): {tail}")
        out.append(json.loads(lines[-1]))
        print(f"  {name}: peak {out[-1]['after']:.0f} MiB", file=sys.stderr)
    return out


def rss_table(rows, stride) -> str:
    out = [f"Peak RSS (ru_maxrss, fresh process each) scoring a {rows[0]['rows']:,}-row, {CHANNELS}-channel series"
           f"{'' if stride == 1 else f' at score stride {stride}'}; 'before' = after import, a short fit and a warm-up.", "",
           "| architecture | rows | window | series MiB | windows if materialised MiB | RSS before MiB "
           "| peak RSS MiB | growth MiB | score s |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['architecture']} | {r['rows']:,} | {r['window']} | {r['series_mib']:.1f} "
                   f"| {r['materialised_mib']:,.0f} | {r['before']:.0f} | {r['after']:.0f} "
                   f"| {r['after'] - r['before']:.0f} | {r['score_s']:.1f} |")
    return "\n".join(out)


# -- reporting ---------------------------------------------------------------------------------------

def machine_line(threads: int) -> str:
    import keras
    import numpy as np

    backend = keras.backend.backend()
    extra = ""
    if backend == "tensorflow":
        import tensorflow as tf

        extra = f", TensorFlow {tf.__version__}"
    return (f"{platform.platform()}, {platform.processor() or platform.machine()}, {core_count()} usable cores "
            f"(os.cpu_count {os.cpu_count()}), {threads} threads; Python {platform.python_version()}, "
            f"numpy {np.__version__}, Keras {keras.__version__} ({backend}){extra}")


def report(table: str, threads: int, out: str | None) -> None:
    print(table)
    if out:
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        block = (f"\n## {now}\n\n- machine: {machine_line(threads)}\n"
                 f"- command: `{' '.join(shlex.quote(a) for a in sys.argv)}`\n\n{table}\n")
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(block)
        print(f"appended to {out}", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", nargs="+", help="architectures (default: every registered one)")
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=15.0, help="target length of the timed training epoch")
    ap.add_argument("--threads", type=int, default=core_count())
    ap.add_argument("--rss", nargs="*", metavar="ARCH", help="peak-RSS mode for these architectures (none: all)")
    ap.add_argument("--rows", type=int, default=ESA_ROWS, help="rows scored in --rss mode")
    ap.add_argument("--rss-window", type=int, default=RSS_WINDOW)
    ap.add_argument("--rss-stride", type=int, default=1, help="score stride in --rss mode")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help="append the table, date, machine and command line to this markdown file")
    ap.add_argument("--smoke", action="store_true", help="2 architectures, a few batches, small data: proves it runs")
    args = ap.parse_args(argv)

    if args.rss_child:
        print(json.dumps(rss_child(args.rss_child, args.rows, args.rss_window, args.threads, args.rss_stride)))
        return 0

    from models import registry

    all_names = registry.names()
    if args.rss is not None:
        names = args.rss or all_names
        rows, window = args.rows, args.rss_window
        if args.smoke:
            names, rows, window = names[:2] if args.rss else ["dense_ae", "global_std"], 20_000, 32
        for n in names:
            registry.get(n)  # unknown names fail here, with the list of known ones
        results = bench_rss(names, rows, window, args.threads, args.rss_stride)
        set_threads(args.threads)
        report(rss_table(results, args.rss_stride), args.threads, args.out)
        return 0

    set_threads(args.threads)
    names = args.arch or all_names
    window, batch = args.window, args.batch
    if args.smoke:
        names = (args.arch or ["dense_ae", "isolation_forest"])[:2]
        window, batch = 16, 64
    results = []
    for n in names:
        registry.get(n)
    for n in names:
        results.append(bench_throughput(n, window, batch, args.threads, args.seconds, args.smoke))
        r = results[-1]
        print(f"  {n}: train {r['train_per_s']:,.0f} {r['unit']}/s, score {r['score_per_s']:,.0f} {r['unit']}/s",
              file=sys.stderr)
    report(throughput_table(results, window, batch), args.threads, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
