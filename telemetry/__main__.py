"""Command line for the telemetry package: ``python -m telemetry <command> ...``.

Commands: ``synth`` (write a synthetic mission). Each command is a ``_cmd_<name>(args) -> int``
registered in ``_parser``; bad input raises TelemetryError, printed as one ``error:`` line, exit 2.
"""
from __future__ import annotations

import argparse
import logging
import sys

from telemetry.errors import TelemetryError


def _cmd_synth(args: argparse.Namespace) -> int:
    from telemetry.synth import generate_mission

    summary = generate_mission(args.out, rows=args.rows, seed=args.seed, test_rows=args.test_rows,
                               chunk_rows=args.chunk_rows)
    frac = summary["anomalous_fraction"]
    for split in ("train", "test"):
        print(f"{summary['paths'][split]}: {summary['rows'][split]:,} rows, {100 * frac[split]:.1f} % anomalous")
    print(f"{summary['paths']['test_labels']}: labels of the test rows")
    print(f"{summary['paths']['mission']}: parameters, summary and event list")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m telemetry", description="Telemetry data tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = sub.add_parser("synth", help="write a synthetic mission (train/test parquet in the ESA-ADB schema)",
                           description="Write train.parquet, test.parquet, test_labels.parquet and mission.json.")
    synth.add_argument("--out", required=True, help="output directory (created if missing)")
    synth.add_argument("--rows", type=int, required=True, help="training rows (the challenge has 14700000)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--test-rows", type=int, default=None,
                       help="test rows (default: rows/4, at least 1000, at most 521280)")
    synth.add_argument("--chunk-rows", type=int, default=500_000,
                       help="rows generated and written per step, also the parquet row-group size (default 500000)")
    synth.set_defaults(func=_cmd_synth)
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
