"""Many independent series in one Series (devices, runs, discharges): windows, lags, scores and
splits never cross from one series into the next."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.pca import lagged
from telemetry.errors import TelemetryError
from telemetry.loading import load
from telemetry.prepare import DataConfig, load_sets, prepare
from telemetry.series import Series, concatenate
from telemetry.splits import split_series
from telemetry.windows import WindowBatches, spread_to_rows, window_starts

LENGTHS = [23, 5, 40, 1, 17, 9]  # some shorter than the windows below


def offsets(lengths):
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def naive_starts(lengths, window, stride, horizon):
    """The reference: each series windowed on its own, as if it were the only one."""
    out, first = [], 0
    for n in lengths:
        if n >= window + horizon:
            last = n - window - horizon
            s = list(range(0, last + 1, stride))
            if s[-1] != last:
                s.append(last)
            out += [first + x for x in s]
        first += n
    return np.array(out, dtype=np.int64)


@pytest.mark.parametrize("window,stride,horizon", [(1, 1, 0), (4, 1, 0), (5, 3, 0), (8, 2, 1), (6, 4, 3), (17, 1, 0)])
def test_window_starts_equal_a_naive_per_series_reference_and_never_span_two_series(window, stride, horizon):
    off = offsets(LENGTHS)
    n = int(off[-1])
    starts = window_starts(n, window, stride, horizon, segments=off)
    np.testing.assert_array_equal(starts, naive_starts(LENGTHS, window, stride, horizon))
    seg_first = np.searchsorted(off, starts, side="right")
    seg_last = np.searchsorted(off, starts + window + horizon - 1, side="right")
    assert (seg_first == seg_last).all()  # first and last row (target included) in the same series
    # the served windows are exactly those of each series taken alone
    values = np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32)
    x, y = WindowBatches(values, window, starts, 7, target="next", horizon=max(horizon, 1))[0] if horizon else \
        (WindowBatches(values, window, starts, 7)[0], None)
    for j, s in enumerate(starts[:7]):
        k = np.searchsorted(off, s, side="right") - 1
        alone = values[off[k]:off[k + 1]]
        np.testing.assert_array_equal(x[j], alone[s - off[k]: s - off[k] + window])


def test_no_series_long_enough_is_one_line_error():
    with pytest.raises(TelemetryError, match=r"window 50 is longer than the longest series \(40 rows\)"):
        window_starts(int(sum(LENGTHS)), 50, segments=offsets(LENGTHS))


@pytest.mark.parametrize("how", ["mean", "max"])
def test_spread_to_rows_with_series_equals_each_series_spread_alone(how):
    off = offsets(LENGTHS)
    n, window, horizon = int(off[-1]), 4, 2
    starts = window_starts(n, window, 1, horizon, segments=off)
    v = np.random.default_rng(1).normal(size=starts.size)
    # a forecaster's windows: each value belongs to the rows it predicted
    got = spread_to_rows(v, starts + window, horizon, n, how=how, segments=off)
    ref, covered_median = [], []
    for k, L in enumerate(LENGTHS):
        mine = (starts >= off[k]) & (starts < off[k + 1])
        if mine.any():
            part = spread_to_rows(v[mine], starts[mine] + window - off[k], horizon, L, how=how)
            covered_median.append(spread_to_rows(v[mine], starts[mine] + window - off[k], horizon, L, how=how,
                                                 fill="nan"))
            ref.append(part)
        else:
            ref.append(None)
    med = np.median(np.concatenate([c[~np.isnan(c)] for c in covered_median]))
    ref = [np.full(L, med, np.float32) if r is None else r for r, L in zip(ref, LENGTHS)]
    np.testing.assert_allclose(got, np.concatenate(ref), rtol=1e-6)
    with pytest.raises(TelemetryError, match="crosses from one series"):
        spread_to_rows(np.ones(1), np.array([20]), 5, n, segments=off)


def test_lag_embedding_stops_at_each_series_first_row():
    off = offsets(LENGTHS)
    values = np.arange(int(off[-1]) * 2, dtype=np.float32).reshape(-1, 2)
    got = lagged(values, 4, segments=off)
    ref = np.concatenate([lagged(values[a:b], 4) for a, b in zip(off[:-1], off[1:])])
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(lagged(values, 4, 20, 30, segments=off), ref[20:30])  # chunked alike


def many(lengths=(30, 30, 30, 30, 30), labels=True, events=((0, 16, 18), (2, 5, 10), (3, 1, 4), (4, 3, 8))):
    """Series back to back; ``events``: (series, start, stop) of anomalous rows."""
    rng = np.random.default_rng(0)
    parts = []
    first = 0
    for k, n in enumerate(lengths):
        lab = np.zeros(n, np.uint8) if labels else None
        parts.append(Series(np.arange(first, first + n, dtype=np.int64), rng.normal(size=(n, 2)).astype(np.float32),
                            lab, ("a", "b"), f"s{k}"))
        first += n
    if labels:
        for k, lo, hi in (e for e in events if e[0] < len(parts)):
            parts[k].labels[lo:hi] = 1
    return concatenate(parts, [f"dev{k}" for k in range(len(lengths))], source="fleet")


def test_series_slices_keep_their_boundaries_and_names():
    s = many()
    part = s.slice(45, 100)
    assert part.segments.tolist() == [0, 15, 45, 55] and part.segment_names == ("dev1", "dev2", "dev3")
    assert s.slice(30, 60).segment_names == ("dev1",) and s.slice(30, 60).segments.tolist() == [0, 30]
    assert s.with_values(s.values * 2).segments.tolist() == s.segments.tolist()
    with pytest.raises(TelemetryError, match="no empty series"):
        Series(s.ids, s.values, None, s.channels, segments=np.array([0, 10, 10, 150]))


def test_splits_by_series_count_by_named_lists_and_within_each_series():
    s = many()
    sp = split_series(s, (0.6, 0.2, 0.2))
    assert [p.segment_names for _, p in sp.items()] == [("dev0", "dev1", "dev2"), ("dev3",), ("dev4",)]
    sp = split_series(s, series_lists={"validation": ["dev2"], "holdout": ["dev4", "dev0"]})
    assert sp.fit.segment_names == ("dev1", "dev3") and sp.holdout.segment_names == ("dev0", "dev4")
    assert sp.fit.segments.tolist() == [0, 30, 60] and sp.fit.ids[30] == 90  # dev3's first id
    sp = split_series(s, (0.5, 0.25, 0.25), within_series=True)
    assert sp.fit.segment_names == sp.holdout.segment_names == tuple(f"dev{k}" for k in range(5))
    assert sp.lengths() == {"fit": 75, "validation": 35, "holdout": 40}  # per series 15 / 7 / 8 (22.5 rounds to 22)
    assert sp.validation.ids[:7].tolist() == list(range(15, 22)) and sp.validation.ids[7] == 45
    # labelled: validation must hold an event
    with pytest.raises(TelemetryError, match="validation split .* contains no anomaly event"):
        split_series(s, series_lists={"validation": ["dev1"], "holdout": ["dev4"]})
    with pytest.raises(TelemetryError, match="unknown series 'dev9'"):
        split_series(s, series_lists={"validation": ["dev9"], "holdout": ["dev4"]})
    with pytest.raises(TelemetryError, match="'dev2' is in both"):
        split_series(s, series_lists={"validation": ["dev2"], "holdout": ["dev2"]})
    with pytest.raises(TelemetryError, match="boundaries .* with 5 series"):
        split_series(s, boundaries=(30, 60))
    with pytest.raises(TelemetryError, match="leave a split without a series"):
        split_series(many(lengths=(30, 30)), (0.6, 0.2, 0.2))
    # unlabelled many series split without label checks
    sp = split_series(many(labels=False), (0.6, 0.2, 0.2))
    assert sp.validation.labels is None and sp.validation.segment_names == ("dev3",)


def long_csv(path, devices=4, rows=50, shuffle=False):
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"device": np.repeat([f"d{k}" for k in range(devices)], rows),
                       "temp": rng.normal(size=devices * rows), "load": rng.normal(size=devices * rows)})
    if shuffle:
        df = pd.concat([df.iloc[:rows], df.iloc[2 * rows:3 * rows], df.iloc[rows:2 * rows], df.iloc[:3]])
    df.to_csv(path, index=False)
    return df


def test_series_column_cuts_a_long_csv_and_scaling_fits_on_the_fit_series_only(tmp_path):
    df = long_csv(tmp_path / "long.csv")
    s = load(tmp_path / "long.csv", channels=["temp", "load"], series="device")
    assert s.segment_names == ("d0", "d1", "d2", "d3") and s.segments.tolist() == [0, 50, 100, 150, 200]
    assert load(tmp_path / "long.csv", channels="*", series="device").channels == ("temp", "load")  # never the id column
    cfg = DataConfig.from_dict({"train": str(tmp_path / "long.csv"), "channels": ["temp", "load"], "series": "device",
                                "fractions": [0.5, 0.25, 0.25]})
    data = prepare(cfg)
    assert data.fit.segment_names == ("d0", "d1") and data.holdout.segment_names == ("d3",)
    fit_rows = df[df.device.isin(["d0", "d1"])][["temp", "load"]].to_numpy(np.float64)
    np.testing.assert_allclose(data.scaler.mean_, fit_rows.mean(axis=0), rtol=1e-5)
    assert not data.labelled
    long_csv(tmp_path / "bad.csv", shuffle=True)
    with pytest.raises(TelemetryError, match=r"rows of series 'd0' \(column 'device'\) are not contiguous"):
        load(tmp_path / "bad.csv", channels="temp", series="device")
    with pytest.raises(TelemetryError, match="missing series column 'unit'"):
        load(tmp_path / "long.csv", channels="temp", series="unit")


@pytest.mark.parametrize("bad,message", [
    ({"labels": "no"}, "data.labels must be one of auto, none"),
    ({"split_series": {"validation": ["a"]}}, "data.split_series must have exactly the keys validation and holdout"),
    ({"split_within_series": "yes"}, "data.split_within_series must be true or false"),
])
def test_bad_shape_keys_are_one_line_errors(bad, message):
    with pytest.raises(TelemetryError, match=message):
        DataConfig.from_dict({"train": "x.csv", **bad})


def test_a_window_model_scores_each_series_as_if_it_were_alone():
    """The concatenation with boundaries scores exactly like each series scored on its own."""
    from models.autoencoders import DenseAE

    s = many(lengths=(40, 6, 50), labels=False)
    est = DenseAE(window=8, units=4, latent=2, epochs=1, batch_size=32, seed=0).fit(s, s)
    whole = est.score_samples(s)
    for k in (0, 2):
        np.testing.assert_allclose(whole[s.offsets[k]:s.offsets[k + 1]], est.score_samples(s.segment(k)), rtol=1e-5, atol=1e-6)
    # the 6-row series has no window of 8 rows: its rows take the median of the scored rows
    assert np.allclose(whole[40:46], np.median(np.concatenate([whole[:40], whole[46:]])))
    with pytest.raises(TelemetryError, match="longer than the longest series of the training split"):
        DenseAE(window=60, epochs=1).fit(s)


def test_discharge_json_is_one_series_per_discharge_and_test_ids_follow_train(tmp_path):
    from telemetry.discharges import load_discharges
    from telemetry.synthetic.discharges import write_synthetic_discharges

    write_synthetic_discharges(tmp_path / "train.json", n_discharges=10, seed=0, dt=5e-3, disrupting_fraction=0.5)
    write_synthetic_discharges(tmp_path / "test.json", n_discharges=2, seed=1, dt=5e-3, first_shot=70_010)
    disc = load_discharges(tmp_path / "train.json")
    cat, index = disc.concatenated()
    np.testing.assert_array_equal(cat.segments, disc.offsets)  # one mechanism for every many-series source
    assert cat.segment_names == disc.names and index.tolist() == cat.segment_index().tolist()
    cfg = DataConfig.from_dict({"train": str(tmp_path / "train.json"), "test": str(tmp_path / "test.json"),
                                "channels": None, "split_series": {"validation": ["70001", "70003"],
                                                                   "holdout": ["70005", "70002"]}})
    splits, test, _ = load_sets(cfg)
    assert splits.validation.segment_names == ("70001", "70003") and splits.fit.n_segments == 6
    assert test.segment_names == ("70010", "70011") and test.ids[0] == len(cat)  # after the train file's rows
    assert splits.fit.channels == tuple(f"sensor_{k}" for k in range(1, 8))
    with pytest.raises(TelemetryError, match="already one series per discharge"):
        load(tmp_path / "train.json", series="shot")


def test_per_series_detection_on_a_hand_made_split():
    from detection.series_metrics import split_detection_table

    lab = np.zeros(20, np.uint8)
    lab[7:10] = 1  # series "a" (rows 0-9) turns anomalous at its row 7; "b" (rows 10-19) stays normal
    s = Series(np.arange(20, dtype=np.int64), np.zeros((20, 1), np.float32), lab, ("x",), segments=np.array([0, 10, 20]),
               segment_names=("a", "b"))
    alarms = np.zeros(20, np.uint8)
    alarms[4] = alarms[15] = 1
    t = split_detection_table(s, alarms)  # in rows from each series' start
    assert t.to_dict("list")["outcome"] == ["in time", "false alarm"]
    assert t.loc[0, "warning_time"] == 3 and t.loc[1, "first_alarm"] == 5
    times = np.linspace(0, 1.9, 20)  # a time axis, onsets given per name
    t = split_detection_table(s, alarms, times, {"a": 0.75})
    assert t.loc[0, "warning_time"] == pytest.approx(0.75 - times[4]) and not t.loc[1, "anomalous"]


def test_a_trial_thresholds_and_scores_many_series_per_series():
    """A trial on splits made of many series: its rule is fitted, and validation and holdout counted,
    per series; an anomaly across two series' boundary is two events."""
    from types import SimpleNamespace

    from models import registry
    from search import trainable
    from telemetry.events import events
    from detection.metrics import corrected_event_f05
    from detection.thresholds import Threshold

    rng = np.random.default_rng(0)
    seg = np.arange(0, 201, 50)

    def split(name, segments=seg, shift=6.0):
        n = int(segments[-1])
        y = np.zeros(n, np.uint8)
        for end in segments[1:-1]:
            y[end - 5:end + 5] = 1
        x = rng.normal(size=(n, 2)) + shift * y[:, None]
        x[seg[1]:seg[1] + 5] -= shift * 0.8  # one half-event is faint
        return Series(np.arange(n, dtype=np.int64), x.astype(np.float32), y, ("a", "b"), source=name,
                      segments=segments)

    data = SimpleNamespace(fit=split("fit", np.array([0, 200]), 0.0), validation=split("validation"),
                           holdout=split("holdout"), test=None)
    est = registry.get("global_std")().fit(data.fit, data.validation)
    out, rule, m_val, m_hold, _ = trainable._evaluate(est, data, {"method": "best_f05", "smooth": 3})
    for s, m in ((data.validation, m_val), (data.holdout, m_hold)):
        pred = rule.predict(out[s.source], seg)
        assert m["true_events"] == len(events(s.labels, seg)) == 6 != len(events(s.labels))
        assert m["f05"] == corrected_event_f05(s.labels, pred, seg)
    # the rule was fitted on the per-series metric of its own (per-series smoothed) predictions
    # (taken as one series, the faint half rides on its neighbour's detection: a higher threshold)
    assert rule.threshold_ == Threshold("best_f05", smooth=3).fit(out["validation"], data.validation.labels,
                                                                    segments=seg).threshold_
    assert rule.threshold_ < Threshold("best_f05", smooth=3).fit(out["validation"], data.validation.labels).threshold_


