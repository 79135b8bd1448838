"""The sweep file's typed schema (pydantic v2), built from the code it configures.

Nothing here is a second copy of the code's parameter lists: the ``data`` section is
telemetry.prepare.DataConfig's fields, ``threshold`` detection.thresholds.Threshold's, and each
architecture's ``space``/``fixed`` its estimator's dataclass fields (models.registry), so a field
added there is accepted here (and appears in the exported JSON Schema) without an edit.

Strict mode on purpose: YAML already gives native types, so "3" is not an integer, 2.5 is not a
window and ``true`` is not a number. Unknown keys are errors at every level. ``explain`` turns
pydantic's first error into the project's one-line message: ``file: key.path: what, got value``.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError,
                      WithJsonSchema, WrapValidator, create_model, model_validator)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from telemetry.bounds import Check
from telemetry.prepare import DataConfig
from detection.thresholds import Threshold

STRICT = ConfigDict(strict=True, extra="forbid")
SPEC_KINDS = ("choice", "int", "float")
SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"
# search.finalists when the file names none: the ensemble's default 2 members per architecture
# (ensemble/members.py), plus one spare
DEFAULT_FINALISTS = 3


class Section(BaseModel):
    model_config = STRICT


# -- types as messages ----------------------------------------------------------------------------

_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
          dict: "a mapping", type(None): "null"}


def _members(hint) -> list:
    if typing.get_origin(hint) is Annotated:
        return _members(typing.get_args(hint)[0])
    if typing.get_origin(hint) in (Union, types.UnionType):
        return [m for a in typing.get_args(hint) for m in _members(a)]
    return [hint]


def _describe(hint) -> str:
    names = []
    for m in _members(hint):
        base = typing.get_origin(m) or m
        if base is Literal:
            names.append("one of " + ", ".join(map(repr, typing.get_args(m))))
        else:
            names.append(_NAMES.get(base, getattr(base, "__name__", str(base))))
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _alternatives(hint) -> list:
    """The members of a union, each with its own Annotated bounds kept."""
    if typing.get_origin(hint) is Annotated and typing.get_origin(typing.get_args(hint)[0]) in (Union, types.UnionType):
        return _alternatives(typing.get_args(hint)[0])  # a union with its one message (bounded)
    if typing.get_origin(hint) in (Union, types.UnionType):
        return [m for a in typing.get_args(hint) for m in _alternatives(a)]
    return [hint]


def _admits(hint, *kinds) -> bool:
    return any((typing.get_origin(m) or m) in kinds for m in _members(hint))


def typed(hint):
    """``hint`` as a field type; a union of plain types fails with one message ("should be a string
    or a list") instead of one error per member."""
    if typing.get_origin(hint) is Annotated and any(isinstance(a, WrapValidator) for a in typing.get_args(hint)[1:]):
        return hint  # already has its one message (bounded: a union of rules)
    plain = [m for m in _members(hint) if m is not type(None)]
    if len(plain) <= 1:
        return hint
    what = _describe(hint)

    def one_message(value, handler):
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("type_union", "should be {what}", {"what": what}) from None

    return Annotated[hint, WrapValidator(one_message)]


# -- search-space specs (search/spaces.py) over a parameter's own type ------------------------------

def _non_empty_choice(cls, data):
    if isinstance(data, dict) and data.get("choice") == []:
        raise ValueError("choice needs a non-empty list, got []")
    return data


def _ordered_range(kind: str):
    def check(m):
        lo, hi = m.bounds
        if lo > hi:
            raise ValueError(f"empty range [{lo}, {hi}]")
        if m.log and lo <= 0:
            raise ValueError(f"a log range needs low > 0, got {kind}: [{lo}, {hi}]")
        return m
    return check


def _spec_tag(value):
    if isinstance(value, dict):
        found = [k for k in SPEC_KINDS if k in value]
        return f"<{found[0]}>" if found else None  # None: the discriminator's own error
    return "<const>"


# Built once per title (and range models once per name), so the JSON Schema has one definition each.
_SPECS: dict[str, Any] = {}


def spec_of(hint, title: str):
    if title not in _SPECS:
        _SPECS[title] = _spec_of(hint, title)
    return _SPECS[title]


def _spec_of(hint, title: str):
    """A constant of type ``hint`` or a spec {choice: [...]} / {int: [lo, hi]} / {float: [lo, hi]}
    whose values have that type too; ``title`` names the generated models in the JSON Schema."""
    item = typed(hint)
    choice = create_model(f"{title}Choice", __base__=Section,
                          __validators__={"non_empty": model_validator(mode="before")(_non_empty_choice)},
                          choice=(list[item], Field(min_length=1)))
    branches = [Annotated[item, Tag("<const>")], Annotated[choice, Tag("<choice>")]]
    for kind, number in (("int", int), ("float", float)):
        if not _admits(hint, int, float) or (kind == "float" and not _admits(hint, float)):
            continue  # no {float: ...} for an integer, no range at all for a string
        bound = _bound_of(hint, number)
        name = f"{kind.title()}Range" if bound is number else f"{title}{kind.title()}Range"  # unbounded: shared
        if name in _SPECS:
            branches.append(Annotated[_SPECS[name], Tag(f"<{kind}>")])
            continue
        _SPECS[name] = create_model(
            name, __base__=Section,
            __validators__={"ordered": model_validator(mode="after")(_ordered_range(kind))},
            bounds=(list[bound], Field(alias=kind, min_length=2, max_length=2, description="[low, high], both included")),
            log=(bool, Field(False, description="sample log-uniformly (low > 0)")))
        branches.append(Annotated[_SPECS[name], Tag(f"<{kind}>")])
    tags = {typing.get_args(b)[-1].tag for b in branches}
    forms = " or ".join(f"{{{k}: {'[...]' if k == 'choice' else '[low, high]'}}}" for k in SPEC_KINDS
                        if f"<{k}>" in tags)
    log = " (optionally log: true)" if len(tags) > 2 else ""
    message = f"should be {_describe(hint)} or a search space {forms}{log}"
    return Annotated[Union[tuple(branches)], Discriminator(_spec_tag, custom_error_type="space_spec",
                                                            custom_error_message=message)]


def _bound_of(hint, number):
    """The range items' type: ``number`` with the bounds ``hint`` carries (Annotated Field metadata),
    those of the alternative of that very type first (n_components: an int >= 1 or a float in (0, 1))."""
    annotated = [m for m in _alternatives(hint)
                 if typing.get_origin(m) is Annotated and typing.get_args(m)[0] in (int, float)]
    for m in sorted(annotated, key=lambda m: typing.get_args(m)[0] is not number):
        meta = typing.get_args(m)[1:]
        if number is int:
            meta = tuple(_integer_bounds(a) for a in meta)
        return Annotated[(number, *meta)]
    return number


def _integer_bounds(field):
    """An {int: [...]} range of a real parameter: its bounds as the integers they admit (hysteresis
    < 1: <= 0), since an integer validator takes integer bounds only."""
    if not isinstance(field, FieldInfo):
        return field
    b = {}
    for m in field.metadata:
        for k in ("ge", "gt", "le", "lt"):
            if getattr(m, k, None) is not None:
                b[k] = getattr(m, k)
    if all(float(v).is_integer() for v in b.values()):
        return field
    out = {}
    if "ge" in b:
        out["ge"] = math.ceil(b["ge"])
    if "gt" in b:
        out["ge"] = max(out.get("ge", -math.inf), math.floor(b["gt"]) + 1)
    if "le" in b:
        out["le"] = math.floor(b["le"])
    if "lt" in b:
        out["le"] = min(out.get("le", math.inf), math.ceil(b["lt"]) - 1)
    return Field(**out)


# -- sections -------------------------------------------------------------------------------------

def _whole_or_fraction(gpu: float) -> float:
    if gpu > 1 and gpu != int(gpu):
        raise ValueError(f"a GPU share is a fraction in (0, 1] or a whole number of GPUs, got {gpu!r}")
    return gpu


GpuShare = Annotated[float, Field(ge=0), AfterValidator(_whole_or_fraction), WithJsonSchema({
    "anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 1}, {"type": "integer", "minimum": 0}],
    "description": "GPUs per trial: a fraction in (0, 1] (trials share a GPU) or a whole number", "default": 0})]


class Resources(Section):
    cpu: Annotated[float, Field(gt=0, description="CPUs per trial")] = 1.0
    gpu: GpuShare = 0.0


def _finalists_message(value, handler):
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError("finalists", "should be a number of trials >= 1 or 'all'") from None


Finalists = Annotated[Union[Annotated[int, Field(ge=1)], Literal["all"]], WrapValidator(_finalists_message)]


class RaySection(Section):
    """Local mode only (no --address): the resources Ray may use on this machine."""
    num_cpus: Optional[Annotated[int, Field(gt=0)]] = None
    num_gpus: Optional[Annotated[int, Field(ge=0)]] = None


class SearchSection(Section):
    searcher: Literal["tpe", "random"] = "tpe"
    scheduler: Literal["asha", "fifo"] = "asha"
    max_concurrent_trials: Optional[Annotated[int, Field(ge=1)]] = None
    grace_period: Annotated[int, Field(ge=1, description="ASHA: epochs before a trial can be stopped")] = 1
    reduction_factor: Annotated[float, Field(gt=1, description="ASHA: keep 1/reduction_factor per rung")] = 3.0
    max_failures: Annotated[int, Field(ge=0, description="retries of a failed trial")] = 2
    time_budget_s: Optional[Annotated[float, Field(gt=0, description="seconds for the whole sweep")]] = None
    finalists: Finalists = Field(
        DEFAULT_FINALISTS, description="trials per architecture scored on holdout and test (the best by the objective, after "
                       "the architecture's trials; the others score validation only), or all: every trial")


# -- bounds: the rules the code declares (telemetry.bounds.Check), as pydantic types -----------------

def _numbers_of(hint) -> list:
    return [t for t in (int, float) if _admits(hint, t)]


def bounded(hint, check: Check | None):
    """``hint`` narrowed by ``check``: the parameter's own rule (a model's ``_checks``, the threshold
    rule's ``CHECKS``) becomes Field bounds or a Literal, so a value the code would refuse inside a
    trial is refused here, and the exported JSON Schema shows the bound."""
    if check is None:
        return hint
    if check.either:
        phrase = check.phrase

        def one_message(value, handler):
            try:
                return handler(value)
            except ValidationError:
                raise PydanticCustomError("bounded_union", "should be {what}", {"what": phrase}) from None

        inner = Annotated[Union[tuple(bounded(hint, dataclasses.replace(c, nullable=False)) for c in check.either)],
                          WrapValidator(one_message)]
    elif check.kind == "choice":
        values = tuple(c for c in check.choices if c is not None)
        if set(values) == {True, False} and all(isinstance(c, bool) for c in values):
            inner = bool  # "should be a valid boolean" rather than a two-value enumeration
        else:
            inner = Literal[values]
    else:
        numbers = _numbers_of(hint)
        base = int if check.kind == "int" or numbers == [int] else float
        inner = Annotated[base, Field(**check.bounds())]
    nullable = check.nullable or None in check.choices
    return Optional[inner] if nullable and _admits(hint, type(None)) else inner


def _check_title(hint, check: Check | None) -> str:
    """A model-name part per (type, rule), so parameters with the same rule share their spec models."""
    if check is None:
        return _type_title(hint)
    parts = [_type_title(hint)]
    for c in check.either or (check,):
        if c.kind == "choice":
            parts.append("".join(_camel(str(v)) for v in c.choices))
        parts += [f"{k.title()}{v:g}".replace(".", "p").replace("-", "m") for k, v in c.bounds().items()]
    return "".join(parts)


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return Field(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return Field(default_factory=f.default_factory)
    return Field()


def _threshold_model():
    """Threshold's fields, each bounded by the rule the threshold itself checks (Threshold.CHECKS)."""
    hints = typing.get_type_hints(Threshold)
    return create_model("ThresholdRule", __base__=Section, __doc__=_first_line(Threshold), **{
        f.name: (spec_of(bounded(hints[f.name], Threshold.CHECKS.get(f.name)), f"Threshold{_camel(f.name)}"),
                 _default(f))
        for f in dataclasses.fields(Threshold)})


def _rule(problem):
    """A DataConfig.FIELD_RULES function (value -> what is wrong, or None) as a pydantic validator."""
    def check(value):
        found = problem(value)
        if found:
            raise ValueError(found)
        return value
    return AfterValidator(check)


def _data_model():
    """DataConfig's own fields and annotations (and its FIELD_RULES): a field added there is checked
    here too."""
    hints = typing.get_type_hints(DataConfig)
    rules = DataConfig.FIELD_RULES
    return create_model("Data", __base__=Section, __doc__="Paths are relative to the sweep file.", **{
        f.name: (Annotated[typed(hints[f.name]), _rule(rules[f.name])] if f.name in rules else typed(hints[f.name]),
                 _default(f)) for f in dataclasses.fields(DataConfig)})


def _plain_name(name: str) -> str:
    """The experiment's folder under storage: one plain name, so it can never land elsewhere."""
    if "/" in name or "\\" in name or name in (".", "..") or name != name.strip() or not name.isprintable():
        raise ValueError(f"an experiment name is a plain folder name (no '/', '\\', '..', surrounding spaces "
                         f"or control characters), got {name!r}")
    return name


def _both_searched_and_fixed(m):
    if m.space is not None and m.fixed is not None:
        both = sorted(m.space.model_fields_set & m.fixed.model_fields_set)
        if both:
            raise ValueError(f"{both[0]!r} is both searched and fixed")
    return m


def _architecture_model(name: str, cls: type):
    """The estimator's parameters, each bounded by the rule the estimator checks in fit (its
    ``_checks``, merged along the class hierarchy)."""
    hints = typing.get_type_hints(cls)
    checks = cls.param_checks()
    params = [f for f in dataclasses.fields(cls) if f.init]
    title = _camel(name)
    types_ = {f.name: bounded(hints[f.name], checks.get(f.name)) for f in params}
    space = create_model(f"{title}Space", __base__=Section, **{
        f.name: (spec_of(types_[f.name], _check_title(hints[f.name], checks.get(f.name))), _default(f))
        for f in params})
    fixed = create_model(f"{title}Fixed", __base__=Section, **{
        f.name: (typed(types_[f.name]), _default(f)) for f in params})
    return create_model(
        title, __base__=Section, __doc__=_first_line(cls),
        __validators__={"disjoint": model_validator(mode="after")(_both_searched_and_fixed)},
        trials=(Annotated[int, Field(ge=1, description="trials to run")], 4),
        resources=(Optional[Resources], None),
        space=(Optional[space], Field(None, description="searched parameters (constants or choice/int/float)")),
        fixed=(Optional[fixed], Field(None, description="parameters every trial uses")),
        start=(Optional[list[dict]], Field(None, description="configurations run first, before the searcher's own "
                                                             "(each a mapping of searched parameters to values; "
                                                             "threshold: {...} for the rule's)")),
        max_concurrent_trials=(Optional[Annotated[int, Field(ge=1)]], None),
        budget_share=(Annotated[float, Field(gt=0, description="weight in a split time budget")], 1.0))


class _ArchitecturesBase(Section):
    model_config = ConfigDict(**STRICT, json_schema_extra={"minProperties": 1})


def _at_least_one(m):
    if not m.model_fields_set:
        raise ValueError("name at least one architecture")
    return m


@functools.lru_cache(maxsize=4)
def _sweep_model(names: tuple[str, ...]):
    from models import registry

    archs = create_model(
        "Architectures", __base__=_ArchitecturesBase, __doc__="Registered architectures to sweep, in this order.",
        __validators__={"at_least_one": model_validator(mode="after")(_at_least_one)},
        **{n: (Optional[_architecture_model(n, registry.get(n))], None) for n in names})
    return create_model(
        "Sweep", __base__=Section, __doc__="A telesweep sweep file (python -m search run --config FILE).",
        name=(Annotated[str, Field(min_length=1, description="experiment name (its folder in storage)"),
                        AfterValidator(_plain_name)], ...),
        seed=(Annotated[int, Field(ge=0)], 0),
        storage=(Optional[str], Field(None, description="a path (relative to this file), s3://... or gs://...")),
        data=(_data_model(), ...),
        ray=(Optional[RaySection], None),
        search=(Optional[SearchSection], None),
        threshold=(Optional[_threshold_model()], Field(None, description="the threshold rule's space, shared "
                                                                          "by every architecture")),
        architectures=(archs, ...))


def sweep_model() -> type[BaseModel]:
    from models import registry

    return _sweep_model(tuple(registry.names()))


def json_schema() -> dict:
    schema = sweep_model().model_json_schema()
    return {"$schema": SCHEMA_URL, "title": "telesweep sweep file", **{k: v for k, v in schema.items() if k != "title"}}


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


# -- errors ---------------------------------------------------------------------------------------

MAPPING_ERRORS = {"model_type", "model_attributes_type", "dict_type", "dataclass_type"}


def _is_tag(part) -> bool:
    return isinstance(part, str) and part.startswith("<") and part.endswith(">")


def _path(loc) -> str:
    out = ""
    for part in loc:
        if _is_tag(part):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _show(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _models_in(hint) -> list[type[BaseModel]]:
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return [hint]
    return [m for a in typing.get_args(hint) for m in _models_in(a)]


def _known_keys(model, loc) -> list[str] | None:
    """The keys the mapping at ``loc`` accepts, following the models (and spec tags) down."""
    candidates = [model]
    for part in loc:
        if _is_tag(part):
            candidates = [m for m in candidates if m.__name__.lower().endswith(part[1:-1] + "range")
                          or (part == "<choice>" and m.__name__.endswith("Choice"))]
            continue
        nxt = []
        for m in candidates:
            for name, f in m.model_fields.items():
                if (f.alias or name) == part:
                    nxt += _models_in(f.annotation)
        candidates = nxt
    if len(candidates) != 1:
        return None
    return [f.alias or n for n, f in candidates[0].model_fields.items()]


def explain(exc: ValidationError, source: str, model: type[BaseModel] | None = None) -> str:
    """Pydantic's first error as one line: ``source: key.path: what is wrong, got value``."""
    err = exc.errors(include_url=False)[0]
    loc, kind = tuple(err["loc"]), err["type"]
    where = _path(loc)
    if kind == "missing":
        where, what = _path(loc[:-1]), f"missing key {loc[-1]!r}"
    elif kind == "extra_forbidden":
        where, key = _path(loc[:-1]), loc[-1]
        known = _known_keys(model or sweep_model(), loc[:-1])
        if where == "architectures":
            what = f"unknown architecture {key!r}; known: {', '.join(known or [])}"
        else:
            what = f"unknown key {key!r}" + (f" (known: {', '.join(sorted(known))})" if known else "")
    elif kind in MAPPING_ERRORS:
        what = f"should be a mapping (key: value), got {_show(err['input'])}"
    elif kind == "value_error":  # our own validators: the message names the value already
        what = err["msg"].removeprefix("Value error, ")
    else:
        msg = err["msg"]
        what = f"{msg[:1].lower()}{msg[1:]}, got {_show(err['input'])}"
    return f"{source}: {where}: {what}" if where else f"{source}: {what}"


# -- names ----------------------------------------------------------------------------------------

def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.replace("-", "_").split("_"))


def _type_title(hint) -> str:
    """A model-name part per parameter type, so parameters of one type share their spec models."""
    return "".join(_camel(getattr(m, "__name__", "x")) for m in _members(hint)).replace("NoneType", "None")


def _first_line(cls) -> str:
    return (cls.__doc__ or "").strip().split("\n")[0]
