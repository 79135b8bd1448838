"""``telesweep auto``: new data in, submission out, within a time budget and with no sweep file.

One command runs what a user would otherwise assemble by hand: a sweep file sized from the data and
the budget (search.auto: known-good configurations first, windows and strides that fit, the trial
counts), the sweep in local mode, and ``ensemble build`` with the anchored member selection (the
known-good configurations, which carry over to new data, unless validation holds enough events to
prefer a searched one). The sweep file it used is written beside the results (``auto.yaml``, and
``--write-config FILE``), so the run can be repeated, resumed, edited or sent to a cluster with
``search run --config``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import yaml

from telemetry.atomic import write_text

log = logging.getLogger("ensemble.auto")
CONFIG_FILE = "auto.yaml"


def run_auto(train: str, test: str | None, out: str | Path, time_budget_s: float, preset: str = "fast",
             channels=None, labels: str = "auto", series: str | None = None, write_config: str | None = None,
             plan_only: bool = False, seed: int = 0, verbose: bool = False, measure: bool = True,
             architectures: list[str] | None = None, evidence: str = "auto") -> dict:
    """Plan, sweep and build; with ``plan_only``, write the sweep file and return the plan only.
    ``measure``: time the window models here to fit them into the budget (search.auto). ``evidence``:
    ``build``'s (the labelled events the decision layer is fitted on); ``auto``: :func:`evidence_for`."""
    from ensemble.evidence import checked_evidence, resolved
    from search.auto import auto_config, describe
    from search.config import parse_config

    checked_evidence(evidence)  # before anything runs

    import time

    t0 = time.monotonic()
    out = Path(out).resolve()
    raw, facts = auto_config(train, test, out, time_budget_s, preset=preset, channels=channels, labels=labels,
                             series=series, seed=seed, measure=measure, architectures=architectures)
    cfg = parse_config(raw, source="auto")  # the schema every sweep file passes
    text = yaml.safe_dump(raw, sort_keys=False)
    if (out / CONFIG_FILE).is_file():  # an earlier run into this folder: the same settings only
        from search.runner import ExperimentMismatch, canonical, first_difference

        found = first_difference(canonical(yaml.safe_load((out / CONFIG_FILE).read_text())), canonical(raw))
        if found:
            raise ExperimentMismatch(str(out), f"telesweep auto --out {out}", *found,
                                     advice=f"use another --out, or continue that run as it was with: python -m search "
                                            f"resume {raw['storage']}/{raw['name']}")
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / CONFIG_FILE, text)
    if write_config:
        write_text(Path(write_config), text)
    evidence = resolved(evidence, facts["rows"] + facts.get("test_rows", 0))
    summary_text = describe(facts, raw) + (
        f"\nensemble: the known-good trials (ensemble build --members anchored --evidence {evidence}); the decision "
        f"layer is fitted on the labelled events of "
        f"{'the fit and validation splits' if evidence == 'fit+validation' else 'the validation split'}"
        if facts.get("events") else "")
    for line in summary_text.splitlines():
        log.info("plan: %s", line)
    if plan_only:
        return {"out": str(out), "config": str(out / CONFIG_FILE), "plan": summary_text, "facts": facts}
    from ensemble.build import build
    from search.runner import run_sweep

    # The budget is the command's: what planning took (reading the data, timing the members) is spent.
    summary = run_sweep(cfg, verbose=verbose, time_budget_s=max(1.0, time_budget_s - (time.monotonic() - t0)))
    res = build(summary["experiment"], out, seed=seed, members="anchored", evidence=evidence)
    res.update(config=str(out / CONFIG_FILE), plan=summary_text, sweep=summary, evidence=evidence)
    return res


def evidence_for(facts: dict) -> str:
    """The ``auto`` evidence for the data ``facts`` describe (ensemble.evidence.evidence_for_rows)."""
    from ensemble.evidence import evidence_for_rows

    return evidence_for_rows(facts["rows"] + facts.get("test_rows", 0))
