"""Quality benchmark: the whole pipeline (sweep -> ensemble -> submission) over many data sets,
scored on each data set's test labels, which nothing fitted ever sees.

    python benchmarks/bench_quality.py                   # full: 5 missions x 200k, 3 x 1M, 6 NAB series, 1 GutenTAG
    python benchmarks/bench_quality.py --quick --no-record   # CI smoke: one small mission, one NAB series
    python benchmarks/bench_quality.py --no-record --layers NAME   # the default and NAME on the cached sweeps

Per data set: test F0.5 of the ensemble (``ensemble build``'s default decision layer), of the member
validation picks (its own trial rule), of the hindsight-best member (reported, never used), of the
user's notebook configuration (bilstm_ae, window 5, 98th percentile of validation scores, runs under
10 rows dropped), of the ``global_std`` baseline, and of a plain PCA reconstruction baseline; then
the candidate decision layers of ``benchmarks/layers.yaml`` (``--layers``: only some of them) on the same members, so that defaults
are chosen on many data sets rather than one split. Means over data sets and a paired bootstrap
interval (over data sets) of ensemble - picked member.

Sweeps are cached under ``--work`` (an interrupted run resumes); the decision layers are refitted
every run, in seconds.
"""
from __future__ import annotations

import argparse
import json
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

log = logging.getLogger("bench.quality")
QUICK_ARCHS = ("pca", "global_std")  # the Keras path runs in the notebook baseline (bilstm_ae)


def datasets(work: Path, quick: bool, sizes, seeds, nab: bool, registry: bool = True) -> list[qd.Dataset]:
    if quick:
        return [qd.synthetic(work, 30_000, 0), qd.nab(work, "rogue_agent_key_hold")]
    # Cheapest first, so that an interrupted run has covered both kinds of data.
    out = [qd.synthetic(work, sizes[0], s) for s in seeds[sizes[0]]]
    if nab:
        out += [qd.nab(work, name) for name in qd.NAB_SERIES]
    if registry:
        out.append(qd.gutentag_ecg(work))
    return out + [qd.synthetic(work, rows, s) for rows in sizes[1:] for s in seeds[rows]]


def run_sweeps(work: Path, dss, config: Path, quick: bool) -> dict[str, str]:
    """One sweep per data set (cached: a finished one is marked and skipped); returns experiment paths."""
    from search.config import load_config, smoke
    from search.runner import run_sweep
    from telemetry.prepare import load_sets

    base = load_config(config)
    exps = {}
    for ds in dss:
        cfg = qd.sweep_config(base, ds, QUICK_ARCHS if quick else None)
        exp = work / "sweeps" / cfg.name
        exps[ds.name] = str(exp)
        if (exp / ".bench-done").is_file():
            continue
        if quick:
            cfg = smoke(cfg)
        splits, test, _ = load_sets(cfg.data)
        qd.fit_windows(cfg, min(min(splits.lengths().values()), len(test)))
        t0 = time.perf_counter()
        log.info("sweep %s", cfg.name)
        run_sweep(cfg, storage_path=str(work / "sweeps"))
        (exp / ".bench-done").write_text(f"{time.perf_counter() - t0:.1f}\n")
    return exps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke size: one 30k-row mission, one NAB series, smoke sweeps")
    ap.add_argument("--work", default=None, help="cache of data and sweeps (default results/bench_quality[_quick])")
    ap.add_argument("--config", default=str(qd.REPO / "configs" / "demo.yaml"), help="the sweep file every data set runs")
    ap.add_argument("--sizes", type=int, nargs="*", default=[200_000, 1_000_000])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4], help="mission seeds at the first size")
    ap.add_argument("--large-seeds", type=int, nargs="*", default=[0, 1, 2], help="mission seeds at the other sizes")
    ap.add_argument("--no-nab", action="store_true")
    ap.add_argument("--no-registry", action="store_true", help="skip the data read from a registry package (gutentag-ecg)")
    ap.add_argument("--stage", choices=["sweep", "all"], default="all", help="sweep only, or sweep then evaluate")
    ap.add_argument("--no-record", action="store_true", help="print, do not append to benchmarks/RESULTS.md")
    from quality_eval import candidate_layers

    ap.add_argument("--layers", nargs="+", default=None, choices=list(candidate_layers()), metavar="LAYER",
                    help="evaluate only these candidate layers of benchmarks/layers.yaml (the default layer always; "
                         "all when not given)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    work = Path(args.work or qd.REPO / "results" / ("bench_quality_quick" if args.quick else "bench_quality")).resolve()
    seeds = {rows: (args.seeds if i == 0 else args.large_seeds) for i, rows in enumerate(args.sizes)}
    t0 = time.perf_counter()
    try:
        dss = datasets(work, args.quick, args.sizes, seeds, not args.no_nab, not args.no_registry)
    except RuntimeError as e:  # a data set that cannot be fetched: one line, before any sweep
        print(f"bench_quality: {e}", file=sys.stderr)
        return 2
    exps = run_sweeps(work, dss, Path(args.config), args.quick)
    if args.stage == "sweep":
        print(f"swept {len(exps)} data sets in {time.perf_counter() - t0:.0f} s")
        return 0
    from quality_eval import DEFAULT, evaluate_all, summary_markdown

    layers = None if args.layers is None else list(dict.fromkeys([DEFAULT, *args.layers]))
    table = evaluate_all(work, dss, exps, quick=args.quick, layers=layers)
    body = summary_markdown(table, quick=args.quick)
    body += f"\n\nwall {time.perf_counter() - t0:.0f} s (cached sweeps reused), peak RSS {peak_rss_mb():.0f} MB\n"
    table.to_csv(work / "quality.csv", index=False)
    record("Quality benchmark" + (" (quick)" if args.quick else ""), body, out=None if args.no_record else qd.REPO / "benchmarks" / "RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
