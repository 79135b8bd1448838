"""The files of an experiment: their names, and typed reads and writes of each.

An experiment is a folder, local or a URI such as s3://... (every read and write goes through
search/storage.py):

  sweep.yaml            the sweep as it runs (resolved paths, adapted to the data): resume, finalize
                        and the ensemble read it (:class:`Sweep`)
  sweep.given.yaml      the sweep as given, before the data adapted it: a rerun is compared with it
  sets.npz              ids and labels of every split, as the sweep used them
  leaderboard.csv, leaderboard.parquet
  <arch>/               one Ray Tune experiment per architecture (Tune's own files), and per trial:
    <trial>/checkpoint_NNNNNN/   the trial's final checkpoint (Ray owns it):
        trial.json      :class:`TrialRecord`
        scores.npz      per-row scores by split; ``<split>_channels``: per-channel scores [rows, C]
        model/          the fitted detector (models.base.Detector.save)
    <trial>/finalist.json, finalist.npz   holdout and test scored afterwards (search/finalists.py),
                        beside the checkpoint, since Ray replaces checkpoint folders:
                        :class:`FinalistRecord`

A trial's epoch checkpoints (kept while it trains, so a retried trial continues) hold the network's
weights (models.window.WEIGHTS_FILE) and EPOCH_FILE.

A trial's holdout figures can be in three places: its Tune result (``holdout_*``) and trial.json
when it scored holdout itself, its finalist.json when it was scored afterwards. :func:`holdout_figures`
is the one rule for which counts.
"""
from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from models.window import WEIGHTS_FILE  # noqa: F401 - the epoch checkpoints' weights file, named there
from search import storage
from search.config import SweepConfig, load_yaml, parse_config
from search.schema import DEFAULT_FINALISTS
from telemetry.errors import TelemetryError
from telemetry.prepare import DataConfig

SWEEP_FILE = "sweep.yaml"
GIVEN_FILE = "sweep.given.yaml"
SETS_FILE = "sets.npz"
LEADERBOARD = "leaderboard.csv"
LEADERBOARD_PARQUET = "leaderboard.parquet"
TRIAL_FILE = "trial.json"
SCORES_FILE = "scores.npz"
MODEL_DIR = "model"
FINALIST_JSON = "finalist.json"
FINALIST_NPZ = "finalist.npz"
EPOCH_FILE = "epoch.json"  # an epoch checkpoint's epoch number, beside WEIGHTS_FILE

SPLITS = ("validation", "holdout", "test")  # every split a trial can be scored on, in order
LATER_SPLITS = ("holdout", "test")  # the splits a finalist is scored on after the search
ALL_FINALISTS = "all"
CHANNEL_SUFFIX = "_channels"  # scores key of a split's per-channel scores: "validation_channels", ...
# Keys of a trial config that are not estimator parameters: the architecture, and the threshold rule
# (a nested dict; Ray's searchers flatten and unflatten nested spaces themselves).
META_KEYS = ("arch", "threshold")


def channel_key(split: str) -> str:
    return split + CHANNEL_SUFFIX


def top_of(search: dict | None) -> int | None:
    """``search.finalists`` of a sweep: K, or None for ``all`` (every trial scores every split)."""
    value = (search or {}).get("finalists", DEFAULT_FINALISTS)
    return None if value == ALL_FINALISTS else int(value)


def split_config(config: dict) -> tuple[str, dict, dict]:
    """(architecture, estimator params, threshold rule) from a trial config (Tune's ``params.json``)."""
    params = {k: v for k, v in config.items() if k not in META_KEYS}
    return config["arch"], params, dict(config.get("threshold") or {})


# -- the sweep files ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Sweep:
    """A stored sweep file: ``raw`` as written (plain YAML data, what a rerun is compared with) and
    ``source`` (its path, for messages). The accessors check what they read: a bad file is a
    one-line error naming it and the key."""

    raw: dict
    source: str

    def _section(self, key: str) -> dict:
        value = self.raw.get(key)
        if not isinstance(value, dict):
            raise TelemetryError(f"{self.source}: {key}: a mapping, got {value!r}")
        return value

    @property
    def architectures(self) -> list[str]:
        return list(self._section("architectures"))

    @property
    def starts(self) -> dict[str, list[dict]]:
        """Each architecture's known-good configurations (its ``start``), as stored."""
        return {a: list((spec or {}).get("start") or []) for a, spec in self._section("architectures").items()}

    @property
    def data(self) -> DataConfig:
        """The data section as the sweep ran it (stored paths are absolute)."""
        try:
            return DataConfig.from_dict(self._section("data"))
        except TelemetryError as exc:
            raise TelemetryError(f"{self.source}: {exc}") from None
        except TypeError as exc:
            raise TelemetryError(f"{self.source}: data: {exc}") from None

    @property
    def finalists(self) -> int | None:
        """``search.finalists``: K, or None for ``all``."""
        return top_of(self.raw.get("search"))

    def config(self) -> SweepConfig:
        """The whole sweep, checked against the schema as a sweep file is (what resume runs)."""
        return parse_config(self.raw, base_dir="/", source=self.source)


