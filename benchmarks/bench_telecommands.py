"""False alarms at commanded mode changes, with and without telecommands as model inputs.

    python benchmarks/bench_telecommands.py [--rows 1000000] [--seeds 0 1] [--channels 1-76]
        [--command-response smooth|transient|switch] [--members pca conv_ae] [--no-record]

On synthetic missions (whose telecommands switch channel groups into other operating modes, never
labelled; one pulse per ~30,000 rows, each acting on one of eight channel groups, so all 76 channels
are read by default and the test series must be long to hold a few), each member is fitted with and without ``telecommands=True`` and thresholded by the
default decision layer on validation; on the test series we count false events (predicted runs
touching no true event) that start within ``--after`` rows of a telecommand pulse, all false
events, and the test F0.5. ``--command-response transient`` generates missions whose commands make
a step plus a decaying surge per telecommand (telemetry.synthetic.mission.COMMAND_RESPONSES): false events a
channel-only member should raise and a member reading telecommands could avoid.

``--channels seen-modes``: per mission, only the channel groups whose operating modes in the test
series were all visited in the fit split (from mission.json). A group sitting in a mode the fit
split never saw shifts the whole test series (a 1M-row mission has ~4 commands per group), which
telecommand features fading after ~1,000 rows cannot explain: the decision layer then flags every
test row and no false event can be counted.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import record  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MEMBERS = {
    "pca": {"lags": 5, "n_components": 0.95},
    "conv_ae": {"window": 32, "latent": 16, "epochs": 3, "batch_size": 256, "train_stride": 8, "score_stride": 4},
    "dense_ae": {"window": 32, "units": 32, "latent": 16, "epochs": 3, "batch_size": 256, "train_stride": 8,
                 "score_stride": 4},
}
DEFAULT_MEMBERS = ("pca", "conv_ae")


def false_events_after_pulses(y: np.ndarray, pred: np.ndarray, pulses: np.ndarray, after: int) -> tuple[int, int]:
    """(false events starting within ``after`` rows after a pulse start, all false events)."""
    from telemetry.events import event_labels, events

    runs = events(pred)
    lab, _ = event_labels(y)
    touches = np.array([lab[a:b].any() for a, b in runs], dtype=bool) if len(runs) else np.zeros(0, bool)
    false_starts = runs[~touches, 0]
    near = np.zeros(len(y) + 1, dtype=np.int64)
    for p in pulses:
        near[p: min(p + after, len(y))] = 1
    return int(near[false_starts].sum()), int(false_starts.size)


def seen_mode_channels(mission: Path, fit_rows: int) -> list[str]:
    """Channels of the groups whose every mode in the test series was visited in rows [0, fit_rows)."""
    record = json.loads(mission.read_text())
    train_rows = record["parameters"]["rows"]
    changes = [c for t in record["telecommands"] for c in t["mode_changes"]]
    out = []
    for g, channels in enumerate(record["channel_groups"]):
        mine = sorted((c["start_id"], c["to_mode"]) for c in changes if c["group"] == g)
        seen = {0} | {m for row, m in mine if row < fit_rows}
        at_test = ([0] + [m for row, m in mine if row < train_rows])[-1]
        if {at_test} | {m for row, m in mine if row >= train_rows} <= seen:
            out += channels
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--channels", default="1-76", help="a channel spec, or seen-modes (see above)")
    ap.add_argument("--after", type=int, default=700, help="rows after a pulse that count as its mode change")
    ap.add_argument("--command-response", default="smooth", choices=["smooth", "transient", "switch"],
                    help="how the missions' commanded mode changes look (telemetry.synthetic.mission)")
    ap.add_argument("--members", nargs="+", default=list(DEFAULT_MEMBERS), choices=sorted(MEMBERS))
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)

    from ensemble.combine import DecisionLayer
    from models import registry
    from detection.metrics import corrected_event_f05
    from telemetry.prepare import DataConfig, prepare
    from telemetry.synthetic.mission import generate_mission

    lines = ["| mission | member | telecommands | false events after a pulse | all false events | test F0.5 |",
             "|---|---|---|---|---|---|"]
    totals = {}
    for seed in args.seeds:
        # Transient missions get folders of their own (the smooth ones keep their old names).
        suffix = "" if args.command_response == "smooth" else f"-{args.command_response}"
        d = REPO / "results" / "bench_telecommands" / f"synth-{args.rows}-s{seed}{suffix}"
        if not (d / "mission.json").is_file():
            generate_mission(d, rows=args.rows, seed=seed, command_response=args.command_response)
        channels = args.channels
        if channels == "seen-modes":  # the fit split is the first 60 % of the train rows (default fractions)
            channels = seen_mode_channels(d / "mission.json", round(0.6 * args.rows))
        data = prepare(DataConfig(train=str(d / "train.parquet"), test=str(d / "test.parquet"),
                                  test_labels=str(d / "test_labels.parquet"), channels=channels, telecommands="all"))
        pulses = np.flatnonzero((data.test.telecommands == 1.0).any(axis=1))
        for arch in args.members:
            params = MEMBERS[arch]
            for with_tc in (False, True):
                t0 = time.perf_counter()
                est = registry.get(arch)(**params, telecommands=with_tc).fit(data.fit, data.validation)
                sv, st = est.score_samples(data.validation)[:, None], est.score_samples(data.test)[:, None]
                pred = DecisionLayer().fit(sv, data.validation.labels).predict(st)
                near, total = false_events_after_pulses(data.test_labels, pred, pulses, args.after)
                f = corrected_event_f05(data.test_labels, pred)
                key = (arch, with_tc)
                a = totals.setdefault(key, [0, 0, []])
                a[0] += near
                a[1] += total
                a[2].append(f)
                lines.append(f"| s{seed} ({len(pulses)} pulses in test, {data.test.n_channels} channels) | {arch} | {'yes' if with_tc else 'no'} | {near} | "
                             f"{total} | {f:.3f} |")
                print(lines[-1], f"({time.perf_counter() - t0:.0f} s)", flush=True)
    lines += ["", "| member | telecommands | false events after a pulse (sum) | all false events (sum) | mean test F0.5 |",
              "|---|---|---|---|---|"]
    lines += [f"| {arch} | {'yes' if tc else 'no'} | {a[0]} | {a[1]} | {np.mean(a[2]):.3f} |" for (arch, tc), a in totals.items()]
    response = "" if args.command_response == "smooth" else f", {args.command_response} command responses"
    record(f"Telecommands as inputs: false events at commanded mode changes ({args.rows:,}-row missions, "
           f"channels {args.channels}{response})",
           "\n".join(lines), out=None if args.no_record else REPO / "benchmarks" / "RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
