"""Ensemble members from a sweep: which trials, and their stored per-row (and, where the trials
stored them, per-channel) scores by split."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models import registry
from search import experiment as ex
from search import results
from telemetry.errors import TelemetryError
from telemetry.threads import thread_map
from detection.thresholds import Threshold

log = logging.getLogger("ensemble")
SUPERVISED, BASELINES = "supervised", "baselines"
SPLITS = ("validation", "holdout", "test")


def by_loss(board: pd.DataFrame) -> bool:
    """Whether the sweep ranked its trials by validation loss (unlabelled data, search/shapes.py)."""
    return "objective" in board and bool((board["objective"] == "val_loss").any())


def select_members(board: pd.DataFrame, k: int = 2, include: tuple[str, ...] = (), spares: int = 0,
                   anchored: bool = False, searched: int = 0) -> pd.DataFrame:
    """Best ``k`` distinct configurations per architecture (one for forecasters), by validation F0.5
    (unlabelled data: by validation-loss rank within the architecture, lowest first); the supervised
    classifier and the baselines only when ``include`` names them. ``spares``: that many more per
    architecture, the next in its order, with ``spare`` True (replacements for members that turn out
    to be twins, :func:`load_members`).

    ``anchored``: an architecture that ran known-good configurations (its ``start`` trials) keeps
    those, in the order of the sweep file, and adds only its ``searched`` best other trials (each
    still within ``k``): with a handful of validation events, a searched configuration's lead over a
    known-good one is mostly noise, and the known-good one is what carries over to new data.
    Architectures without start trials are ranked as usual."""
    done = board[board["completed"].fillna(False).astype(bool)]
    if done.empty:
        raise TelemetryError("the sweep has no completed trial to build an ensemble from")
    if k < 1:
        raise TelemetryError(f"--k must be at least 1 (members per architecture), got {k}")
    key, ascending = ("val_loss", True) if by_loss(board) else ("val_f05", False)
    picked = []
    for arch, group in done.groupby("arch"):
        tags = registry.get(arch).tags
        if tags.get("needs_labels") and SUPERVISED not in include:
            continue
        if tags.get("baseline") and BASELINES not in include:
            continue
        # stable: ties keep the leaderboard's order, the one search/finalists.py picks finalists in
        distinct = group.sort_values(key, ascending=ascending, kind="stable").drop_duplicates("params")
        quota = 1 if tags.get("forecaster") else k
        if anchored and "start" in distinct and distinct["start"].astype(bool).any():
            starts = distinct[distinct["start"].astype(bool)]
            rest = distinct[~distinct["start"].astype(bool)]
            quota = min(quota, len(starts) + searched) if searched else len(starts)
            distinct = pd.concat([starts, rest])
        picked.append(distinct.head(quota + spares).assign(spare=[i >= quota for i in range(min(len(distinct), quota + spares))]))
    if not picked:
        raise TelemetryError("no member left after selection (only baselines completed? pass --include baselines)")
    if ascending:  # losses compare within an architecture only: keep architectures together
        return pd.concat(picked).reset_index(drop=True)
    return pd.concat(picked).sort_values(key, ascending=False, kind="stable").reset_index(drop=True)


@dataclass
class Members:
    """The chosen trials: ``scores[split]`` is [rows, members] in ``names`` order (best validation
    F0.5 first); ``metas`` their stored trial records; ``sets`` ids and labels of every split.

    Per channel: ``channel_scores[split]`` is [rows, P, C] for the P members (``channel_members``,
    their columns in ``scores``) whose trials stored per-channel scores over the same ``channels``;
    empty when none did (members without them, or over CHANNEL_SCORES_MAX_CELLS: search/trainable.py).
    Memory: C x P times one split's per-row scores, float32.

    ``twins``: chosen trials left out because their validation scores equal an earlier member's
    (``{"name", "twin_of"}``), each replaced by the next configuration of its architecture.
    """

    experiment: str
    names: list[str]
    metas: list[dict]
    scores: dict[str, np.ndarray]
    sets: dict[str, np.ndarray]
    board: pd.DataFrame
    test_file: str | None
    channel_scores: dict[str, np.ndarray] = field(default_factory=dict)
    channel_members: list[int] = field(default_factory=list)
    channels: list[str] | None = None
    twins: list[dict] = field(default_factory=list)

    def channel_inputs(self, split: str = "validation") -> dict:
        """What ``DecisionLayer.fit`` takes for the per-channel view ({} when there is none)."""
        if not self.channel_scores:
            return {}
        return {"channel_scores": self.channel_scores[split], "channel_members": self.channel_members,
                "channels": self.channels}

    @property
    def labelled(self) -> bool:
        """Whether the sweep had labels (its trials then carry validation F0.5)."""
        return not by_loss(self.board)

    def rule(self, j: int) -> Threshold:
        """Member ``j``'s own decision rule, as its trial fitted it on validation."""
        return Threshold.from_dict(self.metas[j]["threshold"])

    @property
    def picked(self) -> int:
        """The member validation alone would pick: the best validation F0.5 with its own rule."""
        return int(np.argmax([m["validation"]["f05"] for m in self.metas]))


