"""Loading, validation errors, splits, scaling and wavelet denoising."""
import numpy as np
import pandas as pd
import pytest

from telemetry.checks import check_disjoint
from telemetry.errors import TelemetryError
from telemetry.loading import load, load_labels, load_nab, load_parquet
from telemetry.prepare import DataConfig, prepare
from telemetry.scaling import StandardScaler
from telemetry.schema import channel_names
from telemetry.series import Series
from telemetry.splits import split_series
from telemetry.wavelets import WaveletDenoiser

from conftest import write_challenge_parquet


def test_channel_selection_forms():
    assert channel_names(None) == [f"channel_{i}" for i in range(41, 47)]
    assert channel_names("41-43") == ["channel_41", "channel_42", "channel_43"]
    assert channel_names("channel_1..channel_2,7") == ["channel_1", "channel_2", "channel_7"]
    with pytest.raises(TelemetryError, match="more than once"):
        channel_names("1,1")


def test_parquet_projection_reads_only_requested_columns_as_float32(challenge_files):
    s = load_parquet(challenge_files / "train.parquet", channels="41-42")
    assert s.values.dtype == np.float32 and s.values.shape == (600, 2)
    assert s.channels == ("channel_41", "channel_42") and s.labels.dtype == np.uint8
    assert s.labels.sum() == 35 and s.telecommands is None
    t = load_parquet(challenge_files / "test.parquet", channels="41-42", telecommands="all")
    assert t.labels is None and t.telecommand_names == ("telecommand_1",) and t.ids[0] == 600


def test_float64_columns_are_cast_to_float32(tmp_path):
    df = pd.DataFrame({"id": np.arange(5), "channel_41": np.linspace(0, 1, 5)})  # float64 on disk
    df.to_parquet(tmp_path / "f.parquet")
    s = load(tmp_path / "f.parquet", channels="41")
    assert s.values.dtype == np.float32 and s.values[-1, 0] == 1.0


def bad_file(tmp_path, mutate, name="train.parquet"):
    df = write_challenge_parquet(tmp_path / name, n=50, events=((10, 12),))
    df = mutate(df)
    df.to_parquet(tmp_path / name, index=False)
    return tmp_path / name


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.drop(columns=["id"]), "missing column 'id'"),
    (lambda d: d.assign(channel_42=np.where(d.index == 7, np.nan, d.channel_42)), "column 'channel_42' has 1 NaN/inf/missing values \\(first at id 7\\)"),
    (lambda d: d.assign(channel_43=np.where(d.index == 9, np.inf, d.channel_43)), "column 'channel_43' has 1 NaN/inf"),
    (lambda d: d.assign(id=np.r_[0:20, 19, 21:50]), "not strictly increasing \\(duplicate id 19 after 19 at row 20\\)"),
    (lambda d: d.assign(id=np.r_[0:20, 5, 21:50]), "not strictly increasing \\(decreasing id 5 after 19"),
    (lambda d: d.assign(is_anomaly=np.where(d.index == 3, 2, d.is_anomaly).astype(np.uint8)), "'is_anomaly' must be 0/1, found 2 at id 3"),
    (lambda d: d.iloc[:0], "file has no rows"),
])
def test_bad_files_give_one_line_errors_naming_file_and_column(tmp_path, mutate, message):
    path = bad_file(tmp_path, mutate)
    with pytest.raises(TelemetryError, match=message) as err:
        load(path, channels="41-43")
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_file_unknown_channel_and_missing_labels(challenge_files):
    with pytest.raises(TelemetryError, match="nope.parquet: file not found"):
        load(challenge_files / "nope.parquet")
    with pytest.raises(TelemetryError, match="unknown channel 'channel_99' \\(file has channel_41..channel_43\\)"):
        load(challenge_files / "train.parquet", channels="41,99")
    with pytest.raises(TelemetryError, match="missing column 'is_anomaly'"):
        load(challenge_files / "test.parquet", channels="41", labels=True)
    (challenge_files / "x.txt").write_text("")
    with pytest.raises(TelemetryError, match="unsupported file type"):
        load(challenge_files / "x.txt")
    (challenge_files / "empty.csv").write_text("")
    with pytest.raises(TelemetryError, match="empty.csv: file is empty"):
        load(challenge_files / "empty.csv")


