"""Name -> detector class, so sweep files name architectures by string.

Adding a member is one module with a ``@register("name")`` class, plus its line in ``_load_all``.
The tags a member declares (``needs_labels``, ``forecaster``, ``windowed``, ``keras``, ``baseline``)
are documented on :class:`models.base.Detector`.
"""
from __future__ import annotations

from telemetry.errors import TelemetryError

REGISTRY: dict[str, type] = {}


def register(name: str):
    def deco(cls):
        if name in REGISTRY:
            raise RuntimeError(f"detector {name!r} registered twice")
        REGISTRY[name] = cls
        cls.name = name
        return cls
    return deco


def _load_all():
    # Importing the member modules registers them; done lazily to keep `import models` light.
    from models import autoencoders, baselines, classifier, forecaster, pca  # noqa: F401


def names() -> list[str]:
    _load_all()
    return sorted(REGISTRY)


def get(name: str) -> type:
    _load_all()
    try:
        return REGISTRY[name]
    except KeyError:
        raise TelemetryError(f"unknown architecture {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
