"""The decision layer as composed estimators and as plain data: clone, set_params, the dict/YAML form
and its errors, and the three fitted decisions."""
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.base import clone

from ensemble.calibration import Calibration
from ensemble.combine import (DEFAULT_LAYER, ChannelUnionDecision, Combination, CombinedDecision, DecisionLayer, Guard,
                              MemberDecision, Rule, load_layers, read_layer)
from ensemble.unsupervised import UnsupervisedEnsemble
from detection.thresholds import Threshold
from telemetry.errors import TelemetryError
from test_crossfit import periodic_validation as periodic  # the guard's case: member 0 alone sees the event

LAYERS = load_layers(Path(__file__).resolve().parents[1] / "benchmarks" / "layers.yaml")


def labelled(n=2000, seed=0):
    """Three members (one informative, one weaker, one noise), an event every 250 rows, and each
    member's score per channel for members 0 and 2 (3 channels)."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, np.uint8)
    for lo in range(120, n - 50, 250):
        y[lo:lo + 4] = 1
    s = np.stack([rng.normal(0, 1, n) + 4 * y, rng.gamma(2.0, 1.0, n) + 3 * y, rng.normal(0, 1, n)], 1).astype(np.float32)
    cs = np.stack([s[:, [0]] * [1.0, 0.5, 0.1] + rng.normal(0, 0.3, (n, 3)),
                   s[:, [2]] + rng.normal(0, 0.3, (n, 3))], 1).astype(np.float32)
    return s, y, cs


def test_clone_copies_the_whole_layer_unfitted_and_set_params_reaches_every_component():
    layer = DecisionLayer(combination=Combination("shrunk", weight_trials=5), rule=Rule(spans=(1, 5)), seed=3)
    params = layer.get_params(deep=True)
    assert params["combination__method"] == "shrunk" and params["rule__threshold__method"] == "plateau"
    assert params["guard__no_event"] == "member" and params["calibration__method"] == "robust_log"
    twin = clone(layer)
    assert twin is not layer and twin.to_dict() == layer.to_dict()
    assert twin.rule.threshold is not layer.rule.threshold and twin.combination is not layer.combination
    twin.set_params(rule__threshold__hysteresis=0.2, guard=None, combination__selection=0.5)
    assert layer.rule.threshold.hysteresis == 0.5 and layer.guard is not None and layer.combination.selection is None
    assert twin.to_dict()["rule"]["threshold"]["hysteresis"] == 0.2 and twin.to_dict()["guard"] is None
    # fitted state stays with the original; the clone fits to the same decision
    s, y, _ = labelled()
    layer.fit(s, y)
    again = clone(layer)
    assert not hasattr(again, "decision_")
    np.testing.assert_array_equal(again.fit(s, y).predict(s), layer.predict(s))
    # a default component is fresh per layer: changing one layer's leaves another's alone
    a, b = DecisionLayer(), DecisionLayer()
    a.set_params(rule__threshold__method="best_f05", combination__method="mean")
    assert b.rule.threshold.method == "plateau" and b.combination.method == "stack"
    unsupervised = UnsupervisedEnsemble(rule=Threshold(method="percentile", percentile=99, smooth=5))
    assert clone(unsupervised).to_dict() == unsupervised.to_dict()
    rule = Threshold(method="pot", risk=1e-4)
    assert clone(rule) == rule and clone(rule) is not rule
    with pytest.raises(TelemetryError, match="threshold has no parameter 'level'"):
        rule.set_params(level=3)
    with pytest.raises(TelemetryError, match="threshold hysteresis must be in"):
        rule.set_params(hysteresis=2.0)


def test_the_default_layer_is_the_constructors_defaults_as_plain_data():
    assert DecisionLayer().to_dict() == DEFAULT_LAYER
    assert DEFAULT_LAYER == {
        "calibration": {"method": "robust_log"},
        "combination": {"method": "stack", "prior": "member", "selection": None, "shrinkage": 0.5, "stack_c": 0.01,
                        "weight_trials": 60},
        "rule": {"per_channel": False, "post_grid": False, "spans": [1, 5, 25],
                 "threshold": {"method": "plateau", "smoothing": "ewma", "hysteresis": 0.5, "min_length": 1,
                               "max_gap": 0, "tolerance": 0.02, "resamples": 30, "risk": 0.001, "percentile": None,
                               "multiple": 1.0, "prune": 0.13, "floor_risk": 0.001}},
        "guard": {"folds": 3, "level": 0.9, "no_event": "member"},
        "seed": 0}
    assert DecisionLayer.from_dict({}).to_dict() == DEFAULT_LAYER  # everything left out: the default


@pytest.mark.parametrize("name", ["default", "legacy-weighted-edge", "select-mean-plateau", "rankmean-plateau",
                                  "channel-union-stack-shrunk-smooth-plateau-hysteresis"])
def test_the_dict_and_yaml_forms_round_trip_to_identical_predictions(name, tmp_path):
    s, y, cs = labelled()
    s_new, _, cs_new = labelled(seed=1)
    layer = DecisionLayer() if name == "default" else DecisionLayer.from_dict(LAYERS[name])
    if name == "legacy-weighted-edge":
        layer.set_params(combination__weight_trials=8)
    d = layer.to_dict()
    path = tmp_path / "layer.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    back = read_layer(path)
    assert back.to_dict() == d and DecisionLayer.from_dict(yaml.safe_load(path.read_text())).to_dict() == d
    fit = dict(channel_scores=cs, channel_members=[0, 2])
    a, b = layer.fit(s, y, **fit), back.fit(s, y, **fit)
    np.testing.assert_array_equal(a.predict(s_new, cs_new), b.predict(s_new, cs_new))
    np.testing.assert_array_equal(a.score(s_new, cs_new), b.score(s_new, cs_new))
    assert a.record() == b.record() and a.record()["layer"] == d


def test_every_candidate_layer_is_valid_and_differs_from_the_default():
    assert len(LAYERS) == 26 and "default" not in LAYERS
    for name, d in LAYERS.items():
        full = DecisionLayer.from_dict(d).to_dict()
        assert DecisionLayer.from_dict(full).to_dict() == full and full != DEFAULT_LAYER, name


@pytest.mark.parametrize("text, message", [
    ("combination: {shrinkge: 0.5}", "combination: unknown key 'shrinkge'; choose one of method, "),
    ("combination: {shrinkage: 1.5}", "combination: shrinkage must be in [0, 1], got 1.5"),
    ("combination: stack", "combination must be a mapping, got 'stack'"),
    ("rules: {spans: [1]}", "unknown key 'rules'; choose one of calibration, combination, rule, guard, seed"),
    ("rule: {threshold: {method: edge}}", "rule.threshold: unknown threshold method 'edge'"),
    ("rule: {threshold: {method: plateau, smooth: 5}}", "rule.threshold: unknown key 'smooth'"),
    ("rule: {spans: [0, 5]}", "rule: spans must be a list of smoothing spans >= 1, got (0, 5)"),
    ("guard: {folds: 1}", "guard: the guard needs >= 2 folds and a level in (0, 1), got 1, 0.9"),
    ("calibration: {method: rank}", "calibration: unknown calibration 'rank'"),
    ("seed: -1", "seed must be an integer >= 0, got -1"),
    ("- calibration", "a decision layer must be a mapping of calibration, combination, rule, guard"),
    ("rule: {spans: [1, 5]", "not valid YAML (line 2)"),
])
def test_a_bad_decision_file_fails_in_one_line_naming_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "decision.yaml"
    path.write_text(text + "\n")
    with pytest.raises(TelemetryError) as err:
        read_layer(path)
    said = str(err.value)
    assert said.startswith(f"{path}: ") and message in said and "\n" not in said
    with pytest.raises(TelemetryError, match="decision file not found"):
        read_layer(tmp_path / "missing.yaml")


def test_build_checks_the_decision_file_before_reading_the_experiment(tmp_path, capsys):
    from ensemble.__main__ import main

    bad = tmp_path / "d.yaml"
    bad.write_text("combination: {method: trimmed}\n")
    assert main(["build", str(tmp_path / "no-such-experiment"), "--out", str(tmp_path / "o"), "--decision", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {bad}: combination: unknown combination 'trimmed'; choose one of mean, median, max, " \
                  f"weighted, shrunk, stack\n"
    assert not (tmp_path / "o").exists()
    # `ensemble decision` prints the default layer, a start for a file; FILE: the layer it describes
    assert main(["decision"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == DEFAULT_LAYER
    good = tmp_path / "g.yaml"
    good.write_text("combination: {method: mean}\nguard: null\n")
    assert main(["decision", str(good)]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["combination"]["method"] == "mean" and shown["guard"] is None and shown["rule"] == DEFAULT_LAYER["rule"]


def test_fit_chooses_one_of_three_decisions():
    s, y, cs = labelled()
    combined = DecisionLayer().fit(s, y, channel_scores=cs, channel_members=[0, 2])
    d = combined.decision_
    assert type(d) is CombinedDecision and combined.has_channels  # the channels explain, the combination decides
    np.testing.assert_array_equal(combined.predict(s), d.rule_.predict(d.combination_.transform(d.calibration_.transform(s))))
    union = DecisionLayer(rule=Rule(per_channel=True)).fit(s, y, channel_scores=cs, channel_members=[0, 2])
    assert type(union.decision_) is ChannelUnionDecision and union.threshold_ == 0.0
    np.testing.assert_array_equal(union.predict(s, cs), union.channel_predictions(cs).any(axis=1))
    np.testing.assert_array_equal(union.score(s, cs), union.channel_margins(cs).max(axis=1))
    p, yp = periodic()
    rules = [Threshold(method="best_f05", min_length=3).fit(p[:, j], yp) for j in range(2)]
    member = DecisionLayer().fit(p, yp, ["sees", "blind"], member_rules=rules)
    assert type(member.decision_) is MemberDecision and member.decision_.combined.val_f05_ == 0.0
    np.testing.assert_array_equal(member.predict(p), rules[0].predict(p[:, 0]))
    # the same layer object refitted on other data decides by another class
    layer = DecisionLayer()
    assert type(layer.fit(s, y).decision_) is CombinedDecision
    assert type(layer.fit(p, yp, member_rules=rules).decision_) is MemberDecision
    assert type(DecisionLayer(guard=None).fit(p, yp, member_rules=rules).decision_) is CombinedDecision
    assert type(DecisionLayer(guard=Guard(no_event="pot")).fit(p, yp, member_rules=rules).decision_) is CombinedDecision


def test_cross_fitting_fits_clones_and_leaves_the_layer_as_given():
    s, y, _ = labelled(n=6000)
    layer = DecisionLayer(Calibration("robust_z"), Combination("mean"), Rule(spans=(1,)))
    before = layer.to_dict()
    layer.fit(s, y, ["a#1", "b#2", "c#3"])
    assert layer.fallback_["chosen"] in ("ensemble", "member") and layer.to_dict() == before
    assert not hasattr(layer.combination, "weights_") and not hasattr(layer.rule, "rule_")


def test_the_auto_sweeps_trial_rule_is_the_default_layers_threshold():
    from search.auto import RULE  # search may not import ensemble: a copy, kept equal here

    assert Threshold(**RULE) == DecisionLayer().rule.threshold
