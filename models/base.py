"""The estimator every detector is: parameters, input checks, tags and persistence, declared once.

scikit-learn's contract: the constructor stores hyperparameters only (``get_params``,
``set_params`` and ``sklearn.base.clone`` work); ``fit`` returns self; fitted state ends in ``_``.
Each subclass is made a dataclass (keyword-only, no generated repr/eq) when it is defined, so it
declares only the parameters it adds, as annotated class attributes, and still gets the explicit
``__init__`` signature scikit-learn reads. ``_tags`` and ``_checks`` likewise hold only what a class
adds or changes; ``tags`` is the merge along the class hierarchy.

Template (as in aeon): the public ``fit``/``score_samples`` check parameters and inputs once, here,
then call the subclass's ``_fit``/``_score_samples``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator

# The parameter rules are declared in telemetry.bounds, which the sweep file's schema reads too.
from telemetry.bounds import (FRACTION, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, BOOLEAN, Check,  # noqa: F401
                              _integer, _real, either, integer, one_of, optional, real)
from telemetry.errors import TelemetryError
from telemetry.series import Series


def _merged(cls: type, attr: str) -> dict:
    """``attr`` dicts of the class hierarchy merged, base first (so subclasses override)."""
    out: dict = {}
    for klass in reversed(cls.__mro__):
        out.update(klass.__dict__.get(attr, {}))
    return out


def _as_dataclass(cls: type) -> None:
    dataclasses.dataclass(cls, repr=False, eq=False, kw_only=True)


class Detector(BaseEstimator):
    """Base of every member. Subclasses add parameters (annotated attributes), ``_fit``,
    ``_score_samples`` and ``_save_state``/``_load_state``.

    Tags: ``needs_labels`` (supervised), ``forecaster``, ``windowed`` (scores windows of rows),
    ``keras`` (trains with Keras, reporting once per epoch), ``baseline`` (a reference method, not
    a searched deep model; the ensemble leaves it out unless asked), ``channel_scores`` (its score is
    built from one error per channel, so :meth:`score_channels` can give each channel's own score:
    the error window models, pca and global_std; not isolation_forest, which scores whole rows, nor
    the classifier, one probability per window).
    """

    name: ClassVar[str] = "detector"
    _tags: ClassVar[dict] = {"needs_labels": False, "forecaster": False, "windowed": False, "keras": False,
                             "baseline": False, "channel_scores": False}
    _checks: ClassVar[dict[str, Check]] = {}
    tags: ClassVar[dict] = dict(_tags)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _as_dataclass(cls)
        cls.tags = _merged(cls, "_tags")

    @classmethod
    def param_checks(cls) -> dict[str, Check]:
        """Each checked parameter's rule, the class hierarchy's merged (what the schema bounds)."""
        return _merged(cls, "_checks")

    @classmethod
    def param_names(cls) -> list[str]:
        """Constructor parameters in declaration order (what a sweep file may set)."""
        return [f.name for f in dataclasses.fields(cls)]

    # -- checks, once for every member ----------------------------------------------------------
    def _check_params(self) -> None:
        params = self.get_params(deep=False)
        for param, check in _merged(type(self), "_checks").items():
            if not check.ok(params[param]):
                raise TelemetryError(f"{self.name}: {param} must be {check.phrase}, got {params[param]!r}")

    def _check_input(self, series: Series, role: str) -> None:
        """``role`` names the series in errors: "training", "validation" or "scored"."""
        if not isinstance(series, Series):
            raise TelemetryError(f"{self.name}: expected a telemetry Series for the {role} split, got {type(series).__name__}")
        if getattr(self, "fitted_", False) and series.n_channels != self.n_channels_:
            raise TelemetryError(f"{self.name}: fitted on {self.n_channels_} channels, got {series.n_channels} "
                                 f"in the {role} split ({series.source})")
        if self.tags["needs_labels"] and role != "scored" and series.labels is None:
            raise TelemetryError(f"{self.name} is supervised: the {role} split ({series.source}) has no labels "
                                 f"(is_anomaly column)")
        self._check_length(len(series), f"the {role} split")

    def _check_length(self, n_rows: int, what: str) -> None:
        """Window models refuse a series shorter than a window; row models take any length."""

    # -- the contract ---------------------------------------------------------------------------
    def fit(self, train: Series, validation: Series | None = None, **fit_options) -> "Detector":
        """Learn from ``train``; ``validation`` (optional) gives what a member checks itself against
        (validation loss, the error statistics that standardise scores). ``fit_options`` go to
        ``_fit`` (Keras members: ``callbacks``, ``initial_epoch``, ``initial_weights``)."""
        self.fitted_ = False
        self._check_params()
        self._check_input(train, "training")
        if validation is not None:
            self._check_input(validation, "validation")
        self.n_channels_ = train.n_channels
        self.channels_ = list(train.channels)
        self._fit(train, validation, **fit_options)
        self.fitted_ = True
        return self

    def score_samples(self, series: Series) -> np.ndarray:
        """One float32 score per row of ``series``, aligned to its ids; higher = more anomalous.

        scikit-learn's name for per-sample scores (its ``score`` returns one number per data set);
        note the sign: sklearn's outlier detectors return lower = more abnormal, these the reverse,
        because every threshold here is "anomalous when the score is at least t".
        """
        self._check_scorable(series)
        return self._score_samples(series)

    def score_channels(self, series: Series) -> np.ndarray:
        """One float32 score per row and channel [N, C] (channels in ``channels_`` order), aligned to
        the ids: each channel's standardised error spread to rows like the per-row score, without the
        reduction over channels (see models/scoring.py for how the two relate). Only members tagged
        ``channel_scores``; the others raise a TelemetryError."""
        self._check_scorable(series)
        if not self.tags["channel_scores"]:
            raise TelemetryError(f"{self.name} has no per-channel scores (it scores whole rows or windows); "
                                 f"use a member tagged channel_scores (window autoencoders, forecaster, pca, global_std)")
        return self._score_both(series)[1]

    def score_samples_and_channels(self, series: Series) -> tuple[np.ndarray, np.ndarray | None]:
        """(:meth:`score_samples`, :meth:`score_channels` or None when the member has none), from one
        pass over the series: a window model predicts once for both."""
        self._check_scorable(series)
        if not self.tags["channel_scores"]:
            return self._score_samples(series), None
        return self._score_both(series)

    def _check_scorable(self, series: Series) -> None:
        if not getattr(self, "fitted_", False):
            raise TelemetryError(f"{self.name}: call fit before score_samples")
        self._check_input(series, "scored")

    def _score_both(self, series: Series) -> tuple[np.ndarray, np.ndarray]:
        """(per-row [N], per-channel [N, C]) scores; members tagged ``channel_scores`` define it."""
        raise NotImplementedError

    def _fit(self, train: Series, validation: Series | None) -> None:
        raise NotImplementedError

    def _score_samples(self, series: Series) -> np.ndarray:
        raise NotImplementedError

    # -- persistence: params.json + whatever the subclass stores ---------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        if not getattr(self, "fitted_", False):
            raise TelemetryError(f"{self.name}: call fit before save")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"name": self.name, "params": self.get_params(deep=False), "channels": self.channels_}
        (path / "params.json").write_text(json.dumps(meta, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
        self._save_state(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Detector":
        from models.registry import get

        path = Path(path)
        meta = json.loads((path / "params.json").read_text())
        klass = get(meta["name"])
        if not issubclass(klass, cls):
            raise TelemetryError(f"{path}: holds a saved {meta['name']!r}, not a {cls.name!r}")
        if klass.tags.get("keras"):
            import_keras_quietly()
        est = klass(**meta["params"])
        est.channels_ = [str(c) for c in meta["channels"]]
        est.n_channels_ = len(est.channels_)
        est._load_state(path)
        est.fitted_ = True
        return est

    def _save_state(self, path: Path) -> None:
        raise NotImplementedError

    def _load_state(self, path: Path) -> None:
        raise NotImplementedError


def import_keras_quietly() -> None:
    """Import Keras (and so its backend) in this process, once, with the process's C-level stderr
    muted: TensorFlow's C++ start-up lines ("oneDNN custom operations are on", the CPU features) are
    written before its logging can be configured, so no environment variable silences them, and a
    driver that loads saved models (ensemble build scoring the fit split) would print them to the user.
    Python errors still raise, with their message."""
    import sys

    if "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_as_dataclass(Detector)
