"""``python -m ensemble build``: members from a sweep -> ensemble -> submission, predictions, events, report.

Three steps, each its own function: load the members (ensemble.members), fit the decision layer on
validation and evaluate everything on holdout with bootstrap intervals (``evaluate``), write the
outputs (``write_outputs``).
"""
from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.base import clone

from ensemble.combine import DecisionLayer, read_layer
from ensemble.evidence import FitEvidence, checked_evidence, fit_evidence, fitting_rows, resolved
from ensemble.members import Members, load_members
from ensemble.report import event_table, plot_trace, series_section, verdict_text, write_report
from ensemble.submission import read_test_ids, write_submission
from search import storage
from detection import metrics
from telemetry.atomic import atomic_path, write_text
from telemetry.errors import TelemetryError
from telemetry.threads import in_background

log = logging.getLogger("ensemble")
ENSEMBLE = "**ensemble**"


def decision_layer(decision=None, combination: str | None = None, calibration: str | None = None,
                   weight_trials: int | None = None, seed: int = 0) -> DecisionLayer:
    """The decision layer ``build`` fits, unfitted: ``decision`` (None: the default layer; a YAML file's
    path, ensemble.combine.read_layer; a mapping, DecisionLayer.from_dict; or a DecisionLayer) with
    the overrides that are given, seeded by ``seed``. A bad file or mapping fails here, in one line."""
    if decision is None:
        layer = DecisionLayer()
    elif isinstance(decision, DecisionLayer):
        layer = clone(decision)
    elif isinstance(decision, dict):
        layer = DecisionLayer.from_dict(decision)
    else:
        layer = read_layer(decision)
    overrides = {"combination__method": combination, "calibration__method": calibration,
                 "combination__weight_trials": weight_trials}
    layer.set_params(seed=seed, **{k: v for k, v in overrides.items() if v is not None})
    layer.combination._check(), layer.calibration._check()
    return layer


def evaluate(y: np.ndarray, preds: dict[str, np.ndarray], raw: dict[str, np.ndarray], reference: str,
             resamples: int = 1000, seed: int = 0, segments=None) -> tuple[list[dict], dict]:
    """Every prediction's figures on one labelled split, each F0.5 with a 90 % block-bootstrap interval,
    and the paired interval of (ensemble - ``reference``) on the same replicates. ``segments``: the
    split's series boundaries (None: one series); events are counted per series, in the bootstrap
    too (its blocks are rows, cut regardless of series)."""
    names = list(preds)
    boot = metrics.bootstrap_f05(y, [preds[n] for n in names], resamples=resamples, seed=seed, segments=segments)
    rows = []
    for j, n in enumerate(names):
        m = metrics.scores(y, preds[n], raw[n], segments)
        lo, hi = metrics.interval(boot[:, j])
        rows.append({"member": n, **m, "f05_lo": lo, "f05_hi": hi})
    e, r = names.index(ENSEMBLE), names.index(reference)
    diff = boot[:, e] - boot[:, r]
    lo, hi = metrics.interval(diff)
    return rows, {"reference": reference, "difference": rows[e]["f05"] - rows[r]["f05"], "lo": lo, "hi": hi,
                  "true_events": rows[e]["true_events"]}


def evidence_record(members: Members, extra: FitEvidence | None) -> dict:
    """Which splits' labelled events fitted the decision layer, and how many events each held."""
    from telemetry.events import events

    out = {"splits": ["validation"], "events": {"validation": len(events(members.sets["validation_labels"]))}}
    if extra is not None:
        out = {"splits": ["fit", "validation"], "events": {"fit": extra.events, **out["events"]}}
    return out


