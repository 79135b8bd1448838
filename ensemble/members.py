"""Ensemble members from a sweep: which trials, and their stored per-row scores by split."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import yaml

from models import registry
from search import results, storage
from telemetry.errors import TelemetryError
from telemetry.thresholds import Threshold

SUPERVISED, BASELINES = "supervised", "baselines"
SPLITS = ("validation", "holdout", "test")


def select_members(board: pd.DataFrame, k: int = 2, include: tuple[str, ...] = ()) -> pd.DataFrame:
    """Best ``k`` distinct configurations per architecture (one for forecasters), by validation F0.5;
    the supervised classifier and the baselines only when ``include`` names them."""
    done = board[board["completed"].fillna(False).astype(bool)]
    if done.empty:
        raise TelemetryError("the sweep has no completed trial to build an ensemble from")
    picked = []
    for arch, group in done.groupby("arch"):
        tags = registry.get(arch).tags
        if tags.get("needs_labels") and SUPERVISED not in include:
            continue
        if tags.get("baseline") and BASELINES not in include:
            continue
        distinct = group.sort_values("val_f05", ascending=False).drop_duplicates("params")
        picked.append(distinct.head(1 if tags.get("forecaster") else k))
    if not picked:
        raise TelemetryError("no member left after selection (only baselines completed? pass --include baselines)")
    return pd.concat(picked).sort_values("val_f05", ascending=False).reset_index(drop=True)


@dataclass
class Members:
    """The chosen trials: ``scores[split]`` is [rows, members] in ``names`` order (best validation
    F0.5 first); ``metas`` their stored trial records; ``sets`` ids and labels of every split."""

    experiment: str
    names: list[str]
    metas: list[dict]
    scores: dict[str, np.ndarray]
    sets: dict[str, np.ndarray]
    board: pd.DataFrame
    test_file: str | None

    def rule(self, j: int) -> Threshold:
        """Member ``j``'s own decision rule, as its trial fitted it on validation."""
        return Threshold.from_dict(self.metas[j]["threshold"])

    @property
    def picked(self) -> int:
        """The member validation alone would pick: the best validation F0.5 with its own rule."""
        return int(np.argmax([m["validation"]["f05"] for m in self.metas]))


def _member_name(row) -> str:
    return f"{row['arch']}#{row['trial_id'][-5:]}"


def load_members(experiment: str, k: int = 2, include: tuple[str, ...] = ()) -> Members:
    exp = results.resolve(experiment)
    board = results.leaderboard(exp, write=False)
    if board.empty:
        raise TelemetryError(f"{exp}: no trials found")
    chosen = select_members(board, k, include)
    sets = results.load_sets(exp)
    sweep = yaml.safe_load(storage.read_text(storage.join(exp, results.SWEEP_FILE)))
    splits = [s for s in SPLITS if f"{s}_ids" in sets]
    names, metas, scores = [], [], {s: [] for s in splits}
    for _, row in chosen.iterrows():
        meta, sc = results.load_trial(row["checkpoint"])
        for split in splits:
            expected = sets[f"{split}_ids"].size
            if sc[split].shape != (expected,):
                raise TelemetryError(f"{row['checkpoint']}: {split} scores have {sc[split].size} rows, expected {expected}")
            scores[split].append(sc[split])
        names.append(_member_name(row))
        metas.append({"name": names[-1], "arch": row["arch"], "trial_id": row["trial_id"], "checkpoint": row["checkpoint"],
                      "params": json.loads(row["params"]), "threshold": meta["threshold"], "holdout": meta["holdout"],
                      "validation": meta["validation"]})
    return Members(exp, names, metas, {s: np.stack(v, axis=1) for s, v in scores.items()}, sets, board,
                   sweep["data"].get("test"))
