"""The pca member at the challenge's size: fit on the fit split's nominal rows, score every split.

    python benchmarks/bench_pca_scale.py --rows 14700000 [--lags 5] [--data DIR] [--no-record]

Generates the synthetic mission once (reused if present), prepares it like a sweep does (channels
41-46, fractions 0.6/0.2/0.2, scaler on fit nominal rows), then times pca fit and scoring and reports
peak RSS after each step, and the test F0.5 of the plain rule (EWMA span 10, best F0.5 on validation).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb, record  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=14_700_000)
    ap.add_argument("--data", default="/tmp/telesweep-bench/mission")
    ap.add_argument("--lags", type=int, default=5)
    ap.add_argument("--components", type=float, default=0.95)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)

    from models import registry
    from detection.metrics import corrected_event_f05
    from telemetry.prepare import DataConfig, prepare
    from telemetry.synthetic.mission import generate_mission
    from detection.thresholds import Threshold

    data = Path(args.data)
    if not (data / "mission.json").is_file():
        generate_mission(data, rows=args.rows, seed=0)
    steps = []

    def step(name, fn):
        t = time.perf_counter()
        out = fn()
        steps.append((name, time.perf_counter() - t, peak_rss_mb()))
        return out

    d = step("load + split + scale (channels 41-46)", lambda: prepare(DataConfig(
        train=str(data / "train.parquet"), test=str(data / "test.parquet"), test_labels=str(data / "test_labels.parquet"),
        channels="41-46")))
    n_comp = int(args.components) if args.components >= 1 else args.components
    est = registry.get("pca")(lags=args.lags, n_components=n_comp)
    step(f"pca fit ({len(d.fit):,} fit rows, lags {args.lags}) + validation error stats", lambda: est.fit(d.fit, d.validation))
    sv = step(f"pca score validation ({len(d.validation):,} rows)", lambda: est.score_samples(d.validation))
    step(f"pca score holdout ({len(d.holdout):,} rows)", lambda: est.score_samples(d.holdout))
    st = step(f"pca score test ({len(d.test):,} rows)", lambda: est.score_samples(d.test))
    rule = step("rule: EWMA 10 + best F0.5 threshold on validation", lambda: Threshold("best_f05", smooth=10).fit(sv, d.validation.labels))
    f = corrected_event_f05(d.test_labels, rule.predict(st))
    lines = ["| step | seconds | peak RSS MB |", "|---|---|---|"]
    lines += [f"| {n} | {s:.1f} | {r:.0f} |" for n, s, r in steps]
    lines.append(f"\n{est.components_.shape[0]} components of {est.components_.shape[1]}; test F0.5 {f:.3f} "
                 f"(synthetic labels); total {sum(s for _, s, _ in steps):.0f} s")
    record(f"pca member at full size ({args.rows:,} train rows)", "\n".join(lines),
           out=None if args.no_record else Path(__file__).resolve().parent / "RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
