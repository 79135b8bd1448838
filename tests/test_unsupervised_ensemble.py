"""The ensemble of an unlabelled sweep: calibrated members, their mean, an unsupervised threshold."""
import numpy as np
import pytest

from ensemble.unsupervised import UnsupervisedEnsemble
from detection.thresholds import Threshold
from telemetry.errors import TelemetryError


def test_mean_of_robust_z_members_with_a_pot_threshold_fitted_on_validation_only():
    rng = np.random.default_rng(0)
    # two members on different scales; the later split has a shifted stretch both see
    val = np.stack([rng.normal(5, 2, 20_000), rng.gamma(2.0, 0.1, 20_000)], axis=1)
    ens = UnsupervisedEnsemble().fit(val, ["a", "b"])
    cal = ens.calibrated(val)
    assert np.median(cal, axis=0) == pytest.approx([0, 0], abs=1e-6)  # robust z: median 0, MAD-scaled
    assert ens.predict(val).mean() < 0.01  # POT at risk 1e-3: few validation rows alarm
    later = np.stack([rng.normal(5, 2, 1000), rng.gamma(2.0, 0.1, 1000)], axis=1)
    later[500:600] += [20.0, 2.0]
    pred = ens.predict(later)
    assert pred[500:600].mean() > 0.9 and pred[:500].mean() < 0.02
    np.testing.assert_allclose(ens.score(later), ens.calibrated(later).mean(axis=1), rtol=1e-6)
    assert ens.record()["rule"]["method"] == "pot"


def test_channels_behind_alarms_and_labelled_rules_refused():
    rng = np.random.default_rng(1)
    val = rng.normal(size=(5000, 2))
    cs = rng.normal(size=(5000, 2, 3))  # [rows, members, channels]
    ens = UnsupervisedEnsemble().fit(val, ["a", "b"], channel_scores=cs, channel_members=[0, 1], channels=["x", "y", "z"])
    later = rng.normal(size=(200, 2, 3))
    later[100:, :, 2] += 10  # channel z only
    m = ens.channel_margins(later)
    assert m.shape == (200, 3) and (m[100:, 2] > 0).all() and (m[100:, :2] < 5).all()
    with pytest.raises(TelemetryError, match="needs labels"):
        UnsupervisedEnsemble(rule=Threshold(method="best_f05"))
