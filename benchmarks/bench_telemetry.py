"""Full-size data stage: load channels 41-46, scale, wavelet-denoise, one epoch of window-512 batches,
and the telecommand columns as conditioning features.

    python benchmarks/bench_telemetry.py --rows 14700000 [--data DIR] [--no-record]

Generates the synthetic mission once (reused if present), then times each step and reports the
process's peak RSS after it. Targets (issue 2): peak RSS < 2 GB, each step < 1 minute on 2 cores.
Also times the notebook's per-window wavelet loop on a sample and extrapolates it, for the speed-up.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, peak_rss_mb, record  # noqa: E402


def notebook_wavelet_rate(values: np.ndarray, window: int = 5, sample: int = 3000) -> float:  # noqa: D401
    """Windows per second of the user's notebook loop (wavedec + waverec per window per channel)."""
    import warnings

    import pywt

    warnings.filterwarnings("ignore", message="Level value of 1 is too high")  # the notebook's own setting
    seq = np.lib.stride_tricks.sliding_window_view(values[: sample + window], window, axis=0)[:sample]
    t = time.perf_counter()
    for i in range(sample):
        for ch in range(values.shape[1]):
            pywt.waverec(pywt.wavedec(seq[i, ch], "db4", level=1), "db4")
    return sample / (time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=14_700_000)
    ap.add_argument("--data", default="/tmp/telesweep-bench/mission")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)

    from telemetry import telecommands
    from telemetry.loading import load_parquet
    from telemetry.scaling import StandardScaler
    from telemetry.synthetic.mission import generate_mission
    from telemetry.wavelets import WaveletDenoiser
    from telemetry.windows import WindowBatches, window_starts

    data = Path(args.data)
    rows = []
    if not (data / "mission.json").is_file():
        t = time.perf_counter()
        generate_mission(data, rows=args.rows, seed=0)
        rows.append(("generate mission (76 ch + 11 tc, chunked)", time.perf_counter() - t, peak_rss_mb()))
    base_rss = peak_rss_mb()

    t = time.perf_counter()
    s = load_parquet(data / "train.parquet", channels="41-46")
    rows.append((f"load channel_41..46 ({len(s):,} rows, float32)", time.perf_counter() - t, peak_rss_mb()))

    t = time.perf_counter()
    with_tc = load_parquet(data / "train.parquet", channels="41-46", telecommands="all")
    feats = telecommands.features(with_tc.telecommands)
    rows.append((f"load the {feats.shape[1]} telecommand columns too, and their features (float32)",
                 time.perf_counter() - t, peak_rss_mb()))
    del with_tc, feats

    t = time.perf_counter()
    scaler = StandardScaler().fit(s.values, s.labels == 0)
    scaled = scaler.transform(s.values)
    s = s.with_values(scaled)
    del scaled
    rows.append(("scale (fit on nominal rows, transform)", time.perf_counter() - t, peak_rss_mb()))

    t = time.perf_counter()
    den = WaveletDenoiser("db4", level=2).fit(s.values)
    s = s.with_values(den.transform(s.values))
    wav_s = time.perf_counter() - t
    rows.append(("wavelet denoise (db4, level 2, soft, all rows)", wav_s, peak_rss_mb()))

    t = time.perf_counter()
    starts = window_starts(len(s), args.window, 1, labels=s.labels, nominal_only=True)
    b = WindowBatches(s.values, args.window, starts, args.batch, target=None, shuffle=True, seed=0)
    checksum = 0.0
    for i in range(len(b)):
        checksum += float(b[i][0, 0, 0])
    ep_s = time.perf_counter() - t
    rows.append((f"one epoch of window-{args.window} batches ({len(starts):,} nominal windows, batch {args.batch}, shuffled)",
                 ep_s, peak_rss_mb()))

    nb_rate = notebook_wavelet_rate(s.values)
    n_windows = len(s) - 5
    nb_total = n_windows / nb_rate
    lines = ["| step | seconds | peak RSS after (MB) |", "|---|---|---|"]
    lines += [f"| {name} | {sec:.1f} | {rss:,.0f} |" for name, sec, rss in rows]
    lines += ["", f"Peak RSS of the whole run: {peak_rss_mb():,.0f} MB (baseline before loading: {base_rss:,.0f} MB).",
              f"Windows served per second in the epoch: {len(starts) / ep_s:,.0f}.",
              f"Notebook-style wavelet loop (window 5, per window per channel): {nb_rate:,.0f} windows/s measured on a "
              f"3,000-window sample, so {nb_total / 60:,.1f} min extrapolated for {n_windows:,} windows "
              f"(the notebook logged 30 min for 13.2 M); vectorised denoising of every row: {wav_s:.1f} s, "
              f"{nb_total / wav_s:,.0f}x faster — and it actually shrinks the detail coefficients."]
    body = "\n".join(lines)
    record(f"Data stage at full size ({len(s):,} train rows)", body, None if args.no_record else RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
