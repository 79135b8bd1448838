"""models: every detector behind one estimator interface (imports only ``telemetry``)."""
from models.base import Detector, WindowModel
from models.registry import REGISTRY, create, get, names, register

__all__ = ["Detector", "WindowModel", "REGISTRY", "create", "get", "names", "register"]
