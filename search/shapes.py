"""What a sweep does with the shape of its data, decided once before Ray starts.

* **Objective.** Labelled data: the validation split's corrected event-wise F0.5 (maximised).
  Unlabelled data (no ``is_anomaly`` column, or ``data.labels: none``): the validation loss
  (minimised): the reconstruction / forecast MSE of the Keras members (what they report per epoch as
  ``val_loss``), the lag-embedded reconstruction MSE of ``pca``, and each baseline's own loss (see
  its ``_row_losses``). ASHA already stops trials on ``val_loss``; the TPE searcher then learns from
  it too. Losses compare trials of one architecture (each has its own TPE and leaderboard), never
  architectures with each other.
* **Thresholds** of an unlabelled sweep come from unsupervised rules on the validation scores
  (``pot``, ``percentile``, ``ndt``, ``max_fit``): a sweep file that names no threshold method gets
  ``pot``; one that names a labelled method (``best_f05``, ``plateau``, ``bootstrap``) is refused.
  So is a supervised member (the classifier).
* **Telecommands**: a member with ``telecommands: true`` reads the data's telecommand features. Data
  without them (no telecommand column, or no ``data.telecommands``) narrows a searched
  ``telecommands`` choice to ``false`` (a sweep file pointed at other data still runs); a fixed
  ``true`` is refused.
* **Many series**: every searched window (plus forecast horizon) must fit in the longest series
  of each split (search.config.check_windows_fit); series shorter than a window are skipped by the
  windowing (telemetry.windows).
"""
from __future__ import annotations

import logging

from models import registry
from search import spaces
from search.config import check_windows_fit
from telemetry.errors import TelemetryError
from detection.thresholds import Threshold

log = logging.getLogger("search")
UNSUPERVISED_THRESHOLD = "pot"


def objective(labelled: bool) -> tuple[str, str]:
    """(metric, mode) that the searcher optimises and that ranks the leaderboard."""
    return ("f05", "max") if labelled else ("val_loss", "min")


def adapt(cfg, data):
    """Check (and, unlabelled, adjust in place) the sweep ``cfg`` for the ``data`` (a Prepared)."""
    check_series_windows(cfg, data)
    without_telecommands(cfg, data)
    if data.labelled:
        return cfg
    for arch in cfg.architectures:
        if registry.get(arch.name).tags.get("needs_labels"):
            raise TelemetryError(f"architectures.{arch.name} is supervised, but the data is unlabelled "
                                 f"({'data.labels: none' if cfg.data.labels == 'none' else 'no is_anomaly column'}); "
                                 f"remove it from the sweep file")
    methods = spaces.values_of(cfg.threshold.get("method", "best_f05"))
    labelled_methods = [m for m in methods if m in Threshold.LABELLED]
    if labelled_methods:
        raw = getattr(cfg, "raw", None) or {}
        if "method" in (raw.get("threshold") or {}):
            raise TelemetryError(f"threshold.method {labelled_methods[0]} needs labels, but the data is unlabelled; "
                                 f"use pot, percentile, ndt or max_fit")
        cfg.threshold["method"] = UNSUPERVISED_THRESHOLD
        log.info("unlabelled data: the sweep minimises the validation loss; thresholds by %s on validation scores",
                 UNSUPERVISED_THRESHOLD)
    return cfg


def without_telecommands(cfg, data) -> None:
    """Data without telecommand features: searched ``telecommands`` choices become ``false``; a
    fixed ``true`` is a one-line error naming the architecture."""
    if data.fit.telecommands is not None:
        return
    why = "no data.telecommands in the sweep file" if not cfg.data.telecommands else \
        f"no telecommand column in {cfg.data.train}"
    for arch in cfg.architectures:
        if arch.fixed.get("telecommands") is True:
            raise TelemetryError(f"architectures.{arch.name}: telecommands is true, but the data has none ({why})")
        spec = arch.space.get("telecommands")
        if isinstance(spec, dict) and True in spaces.values_of(spec):
            arch.space.pop("telecommands")
            arch.fixed["telecommands"] = False
            log.info("%s: telecommands searched, but the data has none (%s): fixed to false", arch.name, why)


def check_series_windows(cfg, data) -> None:
    """With many series, a window must fit in the longest series of every split (scored too)."""
    longest = {split: s.longest_segment for split, s in data.sets().items()
               if s.segments is not None and s.n_segments >= 2}
    check_windows_fit(cfg, longest, "the longest series of the {split} split")
