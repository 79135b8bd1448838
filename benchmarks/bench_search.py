"""TPE + ASHA against random search + FIFO at the same number of trials, and the search overhead.

    python benchmarks/bench_search.py [--rows 40000] [--trials 12] [--arch conv_ae] [--no-record]

One synthetic mission, one architecture, the same space and trial budget for both strategies, run
one after the other in local mode. Reports the best validation F0.5 reached, the epochs spent (the
cost ASHA saves), wall time, and per-trial overhead = trial wall time - training - scoring (process
start, imports, data from the object store, reporting and checkpointing).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, record  # noqa: E402


def sweep_dict(name: str, mission: Path, arch: str, trials: int, searcher: str, scheduler: str, seed: int) -> dict:
    return {
        "name": name, "seed": seed,
        "data": {"train": str(mission / "train.parquet"), "test": str(mission / "test.parquet"),
                 "channels": "41-46", "fractions": [0.5, 0.25, 0.25]},
        "ray": {"num_cpus": 2},
        "search": {"searcher": searcher, "scheduler": scheduler, "grace_period": 1, "reduction_factor": 2,
                   "max_concurrent_trials": 2},
        "threshold": {"method": "best_f05", "min_length": {"int": [1, 10]}},
        "architectures": {arch: {
            "trials": trials, "resources": {"cpu": 1},
            "space": {"window": {"choice": [16, 32, 64, 128]}, "latent": {"int": [4, 32], "log": True},
                      "epochs": {"int": [1, 6]}, "learning_rate": {"float": [3e-4, 1e-2], "log": True},
                      "dropout": {"float": [0.0, 0.3]}},
            "fixed": {"batch_size": 256, "train_stride": 2, "score_stride": 2}}},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--arch", default="conv_ae")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)

    import ray

    from search.config import parse_config
    from search.results import trial_table
    from search.runner import run_sweep
    from telemetry.synthetic.mission import generate_mission

    root = Path(tempfile.mkdtemp(prefix="telesweep-bench-search-"))
    generate_mission(root / "mission", rows=args.rows, seed=args.seed)
    lines = ["| strategy | trials completed / run | best val F0.5 | holdout F0.5 of that trial | epochs spent | wall s | overhead s per trial (mean) |",
             "|---|---|---|---|---|---|---|"]
    for label, searcher, scheduler in (("TPE + ASHA", "tpe", "asha"), ("random + FIFO", "random", "fifo")):
        cfg = parse_config(sweep_dict(f"{searcher}_{scheduler}", root / "mission", args.arch, args.trials,
                                      searcher, scheduler, args.seed))
        t = time.perf_counter()
        try:
            summary = run_sweep(cfg, storage_path=str(root / "sweeps"))
        finally:
            ray.shutdown()
        wall = time.perf_counter() - t
        df = trial_table(summary["experiment"])
        done = df[df["completed"]]
        best = done.sort_values("val_f05", ascending=False).iloc[0]
        # ASHA-stopped trials have no final report: their last reported epoch is what they spent.
        epochs = int(df["epochs"].fillna(0).sum())
        overhead = (done["time_total_s"] - done["train_seconds"] - done["score_seconds"]).mean()
        lines.append(f"| {label} | {len(done)} / {len(df)} | {best['val_f05']:.3f} | {best['holdout_f05']:.3f} | "
                     f"{epochs} | {wall:.0f} | {overhead:.1f} |")
    body = "\n".join(lines) + (f"\n\n{args.arch}, {args.trials} trials each, 2 concurrent, 1 CPU per trial, synthetic mission "
                               f"of {args.rows:,} train rows (channels 41-46), seed {args.seed}.")
    record(f"Search strategies: TPE + ASHA vs random + FIFO ({args.arch})", body, None if args.no_record else RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
