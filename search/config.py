"""The sweep file (YAML) as plain data, checked completely before Ray starts.

Layout (see configs/demo.yaml; the typed schema is search/schema.py, exported for editors as
configs/sweep.schema.json by ``python -m search schema``):
  name, seed, storage, data: {...telemetry.prepare.DataConfig...},
  ray: {num_cpus, num_gpus}                      local mode only
  search: {searcher: tpe|random, scheduler: asha|fifo, max_concurrent_trials, grace_period,
           reduction_factor, max_failures, time_budget_s,
           finalists: K | all}                    holdout/test scored for the top K trials per
                                                 architecture only (search/finalists.py), default 3
  threshold: {method, smooth, min_length, max_gap, ...}  a space shared by every architecture
                                                 (the fields of detection.thresholds.Threshold)
  architectures: {<registry name>: {trials, resources: {cpu, gpu}, space: {...}, fixed: {...},
                                    start: [{...}, ...], max_concurrent_trials, budget_share}}
                                                 start: configurations (searched parameters'
                                                 values) the search runs first
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from models import registry
from search import schema, spaces
from telemetry.errors import TelemetryError
from telemetry.prepare import DataConfig
from telemetry.windows import check_window_fits

TOP_KEYS = {"name", "seed", "storage", "data", "ray", "search", "threshold", "architectures"}
# Search-side parameters of a trial beyond the estimator's own: the threshold rule.
DEFAULT_THRESHOLD = {"method": "best_f05", "min_length": 1, "max_gap": 0}
DATA_FILES = ("train", "test", "test_labels")  # the DataConfig fields that name files (resolved, checked)


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
    # Configurations the search runs first (known-good ones), as the sweep file gives them.
    start: list[dict] = field(default_factory=list)

    def largest(self, key: str):
        """The largest value ``key`` can take in a trial: searched, fixed, or the estimator's
        default (None where the estimator has no such parameter)."""
        spec = self.space.get(key, self.fixed.get(key, registry.get(self.name)().get_params().get(key)))
        return spaces.bounds(spec)[1]

    def window_span(self) -> tuple[int, int] | None:
        """(largest window, largest forecast horizon) of this architecture's trials; None for
        members without windows."""
        window = self.largest("window")
        return None if window is None else (int(window), int(self.largest("horizon") or 0))


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
    source: str = field(default="sweep", repr=False, compare=False)  # the file, for messages

    @property
    def max_epochs(self) -> dict[str, int]:
        """ASHA's ``max_t`` per architecture: the most epochs a trial can run (searched, fixed, or
        the model's own default; 1 for members that do not train in epochs)."""
        return {a.name: int(a.largest("epochs") or 1) for a in self.architectures}


def load_config(path: str | os.PathLike, check_files: bool = False) -> SweepConfig:
    """``check_files``: the data files must exist here (running a sweep); off for planning with
    --rows or for a sweep file whose data is swapped before it runs (the demo)."""
    p = Path(path)
    if not p.is_file():
        raise TelemetryError(f"{p}: sweep file not found")
    raw = load_yaml(p.read_text(), str(p))
    return parse_config(raw, base_dir=p.resolve().parent, source=str(p), check_files=check_files)


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping (plain YAML keeps the last,
    so ``seed: 7`` then ``seed: 8`` would run seed 8 without a word)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<: *anchor' merges on purpose: its keys may be overridden
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # an unhashable key: the safe loader's own error follows
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {first.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str):
    """YAML text as plain data; a syntax error or a duplicate key is one line with its line and column."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        what = what if what.startswith("duplicate key") else f"not valid YAML: {what}"
        raise TelemetryError(f"{source}: {where}{what}") from None
    except yaml.YAMLError as exc:
        raise TelemetryError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None


def parse_config(raw: dict, base_dir: str | os.PathLike = ".", source: str = "sweep",
                 check_files: bool = False) -> SweepConfig:
    """Validate ``raw`` against the schema (every field typed and bounded, unknown keys refused),
    then build the plain-data config; the first problem is a one-line TelemetryError."""
    if not isinstance(raw, dict):
        raise TelemetryError(f"{source}: a sweep file is a mapping with keys {', '.join(sorted(TOP_KEYS))}")
    raw = copy.deepcopy(raw)
    model = schema.sweep_model()
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        raise TelemetryError(schema.explain(exc, source, model)) from None
    # Validated: from here on the raw values are used as they are (the runner reads plain dicts).
    try:
        data = DataConfig.from_dict(raw["data"], base_dir=base_dir)
    except TypeError as exc:  # the wavelet block's keys are WaveletDenoiser's arguments
        raise TelemetryError(f"{source}: data.wavelet: {exc}") from None
    if check_files:
        check_data_files(data, source)
    threshold = {**DEFAULT_THRESHOLD, **(raw.get("threshold") or {})}
    spaces.validate(f"{source}: threshold", threshold)
    archs = []
    for name, spec in raw["architectures"].items():
        spec = spec or {}
        res = spec.get("resources") or {}
        space, fixed = spec.get("space") or {}, spec.get("fixed") or {}
        spaces.validate(f"{source}: architectures.{name}.space", space)
        start = spec.get("start") or []
        spaces.check_start(f"{source}: architectures.{name}.start", start, space, threshold)
        archs.append(ArchSpec(name, spec.get("trials", 4), float(res.get("cpu", 1)), float(res.get("gpu", 0)),
                              space, fixed, spec.get("max_concurrent_trials"), float(spec.get("budget_share", 1.0)),
                              [dict(p) for p in start]))
    storage = raw.get("storage")
    if storage and "://" not in storage and not os.path.isabs(storage):
        storage = str((Path(base_dir) / storage).resolve())
    return SweepConfig(name=raw["name"], data=data, architectures=archs, seed=raw.get("seed", 0),
                       storage=storage, ray=raw.get("ray") or {}, search=raw.get("search") or {},
                       threshold=threshold, raw=raw, source=source)


def check_data_files(data: DataConfig, source: str = "sweep") -> None:
    """The data files named (train; test and test_labels if given) exist on this machine.
    URIs (s3://...) are left to the loader: checking them needs the network."""
    for key in DATA_FILES:
        path = getattr(data, key, None)
        if path and "://" not in path and not Path(path).is_file():
            raise TelemetryError(f"{source}: data.{key}: file not found: {path}")


def check_windows_fit(cfg: SweepConfig, lengths: dict[str, int], what: str = "the {split} split") -> None:
    """Every architecture's largest window (and horizon) fits each of ``lengths`` (split name ->
    rows), shortest first, by the models' own rule (telemetry.windows); else a one-line error naming
    the architecture and ``what`` (formatted with the split's name)."""
    for a in cfg.architectures:
        span = a.window_span()
        if span is None:
            continue
        for split, n in sorted(lengths.items(), key=lambda kv: kv[1]):
            try:
                check_window_fits(n, *span, what.format(split=split))
            except TelemetryError as exc:
                raise TelemetryError(f"architectures.{a.name}: {exc}") from None


def check_against_data(cfg: SweepConfig, split_lengths: dict[str, int]) -> None:
    """Spaces that cannot fit the data (a window longer than a split) fail before any trial."""
    check_windows_fit(cfg, split_lengths)


def smoke(cfg: SweepConfig) -> SweepConfig:
    """The smoke-test variant: at most two trials per architecture, one epoch, a searched window fixed to
    16, and both trials at once where the machine has room (nothing for TPE to learn from two trials)."""
    cfg = copy.deepcopy(cfg)
    cfg.search.setdefault("max_concurrent_trials", 2)
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
