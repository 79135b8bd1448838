"""Concurrency from the autoscaler's limits, not only from the nodes present."""
from pathlib import Path

import yaml

from search.capacity import autoscaler_capacity, capacity, trial_slots

REPO = Path(__file__).resolve().parents[1]


def test_the_projects_cluster_file_gives_the_gpu_workers_the_autoscaler_may_add(tmp_path):
    cfg = yaml.safe_load((REPO / "cluster.yaml").read_text())
    worker = next(n for n in cfg["available_node_types"] if n != cfg["head_node_type"])
    res = cfg["available_node_types"][worker]["resources"]
    cap_workers = min(cfg["available_node_types"][worker].get("max_workers", cfg["max_workers"]), cfg["max_workers"])
    got = autoscaler_capacity(REPO / "cluster.yaml")
    assert got["GPU"] == cap_workers * res["GPU"] and got["CPU"] == cap_workers * res["CPU"]  # head has CPU 0


def test_hand_made_cluster_counts_each_type_within_the_cluster_limit(tmp_path):
    f = tmp_path / "bootstrap.yaml"
    f.write_text(yaml.safe_dump({
        "max_workers": 3, "head_node_type": "head",
        "available_node_types": {"head": {"resources": {"CPU": 2}},
                                 "gpu": {"max_workers": 10, "resources": {"CPU": 4, "GPU": 1}},
                                 "cpu": {"max_workers": 1, "resources": {"CPU": 8}}}}))
    assert autoscaler_capacity(f) == {"CPU": 2 + 3 * 4 + 1 * 8, "GPU": 3.0}
    # only the head is up now: the autoscaler's 3 GPUs size the concurrency of quarter-GPU trials
    grown = capacity({"CPU": 2.0}, f)
    assert grown == {"CPU": 22.0, "GPU": 3.0}
    assert trial_slots(grown, cpu=1, gpu=0.25) == 12 and trial_slots({"CPU": 2.0}, cpu=1, gpu=0.25) == 1
    assert autoscaler_capacity(tmp_path / "absent.yaml") is None
    assert capacity({"CPU": 2.0}, tmp_path / "absent.yaml") == {"CPU": 2.0}


def test_trial_slots_take_the_scarcer_resource():
    assert trial_slots({"CPU": 16, "GPU": 2}, cpu=2, gpu=0.5) == 4
    assert trial_slots({"CPU": 3, "GPU": 8}, cpu=1, gpu=0.5) == 3
    assert trial_slots({"CPU": 1}, cpu=4, gpu=0) == 1  # at least one: Ray queues it


def test_runner_concurrency_uses_the_scarcer_resource_and_the_tpe_cap():
    from search.config import ArchSpec, SweepConfig
    from search.runner import _concurrency
    from telemetry.prepare import DataConfig

    arch = ArchSpec("conv_ae", trials=30, cpu=1, gpu=0.25, space={}, fixed={})
    cfg = SweepConfig(name="x", data=DataConfig(train="t.parquet"), architectures=[arch])
    assert _concurrency(cfg, arch, {"CPU": 22.0, "GPU": 3.0}) == 10  # 12 fit, but a third of 30 trials at once
    assert _concurrency(cfg, arch, {"CPU": 2.0, "GPU": 0.0}) == 1
    arch.max_concurrent_trials = 5
    assert _concurrency(cfg, arch, {"CPU": 2.0}) == 5
