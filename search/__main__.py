"""python -m search run | resume | plan | leaderboard | schema"""
from __future__ import annotations

import argparse
import logging
import sys

from telemetry.errors import TelemetryError


def duration(text: str) -> float:
    """Seconds from "3600", "90m", "1.5h" or "45s" (argparse type)."""
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 3600, 90m, 1h)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a time budget must be > 0, got {text!r}")
    return value


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m search", description="Ray Tune + Optuna sweeps of telesweep detectors")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a sweep file (local mode unless --address)")
    run.add_argument("--config", required=True, help="sweep file (YAML), e.g. configs/demo.yaml")
    run.add_argument("--address", default=None, help="Ray cluster address ('auto' on a cluster); default: local mode")
    run.add_argument("--storage", default=None, help="where experiments live: a path, s3://... or gs://...")
    run.add_argument("--shared-storage", action="store_true", help="the storage path is a filesystem every node mounts (NFS)")
    run.add_argument("--smoke-test", action="store_true", help="2 trials per architecture, 1 epoch, window 16")
    run.add_argument("--verbose", action="store_true", help="Tune's trial tables and every worker's output too")
    run.add_argument("--time-budget", type=duration, default=None,
                     help="wall clock for the whole sweep, e.g. 3600, 90m or 1h: split across architectures "
                          "(their budget_share), finished trials kept, the rest stopped")
    res = sub.add_parser("resume", help="continue an interrupted sweep (trusted storage only: Ray unpickles it)")
    res.add_argument("experiment", help="experiment path (<storage>/<name>)")
    res.add_argument("--address", default=None)
    res.add_argument("--shared-storage", action="store_true")
    res.add_argument("--verbose", action="store_true")
    pl = sub.add_parser("plan", help="trials, epochs, windows and estimated hours of a sweep file, before running it")
    pl.add_argument("config", help="sweep file (YAML)")
    pl.add_argument("--speedup", type=float, default=1.0, help="how many times faster than this machine the workers are")
    pl.add_argument("--rows", type=int, default=None, help="train rows, when the data files are not on this machine")
    pl.add_argument("--test-rows", type=int, default=None, help="test rows, likewise")
    pl.add_argument("--no-calibrate", action="store_true", help="counts only, no timing")
    lb = sub.add_parser("leaderboard", help="best trials per architecture (trusted storage only: Ray unpickles it)")
    lb.add_argument("experiment")
    lb.add_argument("--top", type=int, default=5, help="rows per architecture")
    sub.add_parser("schema", help="print the sweep file's JSON Schema (for editors; configs/sweep.schema.json)")
    args = ap.parse_args(argv)
    if args.cmd == "schema":
        from search.schema import json_schema_text

        sys.stdout.write(json_schema_text())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        from search import results, runner

        if args.cmd == "plan":
            from search import plan

            cfg = runner.load_config(args.config)
            table = plan.plan(cfg, plan.split_rows_of(cfg, args.rows, args.test_rows), plan.n_channels_of(cfg),
                              args.speedup, measure=not args.no_calibrate, log=print)
            print(plan.report(table, args.speedup))
            return 0
        if args.cmd == "leaderboard":
            df = results.leaderboard(results.resolve(args.experiment))
            if df.empty:
                print("no trials yet")
                return 1
            cols = ["arch", "rank", "status", "val_f05", "holdout_f05", "epochs", "params", "threshold"]
            with __import__("pandas").option_context("display.width", 200, "display.max_colwidth", 80):
                print(df[(df["rank"] <= args.top).fillna(False)][cols].to_string(index=False))
            failed = df[df["status"] == "ERROR"].groupby("arch").size()
            if len(failed):
                print("failed trials: " + ", ".join(f"{a} {n}" for a, n in failed.items())
                      + " (error.txt in each trial's folder)")
            return 0
        if args.cmd == "run":
            cfg = runner.load_config(args.config, check_files=True)  # every check before data loads or Ray starts
            summary = runner.run_sweep(cfg, args.address, args.storage, args.smoke_test, args.shared_storage,
                                       time_budget_s=args.time_budget, verbose=args.verbose)
        else:
            summary = runner.resume(results.resolve(args.experiment), args.address, args.shared_storage, args.verbose)
    except TelemetryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        where = str(stop) or "continue with: python -m search resume <experiment path>"
        print(f"interrupted: {where}", file=sys.stderr)
        return 130
    total = sum(a["completed"] for a in summary["architectures"].values())
    for name, a in summary["architectures"].items():
        budget = f" (time budget {a['budget_s']:.0f} s)" if "budget_s" in a else ""
        print(f"{name}: {a['completed']}/{a['trials']} trials completed, {a['errored']} failed{budget}")
    print(f"experiment: {summary['experiment']}")
    return 0 if total > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