def ensemble_outputs(members: Members, ens, segments: dict | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The ensemble on every split, computed once: binary predictions, raw score, the score as
    thresholded (smoothed; with per-channel decisions the largest channel margin), and the split's
    series boundaries they were computed with (``segments[split]``, :func:`split_segments`; None:
    one series)."""
    out = {}
    for split, S in members.scores.items():
        cs, seg = members.channel_scores.get(split), (segments or {}).get(split)
        out[split] = {"pred": ens.predict(S, cs, seg), "raw": ens.score(S, cs, seg),
                      "decision": ens.decision_score(S, cs, seg), "segments": seg}
    return out


def split_predictions(members: Members, ens_out: dict, split: str) -> tuple[dict, dict]:
    """Each member with its own validated rule, and the ensemble, on one split: (binary, raw score)."""
    S, seg = members.scores[split], ens_out[split]["segments"]
    preds = {n: members.rule(j).predict(S[:, j], seg) for j, n in enumerate(members.names)}
    raw = {n: S[:, j] for j, n in enumerate(members.names)}
    preds[ENSEMBLE], raw[ENSEMBLE] = ens_out[split]["pred"], ens_out[split]["raw"]
    return preds, raw


def build(experiment: str, out: str | Path, k: int = 2, include: tuple[str, ...] = (), decision=None,
          combination: str | None = None, calibration: str | None = None, seed: int = 0, weight_trials: int | None = None,
          members: str = "anchored", evidence: str = "auto") -> dict:
    """``decision``: the decision layer (:func:`decision_layer`: None for the default, a YAML file, a
    mapping or a DecisionLayer), checked before the members are read. ``evidence``: the labelled
    events the decision layer is fitted on, ``validation``, ``fit+validation`` (the fit split's
    events too, which no member trained on: :func:`ensemble.evidence.fit_evidence`) or ``auto``
    (the default: fit+validation on data of up to 2 M rows, :func:`ensemble.evidence.evidence_for_rows`)."""
    checked_evidence(evidence)  # before the members are read
    layer = decision_layer(decision, combination, calibration, weight_trials, seed)
    members = load_members(experiment, k, include, selection=members)
    evidence = resolved(evidence, data_rows(members))
    if "test" not in members.scores:
        raise TelemetryError(f"{members.experiment}: the sweep had no test file, so there is nothing to submit")
    if not members.labelled:  # no labels: no decision layer can be fitted against detections
        return build_unlabelled(members, Path(out), seed)
    cfg = data_config(members)
    # The data files (for the drift check and per-series tables) load while the ensemble is fitted...
    data_loading = in_background(lambda: reload_data(members, cfg))
    log.info("ensemble of %d members (%s decision layer): %s", len(members.names),
             "default" if decision is None else "given", ", ".join(members.names))
    if not members.channel_scores:
        log.info("the members hold no per-channel scores: no per-channel view")
    # ...unless the data is many series: the decision layer needs their boundaries first.
    segments = split_segments(members, data_loading.result()) if many_series(cfg) else {}
    extra = fit_evidence(members) if evidence == "fit+validation" else None
    scores, labels, seg, channels = fitting_rows(members.scores["validation"], members.sets["validation_labels"],
                                                 segments.get("validation"), extra, members.channel_inputs("validation"))
    ens = layer.fit(scores, labels, members.names, **channels, segments=seg,
                    member_rules=[members.rule(j) for j in range(len(members.names))])
    picked = members.names[members.picked]
    ens_out = ensemble_outputs(members, ens, segments)

    hold_rows, hold_cmp = evaluate(members.sets["holdout_labels"], *split_predictions(members, ens_out, "holdout"), picked,
                                   seed=seed, segments=ens_out["holdout"]["segments"])
    weights = dict(zip(ens.names_, ens.weights_))
    val_f05 = {m["name"]: m["validation"]["f05"] for m in members.metas}
    val_f05[ENSEMBLE] = ens.val_f05_
    for r in hold_rows:
        r.update(weight=weights.get(r["member"], 1.0), val_f05=val_f05[r["member"]], picked=r["member"] == picked)
    test_rows = test_cmp = None
    if "test_true_labels" in members.sets:  # synthetic missions only: reported, never fitted
        test_rows, test_cmp = evaluate(members.sets["test_true_labels"], *split_predictions(members, ens_out, "test"),
                                       picked, seed=seed, segments=ens_out["test"]["segments"])
    verdict = verdict_text(hold_rows, hold_cmp, ens.fallback_, test_cmp)
    data = data_loading.result()
    tables, unit, what = series_tables(members, ens_out, data)
    res = write_outputs(Path(out), members, ens, ens_out, hold_rows, hold_cmp, test_rows, verdict, data,
                        (tables, unit, what), evidence=evidence_record(members, extra))
    # With test labels (synthetic missions), the same comparison on test: what a benchmark reports.
    res["test_comparison"] = test_cmp
    res["picked_member_test_f05"] = None if test_rows is None else next(r["f05"] for r in test_rows if r["member"] == picked)
    return res


def data_rows(members: Members) -> int:
    """Rows of the sweep's data: its labelled splits and its test file."""
    return sum(int(members.sets[f"{split}_ids"].size) for split in ("fit", "validation", "holdout", "test")
               if f"{split}_ids" in members.sets)


def data_config(members: Members):
    """The sweep's DataConfig, as its sweep file stored it."""
    from search import experiment as ex

    return ex.read_sweep(members.experiment).data


def reload_data(members: Members, cfg=None):
    """(splits, test series, DataConfig) from the sweep's data files, as the sweep cut them; None when
    those files are not reachable from here (e.g. on a cluster's storage only)."""
    from telemetry.prepare import load_sets

    from dataclasses import replace

    cfg = data_config(members) if cfg is None else cfg
    if any(p and not Path(p).is_file() for p in (cfg.train, cfg.test)):
        return None
    # The drift check and per-series tables read channels, ids and series only: no telecommand features
    # (at the challenge's size they would add ~1 GB to the build's peak).
    splits, test, _ = load_sets(replace(cfg, telecommands=None))
    return splits, test, cfg


def many_series(cfg) -> bool:
    """Whether the sweep's data is made of many independent series: a series column, or a discharge
    JSON (one series per discharge)."""
    return cfg.series is not None or str(cfg.train).endswith(".json")


def scored_series(members: Members, data, split: str):
    """The split's Series as the sweep cut it (:func:`reload_data`'s ``data``), when its rows are the
    members' scored rows in order; else None (files not reachable, or changed since the sweep)."""
    if data is None:
        return None
    splits, test, _ = data
    s = test if split == "test" else getattr(splits, split)
    if s is None or not np.array_equal(s.ids, members.sets[f"{split}_ids"]):
        return None
    return s


def split_segments(members: Members, data) -> dict[str, np.ndarray | None]:
    """Each scored split's series boundaries (offsets [S+1]; None: taken as one series, with a warning
    when its data cannot be matched to the members' rows)."""
    out = {}
    for split in members.scores:
        s = scored_series(members, data, split)
        if s is None:
            log.warning("%s: the data files do not give this split's rows as the sweep scored them: its series "
                        "boundaries are unknown, so the decision layer takes it as one series", split)
        out[split] = None if s is None else s.segments
    return out


def drift_check(members: Members, data=None) -> tuple[pd.DataFrame, str] | None:
    """Per-channel drift of validation, holdout and test against the fit split, from the sweep's data
    files (``data``: :func:`reload_data`'s, loaded here if not given); None when they are not reachable."""
    from detection.drift import describe_drift, splits_drift

    data = reload_data(members) if data is None else data
    if data is None:
        return None
    splits, test, _ = data
    table = splits_drift(splits, test)
    return table, describe_drift(table, split="test" if test is not None else None)


def series_tables(members: Members, ens_out: dict, data) -> tuple[dict[str, pd.DataFrame], str, str]:
    """Per-series detection and warning time of the ensemble on validation and holdout, when those
    splits are made of many series (detection.series_metrics). Discharges: times in seconds from the
    file, onsets at each anomalyTime; other series: rows, onsets at the first labelled row."""
    from detection.series_metrics import split_detection_table

    if data is None:
        return {}, "rows", "series"
    splits, _, cfg = data
    row_times = onsets = None
    unit, what = "rows", "series"
    if str(cfg.train).endswith(".json"):
        from telemetry.discharges import load_discharges

        disc = load_discharges(cfg.train, warning_rows=cfg.warning_rows)
        row_times, onsets = disc.row_times(), dict(zip(disc.names, disc.anomaly_times.tolist()))
        unit, what = "s", "discharge"
    tables = {}
    for split in ("validation", "holdout"):
        s = scored_series(members, data, split)
        if s is None or s.segments is None:
            continue
        tables[split] = split_detection_table(s, ens_out[split]["pred"], None if row_times is None else row_times[s.ids],
                                              onsets)
    return tables, unit, what


def build_unlabelled(members: Members, out: Path, seed: int = 0) -> dict:
    """Unlabelled sweep -> the mean of calibrated members with an unsupervised (POT) threshold
    (ensemble.unsupervised) -> submission, predictions, events, drift check, and a report that says
    no labelled figure exists."""
    from ensemble.report import write_unlabelled_report
    from ensemble.unsupervised import UnsupervisedEnsemble
    from ensemble.plots import plot_score_splits
    from telemetry.events import events

    log.info("unlabelled sweep: ensemble of %d members by validation-loss rank (%s), mean of robust-z scores, "
             "POT threshold", len(members.names), ", ".join(members.names))
    cfg = data_config(members)
    data = reload_data(members, cfg)
    segments = split_segments(members, data) if many_series(cfg) else {}
    ens = UnsupervisedEnsemble(seed=seed).fit(members.scores["validation"], members.names,
                                              **members.channel_inputs("validation"), segments=segments.get("validation"))
    sets, CS = members.sets, members.channel_scores
    ens_out = ensemble_outputs(members, ens, segments)
    out.mkdir(parents=True, exist_ok=True)
    write_submission(out / "submission.csv", sets["test_ids"], ens_out["test"]["pred"], expected_test_ids(members))
    buf = io.BytesIO()
    pd.DataFrame({"id": sets["test_ids"], "score": ens_out["test"]["raw"],
                  "is_anomaly": ens_out["test"]["pred"]}).to_parquet(buf, index=False)
    with atomic_path(out / "predictions.parquet") as tmp:
        tmp.write_bytes(buf.getvalue())
    margins = ens.channel_margins(CS["test"], ens_out["test"]["segments"]) if ens.has_channels else None
    test_events = event_table(sets["test_ids"], ens_out["test"]["pred"], ens_out["test"]["decision"], margins,
                              ens.channels_ if ens.has_channels else None, ens_out["test"]["segments"])
    write_text(out / "events.csv", test_events.to_csv(index=False))
    parts = [(split, sets[f"{split}_ids"], ens_out[split]["decision"]) for split in ("validation", "holdout", "test")]
    plot_score_splits(out / "score_over_time.png", parts, title="ensemble score over time (no labels)",
                      ylabel="mean robust z of the members", threshold=ens.threshold_)
    drift = drift_check(members, data) if data is not None else None
    if drift is not None:
        write_text(out / "drift.csv", drift[0].to_csv(index=False))
    alarm_rows = [{"split": split, "rows": int(ens_out[split]["pred"].size),
                   "alarm_rate": float(ens_out[split]["pred"].mean()),
                   "events": int(len(events(ens_out[split]["pred"], ens_out[split]["segments"])))}
                  for split in ("validation", "holdout", "test")]
    member_rows = [{"member": m["name"], "val_loss": m["validation"].get("loss"), "holdout_loss": m["holdout"].get("loss"),
                    "val_alarm_rate": m["validation"].get("alarm_rate"), "holdout_alarm_rate": m["holdout"].get("alarm_rate")}
                   for m in members.metas]
    ens_cfg = {**ens.record(), "twins": members.twins}
    plain = lambda rows: [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in rows]  # noqa: E731
    write_text(out / "ensemble.yaml", yaml.safe_dump({
        "experiment": members.experiment, "labelled": False, "ensemble": ens_cfg, "members": members.metas,
        "alarms": plain(alarm_rows)}, sort_keys=False))
    top_channels = None
    flagged = ens_out["test"]["pred"].astype(bool)
    if margins is not None and flagged.any():
        mean_margin = margins[flagged].mean(axis=0)
        top_channels = [(ens.channels_[c], float(mean_margin[c])) for c in np.argsort(-mean_margin)[:5]]
    report = write_unlabelled_report(out, members.experiment, member_rows, ens_cfg, alarm_rows, members.board,
                                     ["score_over_time.png"], drift, test_events, top_channels)
    verdict = ("No labels: no labelled figure (F0.5, precision, recall) exists; members chosen by validation loss, "
               f"threshold by POT. Test alarm rate {alarm_rows[2]['alarm_rate']:.2%} against "
               f"{alarm_rows[0]['alarm_rate']:.2%} on validation.")
    if drift is not None:
        verdict += " " + drift[1]
    return {"out": str(out), "report": str(report), "labelled": False, "members": members.names, "verdict": verdict,
            "alarms": alarm_rows, "top_channels": top_channels, "drift": None if drift is None else drift[1], "test_events": int(len(test_events))}


def expected_test_ids(members: Members) -> np.ndarray:
    """The ids the submission must hold: the test file's own ``id`` column when it is reachable from
    here and has one; else the ids the sweep scored (a file whose rows were numbered on loading: a
    CSV without ``id``, a discharge JSON; or a file on a cluster's storage)."""
    from telemetry.loading import made_up_ids

    test_file = members.test_file
    if test_file and storage.exists(test_file) and (storage.is_uri(test_file) or not made_up_ids(test_file)):
        return read_test_ids(test_file)
    return members.sets["test_ids"]


def write_outputs(out: Path, members: Members, ens: DecisionLayer, ens_out: dict, hold_rows: list[dict], hold_cmp: dict,
                  test_rows, verdict: str, data=None, series=None, evidence: dict | None = None) -> dict:
    sets = members.sets
    # The submission is checked against the test file itself when it is reachable from here.
    expected_ids = expected_test_ids(members)
    S, CS = members.scores, members.channel_scores
    pred_test, raw_test = ens_out["test"]["pred"], ens_out["test"]["raw"]
    out.mkdir(parents=True, exist_ok=True)
    write_submission(out / "submission.csv", sets["test_ids"], pred_test, expected_ids)
    buf = io.BytesIO()
    pd.DataFrame({"id": sets["test_ids"], "score": raw_test, "is_anomaly": pred_test}).to_parquet(buf, index=False)
    with atomic_path(out / "predictions.parquet") as tmp:
        tmp.write_bytes(buf.getvalue())
    # One row per predicted test event; with per-channel scores, the channels behind each one.
    margins = ens.channel_margins(CS["test"], ens_out["test"]["segments"]) if ens.has_channels else None
    test_events = event_table(sets["test_ids"], pred_test, ens_out["test"]["decision"], margins,
                              ens.channels_ if ens.has_channels else None, ens_out["test"]["segments"])
    write_text(out / "events.csv", test_events.to_csv(index=False))
    plots = []
    for split in ("validation", "holdout"):
        name = f"trace_{split}.png"
        cal = ens.calibrated(S[split])
        plot_trace(out / name, sets[f"{split}_ids"], ens_out[split]["decision"], sets[f"{split}_labels"],
                   ens_out[split]["pred"], ens.threshold_, f"{split} split",
                   members={n: cal[:, j] for j, n in enumerate(members.names)})
        plots.append(name)
    from ensemble.plots import plot_score_splits

    parts = [(split, sets[f"{split}_ids"], ens_out[split]["decision"]) for split in ("validation", "holdout", "test")]
    plot_score_splits(out / "score_over_time.png", parts, title="ensemble score over time (as thresholded)",
                      ylabel="largest channel margin" if ens.per_channel_decision else "ensemble score", threshold=ens.threshold_)
    plots.append("score_over_time.png")
    drift = drift_check(members, data)
    if drift is not None:
        write_text(out / "drift.csv", drift[0].to_csv(index=False))
    tables, unit, what = series or ({}, "rows", "series")
    for split, t in tables.items():
        write_text(out / f"series_{split}.csv", t.to_csv(index=False))
    ens_cfg = {**ens.record(), "evidence": evidence, "twins": members.twins}
    hold = next(r for r in hold_rows if r["member"] == ENSEMBLE)
    plain = lambda rows: [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in rows]  # noqa: E731
    write_text(out / "ensemble.yaml", yaml.safe_dump({
        "experiment": members.experiment, "ensemble": ens_cfg, "members": members.metas, "holdout": plain([hold])[0],
        "holdout_table": plain(hold_rows), "comparison": plain([hold_cmp])[0]}, sort_keys=False))
    report = write_report(out, members.experiment, hold_rows, ens_cfg, members.board, plots, verdict, test_rows, drift,
                          test_events, series_section(tables, unit, what))
    picked = next(r for r in hold_rows if r["picked"])
    return {"out": str(out), "report": str(report), "holdout_f05": hold["f05"], "picked_member": picked["member"],
            "picked_member_holdout_f05": picked["f05"], "comparison": hold_cmp, "members": members.names, "verdict": verdict,
            "drift": None if drift is None else drift[1],
            "test_f05": None if test_rows is None else next(r["f05"] for r in test_rows if r["member"] == ENSEMBLE)}