def test_csv_in_challenge_schema(tmp_path):
    pd.DataFrame({"id": [1, 2, 3], "channel_41": [0.5, 1.0, 2.0], "is_anomaly": [0, 1, 0]}).to_csv(tmp_path / "t.csv", index=False)
    s = load(tmp_path / "t.csv", channels="41")
    assert s.values.dtype == np.float32 and list(s.labels) == [0, 1, 0] and list(s.ids) == [1, 2, 3]


def test_test_ids_overlapping_train_ids_are_refused():
    with pytest.raises(TelemetryError, match="test.parquet: 2 ids also appear in train.parquet \\(first: id 8\\)"):
        check_disjoint(np.arange(10), np.arange(8, 20), "train.parquet", "test.parquet")
    check_disjoint(np.arange(10), np.arange(10, 20), "a", "b")


def test_nab_series_with_labelled_window(nab_dir):
    nab = nab_dir
    s = load_nab(nab / "art_daily_jumpsup.csv", nab / "combined_windows.json")
    assert len(s) == 4032 and s.channels == ("value",)
    assert 0 < s.labels.sum() < 4032
    assert load(nab / "art_daily_small_noise.csv").labels is None


def labelled(n=1000, events=((100, 110), (500, 520), (900, 905))):
    lab = np.zeros(n, np.uint8)
    for lo, hi in events:
        lab[lo:hi] = 1
    return Series(np.arange(n, dtype=np.int64), np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32), lab, ("a", "b"), "train")


def test_splits_are_contiguous_and_each_labelled_split_has_an_event():
    sp = split_series(labelled(), (0.4, 0.4, 0.2))
    assert sp.lengths() == {"fit": 400, "validation": 400, "holdout": 200}
    assert sp.validation.ids[0] == 400 and sp.holdout.ids[0] == 800
    sp = split_series(labelled(), boundaries=(300, 700))
    assert sp.lengths() == {"fit": 300, "validation": 400, "holdout": 300}
    with pytest.raises(TelemetryError, match="the validation split \\(ids 600..799\\) contains no anomaly event"):
        split_series(labelled(), (0.6, 0.2, 0.2))
    with pytest.raises(TelemetryError, match="three positive numbers"):
        split_series(labelled(), (0.5, 0.5))


def test_a_holdout_without_events_is_allowed_with_a_warning(caplog):
    # Few-event series (NAB's have 2-5): validation keeps its event, holdout may have none.
    with caplog.at_level("WARNING", logger="telemetry.splits"):
        sp = split_series(labelled(events=((100, 110), (500, 520))), boundaries=(300, 700))
    assert sp.holdout.labels.sum() == 0
    assert "holdout split (ids 700..999) contains no anomaly event" in caplog.text


def test_scaler_uses_only_the_rows_it_is_given():
    x = np.zeros((100, 1), np.float32)
    x[:50] = 1.0
    x[:50:2] = -1.0
    x[90:] = 1000.0  # anomalous rows: excluded by the mask
    mask = np.ones(100, bool)
    mask[90:] = False
    sc = StandardScaler().fit(x, mask)
    assert sc.mean_[0] == pytest.approx(0.0) and sc.scale_[0] == pytest.approx(np.sqrt(50 / 90))
    assert sc.transform(x).dtype == np.float32
    const = StandardScaler().fit(np.ones((10, 1), np.float32))
    assert const.scale_[0] == 1.0


