"""``telesweep auto`` and the known-good start configurations it rests on.

Unit tests (no Ray): start points checked against their space; the plan written for each data shape
the project reads is a sweep file that ``search run`` accepts, sized from the data; the anchored
member selection. End to end (Ray, one tiny Keras member): the start configurations are the first
trials and are marked, the budget bounds the search, a submission and report come out, and the
decision does not move when holdout and test scores change.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import local_ray_started, write_challenge_parquet
from search.config import load_config, parse_config
from telemetry.errors import TelemetryError

ray = pytest.importorskip("ray")


def _sweep(train: Path, arch: dict, threshold: dict | None = None) -> dict:
    return {"name": "s", "data": {"train": str(train), "channels": "41-43", "fractions": [0.5, 0.25, 0.25]},
            "architectures": {"pca": arch}, **({"threshold": threshold} if threshold else {})}


@pytest.fixture
def train_file(tmp_path) -> Path:
    write_challenge_parquet(tmp_path / "train.parquet", n=2000, events=((300, 320), (1100, 1130), (1700, 1720)))
    return tmp_path / "train.parquet"


def test_start_points_are_checked_against_their_space(train_file):
    space = {"lags": {"choice": [1, 3, 5]}, "n_components": {"float": [0.8, 0.99]}}
    thr = {"method": {"choice": ["best_f05", "plateau"]}, "min_length": 1}
    cfg = parse_config(_sweep(train_file, {"space": space, "start": [{"lags": 5, "n_components": 0.95,
                                                                      "threshold": {"method": "plateau"}}]}, thr))
    assert cfg.architectures[0].start == [{"lags": 5, "n_components": 0.95, "threshold": {"method": "plateau"}}]
    bad = [({"lags": 4}, r"start\[0\]\.lags: 4 is outside its space \{'choice': \[1, 3, 5\]\}"),
           ({"n_components": 1.5}, r"start\[0\]\.n_components: 1.5 is outside its space"),
           ({"window": 5}, r"start\[0\]\.window: not a searched parameter \(searched: lags, n_components\)"),
           ({"lags": True}, r"start\[0\]\.lags: True is outside"),
           ({"threshold": {"min_length": 2}}, r"start\[0\]\.threshold\.min_length: not a searched parameter \(searched: method\)")]
    for point, message in bad:
        with pytest.raises(TelemetryError, match=message):
            parse_config(_sweep(train_file, {"space": space, "start": [point]}, thr))
    with pytest.raises(TelemetryError, match=r"architectures\.pca\.start"):
        parse_config(_sweep(train_file, {"space": space, "start": {"lags": 5}}, thr))


def test_a_start_point_names_the_trial_it_marks():
    from search.results import matches

    config = {"arch": "pca", "lags": 5, "n_components": 0.95, "threshold": {"method": "plateau", "smooth": 1}}
    assert matches(config, {"lags": 5}) and matches(config, {"lags": 5, "threshold": {"method": "plateau"}})
    assert not matches(config, {"lags": 3}) and not matches(config, {"threshold": {"method": "pot"}})
    assert not matches({"arch": "pca", "telecommands": 1}, {"telecommands": True})  # True is not 1


def _board(rows):
    return pd.DataFrame([{"completed": True, "params": json.dumps({"i": r[1]}), "trial_id": r[1], "arch": r[0],
                          "val_f05": r[2], "start": r[3]} for r in rows])


def test_anchored_selection_keeps_the_start_trials_whatever_their_validation_rank():
    from ensemble.members import select_members

    board = _board([("pca", "p1", 0.2, True), ("pca", "p2", 0.9, False), ("pca", "p3", 0.5, False),
                    ("conv_ae", "c1", 0.3, False), ("conv_ae", "c2", 0.4, False), ("conv_ae", "c3", 0.1, False),
                    ("bilstm_ae", "b1", 0.1, True), ("bilstm_ae", "b2", 0.8, False)])
    # Ranked: the best two of each architecture. Anchored: the start trial of an architecture that has
    # one (alone, or with its best other trials), the ranking elsewhere (conv_ae ran no start trial).
    assert set(select_members(board, 2)["trial_id"]) == {"p2", "p3", "c1", "c2", "b2", "b1"}
    assert set(select_members(board, 2, anchored=True)["trial_id"]) == {"p1", "c2", "c1", "b1"}
    assert set(select_members(board, 2, anchored=True, searched=1)["trial_id"]) == {"p1", "p2", "c2", "c1", "b1", "b2"}
    spare = select_members(board, 2, anchored=True, spares=1)
    assert spare.set_index("trial_id").loc[["p2", "b2"], "spare"].all() and not spare.set_index("trial_id").loc["p1", "spare"]
    with pytest.raises(TelemetryError, match="--k must be at least 1"):
        select_members(board, 0)


def test_starts_are_finalists_whatever_their_rank():
    from search import finalists

    board = _board([("pca", "p2", 0.9, False), ("pca", "p3", 0.5, False), ("pca", "p1", 0.2, True)]).assign(finalist=False)
    assert finalists.pending(board, 1)["trial_id"].tolist() == ["p2", "p1"]


def test_the_fit_split_s_events_join_where_every_trial_scores_every_split():
    from ensemble.auto import evidence_for
    from search.auto import SCORE_ALL_ROWS

    assert evidence_for({"rows": 50_000, "test_rows": 50_000}) == "fit+validation"
    assert evidence_for({"rows": SCORE_ALL_ROWS, "test_rows": 1}) == "validation"
    assert evidence_for({"rows": 14_700_000, "test_rows": 500_000}) == "validation"


def test_durations():
    from search.auto import parse_duration

    assert [parse_duration(t) for t in ("300", "90s", "5m", "1.5h")] == [300, 90, 300, 5400]
    for bad in ("", "0", "-5m", "5 minutes", "5d"):
        with pytest.raises(TelemetryError, match="--time-budget: a positive duration"):
            parse_duration(bad)


# -- the plan for each data shape (no Ray) ----------------------------------------------------------

def _wide_csv(d: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    n = 3000
    t = np.arange(2 * n)
    df = pd.DataFrame({"timestamp": t, **{f"sensor{i}": np.sin(t / 20 + i) + rng.normal(0, 0.1, 2 * n) for i in range(4)}})
    lab = np.zeros(2 * n, np.uint8)
    for a in (400, 1300, 2100, 2700, 3500, 4800):
        lab[a:a + 20] = 1
    df["is_anomaly"] = lab
    df.iloc[:n].to_csv(d / "train.csv", index=False)
    df.iloc[n:].drop(columns="is_anomaly").to_csv(d / "test.csv", index=False)
    return d / "train.csv", d / "test.csv"


def _many_series(d: Path) -> tuple[Path, Path]:
    parts = []
    for k in range(8):
        df = write_challenge_parquet(d / "part.parquet", n=500, start_id=k * 500, seed=k, events=((200 + 10 * k, 215 + 10 * k),))
        parts.append(df.assign(device=f"dev{k}"))
    train = pd.concat(parts[:6])
    train.to_parquet(d / "train.parquet", index=False)
    pd.concat(parts[6:]).drop(columns="is_anomaly").to_parquet(d / "test.parquet", index=False)
    return d / "train.parquet", d / "test.parquet"


def _discharges(d: Path) -> tuple[Path, Path]:
    from telemetry.synthetic.discharges import write_synthetic_discharges

    write_synthetic_discharges(d / "train.json", n_discharges=12, seed=0, dt=5e-3, disrupting_fraction=0.5)
    write_synthetic_discharges(d / "test.json", n_discharges=4, seed=1, dt=5e-3, first_shot=80_000)
    return d / "train.json", d / "test.json"


def _challenge(d: Path) -> tuple[Path, Path]:
    write_challenge_parquet(d / "train.parquet", n=4000, channels=range(40, 48),
                            events=((500, 520), (1500, 1530), (2300, 2320), (3100, 3140), (3600, 3610)))
    write_challenge_parquet(d / "test.parquet", n=1000, channels=range(40, 48), labels=False, start_id=4000)
    return d / "train.parquet", d / "test.parquet"


@pytest.mark.parametrize("shape, labels, series, channels, archs", [
    ("challenge", "auto", None, ["channel_41", "channel_42", "channel_43", "channel_44", "channel_45", "channel_46"], None),
    ("wide_csv", "auto", None, ["sensor0", "sensor1", "sensor2", "sensor3"], None),
    ("wide_csv", "none", None, ["sensor0", "sensor1", "sensor2", "sensor3"], None),
    ("many_series", "auto", "device", None, None),
    ("discharges", "auto", None, None, None),
])
def test_the_plan_for_each_data_shape_is_a_sweep_file_search_run_accepts(tmp_path, shape, labels, series, channels, archs):
    from ensemble.auto import run_auto
    from search.config import check_against_data
    from telemetry.prepare import prepare

    train, test = {"challenge": _challenge, "wide_csv": _wide_csv, "many_series": _many_series,
                   "discharges": _discharges}[shape](tmp_path)
    res = run_auto(str(train), str(test), tmp_path / "out", 120, preset="medium", labels=labels, series=series,
                   write_config=str(tmp_path / "mine.yaml"), plan_only=True, measure=False)
    raw = yaml.safe_load((tmp_path / "mine.yaml").read_text())
    assert raw == yaml.safe_load(Path(res["config"]).read_text())
    cfg = load_config(tmp_path / "mine.yaml", check_files=True)  # what `search run --config` does first
    data = prepare(cfg.data)
    check_against_data(cfg, {k: len(v) for k, v in data.sets().items()})
    if channels is not None:
        assert list(data.fit.channels) == channels
    assert [a.name for a in cfg.architectures] == ["pca", "bilstm_ae", "lstm_forecaster", "conv_ae"]
    assert cfg.architectures[1].start == [{"window": 5, "latent": 64, "epochs": 5}]
    assert cfg.search["time_budget_s"] == 120 and cfg.search["finalists"] == "all"
    if labels == "none":
        assert cfg.threshold == {"method": "pot", "min_length": 1, "max_gap": 0} and not data.labelled
        assert "--evidence" not in res["plan"]
    else:
        assert cfg.threshold["method"] == "plateau" and data.labelled
        assert data.validation.labels.any() and data.holdout.labels.any()  # each later split holds an event
        # small data: the plan says the fit split's events join validation's in the decision layer
        assert res["plan"].splitlines()[-1] == (
            "ensemble: the known-good trials (ensemble build --members anchored --evidence fit+validation); the "
            "decision layer is fitted on the labelled events of the fit and validation splits")
    for a in cfg.architectures:
        if "window" in a.space:  # every window fits every split (and each series of it)
            assert max(a.space["window"]["choice"]) <= res["facts"]["window_room"] // 2


def test_few_events_are_cut_between_events_and_too_few_are_refused(tmp_path):
    from search.auto import auto_config

    # 3 events, the last two in the last quarter: fractions 0.5/0.25/0.25 leave validation without one.
    write_challenge_parquet(tmp_path / "t.parquet", n=4000, events=((300, 320), (3100, 3120), (3700, 3720)))
    raw, facts = auto_config(str(tmp_path / "t.parquet"), None, tmp_path, 60, preset="fast", channels="41-43", measure=False)
    assert raw["data"]["boundaries"] == [1710, 3410] and "fractions" not in raw["data"]
    assert facts["events"] == {"fit": 1, "validation": 1, "holdout": 1}
    write_challenge_parquet(tmp_path / "two.parquet", n=4000, events=((300, 320), (3700, 3720)))
    with pytest.raises(TelemetryError, match=r"two\.parquet: the labelled series has 2 anomaly event\(s\)"):
        auto_config(str(tmp_path / "two.parquet"), None, tmp_path, 60, channels="41-43", measure=False)


def test_a_budget_too_small_for_a_window_model_leaves_it_out(tmp_path, monkeypatch):
    from search import auto, plan

    write_challenge_parquet(tmp_path / "t.parquet", n=12000, events=((500, 520), (7000, 7030), (10000, 10020)))
    train = str(tmp_path / "t.parquet")
    monkeypatch.setattr(plan, "calibrate", lambda cls, params, n: (50.0, 1e6))  # 50 windows/s: very slow training
    raw, facts = auto.auto_config(train, None, tmp_path, 60, preset="fast", channels="41-43")
    assert list(raw["architectures"]) == ["pca"] and "bilstm_ae" in facts["left_out"]
    assert "give a longer --time-budget" in facts["left_out"]["bilstm_ae"]
    monkeypatch.setattr(plan, "calibrate", lambda cls, params, n: (1_000.0, 1e6))
    # bilstm's share is 60 s x 1 / 1.4; its 5 epochs get 0.4 of that less 4 + 10 s to start a Keras
    # trial: 627 of the fit split's 6,000 windows per epoch at 1,000 windows/s, under the 2,000 worth
    # training. At 4,000 windows/s: 2,509, every third window.
    assert "bilstm_ae" in auto.auto_config(train, None, tmp_path, 60, preset="fast", channels="41-43")[1]["left_out"]
    monkeypatch.setattr(plan, "calibrate", lambda cls, params, n: (4_000.0, 1e6))
    raw, _ = auto.auto_config(train, None, tmp_path, 60, preset="fast", channels="41-43")
    assert raw["architectures"]["bilstm_ae"]["fixed"]["train_stride"] == 3
    with pytest.raises(TelemetryError, match="--architectures: 'isolation_forest' has no automatic search space"):
        auto.auto_config(train, None, tmp_path, 60, architectures=["pca", "isolation_forest"])


# -- end to end -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def auto_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("auto")
    write_challenge_parquet(d / "train.parquet", n=3000,
                            events=((400, 420), (1200, 1230), (1700, 1720), (2100, 2110), (2600, 2640)))
    write_challenge_parquet(d / "test.parquet", n=800, labels=False, start_id=3000)
    from ensemble.__main__ import main

    t0 = time.monotonic()
    with local_ray_started():
        rc = main(["auto", "--train", str(d / "train.parquet"), "--test", str(d / "test.parquet"), "--out", str(d / "out"),
                   "--preset", "fast", "--time-budget", "75s", "--channels", "41-43"])
    return d, rc, time.monotonic() - t0


def test_auto_writes_a_submission_from_the_known_good_members_within_its_budget(auto_run):
    from search.results import trial_table

    d, rc, wall = auto_run
    assert rc == 0
    sub = pd.read_csv(d / "out" / "submission.csv")
    assert sub["id"].tolist() == list(range(3000, 3800)) and set(sub["is_anomaly"]) <= {0, 1}
    assert (d / "out" / "report.md").is_file()
    exp = d / "out" / "sweeps" / "auto"
    trials = trial_table(str(exp))  # in the order Tune created them
    # The known-good configurations are each architecture's first trial, and the only ones marked.
    for arch, point in (("pca", {"lags": 5, "n_components": 0.95}), ("bilstm_ae", {"window": 5, "latent": 64, "epochs": 5})):
        rows = trials[trials["arch"] == arch]
        assert rows["start"].tolist()[0] and rows["start"].sum() == 1
        assert {k: json.loads(rows.iloc[0]["params"])[k] for k in point} == point
        assert len(rows) >= 2  # the budget left room for searched trials
    members = yaml.safe_load((d / "out" / "ensemble.yaml").read_text())["members"]
    assert {m["trial_id"] for m in members} == set(trials.loc[trials["start"].astype(bool), "trial_id"])
    # A few thousand rows: the fit split's events join validation's in the decision layer.
    assert yaml.safe_load((d / "out" / "ensemble.yaml").read_text())["ensemble"]["evidence"] == \
        {"splits": ["fit", "validation"], "events": {"fit": 2, "validation": 2}}
    # The search stops at its budget (75 s, planning included); scoring and the build come after.
    assert wall < 75 + 60
    # The sweep file it used runs as it is.
    cfg = load_config(d / "out" / "auto.yaml", check_files=True)
    assert cfg.name == "auto" and [a.name for a in cfg.architectures] == ["pca", "bilstm_ae"]


def test_auto_s_decision_never_sees_holdout_or_test(auto_run, tmp_path):
    """The planted-signal check: a member made perfect on holdout and test only changes nothing fitted."""
    from ensemble.build import build
    from search.experiment import read_sets
    from search.results import leaderboard

    d, _, _ = auto_run
    exp = tmp_path / "exp"
    shutil.copytree(d / "out" / "sweeps" / "auto", exp)
    build(str(exp), tmp_path / "a", members="anchored", evidence="fit+validation")
    board = leaderboard(str(exp), write=False)
    sets = read_sets(str(exp))
    for ckpt in board.loc[board["completed"].astype(bool), "checkpoint"]:
        sc = dict(np.load(f"{ckpt}/scores.npz"))
        sc["holdout"] = sets["holdout_labels"].astype(np.float32) * 100
        sc["test"] = np.zeros_like(sc["test"]) + 100
        np.savez(f"{ckpt}/scores.npz", **sc)
    build(str(exp), tmp_path / "b", members="anchored", evidence="fit+validation")
    a = yaml.safe_load((tmp_path / "a" / "ensemble.yaml").read_text())
    b = yaml.safe_load((tmp_path / "b" / "ensemble.yaml").read_text())
    assert [m["trial_id"] for m in a["members"]] == [m["trial_id"] for m in b["members"]]
    assert a["ensemble"]["rule"] == b["ensemble"]["rule"]
    assert [(m["weight"], m["calibration"]) for m in a["ensemble"]["members"]] == \
        [(m["weight"], m["calibration"]) for m in b["ensemble"]["members"]]


def test_auto_into_a_folder_of_another_auto_run_is_refused_before_anything_runs(tmp_path, capsys):
    from ensemble.__main__ import main

    train, test = _challenge(tmp_path)
    args = ["auto", "--train", str(train), "--test", str(test), "--out", str(tmp_path / "o"), "--plan", "--architectures", "pca"]
    assert main([*args, "--time-budget", "60s"]) == 0
    assert main([*args, "--time-budget", "60s"]) == 0  # the same settings: fine (a rerun resumes)
    capsys.readouterr()
    assert main([*args, "--time-budget", "90s"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "at search.time_budget_s (the experiment has 60.0, this file 90.0)" in err
    assert err.endswith(f"use another --out, or continue that run as it was with: python -m search resume "
                        f"{tmp_path / 'o' / 'sweeps' / 'auto'}")


def test_auto_on_an_unlabelled_wide_csv_writes_a_submission(tmp_path):
    """Another shape end to end (pca only, for time): no id column, no labels used."""
    from ensemble.__main__ import main

    train, test = _wide_csv(tmp_path)
    with local_ray_started():
        rc = main(["auto", "--train", str(train), "--test", str(test), "--out", str(tmp_path / "o"), "--labels", "none",
                   "--architectures", "pca", "--time-budget", "40s"])
    assert rc == 0
    sub = pd.read_csv(tmp_path / "o" / "submission.csv")
    assert sub["id"].tolist() == list(range(3000, 6000)) and set(sub["is_anomaly"]) <= {0, 1}  # ids after train's rows
    ens = yaml.safe_load((tmp_path / "o" / "ensemble.yaml").read_text())
    assert ens["labelled"] is False and ens["members"][0]["arch"] == "pca"
    assert "no labelled figure" in (tmp_path / "o" / "report.md").read_text().lower()