def fleet_csv(path, devices, anomalous, rows=60, seed=0, labels=True):
    """A long CSV, ``rows`` per device: each device has two lone one-row spikes (nominal, which
    smoothing hides) and the ``anomalous`` ones end in a sustained shift, labelled, to their last row."""
    rng = np.random.default_rng(seed)
    parts = []
    for name in devices:
        x = rng.normal(size=(rows, 2))
        x[rng.choice(np.arange(5, rows - 25), 2, replace=False), rng.integers(0, 2)] += 12.0
        y = np.zeros(rows, np.int64)
        if name in anomalous:
            x[-20:, 0] += 4.0
            y[-20:] = 1
        df = pd.DataFrame({"device": name, "temp": x[:, 0], "load": x[:, 1]})
        parts.append(df.assign(is_anomaly=y) if labels else df)
    pd.concat(parts).to_csv(path, index=False)


def test_build_never_carries_an_anomaly_at_one_series_end_into_the_next(tmp_path, monkeypatch):
    """A sweep over many devices, then `ensemble build`: a test device that follows one ending in an
    anomaly does not alarm at its first row (the decision layer knows where each series starts)."""
    import ray
    import yaml

    from ensemble import build as ensemble_build
    from search.config import parse_config
    from search.runner import run_sweep

    fleet_csv(tmp_path / "train.csv", [f"d{k}" for k in range(12)], {"d1", "d3", "d5", "d7", "d9"})
    fleet_csv(tmp_path / "test.csv", ["t0", "t1", "t2", "t3"], {"t0", "t2"}, seed=1, labels=False)
    cfg = parse_config({
        "name": "devices", "seed": 0, "ray": {"num_cpus": 2}, "architectures": {"global_std": {"trials": 1}},
        "data": {"train": "train.csv", "test": "test.csv", "channels": ["temp", "load"], "series": "device",
                 "split_series": {"validation": ["d1", "d2", "d3", "d4"], "holdout": ["d5", "d6", "d7", "d8"]}}},
        base_dir=tmp_path)
    try:
        exp = run_sweep(cfg, storage_path=str(tmp_path / "sweeps"))["experiment"]
    finally:
        ray.shutdown()

    def build_alarms(out):
        ensemble_build.build(exp, out, include=("baselines",))
        rule = yaml.safe_load((out / "ensemble.yaml").read_text())["ensemble"]["rule"]
        return pd.read_parquet(out / "predictions.parquet")["is_anomaly"].to_numpy().reshape(4, 60), rule

    alarms, rule = build_alarms(tmp_path / "out")
    assert rule["smooth"] > 1  # smoothed: the end of t0 and t2 would leak into t1 and t3
    assert alarms[[0, 2], -1].all() and not alarms[[1, 3], 0].any()
    assert (tmp_path / "out" / "series_holdout.csv").is_file()
    # Without the series column, the data taken as one series: the anomalies at t0's and t2's ends run on into t1 and t3.
    monkeypatch.setattr(ensemble_build, "many_series", lambda cfg: False)
    alarms, _ = build_alarms(tmp_path / "one")
    assert alarms[[1, 3], 0].all()
    # The unlabelled build's path (its rule does not smooth): it runs with the series and counts events within them.
    monkeypatch.undo()
    from ensemble.members import load_members
    from telemetry.events import events

    res = ensemble_build.build_unlabelled(load_members(exp, include=("baselines",)), tmp_path / "unlabelled")
    pred = pd.read_parquet(tmp_path / "unlabelled" / "predictions.parquet")["is_anomaly"].to_numpy()
    assert res["alarms"][2]["events"] == len(events(pred, segments=np.arange(0, 241, 60)))
