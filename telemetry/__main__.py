"""Command line for the telemetry package: ``python -m telemetry <command> ...``.

Commands: ``synth`` (write a synthetic mission), ``synth-fleet`` (a wide unlabelled CSV of devices, some
drifting), ``synth-discharges`` (discharge JSON, some disrupting), ``check`` (validate files and splits
before a sweep). Each command is a ``_cmd_<name>(args) -> int``
registered in ``_parser``; bad input raises TelemetryError, printed as one ``error:`` line, exit 2.
"""
from __future__ import annotations

import argparse
import logging
import sys

from telemetry.cli import OneLineParser, fractions, non_negative_int, positive_float, positive_int, unit_interval
from telemetry.errors import TelemetryError


def _cmd_synth(args: argparse.Namespace) -> int:
    from telemetry.synthetic.mission import generate_mission

    summary = generate_mission(args.out, rows=args.rows, seed=args.seed, test_rows=args.test_rows,
                               chunk_rows=args.chunk_rows, command_response=args.command_response)
    frac = summary["anomalous_fraction"]
    for split in ("train", "test"):
        print(f"{summary['paths'][split]}: {summary['rows'][split]:,} rows, {100 * frac[split]:.1f} % anomalous")
    print(f"{summary['paths']['test_labels']}: labels of the test rows")
    print(f"{summary['paths']['mission']}: parameters, summary and event list")
    return 0


def _cmd_synth_fleet(args: argparse.Namespace) -> int:
    from telemetry.synthetic.fleet import write_synthetic_fleet

    info = write_synthetic_fleet(args.out, rows=args.rows, devices=args.devices, drifting=args.drifting, seed=args.seed)
    print(f"{info['paths']['train']}: {info['train_rows']:,} rows x {info['devices']} devices, no labels")
    print(f"{info['paths']['test']}: {info['test_rows']:,} rows (ids continue the train file's row numbers)")
    print(f"drifting from row {info['drift_start_row']:,}: {', '.join(info['drifting']) or 'none'} "
          f"({info['paths']['fleet']})")
    return 0


def _cmd_synth_discharges(args: argparse.Namespace) -> int:
    from pathlib import Path

    from telemetry.synthetic.discharges import write_synthetic_discharges

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = write_synthetic_discharges(out / "train.json", n_discharges=args.discharges, seed=args.seed, dt=args.dt,
                                       disrupting_fraction=args.disrupting)
    test = write_synthetic_discharges(out / "test.json", n_discharges=args.test_discharges, seed=args.seed + 1,
                                      dt=args.dt, disrupting_fraction=args.disrupting,
                                      first_shot=70_000 + args.discharges)
    for what, info in (("train", train), ("test", test)):
        print(f"{info['path']}: {info['n_discharges']} {what} discharges, {len(info['disrupting'])} disrupting "
              f"({', '.join(map(str, info['disrupting']))})")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from telemetry.events import events
    from telemetry.prepare import DataConfig, load_sets

    cfg = DataConfig(train=args.train, test=args.test, channels=args.channels, fractions=args.fractions,
                     labels=args.labels, series=args.series)
    cfg.check()
    splits, test, _ = load_sets(cfg)
    print(f"{args.train}: ok, channels {', '.join(splits.fit.channels)}"
          + ("" if splits.fit.labels is not None else "; unlabelled (a sweep minimises the validation loss)"))
    for name, s in splits.items():
        labels = (f"{100 * s.labels.mean():5.1f} % anomalous  {len(events(s.labels)):>5} events" if s.labels is not None
                  else "")
        many = f"  {s.n_segments} series" if s.segments is not None else ""
        print(f"  {name:<10} ids {s.ids[0]}..{s.ids[-1]}  {len(s):>10,} rows  {labels}{many}".rstrip())
    if test is not None:
        print(f"{args.test}: ok, {len(test):,} rows, ids {test.ids[0]}..{test.ids[-1]}, none shared with train")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m telemetry", description="Telemetry data tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = sub.add_parser("synth", help="write a synthetic mission (train/test parquet in the ESA-ADB schema)",
                           description="Write train.parquet, test.parquet, test_labels.parquet and mission.json.")
    synth.add_argument("--out", required=True, help="output directory (created if missing)")
    synth.add_argument("--rows", type=positive_int, required=True, help="training rows (the challenge has 14700000)")
    synth.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    synth.add_argument("--test-rows", type=positive_int, default=None,
                       help="test rows (default: rows/4, at least 1000, at most 521280)")
    synth.add_argument("--chunk-rows", type=positive_int, default=500_000,
                       help="rows generated and written per step, also the parquet row-group size (default 500000)")
    # No argparse choices: an unknown value gets the generator's one-line error (exit 2) like any other.
    synth.add_argument("--command-response", default="smooth", metavar="{smooth,transient,switch}",
                       help="how a commanded mode change looks: smooth (default: a slow transition), transient "
                            "(a step plus a decaying surge per telecommand, like real commands) or switch (the same, "
                            "stereotyped: an ON and an OFF command per group, fired eight times as often)")
    synth.set_defaults(func=_cmd_synth)

    fleet = sub.add_parser("synth-fleet", help="write a wide unlabelled CSV of devices, some drifting in the second half",
                           description="Write train.csv, test.csv (device1..deviceN, no id, no labels) and fleet.json.")
    fleet.add_argument("--out", required=True, help="output directory (created if missing)")
    fleet.add_argument("--rows", type=positive_int, default=9000, help="rows over train and test (default 9000; test the last third)")
    fleet.add_argument("--devices", type=positive_int, default=30, help="devices, one column each (default 30)")
    fleet.add_argument("--drifting", type=non_negative_int, default=3, help="devices drifting from the middle row on (default 3)")
    fleet.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    fleet.set_defaults(func=_cmd_synth_fleet)

    disc = sub.add_parser("synth-discharges", help="write discharge JSON (seed-002 format), some discharges disrupting",
                          description="Write train.json and test.json: 7 signals per discharge, anomalyTime on disruptions.")
    disc.add_argument("--out", required=True, help="output directory (created if missing)")
    disc.add_argument("--discharges", type=positive_int, default=40, help="train discharges (default 40)")
    disc.add_argument("--test-discharges", type=positive_int, default=10, help="test discharges (default 10)")
    disc.add_argument("--disrupting", type=unit_interval, default=0.4, help="fraction of disrupting discharges (default 0.4)")
    disc.add_argument("--dt", type=positive_float, default=1e-3, help="sampling step of the odd sensors, seconds (default 0.001)")
    disc.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0; the test file uses seed + 1)")
    disc.set_defaults(func=_cmd_synth_discharges)

    check = sub.add_parser("check", help="validate train/test files and the fit/validation/holdout splits")
    check.add_argument("--train", required=True, help="training data (parquet or CSV, or a discharge JSON)")
    check.add_argument("--test", default=None, help="unlabelled test series")
    check.add_argument("--channels", default=None, help="e.g. 41-46 (default), channel_1,channel_5, or a pattern such as 'device*'")
    check.add_argument("--fractions", type=fractions, default="0.6,0.2,0.2", help="fit,validation,holdout fractions (of the series, "
                                                                   "with many series)")
    check.add_argument("--labels", default="auto", choices=["auto", "none"], help="none: ignore is_anomaly (unlabelled)")
    check.add_argument("--series", default=None, help="series-id column of a file holding many series")
    check.set_defaults(func=_cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return args.func(args)
    except TelemetryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
