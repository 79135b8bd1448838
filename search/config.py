"""The sweep file (YAML) as plain data, checked completely before Ray starts.

Layout (see configs/demo.yaml):
  name, seed, storage, data: {...telemetry.prepare.DataConfig...},
  ray: {num_cpus, num_gpus}                      local mode only
  search: {searcher: tpe|random, scheduler: asha|fifo, max_concurrent_trials, grace_period,
           reduction_factor, max_failures}
  threshold: {method, smooth, min_length, max_gap, ...}  a space shared by every architecture
                                                 (the fields of telemetry.thresholds.Threshold)
  architectures: {<registry name>: {trials, resources: {cpu, gpu}, space: {...}, fixed: {...}}}
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from models import registry
from search import spaces
from telemetry.errors import TelemetryError
from telemetry.prepare import DataConfig
from telemetry.thresholds import METHODS, PARAMS as THRESHOLD_PARAMS
from telemetry.windows import check_window_fits

TOP_KEYS = {"name", "seed", "storage", "data", "ray", "search", "threshold", "architectures"}
SEARCH_KEYS = {"max_concurrent_trials", "grace_period", "reduction_factor", "max_failures", "scheduler", "searcher",
               "time_budget_s"}
ARCH_KEYS = {"trials", "resources", "space", "fixed", "max_concurrent_trials", "budget_share"}
THRESHOLD_KEYS = set(THRESHOLD_PARAMS)
# Search-side parameters of a trial beyond the estimator's own: the threshold rule.
DEFAULT_THRESHOLD = {"method": "best_f05", "min_length": 1, "max_gap": 0}


def _unknown(where: str, got, known) -> None:
    extra = sorted(set(got) - set(known))
    if extra:
        raise TelemetryError(f"{where}: unknown key {extra[0]!r} (known: {', '.join(sorted(known))})")


@dataclass
class ArchSpec:
    name: str
    trials: int
    cpu: float
    gpu: float
    space: dict
    fixed: dict
    max_concurrent_trials: int | None = None
    budget_share: float = 1.0  # this architecture's weight when a time budget is split


@dataclass
class SweepConfig:
    name: str
    data: DataConfig
    architectures: list[ArchSpec]
    seed: int = 0
    storage: str | None = None
    ray: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)
    threshold: dict = field(default_factory=lambda: dict(DEFAULT_THRESHOLD))
    raw: dict = field(default_factory=dict, repr=False)  # the file as read, stored with the experiment

    @property
    def max_epochs(self) -> dict[str, int]:
        """ASHA's ``max_t`` per architecture: the most epochs a trial can run (searched, fixed, or
        the model's own default; 1 for members that do not train in epochs)."""
        return {a.name: int(_largest(a, "epochs") or 1) for a in self.architectures}


def load_config(path: str | os.PathLike) -> SweepConfig:
    p = Path(path)
    if not p.is_file():
        raise TelemetryError(f"{p}: sweep file not found")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise TelemetryError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise TelemetryError(f"{p}: a sweep file is a mapping with keys {', '.join(sorted(TOP_KEYS))}")
    return parse_config(raw, base_dir=p.resolve().parent, source=str(p))


