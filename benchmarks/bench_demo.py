"""The README's demo on several mission seeds: does the ensemble hold up against the member
validation alone would pick, on each demo's holdout split?

    python benchmarks/bench_demo.py --seeds 7 8 9 [--rows 200000] [--no-record]

Each seed is a full ``python -m ensemble demo`` (mission -> sweep -> ensemble) in results/demo-seed<S>
(resumed if interrupted). Prints holdout and test F0.5 of both, with the paired 90 % intervals.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import record  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)
    import logging

    from ensemble.__main__ import demo

    logging.basicConfig(level=logging.WARNING)
    lines = ["| seed | holdout events | ensemble holdout F0.5 [90 %] | picked member | its holdout F0.5 [90 %] | "
             "ensemble - picked [90 %] | test events | ensemble test F0.5 | picked test F0.5 | "
             "test: ensemble - picked [90 %] | wall s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for seed in args.seeds:
        t0 = time.perf_counter()
        res = demo((REPO / "results" / f"demo-seed{seed}").resolve(), args.rows, seed)
        stored = yaml.safe_load((Path(res["out"]) / "ensemble.yaml").read_text())
        hold = stored["holdout"]
        rows = {r["member"]: r for r in stored["holdout_table"]}
        picked = rows[res["picked_member"]]
        cmp, tc = res["comparison"], res["test_comparison"]  # the mission's test labels: reported only
        lines.append(f"| {seed} | {hold['true_events']} | {hold['f05']:.3f} [{hold['f05_lo']:.2f}, {hold['f05_hi']:.2f}] | "
                     f"{res['picked_member']} | {picked['f05']:.3f} [{picked['f05_lo']:.2f}, {picked['f05_hi']:.2f}] | "
                     f"{cmp['difference']:+.3f} [{cmp['lo']:+.3f}, {cmp['hi']:+.3f}] | {tc['true_events']} | "
                     f"{res['test_f05']:.3f} | {res['picked_member_test_f05']:.3f} | "
                     f"{tc['difference']:+.3f} [{tc['lo']:+.3f}, {tc['hi']:+.3f}] | {time.perf_counter() - t0:.0f} |")
    record("Demo on several seeds: ensemble against the member validation picks", "\n".join(lines),
           out=None if args.no_record else REPO / "benchmarks" / "RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
