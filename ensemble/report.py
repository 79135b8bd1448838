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


def write_report(out: Path, experiment: str, metrics_rows: list[dict], ensemble_cfg: dict, leaderboard: pd.DataFrame,
                 plots: list[str], verdict: str, test_rows: list[dict] | None = None) -> Path:
    cols = ["member", "weight", "val_f05", "holdout_f05", "holdout_event_recall", "holdout_point_f1", "holdout_auc_pr"]
    lines = [
        "# telesweep ensemble report", "",
        f"Experiment: `{experiment}`", "",
        "All thresholds, weights and post-processing were fitted on the validation split; the holdout "
        "columns are honest figures on data that fitted nothing.", "",
        "## Holdout: members and ensemble", "", table(metrics_rows, cols), "", verdict, "",
    ]
    if test_rows:
        lines += ["## Test (synthetic mission labels, never used to fit)", "",
                  table(test_rows, ["member", "test_f05", "test_event_recall", "test_auc_pr"]), ""]
    lines += ["## Ensemble", "",
              f"Combination **{ensemble_cfg['combination']}** of **{ensemble_cfg['calibration']}**-calibrated scores; "
              f"threshold {ensemble_cfg['threshold']:.4g}, minimum event length {ensemble_cfg['min_length']}, "
              f"gaps under {ensemble_cfg['max_gap']} rows merged.", "",
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
