"""What every command line shares: argument types that check their bounds, and a parser whose
usage errors are one line (``error: <prog>: argument --k: must be >= 1, got '0'``, exit status 2),
as the project's other input errors are. Here, at the bottom of telemetry -> models -> search ->
ensemble, so that every package's ``__main__`` can use it."""
from __future__ import annotations

import argparse
import math


class OneLineParser(argparse.ArgumentParser):
    """argparse with a one-line error instead of the usage block followed by the error."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _number(text: str, kind, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    value = _number(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (argparse type): seeds, counts that may be zero."""
    value = _number(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (argparse type)."""
    value = _number(text, float, "a number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def open_fraction(text: str) -> float:
    """A number in (0, 1) (argparse type)."""
    value = _number(text, float, "a number")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1] (argparse type)."""
    value = _number(text, float, "a number")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text!r}")
    return value


def fractions(text: str) -> list[float]:
    """Three comma-separated numbers, e.g. 0.6,0.2,0.2 (argparse type); their sum is the splits' rule."""
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated numbers: {text!r} (e.g. 0.6,0.2,0.2)") from None


def at_least(minimum: int):
    """An integer >= ``minimum`` (argparse type)."""
    def check(text: str) -> int:
        value = _number(text, int, "an integer")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text!r}")
        return value
    check.__name__ = f"integer >= {minimum}"
    return check


__all__ = ["OneLineParser", "positive_int", "non_negative_int", "positive_float", "open_fraction", "unit_interval",
           "fractions", "at_least"]
