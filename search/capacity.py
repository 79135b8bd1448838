"""How many trials can run at once: the cluster as it is now, or as large as its autoscaler may grow it.

On a cluster started by ``ray up``, GPU workers are added on demand (``min_workers: 0``), so when an
architecture starts the cluster may hold only the head. Sizing concurrency from the CPUs present
then would run one trial at a time forever; the launcher's own copy of the cluster file on the head
(``~/ray_bootstrap_config.yaml``) says how many workers of each type the autoscaler may add.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import yaml

BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"


def _launcher_config(path=None) -> dict | None:
    p = Path(os.path.expanduser(str(path or os.environ.get("TELESWEEP_AUTOSCALER_CONFIG", BOOTSTRAP_CONFIG))))
    if not p.is_file():
        return None
    try:
        return yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None


def autoscaler_node_types(path: str | os.PathLike | None = None) -> dict[str, dict[str, float]] | None:
    """The resources of one node of each type the autoscaler may launch; None without a launcher
    config."""
    cfg = _launcher_config(path)
    if cfg is None:
        return None
    return {name: {k: float(v) for k, v in ((spec or {}).get("resources") or {}).items()}
            for name, spec in (cfg.get("available_node_types") or {}).items()}


def autoscaler_capacity(path: str | os.PathLike | None = None) -> dict[str, float] | None:
    """The most resources the autoscaler may bring up (head included), from the cluster launcher's
    config; None without one (local mode, or machines joined by hand). Each worker type counts
    ``min(its max_workers, the cluster's max_workers)`` nodes of its stated ``resources``: an upper
    bound when several worker types share the cluster's limit."""
    cfg = _launcher_config(path)
    if cfg is None:
        return None
    types = cfg.get("available_node_types") or {}
    head = cfg.get("head_node_type")
    cluster_max = int(cfg.get("max_workers", 0) or 0)
    total: dict[str, float] = {}
    for name, spec in types.items():
        spec = spec or {}
        n = 1 if name == head else min(int(spec.get("max_workers", cluster_max) or 0), cluster_max)
        for key, value in (spec.get("resources") or {}).items():
            total[key] = total.get(key, 0.0) + n * float(value)
    return total or None


def capacity(present: dict[str, float], path: str | os.PathLike | None = None) -> dict[str, float]:
    """Resources to size concurrency by: what the cluster has now, or what its autoscaler may add,
    whichever is larger for each resource."""
    grown = autoscaler_capacity(path) or {}
    return {k: max(float(present.get(k, 0.0)), float(grown.get(k, 0.0))) for k in set(present) | set(grown)}


def trial_slots(resources: dict[str, float], cpu: float, gpu: float) -> int:
    """How many trials asking for (cpu, gpu) fit in ``resources`` at once (at least 1)."""
    fits = [math.floor(resources.get("CPU", 0.0) / cpu + 1e-9)] if cpu > 0 else []
    if gpu > 0:
        fits.append(math.floor(resources.get("GPU", 0.0) / gpu + 1e-9))
    return max(1, min(fits) if fits else 1)