def _member_name(row) -> str:
    return f"{row['arch']}#{row['trial_id'][-5:]}"


def check_finalists(exp: str, chosen: pd.DataFrame, k: int) -> None:
    """Every chosen member has holdout and test scores: a sweep scores them only for its top trials
    per architecture (search.finalists, search/finalists.py); one below them fails here, before any
    scores are read, with the command that scores it."""
    missing = chosen[~chosen["finalist"].fillna(False).astype(bool)]
    if missing.empty:
        return
    row = missing.iloc[0]
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    raise TelemetryError(f"member {_member_name(row)} (trial {row['trial_id']}){more} has no holdout/test scores: "
                         f"the sweep scored them for its top trials per architecture only; score the top {k} with: "
                         f"python -m search finalize {exp} --top {k}")


def same_scores(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two members score validation alike to float32 rounding: one model twice (pca with and
    without telecommand inputs when the commands carry nothing it uses; settings the model ignores)."""
    if a.shape != b.shape:
        return False
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    return bool(np.max(np.abs(a - b), initial=0.0) <= 1e-6 * max(scale, 1e-30))


def _without_twins(exp: str, ranked: pd.DataFrame, k: int) -> tuple[list, list, list[dict]]:
    """The chosen rows (``ranked`` minus spares) loaded, except those whose validation scores equal
    an earlier member's: each such twin is replaced by its architecture's next spare that has
    holdout and test scores (a twin counts twice in a combination's uniform weights and adds
    nothing). Loading is lazy: a spare is read only when a twin needs replacing."""
    ranked = ranked.reset_index(drop=True)
    primary = ranked[~ranked["spare"]]
    check_finalists(exp, primary, k)
    loaded = dict(zip(primary.index, thread_map(lambda row: ex.load_trial(row["checkpoint"]),
                                               [row for _, row in primary.iterrows()])))  # zlib and reads release the GIL
    usable = ranked["spare"] & ranked["finalist"].fillna(False).astype(bool)
    spares = {arch: list(g.index) for arch, g in ranked[usable].groupby("arch")}
    kept, twins = [], []
    queue = list(primary.index)
    while queue:
        i = queue.pop(0)
        meta, sc = loaded.pop(i) if i in loaded else ex.load_trial(ranked.at[i, "checkpoint"])
        twin = next((j for j, (_, s) in kept if same_scores(sc["validation"], s["validation"])), None)
        if twin is None:
            kept.append((i, (meta, sc)))
            continue
        twins.append({"name": _member_name(ranked.loc[i]), "twin_of": _member_name(ranked.loc[twin])})
        log.info("member %s left out: its validation scores equal %s's", twins[-1]["name"], twins[-1]["twin_of"])
        if spares.get(ranked.at[i, "arch"]):
            queue.append(spares[ranked.at[i, "arch"]].pop(0))
    kept.sort(key=lambda item: item[0])  # the leaderboard's order, spares in their place
    return [ranked.loc[i] for i, _ in kept], [v for _, v in kept], twins


SELECTIONS = ("anchored", "ranked")  # member selection: ``anchored`` keeps the known-good start trials
# Validation events from which a searched configuration may join the known-good ones (anchored): its
# lead is then decided by more than a handful of events.
SEARCHED_FROM_EVENTS = 10


def load_members(experiment: str, k: int = 2, include: tuple[str, ...] = (), selection: str = "anchored") -> Members:
    """The chosen trials of ``experiment`` with their scores. ``selection``: ``anchored`` (the default:
    an architecture's known-good start trials, where the sweep ran some, joined by its best searched
    trial when validation holds SEARCHED_FROM_EVENTS events or more) or ``ranked`` (the best ``k`` by
    validation F0.5 in every architecture); see :func:`select_members`."""
    if selection not in SELECTIONS:
        raise TelemetryError(f"unknown member selection {selection!r}; choose one of {', '.join(SELECTIONS)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise TelemetryError(f"k (trials per architecture) must be an integer >= 1, got {k!r}")
    exp = results.resolve(experiment)
    board = results.leaderboard(exp, write=False)
    if board.empty:
        raise TelemetryError(f"{exp}: no trials found")
    searched = 0
    if selection == "anchored":
        from telemetry.events import events

        labels = ex.read_sets(exp).get("validation_labels")
        searched = int(labels is not None and len(events(labels)) >= SEARCHED_FROM_EVENTS)
    chosen = select_members(board, k, include, spares=1, anchored=selection == "anchored", searched=searched)
    rows, loaded, twins = _without_twins(exp, chosen, k)
    if not rows:
        raise TelemetryError(f"{exp}: no completed trial to build an ensemble from (include: "
                             f"{', '.join(include) or 'none'}); see python -m search leaderboard {exp}")
    sets = ex.read_sets(exp)
    test_file = ex.read_sweep(exp).data.test
    splits = [s for s in SPLITS if f"{s}_ids" in sets]
    names, metas, scores = [], [], {s: [] for s in splits}
    channels, channel_members, channel_scores = None, [], {s: [] for s in splits}
    for j, (row, (meta, sc)) in enumerate(zip(rows, loaded)):
        for split in splits:
            expected = sets[f"{split}_ids"].size
            if sc[split].shape != (expected,):
                raise TelemetryError(f"{row['checkpoint']}: {split} scores have {sc[split].size} rows, expected {expected}")
            scores[split].append(sc[split])
        # Per-channel scores: only from trials that stored them for every split, over the same
        # channels as the first such member (one sweep has one channel set; anything else is left out).
        names_c = meta.channels
        if names_c and all(ex.channel_key(split) in sc for split in splits) and channels in (None, names_c):
            channels = list(names_c)
            channel_members.append(j)
            for split in splits:
                cs = sc[ex.channel_key(split)]
                if cs.shape != (sets[f"{split}_ids"].size, len(channels)):
                    raise TelemetryError(f"{row['checkpoint']}: {split} per-channel scores have shape {list(cs.shape)}, "
                                         f"expected [{sets[f'{split}_ids'].size}, {len(channels)}]")
                channel_scores[split].append(cs)
        names.append(_member_name(row))
        metas.append({"name": names[-1], "arch": row["arch"], "trial_id": row["trial_id"], "checkpoint": row["checkpoint"],
                      "params": json.loads(row["params"]), "threshold": meta.threshold, "holdout": meta.holdout,
                      "validation": meta.validation})
    per_channel = {s: np.stack(v, axis=1) for s, v in channel_scores.items()} if channel_members else {}
    return Members(exp, names, metas, {s: np.stack(v, axis=1) for s, v in scores.items()}, sets, board,
                   test_file, per_channel, channel_members, channels, twins)
