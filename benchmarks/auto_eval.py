"""Scoring of the scarce-label benchmark (benchmarks/bench_auto.py): member selections and references on
each ``auto`` sweep, every one through the same default decision layer, scored on test labels.

Selections (which trials become members; all through ``ensemble.combine``'s default layer, fitted on
the events of the fit and validation splits, as ``telesweep auto`` does at these sizes, unless the
name ends in ``_val``: validation's events alone, ``ensemble build``'s default):
- ``ranked``: the best 2 distinct configurations per architecture (1 forecaster) by the trials' own
  validation F0.5 (``ensemble build --members ranked``);
- ``ranked_ap``: the same by the validation event-wise average precision (threshold-free);
- ``ranked_fit``: the best configuration per architecture by its best F0.5 over the fit and validation
  splits' events together, no known-good one kept (a candidate);
- ``anchored``: what ``telesweep auto`` submits (``ensemble.members``' anchored selection: the
  known-good configurations, each architecture's start trial, alone below 10 validation events);
  ``anchored_val``: the same fitted on validation alone (``ensemble build``'s default evidence);
- ``anchored+1``: the known-good ones with each architecture's best searched trial by validation F0.5
  beside them; ``anchored+1fit``: the same searched trial ranked by its best F0.5 over the fit and
  validation splits' events together (a candidate);
- ``anchored_fast``: the known-good pca and bilstm_ae (the ``fast`` preset's architectures) alone;
- ``*_pot``: the same with the label-free guard (equal weights, the POT level) where the layer finds no
  validation event, instead of the member validation picks with its own rule;
- ``notebook+layer`` / ``pca+layer``: one known-good member alone through the layer fitted on validation
  (``ensemble build --k 1``, the reference); ``notebook+layer_fit``: the notebook's member with the fit
  split's events too;
- ``picked``: the member validation picks (best validation F0.5) with its own rule;
- ``hindsight``: the best member on test (never usable);
- ``anchored_test_threshold``: ``auto``'s decision (its members, weights, smoothing, hysteresis as fitted)
  under the threshold that scores best on test (never usable): what no threshold on ``auto``'s members
  and combination can pass.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("bench.auto")
SELECTIONS = ("anchored", "anchored_val", "anchored_pot", "anchored+1", "anchored+1fit", "anchored_fast", "ranked", "ranked_val", "ranked_pot",
              "ranked_ap", "ranked_fit", "notebook+layer", "notebook+layer_fit", "pca+layer")
REFERENCES = ("picked", "hindsight", "anchored_test_threshold", "plain_pca")


def _layer_f05(names, scores_v, scores_t, yv, yt, rules, fit=None, **over) -> tuple[float, dict]:
    """``over``: parameters of the default layer set otherwise (DecisionLayer.set_params names);
    ``fit``: (fit split scores, labels, series offsets) whose events join validation's (ensemble.build)."""
    from ensemble.combine import DecisionLayer
    from ensemble.evidence import FitEvidence, fitting_rows
    from detection.metrics import corrected_event_f05

    extra = None if fit is None or not fit[1].any() else FitEvidence(*fit)
    s, y, seg, _ = fitting_rows(scores_v, yv, None, extra)
    ens = DecisionLayer().set_params(**over).fit(s, y, names, segments=seg, member_rules=rules)
    return corrected_event_f05(yt, ens.predict(scores_t)), {"val_f05": ens.val_f05_,
                                                             "guard": (ens.fallback_ or {}).get("chosen"),
                                                             "test_threshold": _best_test_threshold(ens, scores_t, yt)}


def _best_test_threshold(ens, scores_t: np.ndarray, yt: np.ndarray) -> float:
    """Test F0.5 of the fitted decision's score and rule (smoothing, hysteresis, post-processing) under
    the threshold that scores best on test (never usable): 200 quantiles of the upper half of the
    smoothed test score and every test event's peak, the fitted threshold among them."""
    import copy

    from detection.metrics import corrected_event_f05
    from telemetry.events import events

    rule, raw = copy.copy(ens.decision_.rule_), ens.decision_.score(scores_t)
    s = rule.smoothed(raw)
    ev = events(yt)
    peaks = np.maximum.reduceat(np.where(yt.astype(bool), s, -np.inf), ev[:, 0]) if len(ev) else np.zeros(0)
    best = 0.0
    for t in np.unique(np.concatenate([np.quantile(s, np.linspace(0.5, 1.0, 200)), peaks, [ens.decision_.rule_.threshold_]])):
        rule.threshold_ = float(t)
        best = max(best, corrected_event_f05(yt, rule.predict(raw)))
    return best


