"""Scoring of the quality benchmark: every decision layer and reference on each data set's test labels.

Layers: ``default`` (ensemble.combine.DecisionLayer(), what ``ensemble build`` fits) and the candidates
of ``benchmarks/layers.yaml``.

References (never used to choose anything inside the pipeline):
- ``picked``: the member validation alone would pick, with its own trial rule;
- ``hindsight``: the member with the best test F0.5 (an upper bound for picking one member);
- ``notebook``: the user's notebook configuration, bilstm_ae (window 5, units 64, 2 epochs, batch 1024),
  threshold at the 98th percentile of validation scores, predicted runs under 10 rows dropped;
- ``without_pca`` / ``pca_alone``: the default decision layer on the members other than ``pca``, and
  on the ``pca`` trials alone (the ablation of the pca member);
- ``global_std``: the sweep's baseline trial with its own rule;
- ``plain_pca``: PCA on 5 lagged copies of the scaled channels (95 % of the variance), EWMA-smoothed
  error (span 10), the best-F0.5 threshold on validation: the short script the issue measured.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("bench.quality")
LAYERS_FILE = Path(__file__).resolve().parent / "layers.yaml"
DEFAULT = "default"  # the default decision layer's column
DEFAULT_VAL = "default_val"  # the default layer on validation's events alone (build --evidence validation)
REFERENCES = (DEFAULT_VAL, "picked", "picked+layer", "hindsight", "without_pca", "pca_alone", "notebook", "global_std", "plain_pca")


def _prepared(exp: str):
    from search import experiment
    from telemetry.prepare import prepare

    return prepare(experiment.read_sweep(exp).data)


def candidate_layers() -> dict[str, dict]:
    """The candidate decision layers (benchmarks/layers.yaml), name -> plain-data layer."""
    from ensemble.combine import load_layers

    return load_layers(LAYERS_FILE)


def all_layers() -> dict[str, dict]:
    """The default layer, then the candidates."""
    from ensemble.combine import DEFAULT_LAYER

    return {DEFAULT: DEFAULT_LAYER, **candidate_layers()}


def reference_scores(exp: str, quick: bool) -> dict[str, dict[str, np.ndarray]]:
    """Validation/test scores of the notebook configuration and of the plain PCA script (cached)."""
    from models import registry

    cache = Path(exp) / "bench_references.npz"
    if cache.is_file():
        z = np.load(cache)
        return {name: {s: z[f"{name}.{s}"] for s in ("fit", "validation", "test")} for name in ("notebook", "plain_pca")}
    data = _prepared(exp)
    pca = registry.get("pca")(lags=5, n_components=0.95).fit(data.fit, data.validation)
    stride = max(1, len(data.fit) // 200_000)  # the notebook trained on every window; cap the cost at 1M rows
    nb = registry.get("bilstm_ae")(window=5, units=64, latent=64, dropout=0.2, epochs=1 if quick else 2,
                                   batch_size=1024, train_stride=stride, seed=0)
    nb.fit(data.fit, data.validation)
    out = {"notebook": {s: nb.score_samples(getattr(data, s)) for s in ("validation", "test")},
           "plain_pca": {s: pca.score_samples(getattr(data, s)) for s in ("validation", "test")}}
    out["notebook"]["fit"] = out["plain_pca"]["fit"] = np.zeros(0, np.float32)
    np.savez(cache, **{f"{n}.{s}": v for n, d in out.items() for s, v in d.items()})
    return out


def evaluate_dataset(ds, exp: str, quick: bool, layers=None) -> dict:
    """Test F0.5 of ``layers`` (names of :func:`all_layers`; None: all) and of the references. Every
    layer is fitted on the labelled events ``ensemble build``'s default evidence takes (``auto``: the
    fit split's with validation's on data of up to 2 M rows); ``default_val``: the default layer on
    validation's events alone."""
    from ensemble.build import data_rows
    from ensemble.combine import DecisionLayer
    from ensemble.evidence import fit_evidence, fitting_rows, resolved
    from ensemble.members import load_members
    from search import experiment
    from detection.metrics import corrected_event_f05
    from detection.thresholds import Threshold

    m = load_members(exp)
    yv, yt = m.sets["validation_labels"], m.sets["test_true_labels"]
    row = {"dataset": ds.name, "kind": ds.kind, "val_events": int(_n_events(yv)), "test_events": int(_n_events(yt)),
           "members": len(m.names)}
    rules = [m.rule(j) for j in range(len(m.names))]  # each member's own rule: the guard, as in build
    extra = fit_evidence(m) if resolved("auto", data_rows(m)) == "fit+validation" else None
    row["fit_events"] = 0 if extra is None else extra.events
    s_fit, y_fit, seg_fit, ch_fit = fitting_rows(m.scores["validation"], yv, None, extra, m.channel_inputs("validation"))

    def fitted(layer, keep):  # the layer on some members, on the same evidence
        return layer.fit(s_fit[:, keep], y_fit, segments=seg_fit, member_rules=[r for r, k in zip(rules, keep) if k])

    named = all_layers()
    for name in (named if layers is None else layers):
        layer = DecisionLayer.from_dict(named[name], source=name)
        if layer.rule.per_channel and not m.channel_scores:  # a cached sweep whose trials stored no per-channel scores
            row[name] = np.nan
            continue
        ens = layer.fit(s_fit, y_fit, m.names, **ch_fit, segments=seg_fit, member_rules=rules)
        row[name] = corrected_event_f05(yt, ens.predict(m.scores["test"], m.channel_scores.get("test")))
    ens = DecisionLayer().fit(m.scores["validation"], yv, m.names, **m.channel_inputs("validation"), member_rules=rules)
    row[DEFAULT_VAL] = corrected_event_f05(yt, ens.predict(m.scores["test"], m.channel_scores.get("test")))
    member_test = [corrected_event_f05(yt, m.rule(j).predict(m.scores["test"][:, j])) for j in range(len(m.names))]
    row["picked"] = member_test[m.picked]
    row["picked_member"] = m.names[m.picked]
    one = fitted(DecisionLayer(), np.arange(len(m.names)) == m.picked)
    row["picked+layer"] = corrected_event_f05(yt, one.predict(m.scores["test"][:, [m.picked]]))
    row["hindsight"] = max(member_test)
    # Ablation of the pca member: the default layer without the pca trials, and on them alone.
    is_pca = np.array([n.startswith("pca#") for n in m.names])
    for col, keep in (("without_pca", ~is_pca), ("pca_alone", is_pca)):
        if keep.any():
            row[col] = corrected_event_f05(yt, fitted(DecisionLayer(), keep).predict(m.scores["test"][:, keep]))
    base = m.board[(m.board["arch"] == "global_std") & m.board["completed"].astype(bool)]
    if not base.empty:
        meta, sc = experiment.load_trial(base.iloc[0]["checkpoint"])
        row["global_std"] = corrected_event_f05(yt, Threshold.from_dict(meta.threshold).predict(sc["test"]))
    refs = reference_scores(exp, quick)
    nb = Threshold("percentile", percentile=98, min_length=10).fit(refs["notebook"]["validation"])
    row["notebook"] = corrected_event_f05(yt, nb.predict(refs["notebook"]["test"]))
    pc = Threshold("best_f05", smooth=10).fit(refs["plain_pca"]["validation"], yv)
    row["plain_pca"] = corrected_event_f05(yt, pc.predict(refs["plain_pca"]["test"]))
    return row