def test_wavelet_denoising_shrinks_noise_and_is_not_the_identity():
    rng = np.random.default_rng(0)
    t = np.arange(8192)
    clean = np.stack([np.sin(t / 100), np.cos(t / 37)], 1).astype(np.float32)
    noisy = (clean + rng.normal(0, 0.3, clean.shape)).astype(np.float32)
    d = WaveletDenoiser("db4", level=3).fit(noisy)
    out = d.transform(noisy)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert np.abs(out - clean).mean() < 0.5 * np.abs(noisy - clean).mean()
    # thresholds come from fit, not from the series being transformed
    other = (clean + rng.normal(0, 3.0, clean.shape)).astype(np.float32)
    before = d.thresholds_.copy()
    d.transform(other)
    np.testing.assert_array_equal(before, d.thresholds_)
    with pytest.raises(TelemetryError, match="unknown wavelet 'db99'"):
        WaveletDenoiser("db99").fit(noisy)


def test_prepare_fits_on_fit_split_and_applies_it_to_every_split(challenge_files):
    cfg = DataConfig.from_dict({"train": "train.parquet", "test": "test.parquet", "channels": "41-43",
                                "fractions": [0.4, 0.4, 0.2], "wavelet": {"wavelet": "haar", "level": 1}},
                               base_dir=challenge_files)
    p = prepare(cfg)
    assert {k: len(v) for k, v in p.sets().items()} == {"fit": 240, "validation": 240, "holdout": 120, "test": 200}
    raw = load(cfg.train, "41-43")
    fit_nominal = p.scaler.transform(raw.values[:240][p.fit.labels == 0])
    np.testing.assert_allclose(fit_nominal.mean(axis=0), 0, atol=1e-5)
    # validation and test get the fit split's scaler and denoiser, not statistics of their own
    np.testing.assert_array_equal(p.validation.values, p.denoiser.transform(p.scaler.transform(raw.values[240:480])))
    test = load(cfg.test, "41-43", labels=False)
    np.testing.assert_array_equal(p.test.values, p.denoiser.transform(p.scaler.transform(test.values)))
    np.testing.assert_array_equal(p.test.ids, np.arange(600, 800))
    with pytest.raises(TelemetryError, match="data: unknown key 'chanels'"):
        DataConfig.from_dict({"train": "x", "chanels": "41"})


def test_test_labels_must_match_test_ids(challenge_files):
    pd.DataFrame({"id": np.arange(600, 800), "is_anomaly": np.zeros(200, np.uint8)}).to_parquet(challenge_files / "tl.parquet")
    ids, lab = load_labels(challenge_files / "tl.parquet")
    assert ids[0] == 600 and lab.dtype == np.uint8
    pd.DataFrame({"id": np.arange(0, 200), "is_anomaly": np.zeros(200, np.uint8)}).to_parquet(challenge_files / "bad.parquet")
    cfg = DataConfig(train=str(challenge_files / "train.parquet"), test=str(challenge_files / "test.parquet"),
                     test_labels=str(challenge_files / "bad.parquet"), channels="41", fractions=[0.4, 0.4, 0.2])
    with pytest.raises(TelemetryError, match="ids do not match the test file"):
        prepare(cfg)


@pytest.mark.parametrize("level", [1, 3])
def test_blockwise_denoising_equals_one_whole_series_pass(level):
    x = np.random.default_rng(2).normal(size=(50_001, 2)).astype(np.float32)
    d = WaveletDenoiser("db4", level=level, block_rows=1 << 30).fit(x)
    whole = d.transform(x)
    d.block_rows = 3000  # many blocks, with a ragged last one
    np.testing.assert_array_equal(d.transform(x), whole)


def test_check_command_summarises_good_files_and_names_the_bad_column(challenge_files, capsys):
    from telemetry.__main__ import main

    train, test = str(challenge_files / "train.parquet"), str(challenge_files / "test.parquet")
    assert main(["check", "--train", train, "--test", test, "--channels", "41-43", "--fractions", "0.4,0.4,0.2"]) == 0
    out = capsys.readouterr().out
    assert "validation ids 240..479" in out and "none shared with train" in out
    assert main(["check", "--train", train, "--channels", "41,99"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {train}: unknown channel 'channel_99' (file has channel_41..channel_43)"
