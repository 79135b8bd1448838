"""Search spaces as plain data (the ``space:`` blocks of a sweep file) turned into Ray Tune domains.

A parameter is a constant, or one of:
  {choice: [a, b, ...]}            categorical
  {int: [lo, hi], log: false}      integer in [lo, hi] (inclusive), optionally log-uniform
  {float: [lo, hi], log: false}    float in [lo, hi], optionally log-uniform
"""
from __future__ import annotations

from typing import Any

from telemetry.errors import TelemetryError

KINDS = ("choice", "int", "float")


def _check_spec(where: str, spec: dict) -> None:
    kinds = [k for k in spec if k in KINDS]
    extra = sorted(set(spec) - set(KINDS) - {"log"})
    if len(kinds) != 1 or extra:
        raise TelemetryError(f"{where}: a parameter needs exactly one of choice/int/float (and optionally log), got {sorted(spec)}")
    kind = kinds[0]
    val = spec[kind]
    if kind == "choice":
        if not isinstance(val, list) or not val:
            raise TelemetryError(f"{where}: choice needs a non-empty list, got {val!r}")
        return
    if not (isinstance(val, list) and len(val) == 2):
        raise TelemetryError(f"{where}: {kind} needs [low, high], got {val!r}")
    lo, hi = val
    if kind == "int" and not all(isinstance(v, int) for v in val):
        raise TelemetryError(f"{where}: int bounds must be integers, got {val!r}")
    if lo > hi:
        raise TelemetryError(f"{where}: empty range [{lo}, {hi}]")
    if spec.get("log") and lo <= 0:
        raise TelemetryError(f"{where}: a log range needs low > 0, got {lo}")


def bounds(spec: Any) -> tuple[Any, Any]:
    """(smallest, largest) value a parameter can take; for checking spaces before any trial runs."""
    if not isinstance(spec, dict):
        return spec, spec
    if "choice" in spec:
        vals = [v for v in spec["choice"] if isinstance(v, (int, float))]
        return (min(vals), max(vals)) if vals else (None, None)
    kind = "int" if "int" in spec else "float"
    return tuple(spec[kind])


def values_of(spec: Any) -> list:
    """Every value a categorical or constant parameter can take."""
    if isinstance(spec, dict) and "choice" in spec:
        return list(spec["choice"])
    if isinstance(spec, dict):
        return []
    return [spec]


def to_tune(where: str, space: dict) -> dict:
    """Translate one plain-data space into Ray Tune sampling domains (constants pass through)."""
    from ray import tune

    out = {}
    for name, spec in space.items():
        w = f"{where}.{name}"
        if not isinstance(spec, dict):
            out[name] = spec
            continue
        _check_spec(w, spec)
        log = bool(spec.get("log", False))
        if "choice" in spec:
            out[name] = tune.choice(spec["choice"])
        elif "int" in spec:
            lo, hi = spec["int"]
            out[name] = lo if lo == hi else (tune.lograndint(lo, hi + 1) if log else tune.randint(lo, hi + 1))
        else:
            lo, hi = spec["float"]
            out[name] = lo if lo == hi else (tune.loguniform(lo, hi) if log else tune.uniform(lo, hi))
    return out


def validate(where: str, space: dict) -> None:
    for name, spec in space.items():
        if isinstance(spec, dict):
            _check_spec(f"{where}.{name}", spec)


def searched(space: dict) -> list[str]:
    """The names of the parameters a space samples (a range of one value or a constant is not)."""
    out = []
    for name, spec in space.items():
        if isinstance(spec, dict) and ("choice" in spec or bounds(spec)[0] != bounds(spec)[1]):
            out.append(name)
    return out


def contains(spec: Any, value: Any) -> bool:
    """Whether ``value`` is one the parameter can take: a listed choice, or inside an int/float range
    (an integer for an int range)."""
    if not isinstance(spec, dict):
        return value == spec
    if "choice" in spec:  # True is not 1 here, though Python says they are equal
        return any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in spec["choice"])
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if "int" in spec and not isinstance(value, int):
        return False
    lo, hi = bounds(spec)
    return lo <= value <= hi


def check_start(where: str, points, space: dict, threshold: dict, strict: bool = True) -> list[dict]:
    """Configurations a search runs first (``start:`` of an architecture): each a mapping of searched
    parameters (``threshold: {...}`` for the rule's searched keys) to values inside their space.
    Unnamed parameters are sampled as usual. Returns the points flattened the way Ray's Optuna
    searcher names parameters (``threshold/method``). ``strict=False`` drops, instead of refusing,
    what a space narrowed after the file was read no longer holds (a smoke test fixing the window,
    data without telecommands, unlabelled data's unsupervised rules)."""
    if points is None:
        return []
    if not isinstance(points, list) or not all(isinstance(p, dict) and p for p in points):
        raise TelemetryError(f"{where}: a list of configurations (mappings of searched parameter: value), got {points!r}")
    flat = []
    for i, point in enumerate(points):
        out = {}
        for key, value in point.items():
            if key == "threshold":
                if not isinstance(value, dict):
                    raise TelemetryError(f"{where}[{i}].threshold: a mapping of searched rule keys, got {value!r}")
                for k, v in value.items():
                    if _point_value_ok(f"{where}[{i}].threshold.{k}", threshold, k, v, strict):
                        out[f"threshold/{k}"] = v
                continue
            if _point_value_ok(f"{where}[{i}].{key}", space, key, value, strict):
                out[key] = value
        if out:
            flat.append(out)
    return flat


def _point_value_ok(where: str, space: dict, key: str, value, strict: bool) -> bool:
    if key not in space or key not in searched(space):
        if not strict:
            return False
        known = ", ".join(searched(space)) or "none"
        raise TelemetryError(f"{where}: not a searched parameter (searched: {known})")
    if not contains(space[key], value):
        if not strict:
            return False
        raise TelemetryError(f"{where}: {value!r} is outside its space {space[key]!r}")
    return True


def unflatten(point: dict) -> dict:
    """``{"threshold/method": m, "window": w}`` -> ``{"threshold": {"method": m}, "window": w}``."""
    out: dict = {}
    for key, value in point.items():
        head, _, tail = key.partition("/")
        if tail:
            out.setdefault(head, {})[tail] = value
        else:
            out[head] = value
    return out


def matches(config: dict, point: dict) -> bool:
    """Whether a trial's config has every value a start point names (``threshold: {...}`` nested)."""
    for key, value in point.items():
        if key == "threshold":
            if not matches(dict(config.get("threshold") or {}), value):
                return False
        elif key not in config or config[key] != value or isinstance(config[key], bool) != isinstance(value, bool):
            return False
    return True
