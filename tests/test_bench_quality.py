"""The quality benchmark's --quick size runs end to end (data sets -> sweeps -> every decision layer),
and its NAB cuts follow the rule its docstring states."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import quality_data as qd  # noqa: E402


def test_nab_cuts_give_validation_and_test_an_event_each():
    # ambient_temperature_system_failure: 7267 rows, events at rows 3540-3903 and 5999-6362
    val, hold, test = qd.nab_cuts(7267, [(3540, 3903), (5999, 6362)])
    assert test == (3903 + 5999) // 2 and val == (0 + 3540) // 2 and hold == (3903 + test) // 2
    # machine_temperature: the two early events fall in fit (before 30 % of train), one left for validation
    val, hold, test = qd.nab_cuts(22695, [(2126, 2693), (3703, 4270), (16057, 16624), (19232, 19799)])
    assert test == (16624 + 19232) // 2 and val == (4270 + 16057) // 2 and hold == (16624 + test) // 2
    # nyc_taxi: four events in train, two for validation and two for holdout
    val, hold, test = qd.nab_cuts(10320, [(5839, 6046), (7080, 7287), (8423, 8630), (8731, 8938), (9977, 10184)])
    assert val < 5839 and 7287 < hold < 8423 and 8938 < test < 9977
    with pytest.raises(ValueError, match="two labelled windows"):
        qd.nab_cuts(100, [(10, 20)])


def test_registry_cuts_give_fit_validation_and_holdout_a_third_of_the_events():
    # gutentag-ecg: events at 840-940, 4720-4820, 9260-9360 of 10,000 train rows
    assert qd.registry_cuts([(840, 940), (4720, 4820), (9260, 9360)]) == ((940 + 4720) // 2, (4820 + 9260) // 2)
    six = [(i * 100, i * 100 + 10) for i in range(6)]  # two events to each split
    assert qd.registry_cuts(six) == ((110 + 200) // 2, (310 + 400) // 2)
    with pytest.raises(ValueError, match="three events"):
        qd.registry_cuts([(10, 20), (30, 40)])


def test_quick_benchmark_runs_every_decision_layer_end_to_end(tmp_path):
    assert qd.NAB.is_dir(), f"the NAB series are missing: expected {qd.NAB} (shared/data/nab beside the checkout)"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_quality.py"), "--quick", "--no-record",
                           "--work", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(tmp_path / "quality.csv")
    from quality_eval import all_layers

    assert table["dataset"].tolist() == ["synth-30000-s0", "nab-rogue_agent_key_hold"]
    cols = list(all_layers()) + ["default_val", "picked", "picked+layer", "hindsight", "notebook", "global_std", "plain_pca"]
    values = table[cols].to_numpy(float)
    assert np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()
    assert (table["hindsight"] >= table["picked"]).all()
    # build's default evidence at this size: the fit split's events too, where it holds some (the NAB
    # series' two labelled windows are in validation and test)
    assert table["fit_events"].tolist()[0] >= 1 and table["fit_events"].tolist()[1] == 0
    assert "Mean test F0.5 over data sets" in proc.stdout and "| mean-plateau |" in proc.stdout


def test_gutentag_configs_are_drawn_from_the_seed_within_the_generators_rules():
    a, b, c = qd.gutentag_config(3), qd.gutentag_config(3), qd.gutentag_config(4)
    assert a == b and a != c  # the seed alone decides the data set
    ts = a["timeseries"][0]
    assert ts["length"] == 50_000 and ts["supervised"] and len(ts["base-oscillations"]) == 6
    anomalies = ts["anomalies"]
    assert len(anomalies) == 12
    starts = [x["exact-position"] for x in anomalies]
    assert starts == sorted(starts) and all(0 <= s and s + x["length"] < 50_000 for s, x in zip(starts, anomalies))
    assert all(e["exact-position"] > s["exact-position"] + s["length"] for s, e in zip(anomalies, anomalies[1:]))
    admits = {base["kind"]: set(qd.GT_GENERIC) | set(extra) for base, extra in qd.GT_BASES}
    for x in anomalies:
        kind = x["kinds"][0]["kind"]
        assert kind in admits[ts["base-oscillations"][x["channel"]]["kind"]]
        assert (x["length"] == 1) == (kind == "extremum")  # GutenTAG's rule for extrema
