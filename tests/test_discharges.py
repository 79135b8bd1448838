"""Seed-002 discharge JSON: loading, resampling, labels, errors, generator, per-discharge metrics."""
import json

import numpy as np
import pytest

from telemetry.discharges import load_discharges, sensor_channel
from telemetry.synthetic.discharges import write_synthetic_discharges
from telemetry.errors import TelemetryError
from detection.series_metrics import detection_summary, detection_table, discharge_detection_table


def sig(name, times, values):
    return {"fileName": name, "times": times, "values": values}


def write(path, discharges):
    path.write_text(json.dumps({"discharges": discharges}))
    return path


def test_resampling_onto_the_finest_grid_over_the_common_span_and_labels(tmp_path):
    # Signal 1 every 1.0 from 0..4; signal 2 every 2.0 from 0.5..4.5, listed first in the file.
    # Common span [0.5, 4]: the base is signal 1's grid inside it, t = 1, 2, 3, 4.
    d = {"id": 7, "anomalyTime": 2.5, "signals": [
        sig("DES_7_02.txt", [0.5, 2.5, 4.5], [5.0, 25.0, 45.0]),
        sig("DES_7_01.txt", [0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 10.0, 20.0, 30.0, 40.0]),
    ]}
    normal = {"signals": [sig("DES_8_01.txt", [0.0, 1.0], [1.0, 2.0]), sig("DES_8_02.txt", [0.0, 1.0], [3.0, 4.0])],
              "anomalyTime": None}
    ds = load_discharges(write(tmp_path / "d.json", [d, normal]))
    assert ds.channels == ("sensor_1", "sensor_2") and ds.names == ("7", "1")
    np.testing.assert_array_equal(ds.times[0], [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(ds.series[0].values, [[10, 10], [20, 20], [30, 30], [40, 40]])
    assert ds.series[0].values.dtype == np.float32
    assert ds.series[0].labels.tolist() == [0, 0, 1, 1]  # rows at or after t = 2.5
    assert ds.series[1].labels.tolist() == [0, 0] and ds.anomalous.tolist() == [True, False]
    # global ids continue across discharges; the concatenation is one valid Series
    assert ds.series[1].ids.tolist() == [4, 5] and ds.offsets.tolist() == [0, 4, 6]
    cat, index = ds.concatenated()
    assert cat.ids.tolist() == list(range(6)) and index.tolist() == [0, 0, 0, 0, 1, 1]
    # a warning window labels rows before the onset too; anomalyTime exactly on a row labels that row
    w = load_discharges(tmp_path / "d.json", warning_rows=1)
    assert w.series[0].labels.tolist() == [0, 1, 1, 1]
    d["anomalyTime"] = 2.0
    assert load_discharges(write(tmp_path / "e.json", [d])).series[0].labels.tolist() == [0, 1, 1, 1]


def test_discharge_level_times_are_used_by_signals_without_their_own():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        p = write(Path(tmp) / "t.json", [{"times": [0, 1, 2], "signals": [
            {"fileName": "a.txt", "values": [1, 2, 3]}, {"fileName": "b.txt", "values": [4, 5, 6]}]}])
        ds = load_discharges(p)
    assert ds.channels == ("a", "b") and ds.series[0].values[:, 1].tolist() == [4, 5, 6]


def test_sensor_names():
    assert sensor_channel("DES_74900_03.txt") == "sensor_3"
    assert sensor_channel("/x/ip_signal.csv") == "ip_signal" and sensor_channel("plain") == "plain"


GOOD = [sig("DES_1_01.txt", [0, 1, 2], [1, 2, 3]), sig("DES_1_02.txt", [0, 1, 2], [1, 2, 3])]


@pytest.mark.parametrize("doc, message", [
    ({"shots": []}, r"missing field 'discharges'"),
    ({"discharges": []}, r"'discharges' must be a non-empty list"),
    ({"discharges": [{"id": 5}]}, r"discharge 0 \(id 5\): missing field 'signals'"),
    ({"discharges": [{"signals": []}]}, r"discharge 0: 'signals' must be a non-empty list"),
    ({"discharges": [{"signals": [{"times": [0, 1], "values": [1, 2]}]}]}, r"discharge 0, signal 0: missing field 'fileName'"),
    ({"discharges": [{"signals": [{"fileName": "DES_1_01.txt", "times": [0, 1]}]}]},
     r"discharge 0, signal 0 \('DES_1_01.txt'\): missing field 'values'"),
    ({"discharges": [{"signals": [{"fileName": "DES_1_01.txt", "values": [0, 1]}]}]},
     r"signal 0 \('DES_1_01.txt'\): missing field 'times' \(and the discharge has no 'times'\)"),
    ({"discharges": [{"signals": [GOOD[0], sig("DES_1_02.txt", [0, 1, 2], [1, 2])]}]},
     r"discharge 0, signal 1 \('DES_1_02.txt'\): 'times' has 3 entries but 'values' has 2"),
    ({"discharges": [{"signals": [sig("DES_1_01.txt", [], [])]}]}, r"signal 0 \('DES_1_01.txt'\): the signal is empty"),
    ({"discharges": [{"signals": [sig("DES_1_01.txt", [0], [1])]}]}, r"has only 1 sample"),
    ({"discharges": [{"signals": [sig("DES_1_01.txt", [0, 2, 1], [1, 2, 3])]}]},
     r"'times' is not strictly increasing \(1.0 after 2.0 at index 2\)"),
    ({"discharges": [{"signals": [sig("DES_1_01.txt", [0, 1, 2], [1, "x", 3])]}]}, r"'values' must be a list of numbers, found 'x'"),
    ({"discharges": [{"signals": [sig("DES_1_01.txt", [0, 1, 2], [1, None, 3])]}]}, r"signal 0 \('DES_1_01.txt'\): 'values' has a null at index 1"),
    ({"discharges": [{"signals": GOOD}, {"id": 9, "signals": [GOOD[0], sig("DES_9_03.txt", [0, 1], [1, 2])]}]},
     r"discharge 1 \(id 9\): its signals differ from discharge 0's \(missing sensor_2; extra sensor_3\)"),
    ({"discharges": [{"signals": [GOOD[0], GOOD[0]]}]}, r"discharge 0, signal 1: channel 'sensor_1' appears twice \(also signal 0\)"),
    ({"discharges": [{"signals": [sig("DES_1_01.txt", [0, 1], [1, 2]), sig("DES_1_02.txt", [2, 3], [1, 2])]}]},
     r"discharge 0: the signals share no common time span"),
    ({"discharges": [{"signals": GOOD, "anomalyTime": "late"}]}, r"discharge 0: 'anomalyTime' must be a number or null, got 'late'"),
])
def test_bad_json_gives_one_line_errors_naming_discharge_and_signal(tmp_path, doc, message):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(TelemetryError, match=message) as err:
        load_discharges(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(TelemetryError, match="nope.json: file not found"):
        load_discharges(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text('{"discharges": [')
    with pytest.raises(TelemetryError, match=r"x.json: not valid JSON \(Expecting value at line 1"):
        load_discharges(tmp_path / "x.json")


def test_generator_writes_the_format_deterministically_with_a_growing_precursor(tmp_path):
    info = write_synthetic_discharges(tmp_path / "a.json", n_discharges=8, disrupting_fraction=0.5, seed=3)
    write_synthetic_discharges(tmp_path / "b.json", n_discharges=8, disrupting_fraction=0.5, seed=3)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["a.json", "b.json"]  # no temp files left
    assert len(info["disrupting"]) == 4
    ds = load_discharges(tmp_path / "a.json", warning_rows=10)
    assert len(ds) == 8 and ds.channels == tuple(f"sensor_{k}" for k in range(1, 8))
    assert [int(n) for n in np.array(ds.names)[ds.anomalous]] == info["disrupting"]
    for s, t, at in zip(ds.series, ds.times, ds.anomaly_times):
        if not np.isfinite(at):
            assert s.labels.sum() == 0
            continue
        onset = int(np.searchsorted(t, at))
        assert s.labels[:onset - 10].sum() == 0 and s.labels[onset - 10:].all()
        # the precursor: radiated power (sensor_6) rises in the last 30 ms before the onset
        rad = s.values[:, 5]
        assert rad[(t > at - 0.03) & (t < at)].mean() > 1.3 * rad[(t > at - 0.3) & (t < at - 0.2)].mean()


def test_warning_time_and_detection_table_on_a_hand_made_case():
    t = np.arange(10.0)
    alarm = lambda *rows: np.isin(np.arange(10), rows).astype(np.uint8)  # noqa: E731
    table = detection_table(
        [alarm(4, 5, 8), alarm(7), alarm(), alarm(2), alarm(), alarm(5)],
        [t] * 6, [6.0, 5.0, 3.0, None, np.nan, 5.5], names=list("abcdef"), required_warning=1.0)
    assert table["outcome"].tolist() == ["in time", "late", "missed", "false alarm", "quiet", "late"]
    np.testing.assert_array_equal(table["warning_time"], [2.0, -2.0, np.nan, np.nan, np.nan, 0.5])
    np.testing.assert_array_equal(table["first_alarm"], [4.0, 7.0, np.nan, 2.0, np.nan, 5.0])
    s = detection_summary(table)
    assert (s["anomalous"], s["normal"], s["detected"], s["in_time"], s["late"], s["missed"], s["false_alarms"]) == (4, 2, 3, 1, 2, 1, 1)
    assert s["detection_rate"] == 0.75 and s["in_time_rate"] == 0.25 and s["false_alarm_rate"] == 0.5
    assert s["median_warning_time"] == 0.5 and s["mean_warning_time"] == pytest.approx(0.5 / 3)
    with pytest.raises(TelemetryError, match="series 0: 3 alarm rows but 10 times"):
        detection_table([np.zeros(3)], [t], [None])


def test_discharge_detection_table_from_concatenated_alarms(tmp_path):
    d = {"id": "A", "anomalyTime": 2.5, "signals": [sig("DES_1_01.txt", [0, 1, 2, 3, 4], [0, 0, 0, 9, 9])]}
    n = {"id": "B", "signals": [sig("DES_2_01.txt", [0, 1, 2], [0, 0, 0])]}
    ds = load_discharges(write(tmp_path / "d.json", [d, n]))
    alarms = np.array([0, 0, 1, 1, 1, 0, 0, 0], np.uint8)  # 5 rows of A, 3 of B
    tab = discharge_detection_table(ds, alarms)
    assert tab["series"].tolist() == ["A", "B"] and tab["outcome"].tolist() == ["in time", "quiet"]
    assert tab["warning_time"].iloc[0] == 0.5
    with pytest.raises(TelemetryError, match="7 rows given for 8 discharge rows"):
        discharge_detection_table(ds, alarms[:7])