def read_sweep(exp: str, name: str = SWEEP_FILE, required: bool = True) -> Sweep | None:
    """The stored sweep ``name`` (SWEEP_FILE or GIVEN_FILE) of the experiment ``exp``; None when it
    is absent and not ``required`` (absent SWEEP_FILE and required: not an experiment)."""
    path = storage.join(exp, name)
    if not storage.exists(path):
        if required:
            raise TelemetryError(f"{exp}: not a telesweep experiment ({name} missing)")
        return None
    raw = load_yaml(storage.read_text(path), path)
    if not isinstance(raw, dict):
        raise TelemetryError(f"{path}: a sweep file is a mapping, got {type(raw).__name__}")
    return Sweep(raw, path)


def write_sweep(exp: str, given: dict, running: dict) -> None:
    """Store the sweep as given and as it runs; SWEEP_FILE last, since its presence marks the
    experiment as started."""
    storage.write_text(storage.join(exp, GIVEN_FILE), yaml.safe_dump(given, sort_keys=False))
    storage.write_text(storage.join(exp, SWEEP_FILE), yaml.safe_dump(running, sort_keys=False))


def is_experiment(exp: str) -> bool:
    return storage.exists(storage.join(exp, SWEEP_FILE))


# -- the splits ---------------------------------------------------------------------------------

def write_sets(exp: str, data) -> None:
    """ids (and labels, where known) of every split of ``data`` (a telemetry Prepared)."""
    sets = {}
    for name, s in data.sets().items():
        sets[f"{name}_ids"] = s.ids
        if s.labels is not None:
            sets[f"{name}_labels"] = s.labels
    if data.test_labels is not None:
        sets["test_true_labels"] = data.test_labels  # synthetic missions only; reported, never fitted
    storage.write_npz(storage.join(exp, SETS_FILE), **sets)


def read_sets(exp: str, required: bool = True) -> dict[str, np.ndarray] | None:
    """ids and labels of fit/validation/holdout/test as the sweep used them (None when absent and
    not ``required``)."""
    path = storage.join(exp, SETS_FILE)
    if not storage.exists(path):
        if not required:
            return None
        raise TelemetryError(f"{exp}: {SETS_FILE} missing (the sweep stores it before its first trial)")
    return storage.read_npz(path)


def write_leaderboard(exp: str, board) -> None:
    storage.write_text(storage.join(exp, LEADERBOARD), board.to_csv(index=False))
    buf = io.BytesIO()
    board.to_parquet(buf, index=False)
    storage.write_bytes(storage.join(exp, LEADERBOARD_PARQUET), buf.getvalue())


# -- trial and finalist records -----------------------------------------------------------------

def _json_record(cls, text: str, path: str):
    """A record dataclass from JSON text; a bad file is one line naming it and the key."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise TelemetryError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise TelemetryError(f"{path}: a JSON object, got {type(raw).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise TelemetryError(f"{path}: unknown key {unknown[0]!r}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in raw]
    if missing:
        raise TelemetryError(f"{path}: missing key {missing[0]!r}")
    for key in ("splits", "channels"):
        if key in raw and not (isinstance(raw[key], list) and all(isinstance(s, str) for s in raw[key])):
            raise TelemetryError(f"{path}: {key}: a list of names, got {raw[key]!r}")
    return cls(**raw)


def _to_json(record) -> str:
    return json.dumps(dataclasses.asdict(record), indent=1, default=float)


@dataclass(frozen=True)
class TrialRecord:
    """trial.json in a trial's final checkpoint: what the trial fitted and measured.

    ``splits``: the splits whose scores scores.npz holds (validation always; holdout and test when
    the trial scored every split itself). ``holdout``: the figures of its fitted rule on holdout when
    it scored holdout, else None. ``channels``: the columns of its per-channel scores, which it
    stored when ``channel_scores``."""

    arch: str
    params: dict
    threshold: dict  # the fitted rule: detection.thresholds.Threshold.to_dict()
    validation: dict
    holdout: dict | None
    objective: str  # "f05" (labelled) or "val_loss"
    splits: list[str]
    channels: list[str] = field(default_factory=list)
    channel_scores: bool = False
    backend: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)

    @property
    def labelled(self) -> bool:
        return self.objective == "f05"


@dataclass(frozen=True)
class FinalistRecord:
    """finalist.json beside a trial's checkpoint: holdout/test scored from the model saved in
    ``checkpoint`` (its folder name); ``holdout``: the trial's rule's figures there."""

    checkpoint: str
    splits: list[str]
    holdout: dict
    score_seconds: float = 0.0


def trial_dir_of(checkpoint: str) -> str:
    """A checkpoint's trial folder (Ray keeps checkpoints as <trial>/checkpoint_NNNNNN)."""
    return checkpoint.rstrip("/").rsplit("/", 1)[0]


