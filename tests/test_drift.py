"""Drift check: flags planted level shifts, names exactly those channels, stays quiet on stationary data."""
import re

import numpy as np
import pytest
from scipy.signal import lfilter

from detection.drift import DriftRules, describe_drift, drift_table, splits_drift
from ensemble.plots import plot_score_splits
from telemetry.errors import TelemetryError
from telemetry.series import Series

N, C = 40_000, 30
NAMES = tuple(f"device{j + 1}" for j in range(C))


def stationary(seed, n=N, c=C, phi=0.99):
    """Random-phase sines (periods 100..3000 rows) plus AR(1) noise: stationary, strongly autocorrelated."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    sines = np.sin(2 * np.pi * t / rng.uniform(100, 3000, c) + rng.uniform(0, 2 * np.pi, c))
    ar = lfilter([1.0], [1.0, -phi], rng.normal(size=(n, c)) * np.sqrt(1 - phi * phi), axis=0)
    return (rng.uniform(-5, 5, c) + rng.uniform(0.5, 3, c) * (sines + ar)).astype(np.float32)


def as_series(values, start=0, labels=None):
    return Series(np.arange(start, start + len(values), dtype=np.int64), values, labels, NAMES)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stationary_autocorrelated_data_flags_nothing(seed):
    x = stationary(seed)
    fit, val, test = as_series(x[:24_000]), as_series(x[24_000:32_000], 24_000), as_series(x[32_000:], 32_000)
    table = drift_table(fit, {"validation": val, "test": test})
    assert list(table.columns) == ["channel", "split", "ks", "psi", "mean_shift", "std_ratio", "drifted"]
    assert len(table) == 2 * C and not table["drifted"].any()
    assert table["ks"].between(0, 1).all() and (table["psi"] >= 0).all()
    sentence = describe_drift(table, "test")
    assert sentence.startswith("The test period is within the training distribution: no channel of 30 drifted")


def test_planted_level_shift_in_three_channels_is_flagged_and_named():
    x = stationary(7)
    ref = x[:24_000]
    test = x[32_000:].copy()
    shifted = [3, 16, 28]  # device4, device17, device29
    test[:, shifted] += 2.0 * ref[:, shifted].std(axis=0)
    table = drift_table(as_series(ref), {"test": as_series(test, 32_000)})
    flagged = table.loc[table["drifted"], "channel"].tolist()
    assert sorted(flagged) == sorted(NAMES[j] for j in shifted)
    hit = table.set_index("channel").loc[list(flagged)]
    assert (hit["mean_shift"].between(1.5, 2.5)).all() and (hit["psi"] > 1).all() and (hit["ks"] > 0.5).all()
    sentence = describe_drift(table)
    assert sentence.startswith("The test period is out of the training distribution on 3 of 30 channels: ")
    named = {n for n in NAMES if f"{n} (" in sentence}
    assert named == {"device4", "device17", "device29"}


def test_moments_are_exact_psi_uses_reference_deciles_and_reference_ignores_anomalous_rows():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(5_000, 2)).astype(np.float32)
    other = ref.copy()
    other[:, 1] = other[:, 1] * 3 + 1
    # Anomalous reference rows far away: excluded because the reference Series is labelled.
    ref_l = ref.copy()
    ref_l[:100] = 1e3
    lab = np.zeros(5_000, np.uint8)
    lab[:100] = 1
    s = Series(np.arange(5_000, dtype=np.int64), ref_l, lab, ("a", "b"))
    t = drift_table(s, {"x": other}, max_rows=100_000).set_index("channel")
    nom = ref[100:].astype(np.float64)
    assert t.loc["a", "mean_shift"] == pytest.approx((ref[:, 0].mean() - nom[:, 0].mean()) / nom[:, 0].std(), rel=1e-5)
    assert t.loc["b", "std_ratio"] == pytest.approx(3 * ref[:, 1].std() / nom[:, 1].std(), rel=1e-4)
    # Same data against itself: PSI 0, KS ~0; moving every row into one decile gives a large PSI.
    same = drift_table(ref, {"same": ref}, channels=("a", "b"))
    assert np.allclose(same["psi"], 0) and (same["ks"] < 1e-9).all() and not same["drifted"].any()
    lumped = drift_table(ref, {"lumped": np.full((1000, 2), np.median(ref, axis=0), np.float32)})
    assert (lumped["psi"] > 5).all() and (lumped["std_ratio"] == 0).all() and lumped["drifted"].all()
    assert list(lumped["channel"]) == ["ch0", "ch1"]


def test_subsampling_is_seeded_and_bounded():
    x = stationary(3, n=60_000, c=4)
    a = drift_table(x[:30_000], {"t": x[30_000:]}, max_rows=2_000, seed=5)
    b = drift_table(x[:30_000], {"t": x[30_000:]}, max_rows=2_000, seed=5)
    c = drift_table(x[:30_000], {"t": x[30_000:]}, max_rows=2_000, seed=6)
    assert a.equals(b) and not a["ks"].equals(c["ks"])
    np.testing.assert_allclose(a["mean_shift"], c["mean_shift"])  # moments use every row, not the sample


def test_rules_flag_needs_ks_and_one_size_statistic():
    r = DriftRules()
    got = r.flag(ks=[0.5, 0.5, 0.2, 0.5, 0.5], psi=[0.1, 0.3, 2.0, 0.1, 0.1],
                 mean_shift=[0.2, 0.0, 3.0, -1.5, 0.0], std_ratio=[1.0, 1.0, 1.0, 1.0, 0.1])
    assert got.tolist() == [False, True, False, True, True]


def test_errors_are_one_line_and_name_the_problem():
    x = stationary(0, n=1000, c=3)
    with pytest.raises(TelemetryError, match="split 'test' has 2 columns|split 'test' has channels"):
        drift_table(x, {"test": x[:, :2]})
    with pytest.raises(TelemetryError, match="split 'test' has no rows"):
        drift_table(x, {"test": x[:0]})
    bad = x.copy()
    bad[5, 1] = np.nan
    with pytest.raises(TelemetryError, match="split 'test' has NaN/inf values in channel 'ch1'"):
        drift_table(x, {"test": bad})
    with pytest.raises(TelemetryError, match="no split 'holdout' in the table \\(has test\\)"):
        describe_drift(drift_table(x, {"test": x}), "holdout")


def test_splits_drift_and_sentence_for_several_splits():
    from telemetry.splits import Splits

    x = stationary(4)
    x[32_000:, 0] += 5 * x[:24_000, 0].std()
    sp = Splits(as_series(x[:24_000]), as_series(x[24_000:32_000], 24_000), as_series(x[32_000:], 32_000))
    table = splits_drift(sp)
    assert list(dict.fromkeys(table["split"])) == ["validation", "holdout"]
    text = describe_drift(table)
    assert text.startswith("The validation period is within the training distribution: no channel of 30 drifted")
    assert re.search(r"The holdout period is out of the training distribution on 1 of 30 channels: device1 \(mean \+[45]\.\d reference std", text)


def test_score_plot_is_written_atomically(tmp_path):
    rng = np.random.default_rng(0)
    parts = [("fit", np.arange(0, 50_000), rng.random(50_000)), ("validation", np.arange(50_000, 60_000), rng.random(10_000)),
             ("test", np.arange(60_000, 70_000), rng.random(10_000) + 1)]
    out = tmp_path / "plots" / "score.png"
    plot_score_splits(out, parts, title="reconstruction error", threshold=1.5)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and [p.name for p in out.parent.iterdir()] == ["score.png"]
    with pytest.raises(TelemetryError, match="split 'test' has 3 ids but 2 scores"):
        plot_score_splits(tmp_path / "bad.png", [("test", np.arange(3), np.zeros(2))])
    assert not (tmp_path / "bad.png").exists()
