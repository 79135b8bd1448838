"""Wide CSVs with arbitrary column names (seed 003: device1..device30, no id, no labels)."""
import re

import numpy as np
import pandas as pd
import pytest

from telemetry.errors import TelemetryError
from telemetry.loading import load, load_csv
from telemetry.schema import select_channels

DEVICES = [f"device{i}" for i in range(1, 31)]


@pytest.fixture
def wide(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(50, 30)).round(4), columns=DEVICES)
    df.to_csv(tmp_path / "fleet.csv", index=False)
    return tmp_path / "fleet.csv", df


def test_pattern_selects_every_device_in_file_order_with_row_number_ids(wide):
    path, df = wide
    s = load(path, channels="device*")
    assert s.channels == tuple(DEVICES)  # device2 before device10: the file's order
    assert s.values.dtype == np.float32 and s.values.shape == (50, 30) and s.labels is None
    assert s.ids.dtype == np.int64 and list(s.ids[:3]) == [0, 1, 2] and s.ids[-1] == 49
    np.testing.assert_array_equal(s.values, df.to_numpy(np.float32))
    assert load(path, channels=re.compile(r"device\d")).channels == tuple(DEVICES[:9])
    assert load_csv(path, channels=r"re:device(1\d|2\d)").channels == tuple(DEVICES[9:29])


def test_explicit_list_keeps_the_given_order(wide):
    path, df = wide
    s = load(path, channels=["device17", "device3"])
    assert s.channels == ("device17", "device3")
    np.testing.assert_array_equal(s.values[:, 0], df["device17"].to_numpy(np.float32))
    assert load(path, channels="device5,device1*").channels == ("device5", "device1", *DEVICES[9:19])


def test_id_and_label_columns_are_used_when_present_and_never_matched_by_patterns(tmp_path):
    df = pd.DataFrame({"id": [10, 20, 30], "a1": [1.0, 2, 3], "a2": [4.0, 5, 6], "is_anomaly": [0, 1, 0]})
    df.to_csv(tmp_path / "x.csv", index=False)
    s = load(tmp_path / "x.csv", channels="*")
    assert s.channels == ("a1", "a2") and list(s.ids) == [10, 20, 30] and list(s.labels) == [0, 1, 0]


@pytest.mark.parametrize("cell, spec, message", [
    (None, "sensor*", r"fleet.csv: channel pattern 'sensor\*' matches no column \(file has device1, device2, .*\(30 columns\)\)"),
    (None, ["device1", "device31"], r"fleet.csv: unknown channel 'device31' \(file has device1, .*choose columns by name or by a pattern such as 'device\*'\)"),
    (None, None, r"fleet.csv: unknown channel 'channel_41' \(file has device1"),
    (None, "device1,device*", r"fleet.csv: channel selection picks 'device1' more than once"),
    (None, "re:device(", r"channel pattern 're:device\(' is not a valid regular expression"),
    ("abc", "device*", r"fleet.csv: column 'device7' has 1 non-numeric value \(first 'abc' at row 12, line 14 of the file\)"),
    ("n/a", "device*", r"fleet.csv: column 'device7' has 1 NaN/inf/missing values \(first at row 12\)"),  # pandas' NA words
    ("", "device*", r"fleet.csv: column 'device7' has 1 NaN/inf/missing values \(first at row 12\)"),
    ("inf", "device*", r"fleet.csv: column 'device7' has 1 NaN/inf/missing values \(first at row 12\)"),
])
def test_errors_are_one_line_and_name_file_and_column(wide, cell, spec, message):
    path, df = wide
    if cell is not None:
        df = df.astype(object)
        df.loc[12, "device7"] = cell
        df.to_csv(path, index=False)
    with pytest.raises(TelemetryError, match=message) as err:
        load(path, channels=spec)
    assert "\n" not in str(err.value)


def test_challenge_schema_csv_still_needs_integer_ids_and_reads_the_same(tmp_path):
    pd.DataFrame({"id": [1, 2, 2], "channel_41": [0.5, 1.0, 2.0]}).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(TelemetryError, match="d.csv: column 'id' is not strictly increasing"):
        load(tmp_path / "d.csv", channels="41")
    pd.DataFrame({"id": [1, 2, 3], "channel_41": [0.5, np.nan, 2.0]}).to_csv(tmp_path / "n.csv", index=False)
    with pytest.raises(TelemetryError, match=r"n.csv: column 'channel_41' has 1 NaN/inf/missing values \(first at id 2\)"):
        load(tmp_path / "n.csv", channels="41")


def test_select_channels_forms():
    cols = ["id", "channel_1", "channel_2", "channel_10", "is_anomaly"]
    assert select_channels("channel_*", cols) == ["channel_1", "channel_2", "channel_10"]
    assert select_channels("1-2", cols) == ["channel_1", "channel_2"]
    assert select_channels(["channel_1?"], cols) == ["channel_10"]
    assert select_channels(None, cols) == [f"channel_{i}" for i in range(41, 47)]