def checkpoint_name(checkpoint: str) -> str:
    return checkpoint.rstrip("/").rsplit("/", 1)[1]


def model_dir(checkpoint: str) -> str:
    return storage.join(checkpoint, MODEL_DIR)


def write_trial(folder: str | Path, record: TrialRecord, scores: dict[str, np.ndarray]) -> None:
    """trial.json and scores.npz into a local folder that becomes the trial's final checkpoint."""
    folder = Path(folder)
    np.savez(folder / SCORES_FILE, **scores)
    (folder / TRIAL_FILE).write_text(_to_json(record))


def read_trial(checkpoint: str) -> TrialRecord:
    """The checkpoint's own trial.json (without what a finalist file adds: :func:`load_trial`)."""
    path = storage.join(checkpoint, TRIAL_FILE)
    return _json_record(TrialRecord, storage.read_text(path), path)


def write_finalist(checkpoint: str, record: FinalistRecord, scores: dict[str, np.ndarray]) -> None:
    """finalist.npz, then finalist.json (each written atomically): the JSON marks a complete pair."""
    trial_dir = trial_dir_of(checkpoint)
    storage.write_npz(storage.join(trial_dir, FINALIST_NPZ), **scores)
    storage.write_text(storage.join(trial_dir, FINALIST_JSON), _to_json(record))


def read_finalist(checkpoint: str) -> FinalistRecord | None:
    """finalist.json of the trial whose final checkpoint is ``checkpoint``; None when the trial has
    none, or one scored from another checkpoint."""
    path = storage.join(trial_dir_of(checkpoint), FINALIST_JSON)
    if not storage.exists(path):
        return None
    record = _json_record(FinalistRecord, storage.read_text(path), path)
    return record if record.checkpoint == checkpoint_name(checkpoint) else None


def read_finalist_scores(checkpoint: str) -> dict[str, np.ndarray]:
    return storage.read_npz(storage.join(trial_dir_of(checkpoint), FINALIST_NPZ))


def load_trial(checkpoint: str) -> tuple[TrialRecord, dict[str, np.ndarray]]:
    """(trial record, per-row scores by split) of a completed trial: its final checkpoint's, with
    the holdout/test scores, splits and holdout figures of its finalist files where it has them. A
    trial with neither has validation scores only (``holdout`` None)."""
    record = read_trial(checkpoint)
    scores = storage.read_npz(storage.join(checkpoint, SCORES_FILE))
    if "holdout" in record.splits:
        return record, scores
    finalist = read_finalist(checkpoint)
    if finalist is None:
        return record, scores
    return (dataclasses.replace(record, holdout=holdout_figures(record.holdout, finalist),
                                splits=[*record.splits, *finalist.splits]),
            {**read_finalist_scores(checkpoint), **scores})


# -- what a trial reports to Tune ---------------------------------------------------------------

def scored_value(splits) -> str:
    """The final report's ``scored``: the splits a trial scored, as one string (a Tune metric)."""
    return ",".join(splits)


def scored_splits(result: dict) -> list[str]:
    """The splits a trial's final report says it scored (empty before it was scored)."""
    value = result.get("scored")
    return [s for s in str(value).split(",") if s] if value else []


def reported_holdout(result: dict) -> dict | None:
    """The holdout figures in a trial's final Tune report, when the trial scored holdout itself."""
    if "holdout" not in scored_splits(result):
        return None
    return {k[len("holdout_"):]: v for k, v in result.items() if k.startswith("holdout_")}


def holdout_figures(own: dict | None, finalist: FinalistRecord | None) -> dict | None:
    """The one rule for a trial's holdout figures: those it computed itself when it scored holdout
    (its trial.json's ``holdout``, equal to its Tune report's ``holdout_*``: :func:`reported_holdout`)
    win; else its finalist file's; else None (validation only)."""
    if own is not None:
        return own
    return finalist.holdout if finalist is not None else None
