"""Run, resume and inspect sweeps: one Ray Tune experiment per architecture.

Why one Tuner per architecture: each architecture has its own space, so a seeded TPE models one
space at a time instead of a conditional one; ASHA compares epochs of like models; each
architecture has its own resources, trial budget, progress and leaderboard; and an interrupted
sweep resumes architecture by architecture (finished ones are restored as they are).
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict

import numpy as np
import yaml

from search import experiment as ex
from search import finalists, shapes, spaces, storage
from search.config import SweepConfig, check_against_data, load_config, smoke
from search.results import default_storage, leaderboard
from search.spaces import to_tune
from search.trainable import train_member
from telemetry.errors import TelemetryError
from telemetry.prepare import prepare

log = logging.getLogger("search")


def param_space(cfg: SweepConfig, arch) -> dict:
    from models import registry

    space = {"arch": arch.name, **arch.fixed}
    if "seed" in registry.get(arch.name).param_names() and "seed" not in space:
        space["seed"] = cfg.seed  # one seed for the whole sweep, recorded with each trial
    space.update(to_tune(f"architectures.{arch.name}.space", arch.space))
    space["threshold"] = to_tune("threshold", cfg.threshold)
    return space


def connect(address: str | None, ray_cfg: dict, verbose: bool = False) -> None:
    """Local mode: a fresh one-node Ray on this machine. Cluster mode: join ``address`` ("auto").

    Quiet unless ``verbose``: the workers' output (TensorFlow's start-up banners, per-checkpoint
    lines) stays in Ray's session logs (/tmp/ray/session_latest/logs) instead of the terminal."""
    import ray

    if ray.is_initialized():
        return
    if address in (None, "local"):
        ray.init(address="local", num_cpus=ray_cfg.get("num_cpus"), num_gpus=ray_cfg.get("num_gpus"),
                 include_dashboard=False, logging_level=logging.WARNING, log_to_driver=verbose)
    else:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=verbose)


def check_storage_for_cluster(path: str, shared: bool) -> int:
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1 and not storage.is_uri(path) and not shared:
        raise TelemetryError(f"storage {path} is local to this machine but the cluster has {len(nodes)} nodes; "
                             f"use s3://... or gs://..., or an NFS path mounted on every node with --shared-storage")
    return len(nodes)


def _effective_raw(cfg: SweepConfig, store: str) -> dict:
    """The sweep as it actually runs (resolved paths, smoke-test edits), stored for resume."""
    raw = {k: v for k, v in cfg.raw.items() if k in ("ray", "search")}
    raw.update(name=cfg.name, seed=cfg.seed, storage=store, data=asdict(cfg.data), threshold=cfg.threshold)
    raw["architectures"] = {a.name: {"trials": a.trials, "resources": {"cpu": a.cpu, "gpu": a.gpu},
                                     "space": a.space, "fixed": a.fixed, **_start_of(cfg, a),
                                     **({"max_concurrent_trials": a.max_concurrent_trials} if a.max_concurrent_trials else {}),
                                     **({"budget_share": a.budget_share} if a.budget_share != 1.0 else {})}
                            for a in cfg.architectures}
    return raw


class ExperimentMismatch(TelemetryError):
    """The experiment at ``exp`` was started from another sweep: ``key`` differs (experiment's value,
    the new one). Continuing would mix trials of two sweeps in one experiment, so nothing runs."""

    def __init__(self, exp: str, source: str, key: str, stored, given, advice: str | None = None):
        self.exp, self.source, self.key, self.stored, self.given = exp, source, key, stored, given
        advice = advice or f"give the sweep a new name, or continue the experiment as it was with: " \
                           f"python -m search resume {exp}"
        super().__init__(f"{source}: differs from the experiment {exp} at {key} (the experiment has {_brief(stored)}, "
                         f"this file {_brief(given)}); {advice}")


