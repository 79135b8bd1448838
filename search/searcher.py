"""Ray's OptunaSearch, learning from a trial's final result only and keeping its study on disk.

Final result only: every report carries ``f05`` (Tune's strict metric checking wants the searcher's
metric in each one), but it is None until the trial is scored; Ray's ``on_trial_result`` would hand
that to ``optuna.Trial.report`` and fail. Without an Optuna pruner the intermediate values are
unused anyway, so results without a value are skipped; a trial that ASHA stops keeps None and
Optuna records it as pruned, as before.

The study on disk (``<experiment>/<architecture>/optuna.db``, SQLite, one study named after the
architecture): for ``optuna-dashboard`` and Optuna's plots. It is a copy, written beside the
searcher's state each time Tune saves that (into Tune's staging folder, which Tune uploads to the
experiment folder: local, NFS or S3 alike), not the study the searcher samples from. Handing
``OptunaSearch`` a live ``storage=`` instead does not survive ``Tuner.restore`` well: the storage,
with its absolute path, is pickled into ``tuner.pkl`` and the searcher's state, and unpickling it
opens (creates, or fails to open) the database there, so resuming a moved or downloaded experiment
would write to, or stop on, the old place; and SQLite cannot live in an object store at all. The in-memory study stays the
searcher's state, saved and restored by Tune as it was; the copy is rebuilt from it after a resume.

No configuration twice: TPE on a small discrete space re-proposes configurations it has already
seen finish (a full-scale pca search ran 48 trials of 28 distinct configurations, the best one 12
times), and each repeat costs a whole trial for nothing the study does not already know. A proposal
equal to a finished trial's parameters is told the outcome that trial had (its value, or pruned), as
the usual "return the cached value" Optuna recipe does, and TPE asks again; after
:data:`MAX_REPEATS` such answers, one draw from a seeded random sampler is tried; a space with no
unseen configuration left gets the repeat (Keras training is not deterministic, so it is not
wasted entirely). ``repeats_told_`` counts them. A proposal equal to a trial still running (two
trials asked for at once, as every sweep with more than one trial slot does: TPE's random start
draws them independently, and on a 2-value space half of such pairs are one configuration) has no
outcome to tell yet: it is told failed, which TPE ignores, marked ``repeat_of_running`` and left
out of the study's copy on disk, and TPE asks again in the same way.

Module level so that the searcher pickled into ``tuner.pkl`` unpickles on ``Tuner.restore``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import weakref

from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.tune.stopper import Stopper

from search.spaces import matches

STUDY_FILE = "optuna.db"
MAX_REPEATS = 16  # proposals of finished configurations answered from the study before random sampling
REPEAT_OF_RUNNING = "repeat_of_running"  # user attribute of a proposal told failed because a running trial has it


class FinalMetricOptunaSearch(OptunaSearch):
    """``start``: configurations (flattened parameter names, as Ray's OptunaSearch names them:
    ``threshold/method``) enqueued in the study before the sampler proposes anything; a point may
    name only some parameters (Optuna samples the rest), which Ray's own ``points_to_evaluate``
    refuses."""

    def __init__(self, *args, study_file: str | None = STUDY_FILE, start: list[dict] | None = None,
                 deadline: float | None = None, **kwargs):
        self._start = [dict(p) for p in (start or [])]  # before super(): it sets the study up
        self._deadline = deadline  # time.time() after which no trial starts (Budget)
        super().__init__(*args, **kwargs)
        self._study_file = study_file
        self._mirror = None  # where the copy is being written this session (never saved)

    def _setup_study(self, mode):
        super()._setup_study(mode)
        for point in getattr(self, "_start", []):  # a restored searcher keeps its study: not set up again
            self._ot_study.enqueue_trial(point)

    def suggest(self, trial_id: str):
        if getattr(self, "_deadline", None) is not None and time.time() >= self._deadline:
            return Searcher.FINISHED  # the budget is spent: start nothing more
        config = self._unseen(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and config is not None:
            ot_trial.set_user_attr("tune_trial_id", trial_id)  # ties the dashboard's trial to Tune's
        return config

    def _unseen(self, trial_id: str):
        """Ray's suggestion, asked again while it repeats a finished trial (see the module doc)."""
        import optuna

        config = super().suggest(trial_id)
        if callable(self._space) or self._ot_study is None:  # define-by-run: parameters are not known up front
            return config
        for attempt in range(MAX_REPEATS + 1):
            ot_trial = self._ot_trials.get(trial_id)
            twin = self._twin(ot_trial)
            if config is None or twin is None:
                return config
            if twin.state == optuna.trial.TrialState.COMPLETE:
                self._ot_study.tell(ot_trial, twin.values if len(twin.values) > 1 else twin.value)
            elif twin.state == optuna.trial.TrialState.PRUNED:
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
            else:  # running: no outcome yet, and a failed trial teaches TPE nothing
                ot_trial.set_user_attr(REPEAT_OF_RUNNING, twin.number)
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
            self.repeats_told_ = getattr(self, "repeats_told_", 0) + 1
            del self._ot_trials[trial_id]
            if attempt < MAX_REPEATS:
                config = super().suggest(trial_id)
            else:  # TPE keeps repeating itself: one seeded random draw
                sampler = self._ot_study.sampler
                self._ot_study.sampler = optuna.samplers.RandomSampler(seed=len(self._ot_study.trials))
                try:
                    config = super().suggest(trial_id)
                finally:
                    self._ot_study.sampler = sampler
        return config  # nothing unseen found: the repeat runs

    def _twin(self, ot_trial):
        """A finished (complete or pruned) trial of the study with exactly ``ot_trial``'s parameters,
        else a running one, else None."""
        import optuna

        if ot_trial is None:
            return None
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)
        twins = [t for t in self._ot_study.get_trials(deepcopy=False, states=states)
                 if t.number != ot_trial.number and t.params == ot_trial.params]
        return min(twins, key=lambda t: t.state == optuna.trial.TrialState.RUNNING, default=None)

    def on_trial_result(self, trial_id: str, result: dict):
        if isinstance(self.metric, str) and result.get(self.metric) is None:
            return
        super().on_trial_result(trial_id, result)

    def save(self, checkpoint_path: str):
        mirror, self._mirror = getattr(self, "_mirror", None), None
        try:
            super().save(checkpoint_path)
        finally:
            self._mirror = mirror
        name = self._study_file
        if name and self._ot_study is not None:
            self._write_study(os.path.dirname(checkpoint_path), name)

    def _write_study(self, folder: str, name: str) -> None:
        """Append the trials finished since the last save to a working SQLite file (one per
        session: the first save after a resume rebuilds it) and put a copy in ``folder``,
        atomically, so that Tune's background upload never reads a half-written database."""
        import optuna

        target = os.path.join(folder, name)
        m = getattr(self, "_mirror", None)
        if not m or m["folder"] != folder or not os.path.exists(m["work"]):
            scratch = tempfile.mkdtemp(prefix="telesweep-optuna-")
            weakref.finalize(self, shutil.rmtree, scratch, True)
            work = os.path.join(scratch, name)
            storage = optuna.storages.RDBStorage(f"sqlite:///{work}")
            optuna.create_study(storage=storage, study_name=self._study_name, directions=self._ot_study.directions)
            m = self._mirror = {"folder": folder, "work": work, "storage": storage, "numbers": set()}
        new = [t for t in self._ot_study.get_trials(deepcopy=False)
               if t.state.is_finished() and t.number not in m["numbers"] and REPEAT_OF_RUNNING not in t.user_attrs]
        if not new and os.path.exists(target):
            return
        if new:
            # The copy numbers trials in the order they finished; ``tune_trial_id`` names them.
            optuna.load_study(study_name=self._study_name, storage=m["storage"]).add_trials(new)
            m["numbers"].update(t.number for t in new)
        tmp = os.path.join(folder, f".{name}.tmp")
        shutil.copyfile(m["work"], tmp)
        os.replace(tmp, target)