def _n_events(y: np.ndarray) -> int:
    from telemetry.events import events

    return len(events(y))


def evaluate_all(work: Path, dss, exps: dict[str, str], quick: bool, layers=None) -> pd.DataFrame:
    rows = []
    for ds in dss:
        log.info("evaluating %s", ds.name)
        rows.append(evaluate_dataset(ds, exps[ds.name], quick, layers))
    return pd.DataFrame(rows)


def paired_interval(diff: np.ndarray, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """90 % bootstrap interval of the mean of paired differences (resampling data sets)."""
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, (resamples, diff.size))].mean(axis=1)
    return float(np.quantile(means, 0.05)), float(np.quantile(means, 0.95))


def summary_markdown(t: pd.DataFrame, quick: bool) -> str:
    default = DEFAULT
    variants = list(all_layers())
    cols = ["dataset", "val_events", "fit_events", "test_events", default, DEFAULT_VAL, "picked", "picked+layer", "hindsight", "without_pca",
            "pca_alone", "notebook", "global_std", "plain_pca"]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v)  # noqa: E731
    lines = [f"Test F0.5 per data set (ensemble = `{default}`, the default decision layer on `ensemble build`'s default "
             f"evidence; `{DEFAULT_VAL}`: the same on validation's events alone):", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, np.nan)) for c in cols) + " |" for r in t.to_dict("records")]
    lines += ["", "Mean test F0.5 over data sets, every decision layer and reference (all / synthetic / real), "
              "and the paired 90 % interval of (layer - picked member) over data sets:", "",
              "| layer | mean | synthetic | real | - picked [90 % interval] | below picked |", "|---|---|---|---|---|---|"]
    for c in variants + list(REFERENCES):
        if c not in t:
            continue
        d = (t[c] - t["picked"]).to_numpy(float)
        lo, hi = paired_interval(d)
        by = t.groupby("kind")[c].mean()
        lines.append(f"| {c} | {t[c].mean():.3f} | {by.get('synthetic', np.nan):.3f} | {by.get('real', np.nan):.3f} | "
                     f"{d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] | {int((d < -1e-9).sum())} of {len(d)} |")
    return "\n".join(lines)