def evaluate_dataset(ds, exp: str) -> dict:
    from ensemble.members import SEARCHED_FROM_EVENTS, select_members
    from search import experiment, results
    from detection.metrics import corrected_event_f05
    from detection.thresholds import Threshold, event_average_precision

    board = results.leaderboard(exp, write=False)
    done = board[board["completed"].fillna(False).astype(bool)].reset_index(drop=True)
    sets = experiment.read_sets(exp)
    yv, yt = sets["validation_labels"], sets["test_true_labels"]
    loaded = {r.trial_id: experiment.load_trial(r.checkpoint) for r in done.itertuples()}
    name = lambda r: f"{r['arch']}#{r['trial_id'][-5:]}"  # noqa: E731
    done["val_ap"] = [event_average_precision(loaded[t][1]["validation"], yv) for t in done["trial_id"]]
    rule = {t: Threshold.from_dict(loaded[t][0].threshold) for t in done["trial_id"]}
    test_own = {t: corrected_event_f05(yt, rule[t].predict(loaded[t][1]["test"])) for t in done["trial_id"]}
    row = {"dataset": ds.name, "kind": ds.kind, "val_events": int(_n_events(yv)), "test_events": int(_n_events(yt)),
           "trials": len(done)}

    from ensemble.evidence import FitSplit

    fs = FitSplit.read(exp, commands=True)  # as the sweep prepared it: members may read telecommand features

    def fit_split(ids):  # each trial's saved model scores the fit split once
        return np.stack([fs.score(done.loc[done["trial_id"] == t, "checkpoint"].iloc[0])[0] for t in ids], axis=1), \
            fs.labels, fs.segments

    def through_layer(chosen: pd.DataFrame, col: str, fit: bool = True, **over):
        if chosen.empty:
            row[col] = np.nan
            return
        ids = list(chosen["trial_id"])
        f, info = _layer_f05([name(r) for _, r in chosen.iterrows()],
                             np.stack([loaded[t][1]["validation"] for t in ids], axis=1),
                             np.stack([loaded[t][1]["test"] for t in ids], axis=1), yv, yt, [rule[t] for t in ids],
                             fit=fit_split(ids) if fit and fs is not None else None, **over)
        row[col] = f
        row[f"{col}_members"] = len(ids)
        if col == "anchored":
            row["anchored_test_threshold"] = info["test_threshold"]
        if info["guard"] == "member_rule":
            row[f"{col}_guard"] = True

    through_layer(_ranked(done, "val_f05"), "ranked")
    through_layer(_ranked(done, "val_f05"), "ranked_val", fit=False)
    through_layer(_ranked(done, "val_f05"), "ranked_pot", guard__no_event="pot")
    through_layer(_ranked(done, "val_ap"), "ranked_ap")
    if fs is not None:  # each trial's best F0.5 over the fit and validation splits' events together
        done["fit_val_f05"] = [_joined_best(loaded[t][1]["validation"], yv, fs.score(c)[0], fs.labels, fs.segments)
                               for t, c in zip(done["trial_id"], done["checkpoint"])]
        through_layer(_ranked(done, "fit_val_f05", k=1), "ranked_fit")
    else:
        through_layer(_ranked(done, "val_f05", k=1), "ranked_fit")
    start = done["start"].astype(bool)
    anchors = done[start].drop_duplicates("arch")
    # What telesweep auto submits: ensemble.members.load_members' anchored selection (a searched trial
    # joins from SEARCHED_FROM_EVENTS validation events on), the layer fitted on fit + validation events.
    auto = select_members(board, 2, anchored=True, searched=int(_n_events(yv) >= SEARCHED_FROM_EVENTS))
    through_layer(auto, "anchored")
    through_layer(auto, "anchored_val", fit=False)
    through_layer(auto, "anchored_pot", guard__no_event="pot")
    through_layer(select_members(board, 2, anchored=True, searched=1), "anchored+1")
    if "fit_val_f05" in done:  # the best searched trial by fit + validation events beside the known-good ones
        searched = done[~start & done["arch"].isin(set(anchors["arch"]))]
        best_fit = searched.sort_values("fit_val_f05", ascending=False, kind="stable").drop_duplicates("arch")
        through_layer(pd.concat([anchors, best_fit]), "anchored+1fit")
    else:  # no fit event to rank on: the known-good ones alone
        row["anchored+1fit"], row["anchored+1fit_members"] = row["anchored"], row["anchored_members"]
    through_layer(anchors[anchors["arch"].isin(["pca", "bilstm_ae"])], "anchored_fast")
    through_layer(anchors[anchors["arch"] == "bilstm_ae"], "notebook+layer", fit=False)
    through_layer(anchors[anchors["arch"] == "bilstm_ae"], "notebook+layer_fit")
    through_layer(anchors[anchors["arch"] == "pca"], "pca+layer", fit=False)
    best = done["val_f05"].to_numpy(float)
    row["picked"] = test_own[done["trial_id"][int(np.argmax(best))]]
    row["hindsight"] = max(test_own.values())
    row["plain_pca"] = _plain_pca(exp, yv, yt)
    return row