class BudgetStopper(Stopper):
    """The time budget of an architecture whose search starts from known-good configurations: after
    ``deadline`` (time.time()) every trial is stopped at its next report, except those known-good
    ones (``start``, nested points as in the sweep file), which finish. Tune's own ``time_budget_s``
    would stop them too, and they are what the anchored ensemble keeps; they were sized to end well
    inside the budget (search/auto.py), so the overrun is what an estimate missed, at most one trial."""

    def __init__(self, deadline: float, start: list[dict]):
        self.deadline, self.start = float(deadline), [dict(p) for p in start]

    def __call__(self, trial_id: str, result: dict) -> bool:
        if time.time() < self.deadline:
            return False
        config = result.get("config") or {}
        return not any(matches(config, p) for p in self.start)

    def stop_all(self) -> bool:
        return False


class StartKeepingASHA(ASHAScheduler):
    """ASHA that never stops a known-good start trial early (``start``: nested points as in the sweep
    file): a first epoch's loss says little about the configuration the anchored ensemble keeps, and
    a start trial stopped at its first rung would leave its architecture without one."""

    def __init__(self, *args, start: list[dict] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._start = [dict(p) for p in (start or [])]

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and result.get(self._time_attr, 0) < self._max_t \
                and any(matches(trial.config, p) for p in self._start):
            return TrialScheduler.CONTINUE
        return decision
