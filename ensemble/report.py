"""report.md with its plots: metrics side by side, score traces with events, weights, leaderboard."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from telemetry.atomic import atomic_path, write_text
from telemetry.events import events

MAX_POINTS = 4000


def _envelope(x: np.ndarray, n: int = MAX_POINTS):
    """Bucket maxima so a multi-million-row trace plots in a second and spikes stay visible."""
    if x.size <= n:
        return np.arange(x.size), x
    edges = np.linspace(0, x.size, n + 1).astype(int)
    return edges[:-1], np.maximum.reduceat(x, edges[:-1])


def plot_trace(path: Path, ids: np.ndarray, score: np.ndarray, labels: np.ndarray, pred: np.ndarray,
               threshold: float, title: str, members: dict[str, np.ndarray] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 1 + (1 if members else 0)
    fig, axes = plt.subplots(rows, 1, figsize=(14, 3.2 * rows), sharex=True, squeeze=False)
    ax = axes[0, 0]
    idx, env = _envelope(np.asarray(score, dtype=np.float64))
    ax.plot(ids[idx], env, lw=0.7, color="#1f4e79", label="ensemble score")
    ax.axhline(threshold, color="#c0392b", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    for lo, hi in events(labels):
        ax.axvspan(ids[lo], ids[hi - 1], color="#f39c12", alpha=0.25, lw=0)
    top = np.nanmax(env) if env.size else 1.0
    for lo, hi in events(pred):
        ax.plot([ids[lo], ids[hi - 1]], [top * 1.05] * 2, color="#c0392b", lw=4, solid_capstyle="butt")
    ax.set_title(f"{title}: true events shaded, predicted events as red bars")
    ax.legend(loc="upper left", fontsize=8)
    if members:
        ax2 = axes[1, 0]
        for name, s in members.items():
            i2, e2 = _envelope(np.asarray(s, dtype=np.float64))
            ax2.plot(ids[i2], e2, lw=0.6, label=name)
        for lo, hi in events(labels):
            ax2.axvspan(ids[lo], ids[hi - 1], color="#f39c12", alpha=0.2, lw=0)
        ax2.set_title("calibrated member scores")
        ax2.legend(loc="upper left", fontsize=7, ncol=3)
        ax2.set_xlabel("id")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    return f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v)


def table(rows: list[dict], cols: list[str]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def _with_interval(rows: list[dict]) -> list[dict]:
    return [{**r, "f05 [90 % interval]": f"{r['f05']:.3f} [{r['f05_lo']:.2f}, {r['f05_hi']:.2f}]",
             "member": r["member"] + (" (validation's pick)" if r.get("picked") else "")} for r in rows]


def verdict_text(rows: list[dict], cmp: dict) -> str:
    """The ensemble against the member validation alone would have picked, in plain words: better,
    worse, or not distinguishable on this holdout (the paired 90 % interval of the difference holds 0)."""
    ens = next(r for r in rows if r["member"] == "**ensemble**")
    ref = cmp["reference"]
    d, lo, hi = cmp["difference"], cmp["lo"], cmp["hi"]
    versus = (f"{ens['f05']:.3f} against {ref}'s {ens['f05'] - d:.3f}: difference {d:+.3f}, "
              f"90 % interval [{lo:+.3f}, {hi:+.3f}] over {cmp['true_events']} holdout events")
    if cmp["true_events"] == 0:
        return ("The holdout split holds no anomaly event, so no honest F0.5 exists for the ensemble or its members; "
                "judge by the validation figures and the traces.")
    if lo > 0:
        return f"The ensemble's holdout F0.5 is above that of the member validation would pick ({versus})."
    if hi < 0:
        return (f"**The ensemble's holdout F0.5 is below that of the member validation would pick** ({versus}): "
                f"prefer that member, or widen the validation split.")
    return (f"The ensemble's holdout F0.5 cannot be told apart from that of the member validation would pick ({versus}): "
            f"the holdout has too few events to tell them apart.")


def write_report(out: Path, experiment: str, metrics_rows: list[dict], ensemble_cfg: dict, leaderboard: pd.DataFrame,
                 plots: list[str], verdict: str, test_rows: list[dict] | None = None,
                 drift: tuple[pd.DataFrame, str] | None = None) -> Path:
    cols = ["member", "weight", "val_f05", "f05 [90 % interval]", "event_recall", "false_events", "point_f1", "auc_pr"]
    rule = ensemble_cfg["rule"]
    lines = [
        "# telesweep ensemble report", "",
        f"Experiment: `{experiment}`", "",
        "All thresholds, weights and post-processing were fitted on the validation split; the holdout "
        "columns are honest figures on data that fitted nothing. Intervals: 5th-95th percentiles over "
        "1,000 block-bootstrap resamples of the split (events kept whole).", "",
        "## Holdout: members and ensemble", "", table(_with_interval(metrics_rows), cols), "", verdict, "",
    ]
    if test_rows:
        lines += ["## Test (synthetic mission labels, never used to fit)", "",
                  table(_with_interval(test_rows), ["member", "f05 [90 % interval]", "event_recall", "false_events", "auc_pr"]), ""]
    lines += ["## Drift: later data against the fit split", ""]
    if drift is None:
        lines += ["The sweep's data files are not reachable from here, so no drift check was made.", ""]
    else:
        table_, sentence = drift
        shown = table_[table_["drifted"]] if table_["drifted"].any() else table_.sort_values("psi", ascending=False).head(6)
        lines += [sentence, "", "Rule: KS > 0.3 and (PSI > 0.25, or |mean shift| > 1 fit-split std, or std ratio outside "
                  "[0.5, 2]); all channels in `drift.csv`. A drifted channel explains false alarms that no threshold "
                  "fitted on validation can prevent.", "",
                  table(shown.to_dict("records"), ["channel", "split", "ks", "psi", "mean_shift", "std_ratio", "drifted"]), ""]
    lines += ["## Ensemble", "",
              f"Combination **{ensemble_cfg['combination']}** of **{ensemble_cfg['calibration']}**-calibrated scores; "
              f"rule **{rule['method']}**: smoothing span {rule['smooth']} ({rule['smoothing']}), threshold "
              f"{rule['threshold']:.4g}, hysteresis {rule['hysteresis']}, minimum event length {rule['min_length']}, "
              f"gaps under {rule['max_gap']} rows merged.", "",
              table([{"member": m["name"], "weight": m["weight"], "val_f05": m["validation_f05_alone"]}
                     for m in ensemble_cfg["members"]], ["member", "weight", "val_f05"]), "",
              "## Score traces", ""]
    lines += [f"![{p}]({p})" for p in plots]
    lines += ["", "## Sweep leaderboard (top 5 per architecture)", ""]
    if not leaderboard.empty:
        lb = leaderboard[(leaderboard["rank"] <= 5).fillna(False)]
        lines.append(table(lb.to_dict("records"), ["arch", "rank", "status", "val_f05", "holdout_f05", "epochs", "params"]))
    path = out / "report.md"
    write_text(path, "\n".join(lines) + "\n")
    return path
