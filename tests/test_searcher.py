"""The sweep's searcher (search/searcher.py): TPE never spends a trial on a configuration that has
already finished while an unseen one is left. Driven through Ray's Searcher interface directly
(suggest / on_trial_complete, as Tune calls them), no Ray runtime needed."""
from __future__ import annotations

import itertools

import pytest

tune = pytest.importorskip("ray.tune")
optuna = pytest.importorskip("optuna")

from ray.tune.search.optuna import OptunaSearch  # noqa: E402

from search.searcher import FinalMetricOptunaSearch  # noqa: E402

SPACE = {"lags": tune.choice([1, 3, 5, 10]), "telecommands": tune.choice([True, False])}  # 8 configurations


def objective(config: dict) -> float:
    # a clear optimum (lags 5, with telecommands): TPE converges on it and, unchecked, repeats it
    return 1.0 - abs(config["lags"] - 5) / 10 - (0.0 if config["telecommands"] else 0.2)


def drive(searcher, n: int, prune=lambda k, config: False) -> list[tuple]:
    """n trials one after the other, as Tune runs them with one at a time."""
    seen = []
    for k in range(n):
        config = searcher.suggest(f"t{k}")
        seen.append((config["lags"], config["telecommands"]))
        result = None if prune(k, config) else {"f05": objective(config)}
        searcher.on_trial_complete(f"t{k}", result)
    return seen


def make(cls, seed=0):
    return cls(space=OptunaSearch.convert_search_space(SPACE), metric="f05", mode="max",
               sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_configuration_once_before_any_repeats(seed):
    searcher = make(FinalMetricOptunaSearch, seed)
    seen = drive(searcher, 12)
    assert len(set(seen[:8])) == 8  # the whole space first
    assert set(seen) == set(itertools.product([1, 3, 5, 10], [True, False]))
    # the repeats were answered from the study: TPE learnt their value without a trial
    told = [t for t in searcher._ot_study.trials if t.user_attrs.get("tune_trial_id") is None]
    assert searcher.repeats_told_ == len(told) > 0
    best = max(t.value for t in searcher._ot_study.trials if t.value is not None)
    assert best == pytest.approx(1.0)


def test_the_control_plain_optuna_search_repeats_itself():
    """Without the check, the same seeds spend trials on configurations already run."""
    distinct = [len(set(drive(make(OptunaSearch, seed), 8))) for seed in (0, 1, 2)]
    assert all(d < 8 for d in distinct), distinct  # 8 trials, 8 configurations, some run twice


def test_a_pruned_configuration_is_told_pruned_again_and_a_used_up_space_runs_repeats():
    searcher = make(FinalMetricOptunaSearch)
    seen = drive(searcher, 10, prune=lambda k, config: config["lags"] == 1)
    assert len(set(seen[:8])) == 8 and len(seen) == 10  # used up: the repeats run, nothing hangs
    states = {(t.params["lags"], t.params["telecommands"]): t.state for t in searcher._ot_study.trials
              if t.user_attrs.get("tune_trial_id") is None}
    assert states and all((s == optuna.trial.TrialState.PRUNED) == (lags == 1) for (lags, _), s in states.items())



TWO = {"latent": tune.choice([2, 4])}  # the twin test's space in tests/test_ensemble.py: 2 configurations


def first_pair(searcher) -> list[int]:
    """Two trials asked for at once, as Tune does with two trial slots, before either has ended."""
    return [searcher.suggest(f"t{k}")["latent"] for k in range(2)]


def make_two(cls, seed):
    return cls(space=OptunaSearch.convert_search_space(TWO), metric="f05", mode="max",
               sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=2))


@pytest.mark.parametrize("seed", range(6))
def test_two_trials_asked_for_at_once_get_different_configurations(seed, tmp_path):
    searcher = make_two(FinalMetricOptunaSearch, seed)
    assert sorted(first_pair(searcher)) == [2, 4]
    for k in range(2):
        searcher.on_trial_complete(f"t{k}", {"f05": 0.5})
    # The proposals told failed because a running trial had them are not in the study's copy on disk.
    repeats = [t for t in searcher._ot_study.trials if "repeat_of_running" in t.user_attrs]
    searcher._write_study(str(tmp_path), "optuna.db")
    copy = optuna.load_study(study_name=searcher._study_name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert sorted(t.params["latent"] for t in copy.trials) == [2, 4]
    assert len(searcher._ot_study.trials) == 2 + len(repeats)
    # A used-up space with both slots busy still gets its trials (the repeat runs).
    assert all(searcher.suggest(f"t{k}")["latent"] in (2, 4) for k in (2, 3))  # neither None nor a hang


def test_the_control_plain_optuna_search_runs_one_configuration_twice_at_once():
    """Without the check, some of the same seeds start with one configuration run twice at the same time."""
    pairs = [first_pair(make_two(OptunaSearch, seed)) for seed in range(6)]
    assert any(a == b for a, b in pairs), pairs


def test_asha_never_stops_a_start_trial_early():
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from search.searcher import StartKeepingASHA

    def run(start):
        asha = StartKeepingASHA(time_attr="epoch", metric="val_loss", mode="min", max_t=4, grace_period=1,
                                reduction_factor=2, start=start)
        trials = [SimpleNamespace(trial_id=f"t{i}", config={"arch": "pca", "lags": i}) for i in range(4)]
        for t in trials:
            asha.on_trial_add(None, t)
        decide = lambda t, loss, epoch=1: asha.on_trial_result(None, t, {"epoch": epoch, "val_loss": loss})  # noqa: E731
        decisions = [decide(trials[i], loss) for i, loss in ((1, 0.1), (2, 0.2), (0, 9.0))]
        return decisions, decide(trials[0], 9.0, epoch=4)

    plain, _ = run([])
    assert plain[-1] == TrialScheduler.STOP  # the worst first-rung loss: ASHA stops it
    kept, last = run([{"lags": 0}])
    assert kept[-1] == TrialScheduler.CONTINUE and kept[:2] == plain[:2]  # only the start trial is spared
    assert last == TrialScheduler.STOP  # at max_t it ends as any trial does
    assert run([{"lags": 3}])[0][-1] == TrialScheduler.STOP  # another start point spares nothing here