def _joined_best(sv: np.ndarray, yv: np.ndarray, sf: np.ndarray, yf: np.ndarray, fit_segments) -> float:
    """A member's best F0.5 over every threshold on the fit and validation splits' rows together."""
    from ensemble.combine import best_f05
    from ensemble.evidence import FitEvidence, fitting_rows

    s, y, seg, _ = fitting_rows(sv[:, None], yv, None, FitEvidence(sf[:, None], yf, fit_segments))
    return best_f05(s[:, 0], y, seg)


def _ranked(done: pd.DataFrame, key: str, k: int = 2) -> pd.DataFrame:
    from models import registry

    out = []
    for arch, g in done.groupby("arch"):
        tags = registry.get(arch).tags
        if tags.get("baseline") or tags.get("needs_labels"):
            continue
        quota = 1 if tags.get("forecaster") else k
        out.append(g.sort_values(key, ascending=False, kind="stable").drop_duplicates("params").head(quota))
    return pd.concat(out) if out else done.iloc[:0]


def _plain_pca(exp: str, yv, yt) -> float:
    """The plain PCA script (5 lags, 95 % of the variance, EWMA 10, best-F0.5 threshold on validation)."""
    from dataclasses import replace

    from models import registry
    from search import experiment
    from detection.metrics import corrected_event_f05
    from telemetry.prepare import prepare
    from detection.thresholds import Threshold

    data = prepare(replace(experiment.read_sweep(exp).data, telecommands=None))
    pca = registry.get("pca")(lags=5, n_components=0.95).fit(data.fit, data.validation)
    rule = Threshold("best_f05", smooth=10).fit(pca.score_samples(data.validation), yv)
    return corrected_event_f05(yt, rule.predict(pca.score_samples(data.test)))


def _n_events(y) -> int:
    from telemetry.events import events

    return len(events(y))


def evaluate_all(work: Path, dss, exps: dict[str, str]) -> pd.DataFrame:
    rows = []
    for ds in dss:
        log.info("evaluating %s", ds.name)
        rows.append(evaluate_dataset(ds, exps[ds.name]))
    return pd.DataFrame(rows)


def summary_markdown(t: pd.DataFrame, budget: float, preset: str) -> str:
    from quality_eval import paired_interval

    cols = ["dataset", "val_events", "test_events", "trials", *SELECTIONS, *REFERENCES]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v)  # noqa: E731
    lines = [f"`telesweep auto --preset {preset} --time-budget {budget:.0f}s` per data set, test F0.5 "
             "(every selection through the default decision layer):", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, np.nan)) for c in cols) + " |" for r in t.to_dict("records")]
    scarce = t["val_events"] <= 4
    told = t["test_events"] >= 10  # a test split of one event scores 0 or 1 whatever the method
    lines += ["", f"Means over data sets (all {len(t)} / validation with 4 events or fewer: {int(scarce.sum())} / test "
              f"with 10 events or more, the ones that can tell methods apart: {int(told.sum())}), and the paired 90 % "
              "interval over all data sets of (selection - notebook+layer):", "",
              "| selection | mean | scarce | 10+ test events | - notebook+layer [90 % interval] | below notebook+layer | "
              "below picked | below picked by > 0.01 |", "|---|---|---|---|---|---|---|---|"]
    for c in (*SELECTIONS, *REFERENCES):
        if c not in t:
            continue
        d = (t[c] - t["notebook+layer"]).to_numpy(float)
        ok = np.isfinite(d)  # a data set where either has no figure (a member that did not finish) is left out
        lo, hi = paired_interval(d[ok])
        dp = (t[c] - t["picked"]).to_numpy(float)
        lines.append(f"| {c} | {t[c].mean():.3f} | {t.loc[scarce, c].mean():.3f} | {t.loc[told, c].mean():.3f} | "
                     f"{d[ok].mean():+.3f} [{lo:+.3f}, {hi:+.3f}] "
                     f"| {int((d[ok] < -1e-9).sum())} of {int(ok.sum())} | {int((dp[np.isfinite(dp)] < -1e-9).sum())} of "
                     f"{int(np.isfinite(dp).sum())} | {int((dp[np.isfinite(dp)] < -0.01).sum())} |")
    return "\n".join(lines)
