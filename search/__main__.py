"""python -m search run | resume | finalize | plan | leaderboard | schema"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from telemetry.cli import OneLineParser, non_negative_int, positive_float, positive_int
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


# Shown by `--help` of the commands that read an experiment's pickled state.
TRUSTED = ("Trusted storage only: Ray Tune unpickles the experiment's stored state (the leaderboard reads it "
           "with ExperimentAnalysis, resume with Tuner.restore), and unpickling runs any code put into those "
           "files. Never point this at a folder or bucket that others can write to.")


def _seconds(text: str) -> float:
    """A positive number of seconds (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text!r}")
    return value


def board_text(df, top: int) -> str:
    """The leaderboard as the CLI prints it: the ``top`` ranked trials per architecture, then the
    failed trials per architecture."""
    import pandas as pd

    cols = ["arch", "rank", "status", "val_f05", "holdout_f05", "epochs", "params", "threshold"]
    if "objective" in df and (df["objective"] == "val_loss").any():  # unlabelled data: ranked by loss, no F0.5
        cols[3:5] = ["val_loss", "holdout_loss"]
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        text = df[(df["rank"] <= top).fillna(False)][cols].to_string(index=False)
    failed = df[df["status"] == "ERROR"].groupby("arch").size()
    if len(failed):
        text += ("\nfailed trials: " + ", ".join(f"{a} {n}" for a, n in failed.items())
                 + " (error.txt in each trial's folder)")
    return text


def watch_leaderboard(exp: str, top: int, every: float, count: int | None = None, sleep=time.sleep) -> int:
    """Reprint the leaderboard every ``every`` seconds, ``count`` times or until Ctrl-C (exit 0).
    Read only: a sweep writing the same experiment is not disturbed."""
    from search import results

    shown = 0
    try:
        while True:
            df = results.leaderboard(exp, write=False)
            if sys.stdout.isatty():
                print("\033[2J\033[H", end="")  # clear the terminal, as watch(1) does
            print(f"{exp} at {time.strftime('%H:%M:%S')} (every {every:g} s, Ctrl-C to stop)")
            print("no trials yet" if df.empty else board_text(df, top), flush=True)
            shown += 1
            if count is not None and shown >= count:
                return 0
            sleep(every)
    except KeyboardInterrupt:
        return 0


def main(argv=None) -> int:
    ap = OneLineParser(prog="python -m search", description="Ray Tune + Optuna sweeps of telesweep detectors")
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
    res = sub.add_parser("resume", help="continue an interrupted sweep (trusted storage only: Ray unpickles it)",
                         description=TRUSTED)
    res.add_argument("experiment", help="experiment path (<storage>/<name>)")
    res.add_argument("--address", default=None)
    res.add_argument("--shared-storage", action="store_true")
    res.add_argument("--verbose", action="store_true")
    fz = sub.add_parser("finalize", help="score holdout and test for the top trials of each architecture "
                                         "(trusted storage only: Ray unpickles it)", description=TRUSTED)
    fz.add_argument("experiment", help="experiment path or URI (<storage>/<name>)")
    fz.add_argument("--top", type=positive_int, default=None, metavar="K",
                    help="the best K distinct configurations per architecture (default: the sweep's search.finalists)")
    fz.add_argument("--address", default=None, help="Ray cluster address ('auto' on a cluster); default: local mode")
    fz.add_argument("--shared-storage", action="store_true")
    fz.add_argument("--verbose", action="store_true")
    pl = sub.add_parser("plan", help="trials, epochs, windows and estimated hours of a sweep file, before running it")
    pl.add_argument("config", help="sweep file (YAML)")
    pl.add_argument("--speedup", type=positive_float, default=1.0, help="how many times faster than this machine the workers are")
    pl.add_argument("--rows", type=positive_int, default=None, help="train rows, when the data files are not on this machine")
    pl.add_argument("--test-rows", type=non_negative_int, default=None, help="test rows, likewise")
    pl.add_argument("--no-calibrate", action="store_true", help="counts only, no timing")
    lb = sub.add_parser("leaderboard", help="best trials per architecture (trusted storage only: Ray unpickles it)",
                        description=TRUSTED)
    lb.add_argument("experiment", help="experiment path or URI (<storage>/<name>)")
    lb.add_argument("--top", type=positive_int, default=5, help="rows per architecture")
    sub.add_parser("schema", help="print the sweep file's JSON Schema (for editors; configs/sweep.schema.json)")
    lb.add_argument("--watch", type=_seconds, nargs="?", const=10.0, default=None, metavar="SECONDS",
                    help="reprint the leaderboard every SECONDS (default 10) until Ctrl-C, e.g. while the sweep runs "
                         "(the table is as of Tune's last saved experiment state; nothing is written)")
    lb.add_argument("--watch-count", type=positive_int, default=None, metavar="N", help="with --watch: stop after N prints")
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
            exp = results.resolve(args.experiment)
            if args.watch is not None:
                return watch_leaderboard(exp, args.top, args.watch, args.watch_count)
            df = results.leaderboard(exp)
            if df.empty:
                print("no trials yet")
                return 1
            print(board_text(df, args.top))
            return 0
        if args.cmd == "finalize":
            done = runner.finalize_experiment(results.resolve(args.experiment), args.top, args.address, args.shared_storage,
                                       args.verbose)
            for name, a in done["architectures"].items():
                failed = f", {a['failed']} failed" if a["failed"] else ""
                print(f"{name}: {a['finalists']} trials with holdout and test scores ({a['scored']} scored now{failed})")
            print(f"experiment: {done['experiment']}")
            return 1 if any(a["failed"] for a in done["architectures"].values()) else 0
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
        fin = summary.get("finalists", {}).get(name)
        fin = f"; {fin['finalists']} with holdout and test scores" if fin else ""
        print(f"{name}: {a['completed']}/{a['trials']} trials completed, {a['errored']} failed{budget}{fin}")
    print(f"experiment: {summary['experiment']}")
    return 0 if total > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
