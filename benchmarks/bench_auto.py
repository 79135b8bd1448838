"""Quality benchmark, scarce-label regime: ``telesweep auto`` on data sets whose validation split holds
a handful of events (4 or fewer on most), against one fixed configuration and the member validation picks.

    python benchmarks/bench_auto.py                          # 13 data sets, 5-minute budget each (about 1 h)
    python benchmarks/bench_auto.py --preset fast --gutentag-seeds 0 1 2 3 4 5 6 7 --mission-seeds 20 21 22 23   # 19
    python benchmarks/bench_auto.py --quick --no-record       # CI smoke: one small data set, 30 s
    python benchmarks/bench_auto.py --budget 300 --preset medium --work /work/bqs

Data sets (test labels score the final predictions only):
- ``gt6-s<seed>``: six channels from another generator, GutenTAG (``timeeval-gutentag`` from the
  registry, in a virtual environment of its own), 50k labelled rows and 50k test rows, 12 events each;
- ``synth-50000-s<seed>``: missions of the project's own generator, cut small;
- the six real NAB series and the GutenTAG ECG series of the main quality benchmark.

Per data set, one ``auto`` sweep (cached under ``--work``), then on its trials (every trial scores
every split at this size) every member selection through the same default decision layer, scored on
test labels (benchmarks/auto_eval.py defines each column):
- ``anchored``: what ``telesweep auto`` submits (the known-good configurations: each architecture's
  start trial, joined by searched ones only from 10 validation events on);
- ``notebook+layer``: the user's notebook configuration (bilstm_ae, window 5, 5 epochs: its anchor
  trial) alone through the default layer fitted on validation (``ensemble build --k 1``), the reference;
- ``picked``: the member validation picks, with its own rule; ``hindsight``: the best member on test;
- ``plain_pca``: the plain PCA script (5 lags, EWMA 10, best-F0.5 threshold on validation).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_data as qd  # noqa: E402
from common import peak_rss_mb, record  # noqa: E402

log = logging.getLogger("bench.auto")


GUTENTAG_SEEDS = (0, 1, 2, 3)
MISSION_SEEDS = (20, 21)


def datasets(work: Path, quick: bool, registry: bool = True, nab: bool = True, gutentag_seeds=GUTENTAG_SEEDS,
             mission_seeds=MISSION_SEEDS) -> list[qd.Dataset]:
    if quick:
        return [qd.synthetic(work, 20_000, 20)]
    out = [qd.gutentag_multichannel(work, s) for s in gutentag_seeds] if registry else []
    out += [qd.synthetic(work, 50_000, s) for s in mission_seeds]
    if nab:
        out += [qd.nab(work, name) for name in qd.NAB_SERIES]
    if registry:
        out.append(qd.gutentag_ecg(work))
    return out


def auto_sweep(work: Path, ds: qd.Dataset, budget_s: float, preset: str, trials: int | None = None) -> str:
    """The ``auto`` sweep of one data set (cached: a finished one is marked and skipped)."""
    from search.auto import auto_config
    from search.config import parse_config
    from search.runner import run_sweep

    out = work / "auto" / ds.name
    exp = out / "sweeps" / "auto"
    if (exp / ".bench-done").is_file():
        return str(exp)
    raw, facts = auto_config(str(ds.train), str(ds.test), out, budget_s, preset=preset, channels=ds.channels,
                             boundaries=ds.boundaries)  # the data set's own cuts (NAB, ECG), else auto's
    raw["data"]["test_labels"] = str(ds.test_labels)  # reported, never fitted
    if trials:  # a fixed number of trials instead of the budget: figures that do not depend on the machine's load
        raw["search"].pop("time_budget_s")
        for spec in raw["architectures"].values():
            spec["trials"] = min(spec["trials"], trials)
    t0 = time.perf_counter()
    log.info("auto sweep %s (%s, %.0f s): validation events %s", ds.name, preset, budget_s,
             (facts["events"] or {}).get("validation"))
    run_sweep(parse_config(raw, source=f"auto:{ds.name}"))
    (exp / ".bench-done").write_text(f"{time.perf_counter() - t0:.1f}\n")
    return str(exp)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke size: one 20k-row mission, 30 s budget")
    ap.add_argument("--work", default=None, help="cache of data and sweeps (default results/bench_auto[_quick])")
    ap.add_argument("--budget", type=float, default=300.0, help="seconds of search per data set (auto --time-budget)")
    ap.add_argument("--preset", default="medium", choices=["fast", "medium", "best"])
    ap.add_argument("--trials", type=int, default=None,
                    help="run this many trials per architecture with no time budget (figures independent of load)")
    ap.add_argument("--no-registry", action="store_true", help="skip the data generated from registry packages")
    ap.add_argument("--no-nab", action="store_true")
    ap.add_argument("--gutentag-seeds", type=int, nargs="*", default=list(GUTENTAG_SEEDS),
                    help="seeds of the six-channel GutenTAG data sets (12 test events each)")
    ap.add_argument("--mission-seeds", type=int, nargs="*", default=list(MISSION_SEEDS),
                    help="seeds of the 50k-row missions of the project's generator")
    ap.add_argument("--stage", choices=["sweep", "all"], default="all")
    ap.add_argument("--no-record", action="store_true", help="print, do not append to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    work = Path(args.work or qd.REPO / "results" / ("bench_auto_quick" if args.quick else "bench_auto")).resolve()
    budget = 30.0 if args.quick else args.budget
    t0 = time.perf_counter()
    try:
        dss = datasets(work, args.quick, not args.no_registry, not args.no_nab, args.gutentag_seeds,
                       args.mission_seeds)
    except RuntimeError as e:
        print(f"bench_auto: {e}", file=sys.stderr)
        return 2
    exps = {ds.name: auto_sweep(work, ds, budget, args.preset, args.trials) for ds in dss}
    if args.stage == "sweep":
        print(f"swept {len(exps)} data sets in {time.perf_counter() - t0:.0f} s")
        return 0
    from auto_eval import evaluate_all, summary_markdown

    table = evaluate_all(work, dss, exps)
    body = summary_markdown(table, budget, args.preset)
    body += f"\n\nwall {time.perf_counter() - t0:.0f} s (cached sweeps reused), peak RSS {peak_rss_mb():.0f} MB\n"
    table.to_csv(work / "auto.csv", index=False)
    print(body)
    record("Quality benchmark, scarce labels (auto)" + (" (quick)" if args.quick else ""), body,
           out=None if args.no_record else qd.REPO / "benchmarks" / "RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