def _brief(value, limit: int = 60) -> str:
    text = "nothing" if value is _ABSENT else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_ABSENT = object()
NOT_COMPARED = ("storage",)  # where the experiment lives, not what it is


def canonical(raw: dict) -> dict:
    """The sweep as plain YAML data (what a stored file reads back as), for comparing."""
    return yaml.safe_load(yaml.safe_dump(raw, sort_keys=False))


def first_difference(stored, given, path: str = ""):
    """(key path, stored value, given value) of the first place two canonical sweeps differ, or None."""
    if isinstance(stored, dict) and isinstance(given, dict):
        for k in [*stored, *(k for k in given if k not in stored)]:
            if not path and k in NOT_COMPARED:
                continue
            found = first_difference(stored.get(k, _ABSENT), given.get(k, _ABSENT), f"{path}.{k}" if path else str(k))
            if found:
                return found
        return None
    if isinstance(stored, list) and isinstance(given, list) and len(stored) == len(given):
        for i, (a, b) in enumerate(zip(stored, given)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if stored == given else (path, stored, given)


def check_same_sweep(exp: str, stored_file: str, raw: dict, source: str) -> None:
    """Refuse to continue the experiment ``exp`` with a sweep other than the one it was started with
    (``stored_file``: ex.GIVEN_FILE or ex.SWEEP_FILE, compared with ``raw``)."""
    stored = ex.read_sweep(exp, stored_file, required=False)
    if stored is None:
        return
    found = first_difference(canonical(stored.raw), canonical(raw))
    if found:
        raise ExperimentMismatch(exp, source, *found)


def check_same_data(exp: str, data, source: str) -> None:
    """The splits (their ids) are the ones the experiment's trials trained and were scored on: an
    edited data file under the same path would otherwise mix two data sets in one experiment."""
    stored = ex.read_sets(exp, required=False)
    if stored is None:
        return
    for name, s in data.sets().items():
        ids = stored.get(f"{name}_ids")
        if ids is None or not np.array_equal(ids, s.ids):
            had = "none" if ids is None else f"{len(ids)} rows, ids {ids[0]}..{ids[-1]}" if len(ids) else "0 rows"
            raise ExperimentMismatch(exp, source, f"the {name} split", _Shown(had),
                                     _Shown(f"{len(s.ids)} rows, ids {s.ids[0]}..{s.ids[-1]}"),
                                     advice="its data files changed since it started; restore them, or give the "
                                            "sweep a new name")


class _Shown(str):
    def __repr__(self) -> str:
        return str(self)


def local_gpus() -> int | None:
    """GPUs Ray would find on this machine (its own detection, honouring CUDA_VISIBLE_DEVICES),
    without starting Ray; None when that cannot be told."""
    try:
        from ray._private.accelerators import get_accelerator_manager_for_resource

        manager = get_accelerator_manager_for_resource("GPU")
        n = int(manager.get_current_node_num_accelerators())
        visible = manager.get_current_process_visible_accelerator_ids()
        return min(n, len(visible)) if visible is not None else n
    except Exception:  # a private API: if it moves, the trials' own placement is the only check left
        return None


def check_resources(cfg: SweepConfig, address: str | None) -> None:
    """Local mode: a trial asking for more CPUs or GPUs than this machine gives Ray would wait
    forever for a node that never comes, so it is refused before Ray starts."""
    if address not in (None, "local"):
        return
    cpus = cfg.ray.get("num_cpus") or os.cpu_count() or 1
    gpus = cfg.ray.get("num_gpus")
    told = "ray.num_gpus" if gpus is not None else "found"
    gpus = local_gpus() if gpus is None else gpus
    for a in cfg.architectures:
        where = f"{cfg.source}: architectures.{a.name}.resources"
        if a.cpu > cpus:
            raise TelemetryError(f"{where}.cpu: {a.cpu:g} CPUs per trial, but local mode has {cpus:g} "
                                 f"({'ray.num_cpus' if cfg.ray.get('num_cpus') else 'this machine'}); lower it, "
                                 f"or run on a cluster with --address")
        if gpus is not None and a.gpu > gpus:
            raise TelemetryError(f"{where}.gpu: {a.gpu:g} GPUs per trial, but local mode has {gpus} ({told} on this "
                                 f"machine); lower it, or run on a cluster with --address")


def check_cluster_resources(cfg: SweepConfig) -> None:
    """On a cluster: each architecture's trial must fit on one node, present or one the autoscaler
    may launch, else its trials would wait forever."""
    import ray

    from search.capacity import autoscaler_node_types

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    offered = nodes + list((autoscaler_node_types() or {}).values())
    for a in cfg.architectures:
        if not any(float(r.get("CPU", 0)) >= a.cpu and float(r.get("GPU", 0)) >= a.gpu for r in offered):
            raise TelemetryError(f"{cfg.source}: architectures.{a.name}.resources: {a.cpu:g} CPUs and {a.gpu:g} GPUs "
                                 f"per trial, but no node of the cluster and no worker type of its autoscaler offers "
                                 f"them (largest: {max((float(r.get('GPU', 0)) for r in offered), default=0):g} GPUs, "
                                 f"{max((float(r.get('CPU', 0)) for r in offered), default=0):g} CPUs)")


def probe_storage(store: str, exp: str) -> None:
    """Write and delete a small marker where the experiment goes (a local path or a URI, through the
    same pyarrow filesystems Ray uses), so unwritable storage is one line before Ray or any data."""
    try:
        storage.probe_write(exp)
    except (OSError, ValueError) as exc:  # pyarrow's errors are OSError subclasses (ArrowIOError)
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TelemetryError(f"storage {store}: cannot write the experiment {exp} there ({why})") from None


def _start_of(cfg: SweepConfig, arch) -> dict:
    """The start points as this data runs them (a space narrowed for the data drops what it no longer holds)."""
    points = [spaces.unflatten(p) for p in spaces.check_start(arch.name, arch.start, arch.space, cfg.threshold, strict=False)]
    return {"start": points} if points else {}


def _concurrency(cfg: SweepConfig, arch, resources: dict[str, float]) -> int:
    """Enough trials at once to use the machine (or the cluster as large as its autoscaler may grow
    it: search.capacity), few enough that most suggestions come from TPE's model of finished trials
    rather than being blind (each pending trial is one result TPE lacks)."""
    from search.capacity import trial_slots

    if arch.max_concurrent_trials:
        return int(arch.max_concurrent_trials)
    if cfg.search.get("max_concurrent_trials"):
        return int(cfg.search["max_concurrent_trials"])
    return max(1, min(trial_slots(resources, arch.cpu, arch.gpu), math.ceil(arch.trials / 3)))


def unfinished_trials(arch_path: str) -> int:
    """Trials that Tune's last saved experiment state holds as RUNNING or PENDING: those a resume runs
    again. After a Ctrl-C Tune saves that state, then stops every trial, so the result grid calls a
    trial cut short TERMINATED (when it was the last one, the counts alone look like a finished run)."""
    states = [n for n in storage.list_names(arch_path) if n.startswith("experiment_state-") and n.endswith(".json")]
    if not states:
        return 0
    raw = json.loads(storage.read_text(storage.join(arch_path, states[-1])))  # names end in a sortable timestamp
    statuses = [json.loads(state).get("status") for state, _ in raw.get("trial_data", [])]
    return sum(s in ("RUNNING", "PENDING") for s in statuses)


def _tuner(cfg: SweepConfig, arch, trainable, exp: str, concurrency: int, time_budget_s: float | None = None,
           verbose: bool = False, objective: tuple[str, str] = ("f05", "max")):
    import optuna
    from ray import tune
    from search.progress import Progress
    from search.searcher import BudgetStopper, StartKeepingASHA
    from search.searcher import FinalMetricOptunaSearch as OptunaSearch  # see search/searcher.py

    path = storage.join(exp, arch.name)
    if tune.Tuner.can_restore(path):
        log.info("%s: resuming from %s", arch.name, path)
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.variant_generator import parse_spec_vars

    max_t = max(1, cfg.max_epochs[arch.name])
    space = param_space(cfg, arch)
    # Known-good configurations first, as far as the space (narrowed for this data) still holds them.
    start = spaces.check_start(arch.name, arch.start, arch.space, cfg.threshold, strict=False)
    searched = bool(parse_spec_vars(space)[1])  # any sampled domain, nested ones included
    deadline = None
    if cfg.search.get("searcher", "tpe") == "random" or not searched:
        # Nothing to search (all constants) or asked for: seeded random sampling.
        searcher = BasicVariantGenerator(random_state=cfg.seed, max_concurrent=concurrency,
                                         points_to_evaluate=[spaces.unflatten(p) for p in start] or None)
    else:
        sampler = optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=max(2, min(10, arch.trials // 3)))
        # study named after the architecture: its copy in <exp>/<arch>/optuna.db is for optuna-dashboard;
        # TPE learns from the final objective: F0.5, or the validation loss on unlabelled data (search/shapes.py)
        if time_budget_s is not None and start:  # the known-good trials finish; the rest stops at the budget
            deadline, time_budget_s = time.time() + float(time_budget_s), None
        searcher = OptunaSearch(metric=objective[0], mode=objective[1], sampler=sampler, study_name=arch.name,
                                start=start, deadline=deadline)
    if cfg.search.get("scheduler", "asha") == "fifo" or max_t == 1:
        # One epoch (every member without epochs): ASHA would have nothing to stop early, and with
        # no val_loss to compare (NaN) its rung's cut-off only warns about an all-NaN slice.
        scheduler = FIFOScheduler()
    else:
        # ASHA decides on the per-epoch validation loss; TPE learns from the final event-wise F0.5.
        scheduler = StartKeepingASHA(time_attr="epoch", metric="val_loss", mode="min", max_t=max_t,
                                     grace_period=min(int(cfg.search.get("grace_period", 1)), max_t),
                                     reduction_factor=float(cfg.search.get("reduction_factor", 3)),
                                     start=[spaces.unflatten(p) for p in start])
    stopper = None if deadline is None else BudgetStopper(deadline, [spaces.unflatten(p) for p in start])
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=arch.trials,
                                    max_concurrent_trials=concurrency, time_budget_s=time_budget_s),
        run_config=tune.RunConfig(
            name=arch.name, storage_path=exp,
            failure_config=tune.FailureConfig(max_failures=int(cfg.search.get("max_failures", 2))),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[Progress(arch.name, arch.trials, exp)], stop=stopper,
            verbose=1 if verbose else 0),
    )


def budget_shares(cfg: SweepConfig, left_s: float, done: set[str]) -> dict[str, float]:
    """Seconds for each architecture not yet run: what is left, split by ``budget_share`` (default
    equal). Recomputed before each architecture, so time a fast one leaves goes to the ones after."""
    todo = [a for a in cfg.architectures if a.name not in done]
    total = sum(a.budget_share for a in todo) or 1.0
    return {a.name: max(0.0, left_s) * a.budget_share / total for a in todo}


def run_sweep(cfg: SweepConfig, address: str | None = None, storage_path: str | None = None,
              smoke_test: bool = False, shared_storage: bool = False, time_budget_s: float | None = None,
              verbose: bool = False, resuming: bool = False) -> dict:
    """Run (or continue) every architecture's sweep; returns a summary per architecture.

    ``time_budget_s`` (or the sweep file's ``search.time_budget_s``): wall-clock seconds for the
    whole sweep, split across architectures (:func:`budget_shares`); an architecture whose share
    runs out keeps the trials it finished (Tune's ``time_budget_s`` stops the rest), and the
    ensemble is built from those.

    An experiment is bound to the sweep that started it: run again under the same name, the sweep
    (as given, and as adapted to the data) and the splits must be the stored ones, else
    :class:`ExperimentMismatch`. ``resuming``: the sweep is the stored one (:func:`resume`), so only
    the data is compared."""
    # Everything that can be wrong with the inputs is checked before Ray starts.
    # Tune's newer console output prints each experiment's configuration table even at verbose=0.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "1" if verbose else "0"
    if not verbose:
        # An epoch checkpoint per trial triggers Tune's "snapshotting too often" advice every few
        # seconds on short trials: by design here (a retried trial continues from its last epoch).
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created" per architecture
    if smoke_test:
        cfg = smoke(cfg)
    store = storage_path or cfg.storage or default_storage()
    if not storage.is_uri(store):
        store = os.path.abspath(store)
    exp = storage.join(store, cfg.name)
    check_resources(cfg, address)
    probe_storage(store, exp)
    given = _effective_raw(cfg, store)  # as the file says, before the data adapts it
    if not resuming:
        check_same_sweep(exp, ex.GIVEN_FILE, given, cfg.source)
    data = prepare(cfg.data)
    cfg = shapes.adapt(cfg, data)  # unlabelled: loss objective, unsupervised thresholds; many series: windows fit
    objective = shapes.objective(data.labelled)
    check_against_data(cfg, {k: len(v) for k, v in data.sets().items()})  # test too: it is scored
    if not resuming:  # as the data adapts it: data that lost its labels or telecommands under the same ids differs here
        check_same_sweep(exp, ex.SWEEP_FILE, _effective_raw(cfg, store), cfg.source)
    check_same_data(exp, data, cfg.source)

    connect(address, cfg.ray, verbose)
    import ray
    from ray import tune

    nodes = check_storage_for_cluster(store, shared_storage)
    if address not in (None, "local"):
        check_cluster_resources(cfg)
    if not ex.is_experiment(exp):
        ex.write_sweep(exp, given, _effective_raw(cfg, store))
        ex.write_sets(exp, data)
    log.info("sweep %s: %d architectures on %d node(s); results in %s", cfg.name, len(cfg.architectures), nodes, exp)

    # One copy in the object store, for the trials and the finalists' scoring tasks alike.
    data_ref = ray.put(data)
    top = ex.top_of(cfg.search)  # None: every trial scores every split itself
    from search.capacity import capacity as grown_capacity

    # Local mode: the machine. A launched cluster: at least what its autoscaler may add.
    present = {k: float(ray.cluster_resources().get(k, 0.0)) for k in ("CPU", "GPU")}
    capacity = present if address in (None, "local") else grown_capacity(present)
    budget = time_budget_s if time_budget_s is not None else cfg.search.get("time_budget_s")
    started = time.monotonic()
    summary, scored = {}, {}
    for arch in cfg.architectures:
        share = None
        if budget is not None:
            share = budget_shares(cfg, float(budget) - (time.monotonic() - started), set(summary))[arch.name]
            if share < 1.0:
                log.warning("%s: skipped, the time budget of %.0f s is spent", arch.name, float(budget))
                summary[arch.name] = {"trials": 0, "completed": 0, "errored": 0, "budget_s": 0.0}
                continue
            log.info("%s: %.0f s of the time budget", arch.name, share)
        # No more trials than finalists: each would be one, so it scores every split itself rather
        # than in a second pass that starts a process and reloads its model (search/finalists.py).
        with_data = tune.with_parameters(train_member, data=data_ref,
                                         score_all=top is None or arch.trials <= top)
        trainable = tune.with_resources(with_data, {"cpu": arch.cpu, "gpu": arch.gpu})
        t_arch = time.monotonic()
        grid = _tuner(cfg, arch, trainable, exp, _concurrency(cfg, arch, capacity), share, verbose, objective).fit()
        out_of_time = share is not None and time.monotonic() - t_arch >= share - 1.0
        if grid.num_terminated + grid.num_errors < arch.trials and out_of_time:
            log.warning("%s: time budget reached after %d of %d trials; keeping what finished", arch.name,
                        grid.num_terminated + grid.num_errors, arch.trials)
        elif (ended := min(grid.num_terminated + grid.num_errors,
                           arch.trials - unfinished_trials(storage.join(exp, arch.name)))) < arch.trials:
            # Tune catches the first Ctrl-C (SIGINT) itself: it saves the experiment state and fit()
            # returns early without raising. Stop here (not on to the next architecture) like Ctrl-C.
            raise KeyboardInterrupt(f"{arch.name}: interrupted after {ended} of {arch.trials} trials; "
                                    f"resume with: python -m search resume {exp}")
        statuses = [r.metrics.get("f05") is not None or r.metrics.get("objective") == "val_loss" for r in grid]
        errors = [r for r in grid if r.error is not None]
        summary[arch.name] = {"trials": len(grid), "completed": int(sum(statuses)), "errored": len(errors),
                              **({"budget_s": round(share, 1)} if share is not None else {})}
        for r in errors:
            log.warning("%s: trial %s failed: %s", arch.name, r.path, str(r.error).strip().splitlines()[-1])
        if top is not None:  # also on resume: a finished architecture's finalists not scored yet are
            scored[arch.name] = finalists.finalize(exp, data_ref, {arch.name: (arch.cpu, arch.gpu)}, top,
                                                   archs=[arch.name]).get(arch.name, {})
    board = leaderboard(exp)
    return {"experiment": exp, "architectures": summary, "leaderboard_rows": int(len(board)),
            "finalists": scored}


def resume(exp: str, address: str | None = None, shared_storage: bool = False, verbose: bool = False) -> dict:
    """Continue an interrupted sweep from its stored sweep file: finished trials stay, the rest run."""
    cfg = ex.read_sweep(exp).config()
    parent = exp.rstrip("/").rsplit("/", 1)[0]
    return run_sweep(cfg, address=address, storage_path=parent, shared_storage=shared_storage, verbose=verbose,
                     resuming=True)


def finalize_experiment(exp: str, top: int | None = None, address: str | None = None, shared_storage: bool = False,
                        verbose: bool = False) -> dict:
    """``python -m search finalize``: holdout and test scores for the top ``top`` trials per
    architecture of a stored experiment (default: its sweep's ``search.finalists``), then the
    leaderboard written again (search/finalists.py)."""
    import ray

    if top is not None and top < 1:
        raise TelemetryError(f"--top must be >= 1, got {top}")
    cfg = ex.read_sweep(exp).config()
    if top is None:
        top = ex.top_of(cfg.search)
    board = leaderboard(exp, write=False)
    if finalists.pending(board, top).empty:  # nothing to do: no data loaded, no Ray started
        return {"experiment": exp, "top": top, "architectures": finalists.finalize_summary(board)}
    data = prepare(cfg.data)
    finalists.check_same_rows(exp, data)
    started = not ray.is_initialized()
    connect(address, cfg.ray, verbose)
    try:
        parent = exp.rstrip("/").rsplit("/", 1)[0]
        check_storage_for_cluster(parent, shared_storage)
        resources = {a.name: (a.cpu, a.gpu) for a in cfg.architectures}
        summary = finalists.finalize(exp, ray.put(data), resources, top)
    finally:
        if started:
            ray.shutdown()
    leaderboard(exp)  # the stored leaderboard shows the new holdout figures
    return {"experiment": exp, "top": top, "architectures": summary}


__all__ = ["run_sweep", "resume", "finalize_experiment", "load_config", "param_space"]
