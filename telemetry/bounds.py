"""Parameter rules as data: one declaration that the code checking a value and the sweep file's
schema (search/schema.py) both read, so a bound lives in one place.

A :class:`Check` is a kind (``int``, ``real`` or ``choice``) with optional bounds, or a union of
checks (``either``), optionally admitting None. ``ok(value)`` applies it; ``phrase`` is what an
error says ("must be <phrase>"). It lives in ``telemetry`` because the threshold rule
(detection.thresholds) declares its bounds with it too, and models and search sit above.
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import Any


def _integer(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class Check:
    """``kind``: "int", "real" or "choice" ("any": only ``either`` decides). Bounds are inclusive
    (``ge``/``le``) or exclusive (``gt``/``lt``)."""

    kind: str
    phrase: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple = ()
    nullable: bool = False
    either: tuple = ()  # alternatives: the value passes if any of them does

    def bounds(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("ge", "gt", "le", "lt") if getattr(self, k) is not None}

    def ok(self, v: Any) -> bool:
        if v is None:
            return self.nullable or None in self.choices
        if self.either:
            return any(c.ok(v) for c in self.either)
        if self.kind == "choice":
            # 1 is not True: a boolean choice takes booleans only
            return any(v is c or (isinstance(v, bool) == isinstance(c, bool) and v == c) for c in self.choices)
        if self.kind == "int" and not _integer(v):
            return False
        if self.kind == "real" and not _real(v):
            return False
        b = self.bounds()
        return (("ge" not in b or v >= b["ge"]) and ("gt" not in b or v > b["gt"])
                and ("le" not in b or v <= b["le"]) and ("lt" not in b or v < b["lt"]))


def integer(phrase: str, **bounds) -> Check:
    return Check("int", phrase, **bounds)


def real(phrase: str, **bounds) -> Check:
    return Check("real", phrase, **bounds)


def one_of(*choices) -> Check:
    return Check("choice", "one of " + ", ".join(map(repr, choices)), choices=tuple(choices))


def optional(check: Check, phrase: str | None = None) -> Check:
    return dataclasses.replace(check, nullable=True, phrase=phrase or f"None or {check.phrase}")


def either(*checks: Check, phrase: str) -> Check:
    return Check("any", phrase, either=tuple(checks))


POSITIVE_INT = integer("a positive integer", ge=1)
NON_NEGATIVE_INT = integer("an integer >= 0", ge=0)
POSITIVE = real("> 0", gt=0)
NON_NEGATIVE = real(">= 0", ge=0)
FRACTION = real("in [0, 1)", ge=0, lt=1)
BOOLEAN = one_of(True, False)
