"""python -m ensemble build <experiment> --out DIR | demo --out DIR | auto --train FILE --out DIR | decision [FILE]"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ensemble.calibration import METHODS as CALIBRATIONS
from ensemble.combine import COMBINATIONS
from telemetry.cli import OneLineParser, non_negative_int, positive_int
from telemetry.errors import TelemetryError

REPO = Path(__file__).resolve().parents[1]


DEMO_FILE = "demo.json"  # the options a demo folder was made with


def check_demo_options(out: Path, options: dict) -> None:
    """A demo folder holds one run: re-run with other options into it, the old mission and sweep
    would be mixed with the new ones, so it refuses, naming the first option that differs."""
    stored_file = out / DEMO_FILE
    if stored_file.is_file():
        stored = json.loads(stored_file.read_text())
    else:
        out.mkdir(parents=True, exist_ok=True)
        stored_file.write_text(json.dumps(options) + "\n")
        return
    for key, value in options.items():
        if key in stored and stored[key] != value:
            flag = "--" + key.replace("_", "-")
            made = (f"made {'with' if stored[key] else 'without'} {flag}" if isinstance(value, bool)
                    else f"made with {flag} {stored[key]}, not {value}")
            raise TelemetryError(f"{out}: {made}; use another --out, or the options it was made with")


def demo(out: Path, rows: int, seed: int, smoke_test: bool = False, verbose: bool = False) -> dict:
    """The embedded default end to end: synthetic mission -> local sweep -> ensemble -> submission."""
    from ensemble.build import build
    from search.config import load_config
    from search.runner import ExperimentMismatch, run_sweep
    from telemetry.synthetic.mission import generate_mission

    log = logging.getLogger("ensemble.demo")
    check_demo_options(out, {"rows": rows, "seed": seed, "smoke_test": smoke_test})
    mission = out / "mission"
    if not (mission / "mission.json").is_file():
        log.info("step 1/3: generating a synthetic mission of %d train rows into %s", rows, mission)
        generate_mission(mission, rows=rows, seed=seed)
    else:
        log.info("step 1/3: reusing the synthetic mission in %s", mission)
    cfg = load_config(REPO / "configs" / "demo.yaml")
    cfg.data.train, cfg.data.test = str(mission / "train.parquet"), str(mission / "test.parquet")
    cfg.data.test_labels = str(mission / "test_labels.parquet")
    log.info("step 2/3: sweeping %s in local mode (an interrupted demo resumes where it stopped)",
             ", ".join(a.name for a in cfg.architectures))
    try:
        summary = run_sweep(cfg, storage_path=str(out / "sweeps"), smoke_test=smoke_test, verbose=verbose)
    except ExperimentMismatch as exc:  # e.g. demo.yaml edited since: the demo's own way on, not search's
        raise TelemetryError(f"{out}: its sweep differs from configs/demo.yaml at {exc.key}; use another --out") from None
    log.info("step 3/3: building the ensemble")
    return build(summary["experiment"], out, seed=seed)


def main(argv=None) -> int:
    ap = OneLineParser(prog="python -m ensemble", description="combine sweep members into a submission")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="ensemble from a sweep experiment (trusted storage only: Ray unpickles it)",
                       description="Trusted storage only: the members are read with Ray Tune's ExperimentAnalysis, "
                                   "which unpickles the experiment's stored state, and unpickling runs any code put "
                                   "into those files. Never point this at a folder or bucket that others can write to.")
    b.add_argument("experiment", help="experiment path or URI (<storage>/<name>)")
    b.add_argument("--out", required=True)
    b.add_argument("--k", type=positive_int, default=2, help="best distinct trials per autoencoder architecture")
    b.add_argument("--include", nargs="*", default=[], choices=["supervised", "baselines"], help="also use these members")
    b.add_argument("--decision", default=None, metavar="FILE.yaml",
                   help="decision layer as YAML: sections calibration, combination, rule, guard, each left-out key "
                        "the default's (default: the layer chosen by benchmarks/bench_quality.py; "
                        "'python -m ensemble decision' prints it)")
    b.add_argument("--combination", default=None, choices=list(COMBINATIONS), help="override the decision layer's combination")
    b.add_argument("--calibration", default=None, choices=list(CALIBRATIONS), help="override its calibration")
    b.add_argument("--members", default="anchored", choices=["anchored", "ranked"],
                   help="member selection: anchored (default) keeps an architecture's known-good start trials where "
                        "the sweep ran some; ranked takes the best --k by validation F0.5 everywhere")
    b.add_argument("--evidence", default="auto", choices=["auto", "validation", "fit+validation"],
                   help="labelled events the decision layer is fitted on: validation, or the fit split's too (unseen by "
                        "the members, which learn from its nominal rows; the models score it once more); auto (default): "
                        "the fit split's too on data of up to 2 M rows (train + test), else validation")
    b.add_argument("--seed", type=non_negative_int, default=0)
    a = sub.add_parser("auto", help="new data -> sized sweep -> ensemble -> submission, within a time budget",
                       description="No sweep file needed: the sweep is sized from the data and the budget, starts from "
                                   "known-good configurations, and is written to DIR/auto.yaml for search run --config.")
    a.add_argument("--train", required=True, help="labelled (or unlabelled) train file: .parquet, .csv or discharge .json")
    a.add_argument("--test", default=None, help="test file to submit predictions for")
    a.add_argument("--out", required=True)
    a.add_argument("--time-budget", default="5m", help="search time: 300, 90s, 5m, 1h (default 5m); scoring and the "
                                                       "ensemble take a little more")
    a.add_argument("--preset", default="fast", choices=["fast", "medium", "best"],
                   help="architectures: fast (pca, bilstm_ae; default), medium (+ lstm_forecaster, conv_ae), best (+ lstm_ae, dense_ae)")
    a.add_argument("--architectures", default=None, metavar="A,B",
                   help="these architectures instead of the preset's (of pca, bilstm_ae, lstm_forecaster, conv_ae, lstm_ae, dense_ae)")
    a.add_argument("--channels", default=None, help="channels: '41-46', names or patterns such as 'sensor*' (default: "
                                                    "channel_41..46 in challenge files, else every numeric column)")
    a.add_argument("--labels", default="auto", choices=["auto", "none"], help="none: ignore is_anomaly (unsupervised)")
    a.add_argument("--series", default=None, help="series-id column of a file holding many series")
    a.add_argument("--evidence", default="auto", choices=["auto", "validation", "fit+validation"],
                   help="labelled events the decision layer is fitted on (build --evidence); auto (default): the fit "
                        "split's too where every trial scores every split (data up to 2 M rows), else validation")
    a.add_argument("--write-config", default=None, metavar="FILE", help="also write the sweep file used to FILE")
    a.add_argument("--plan", action="store_true", help="write the sweep file and show the plan; run nothing")
    a.add_argument("--seed", type=non_negative_int, default=0)
    a.add_argument("--verbose", action="store_true")
    y = sub.add_parser("decision", help="print the default decision layer as YAML, or check FILE and print its layer")
    y.add_argument("file", nargs="?", default=None, help="a decision-layer YAML file (as build --decision reads)")
    d = sub.add_parser("demo", help="synthetic mission -> sweep -> ensemble, end to end")
    d.add_argument("--out", default="results/demo")
    d.add_argument("--rows", type=positive_int, default=200_000, help="train rows of the synthetic mission")
    d.add_argument("--seed", type=non_negative_int, default=7)
    d.add_argument("--smoke-test", action="store_true", help="2 trials per architecture, 1 epoch")
    d.add_argument("--verbose", action="store_true", help="Tune's trial tables and every worker's output too")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        if args.cmd == "decision":
            import yaml

            from ensemble.combine import DecisionLayer, read_layer

            layer = DecisionLayer() if args.file is None else read_layer(args.file)
            print(yaml.safe_dump(layer.to_dict(), sort_keys=False, default_flow_style=None), end="")
            return 0
        if args.cmd == "build":
            from ensemble.build import decision_layer

            decision_layer(args.decision)  # a bad decision file fails here, before the members are read
            from ensemble.build import build

            res = build(args.experiment, args.out, k=args.k, include=tuple(args.include), decision=args.decision,
                        combination=args.combination, calibration=args.calibration, seed=args.seed, members=args.members,
                        evidence=args.evidence)
        elif args.cmd == "auto":
            from ensemble.auto import run_auto
            from search.auto import parse_duration

            res = run_auto(args.train, args.test, args.out, parse_duration(args.time_budget), preset=args.preset,
                           channels=args.channels, labels=args.labels, series=args.series, write_config=args.write_config,
                           plan_only=args.plan, seed=args.seed, verbose=args.verbose, evidence=args.evidence,
                           architectures=args.architectures.split(",") if args.architectures else None)
            if args.plan:
                print(res["plan"])
                print(f"sweep file: {res['config']}  (python -m search plan {res['config']} for time estimates)")
                return 0
        else:
            res = demo(Path(args.out).resolve(), args.rows, args.seed, args.smoke_test, args.verbose)
    except TelemetryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(res["verdict"])
    print(f"submission: {Path(res['out']) / 'submission.csv'}\nreport: {res['report']}")
    cmp = res.get("test_comparison")
    if cmp:  # labelled test data (the demo's synthetic mission): the comparison with the most events, last
        print(f"test (labels used for this line only): ensemble {res['test_f05']:.3f} against the member validation "
              f"picks {res['picked_member_test_f05']:.3f}, difference {cmp['difference']:+.3f} "
              f"[90 % interval {cmp['lo']:+.3f}, {cmp['hi']:+.3f}] over {cmp['true_events']} test events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
