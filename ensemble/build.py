"""``python -m ensemble build``: members from a sweep -> ensemble -> submission, predictions, report."""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ensemble.combine import Ensemble
from ensemble.report import plot_trace, write_report
from ensemble.submission import read_test_ids, write_submission
from models import registry
from search import results, storage
from telemetry import metrics
from telemetry.atomic import atomic_path, write_text
from telemetry.errors import TelemetryError
from telemetry.thresholds import Threshold

log = logging.getLogger("ensemble")
SUPERVISED, BASELINES = "supervised", "baselines"


def select_members(board: pd.DataFrame, k: int = 2, include: tuple[str, ...] = ()) -> pd.DataFrame:
    """Best ``k`` distinct configurations per autoencoder, the best forecaster; optionally the
    supervised classifier and the baselines (``include``)."""
    done = board[board["completed"].fillna(False).astype(bool)]
    if done.empty:
        raise TelemetryError("the sweep has no completed trial to build an ensemble from")
    picked = []
    for arch, group in done.groupby("arch"):
        tags = registry.get(arch).tags
        if tags.get("needs_labels") and SUPERVISED not in include:
            continue
        if not tags.get("keras") and not tags.get("needs_labels") and BASELINES not in include:
            continue
        distinct = group.sort_values("val_f05", ascending=False).drop_duplicates("params")
        picked.append(distinct.head(1 if tags.get("forecaster") else k))
    if not picked:
        raise TelemetryError("no member left after selection (only baselines completed? pass --include baselines)")
    return pd.concat(picked).sort_values("val_f05", ascending=False).reset_index(drop=True)


def _member_name(row) -> str:
    return f"{row['arch']}#{row['trial_id'][-5:]}"


def build(experiment: str, out: str | Path, k: int = 2, include: tuple[str, ...] = (), combination: str = "weighted",
          calibration: str = "robust_z", seed: int = 0, weight_trials: int = 60) -> dict:
    exp = results.resolve(experiment)
    out = Path(out)
    board = results.leaderboard(exp, write=False)
    if board.empty:
        raise TelemetryError(f"{exp}: no trials found")
    members = select_members(board, k, include)
    sets = results.load_sets(exp)
    sweep = yaml.safe_load(storage.read_text(storage.join(exp, results.SWEEP_FILE)))
    test_file = sweep["data"].get("test")
    if "test_ids" not in sets:
        raise TelemetryError(f"{exp}: the sweep had no test file, so there is nothing to submit")
    # The submission is checked against the test file itself when it is reachable from here.
    expected_ids = read_test_ids(test_file) if test_file and storage.exists(test_file) else sets["test_ids"]

    names, metas, split_scores = [], [], {"validation": [], "holdout": [], "test": []}
    for _, row in members.iterrows():
        meta, sc = results.load_trial(row["checkpoint"])
        for split in split_scores:
            expected = sets[f"{split}_ids"].size
            if sc[split].shape != (expected,):
                raise TelemetryError(f"{row['checkpoint']}: {split} scores have {sc[split].size} rows, expected {expected}")
            split_scores[split].append(sc[split])
        names.append(_member_name(row))
        metas.append({"name": names[-1], "arch": row["arch"], "trial_id": row["trial_id"], "checkpoint": row["checkpoint"],
                      "params": json.loads(row["params"]), "threshold": meta["threshold"], "holdout": meta["holdout"],
                      "validation": meta["validation"]})
    S = {k_: np.stack(v, axis=1) for k_, v in split_scores.items()}
    log.info("ensemble of %d members: %s", len(names), ", ".join(names))

    ens = Ensemble(calibration=calibration, combination=combination, seed=seed, weight_trials=weight_trials)
    ens.fit(S["validation"], sets["validation_labels"], names)  # validation only: nothing else is seen
    pred = {s: ens.predict(S[s]) for s in S}
    raw = {s: ens.score(S[s]) for s in S}

    rows = []
    for j, m in enumerate(metas):
        rows.append({"member": m["name"], "weight": float(ens.weights_[j]), "val_f05": m["validation"]["f05"],
                     **{f"holdout_{k_}": m["holdout"][k_] for k_ in ("f05", "event_recall", "point_f1", "auc_pr")}})
    hold = metrics.scores(sets["holdout_labels"], pred["holdout"], raw["holdout"])
    val = metrics.scores(sets["validation_labels"], pred["validation"], raw["validation"])
    rows.append({"member": "**ensemble**", "weight": 1.0, "val_f05": val["f05"],
                 **{f"holdout_{k_}": hold[k_] for k_ in ("f05", "event_recall", "point_f1", "auc_pr")}})
    best_member = max(rows[:-1], key=lambda r: r["holdout_f05"])
    gap = hold["f05"] - best_member["holdout_f05"]
    versus = f"({hold['f05']:.4f} against {best_member['member']}'s {best_member['holdout_f05']:.4f})"
    if gap >= 0:
        verdict = f"The ensemble's holdout F0.5 is at least that of its best member {versus}."
    elif gap > -0.005:
        verdict = (f"The ensemble's holdout F0.5 ties with its best member's {versus}: "
                   f"combining did not add detections on holdout.")
    else:
        verdict = (f"**The ensemble's holdout F0.5 is below its best member's** {versus}: the weights and "
                   f"threshold chosen on validation did not carry over to holdout. Prefer that member, or "
                   f"widen the validation split.")

    test_rows = None
    if "test_true_labels" in sets:
        tl = sets["test_true_labels"]
        test_rows = []
        for j, m in enumerate(metas):  # each member with its own rule fitted on validation
            th = Threshold.from_dict(m["threshold"])
            mt = metrics.scores(tl, th.predict(S["test"][:, j]), S["test"][:, j])
            test_rows.append({"member": m["name"], "test_f05": mt["f05"], "test_event_recall": mt["event_recall"], "test_auc_pr": mt["auc_pr"]})
        mt = metrics.scores(tl, pred["test"], raw["test"])
        test_rows.append({"member": "**ensemble**", "test_f05": mt["f05"], "test_event_recall": mt["event_recall"], "test_auc_pr": mt["auc_pr"]})

    out.mkdir(parents=True, exist_ok=True)
    write_submission(out / "submission.csv", sets["test_ids"], pred["test"], expected_ids)
    buf = io.BytesIO()
    pd.DataFrame({"id": sets["test_ids"], "score": raw["test"], "is_anomaly": pred["test"]}).to_parquet(buf, index=False)
    with atomic_path(out / "predictions.parquet") as tmp:
        tmp.write_bytes(buf.getvalue())
    plots = []
    for split in ("validation", "holdout"):
        name = f"trace_{split}.png"
        cal = ens.calibrated(S[split])
        plot_trace(out / name, sets[f"{split}_ids"], raw[split], sets[f"{split}_labels"], pred[split], ens.threshold_,
                   f"{split} split", members={n: cal[:, j] for j, n in enumerate(names)})
        plots.append(name)
    ens_cfg = ens.to_dict()
    write_text(out / "ensemble.yaml", yaml.safe_dump({"experiment": exp, "ensemble": ens_cfg, "members": metas,
                                                      "holdout": hold, "validation": val}, sort_keys=False))
    report = write_report(out, exp, rows, ens_cfg, board, plots, verdict, test_rows)
    return {"out": str(out), "report": str(report), "holdout_f05": hold["f05"], "best_member_holdout_f05": best_member["holdout_f05"],
            "members": names, "verdict": verdict}