def parse_config(raw: dict, base_dir: str | os.PathLike = ".", source: str = "sweep") -> SweepConfig:
    raw = copy.deepcopy(raw)
    _unknown(source, raw, TOP_KEYS)
    for key in ("name", "data", "architectures"):
        if key not in raw:
            raise TelemetryError(f"{source}: missing key {key!r}")
    data = DataConfig.from_dict(raw["data"], base_dir=base_dir)
    search = raw.get("search") or {}
    _unknown(f"{source}: search", search, SEARCH_KEYS)
    if search.get("searcher", "tpe") not in ("tpe", "random"):
        raise TelemetryError(f"{source}: search.searcher must be tpe or random, got {search['searcher']!r}")
    tb = search.get("time_budget_s")
    if tb is not None and (isinstance(tb, bool) or not isinstance(tb, (int, float)) or tb <= 0):
        raise TelemetryError(f"{source}: search.time_budget_s must be a number of seconds > 0, got {tb!r}")
    if search.get("scheduler", "asha") not in ("asha", "fifo"):
        raise TelemetryError(f"{source}: search.scheduler must be asha or fifo, got {search['scheduler']!r}")
    ray_cfg = raw.get("ray") or {}
    _unknown(f"{source}: ray", ray_cfg, {"num_cpus", "num_gpus"})
    threshold = {**DEFAULT_THRESHOLD, **(raw.get("threshold") or {})}
    _unknown(f"{source}: threshold", threshold, THRESHOLD_KEYS)
    spaces.validate(f"{source}: threshold", threshold)
    for m in spaces.values_of(threshold["method"]):
        if m not in METHODS:
            raise TelemetryError(f"{source}: threshold.method {m!r} is not one of {', '.join(METHODS)}")
    archs = []
    if not isinstance(raw["architectures"], dict) or not raw["architectures"]:
        raise TelemetryError(f"{source}: architectures must name at least one architecture")
    for name, spec in raw["architectures"].items():
        where = f"{source}: architectures.{name}"
        cls = registry.get(name)
        spec = spec or {}
        _unknown(where, spec, ARCH_KEYS)
        space, fixed = spec.get("space") or {}, spec.get("fixed") or {}
        allowed = set(cls.param_names())
        _unknown(f"{where}.space", space, allowed)
        _unknown(f"{where}.fixed", fixed, allowed)
        both = sorted(set(space) & set(fixed))
        if both:
            raise TelemetryError(f"{where}: {both[0]!r} is both searched and fixed")
        spaces.validate(f"{where}.space", space)
        res = spec.get("resources") or {}
        _unknown(f"{where}.resources", res, {"cpu", "gpu"})
        trials = spec.get("trials", 4)
        if not isinstance(trials, int) or trials < 1:
            raise TelemetryError(f"{where}.trials must be a positive integer, got {trials!r}")
        cpu, gpu = float(res.get("cpu", 1)), float(res.get("gpu", 0))
        if cpu <= 0 or gpu < 0 or gpu > 1 and gpu != int(gpu):
            raise TelemetryError(f"{where}.resources: cpu must be > 0 and gpu a fraction or a whole number, got {res}")
        share = spec.get("budget_share", 1.0)
        if isinstance(share, bool) or not isinstance(share, (int, float)) or share <= 0:
            raise TelemetryError(f"{where}.budget_share must be a number > 0, got {share!r}")
        archs.append(ArchSpec(name, trials, cpu, gpu, space, fixed, spec.get("max_concurrent_trials"), float(share)))
    storage = raw.get("storage")
    if storage and "://" not in storage and not os.path.isabs(storage):
        storage = str((Path(base_dir) / storage).resolve())
    return SweepConfig(name=str(raw["name"]), data=data, architectures=archs, seed=int(raw.get("seed", 0)),
                       storage=storage, ray=ray_cfg, search=search, threshold=threshold, raw=raw)


def _largest(arch: ArchSpec, key: str):
    """The largest value ``key`` can take in a trial: searched, fixed, or the estimator's default."""
    spec = arch.space.get(key, arch.fixed.get(key, registry.get(arch.name)().get_params().get(key)))
    return spaces.bounds(spec)[1]


def check_against_data(cfg: SweepConfig, split_lengths: dict[str, int]) -> None:
    """Spaces that cannot fit the data (a window longer than a split) fail before any trial."""
    for a in cfg.architectures:
        window = _largest(a, "window")
        if window is None:
            continue
        horizon = int(_largest(a, "horizon") or 0)
        for split, n in sorted(split_lengths.items(), key=lambda kv: kv[1]):  # the shortest first
            try:
                check_window_fits(n, int(window), horizon, f"the {split} split")
            except TelemetryError as exc:
                raise TelemetryError(f"architectures.{a.name}: {exc}") from None


def smoke(cfg: SweepConfig) -> SweepConfig:
    """The smoke-test variant: at most two trials per architecture, one epoch, a searched window fixed to 16."""
    cfg = copy.deepcopy(cfg)
    for a in cfg.architectures:
        a.trials = min(a.trials, 2)
        params = registry.get(a.name).param_names()  # row models have neither epochs nor windows
        if "epochs" in params:
            a.space.pop("epochs", None)
            a.fixed["epochs"] = 1
        if "window" in params and "window" in a.space:
            a.space.pop("window")
            a.fixed["window"] = 16
    return cfg
