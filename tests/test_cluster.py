"""Cluster mode, offline: cluster.yaml through Ray's own config checks, the GPU image's pins, the
ESA sweep file, and a sweep on a simulated multi-node cluster with fake GPUs.

No network and no AWS: the cluster file goes through the same preparation and JSON-schema
validation that ``ray up`` runs before it contacts the cloud (see ``_prepared``).
"""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
ESA_YAML = REPO / "configs" / "esa.yaml"
RAY_VERSION = "2.60.0"
TF_VERSION = "2.21.0"


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _pins(requirements) -> dict[str, str]:
    """{distribution name (extras dropped): version} of every ``name[extras]==version`` requirement."""
    out = {}
    for req in requirements:
        m = re.match(r"\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*==\s*([0-9][^;,\s]*)", req)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


# -- cluster.yaml --------------------------------------------------------------------------------

def _prepared(config: dict) -> dict:
    """What ``ray up`` checks before touching the cloud, minus the cloud.

    ``ray up`` runs (ray/autoscaler/_private/commands.py, ``_bootstrap_config``): ``prepare_config``
    (defaults.yaml merged in, setup commands merged, docker block checked, per-type min/max
    workers filled) -> the AWS provider's ``fillout_available_node_types_resources`` (boto3
    ``describe_instance_types``: network) -> ``validate_config`` (ray-schema.json, head type,
    min_workers vs max_workers) -> ``bootstrap_config`` (IAM, key pair, subnets: network).
    ``prepare_config`` reads only local files for the AWS provider, so it runs here; the two
    network steps are skipped, which is why cluster.yaml states every node type's resources.
    """
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.fixture(scope="module")
def cluster_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_ray_version_is_pinned_everywhere():
    import ray

    assert ray.__version__ == RAY_VERSION
    project = _pyproject()["project"]
    assert _pins(project["dependencies"])["ray"] == RAY_VERSION
    assert _pins(project["optional-dependencies"]["cluster"])["ray"] == RAY_VERSION  # ray up / job submit side


def test_cluster_yaml_passes_rays_own_validation(cluster_config):
    cfg = _prepared(cluster_config)
    assert cfg["provider"]["type"] == "aws" and cfg["provider"]["region"] and cfg["provider"]["availability_zone"]
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and head["resources"].get("GPU", 0) == 0, "trials must not land on the head"
    assert head["max_workers"] == 0
    workers = [t for name, t in types.items() if name != cfg["head_node_type"]]
    gpu = [t for t in workers if t["resources"].get("GPU", 0) >= 1]
    assert gpu, "an autoscaling GPU worker type"
    w = gpu[0]
    assert w["node_config"]["InstanceType"] == "g5.xlarge"
    assert w["min_workers"] == 0 and 1 <= w["max_workers"] <= cfg["max_workers"]
    assert w["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert cfg["idle_timeout_minutes"] > 0
    # One image for head and workers; the GPUs reach the container only on the GPU workers.
    docker = cfg["docker"]
    assert docker["image"] and docker["container_name"]
    head_opts = " ".join(docker.get("run_options", []) + docker.get("head_run_options", []))
    # What a GPU worker's container gets: the global options, its type's docker block overriding.
    worker_docker = {**docker, **w.get("docker", {})}
    worker_opts = " ".join(worker_docker.get("run_options", []) + worker_docker.get("worker_run_options", []))
    assert "--shm-size" in head_opts and "--shm-size" in worker_opts  # Ray's object store lives in /dev/shm
    assert "--gpus all" in worker_opts and "--gpus" not in head_opts
    # The project is synced and installed on every node (the merged per-type lists that Ray runs)
    # without pulling the CPU TensorFlow into the GPU image.
    remote = [r for r, local in cfg["file_mounts"].items() if local in (".", "./")]
    assert remote, cfg["file_mounts"]
    for key in ("head_setup_commands", "worker_setup_commands"):
        installs = [c for c in cfg[key] if "pip install" in c]
        assert installs and all("--no-deps" in c and remote[0] in c for c in installs), key
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])
    assert any("ray start --address=$RAY_HEAD_IP:6379" in c for c in cfg["worker_start_ray_commands"])
    # rsync of the project must not ship local results, virtualenvs or data.
    assert {"results", ".venv", ".venv-jax", ".git", "data"} <= {e.strip("/") for e in cfg["rsync_exclude"]}


def _node_types(cfg: dict) -> tuple[dict, dict]:
    """(head node type, the GPU worker node type) of a prepared config."""
    types = cfg["available_node_types"]
    worker = next(t for name, t in types.items() if name != cfg["head_node_type"] and t["resources"].get("GPU", 0) >= 1)
    return types[cfg["head_node_type"]], worker


def test_every_node_boots_a_pinned_current_gpu_ami(cluster_config):
    """Without an ImageId Ray 2.60 launches its Ubuntu 18.04 / CUDA 11.2 Deep Learning AMI, whose
    driver cannot run the image's CUDA 12.9 wheels: every node type states one AMI, the same one."""
    import ast

    import ray

    # Ray's fallback AMIs, read from its source: importing the module needs boto3 (the cluster extra).
    source = Path(ray.__file__).parent / "autoscaler" / "_private" / "aws" / "config.py"
    assign = next(n for n in ast.parse(source.read_text()).body
                  if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "DEFAULT_AMI")
    DEFAULT_AMI = ast.literal_eval(assign.value)
    assert DEFAULT_AMI["us-west-2"].startswith("ami-")

    cfg = _prepared(cluster_config)
    head, worker = _node_types(cfg)
    amis = {t["node_config"].get("ImageId") for t in (head, worker)}
    assert len(amis) == 1, amis
    ami = amis.pop()
    assert re.fullmatch(r"ami-[0-9a-f]{8}(?:[0-9a-f]{9})?", ami), ami
    assert ami not in DEFAULT_AMI.values(), "Ray's outdated default AMI"
    # How to look the current one up for another region is written next to it.
    assert "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id" in CLUSTER_YAML.read_text()


def _policy(name: str) -> dict:
    return json.loads((REPO / "docker" / name).read_text())


def _grants(policy: dict) -> list[tuple[str, str, dict]]:
    """(action, resource, condition) for every Allow of a policy; a Deny, NotAction or NotResource
    (which a reader would have to invert) fails."""
    out = []
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow" and "NotAction" not in st and "NotResource" not in st, st
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        resources = [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
        out += [(a, r, st.get("Condition", {})) for a in actions for r in resources]
    return out


BUCKET_GRANTS = {("s3:ListBucket", "arn:aws:s3:::YOUR_BUCKET"), ("s3:GetObject", "arn:aws:s3:::YOUR_BUCKET/*"),
                 ("s3:PutObject", "arn:aws:s3:::YOUR_BUCKET/*"), ("s3:DeleteObject", "arn:aws:s3:::YOUR_BUCKET/*")}


def test_workers_get_a_role_limited_to_the_experiment_bucket(cluster_config):
    cfg = _prepared(cluster_config)
    _, worker = _node_types(cfg)
    arn = worker["node_config"]["IamInstanceProfile"]["Arn"]
    assert re.fullmatch(r"arn:aws:iam::[^:]+:instance-profile/telesweep-worker", arn), arn
    # The worker's policy: objects of one bucket and its listing, nothing else, no condition needed.
    assert {(a, r) for a, r, _ in _grants(_policy("worker-role-policy.json"))} == BUCKET_GRANTS


def test_the_head_has_a_least_privilege_role_not_ray_autoscaler_v1(cluster_config):
    """The head runs the autoscaler AND every submitted job's driver: with Ray's default profile
    (ray-autoscaler-v1, EC2 and S3 full access) the Ray token would be the keys to the AWS account.
    Its own profile instead, which Ray 2.60's bootstrap then uses as it is (checked with Ray's code),
    and a policy with what the autoscaler and the driver need: EC2 only on instances tagged for this
    cluster, the workers' role to pass, the experiment bucket."""
    # Ray's AWS provider module imports boto3 (the cluster extra; moto in the test extra brings it)
    from ray.autoscaler._private.aws import config as aws_config

    cfg = _prepared(cluster_config)
    head, _ = _node_types(cfg)
    arn = head["node_config"]["IamInstanceProfile"]["Arn"]
    assert re.fullmatch(r"arn:aws:iam::[^:]+:instance-profile/telesweep-head", arn), arn
    assert "ray-autoscaler-v1" not in json.dumps(cfg)  # no profile, role or policy of that name configured
    # Ray's bootstrap takes the configured profile and creates none (it returns before any AWS call).
    assert aws_config._configure_iam_role(copy.deepcopy(cfg)) is not None
    assert aws_config._log_info.get("head_instance_profile_src") == "config"

    grants = _grants(_policy("head-role-policy.json"))
    cluster_tag = {"ray-cluster-name": cfg["cluster_name"]}
    for action, resource, condition in grants:
        service, verb = action.split(":")
        assert "*" not in action, action  # no ec2:*, s3:*, iam:* ...
        if resource == "*":  # only what has no resource-level permissions in IAM: reading instance state
            assert action == "ec2:DescribeInstances", (action, resource)
        if service == "s3":
            assert (action, resource) in BUCKET_GRANTS and not condition
        elif service == "iam":  # handing the workers their role when launching them, and nothing else
            assert action == "iam:PassRole" and resource.endswith(":role/telesweep-worker")
            assert condition == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
        else:
            assert service == "ec2" and verb in {"DescribeInstances", "RunInstances", "CreateTags", "TerminateInstances"}
        if action in ("ec2:TerminateInstances",) or (action == "ec2:CreateTags" and "ec2:CreateAction" not in json.dumps(condition)):
            # only instances that already carry this cluster's tag (Ray tags every node it launches)
            assert resource.endswith(":instance/*") and condition == {"StringEquals": {
                f"ec2:ResourceTag/{k}": v for k, v in cluster_tag.items()}}, (action, condition)
        if action == "ec2:CreateTags" and "ec2:CreateAction" in json.dumps(condition):
            assert condition == {"StringEquals": {"ec2:CreateAction": "RunInstances"}}  # tags on launch only
        if action == "ec2:RunInstances" and resource.endswith(":instance/*"):
            # an instance is launched only with the cluster's tag in the request
            assert condition == {"StringEquals": {f"aws:RequestTag/{k}": v for k, v in cluster_tag.items()}}
        if action == "ec2:RunInstances" and not resource.endswith(":instance/*"):
            assert re.fullmatch(r"arn:aws:ec2:\*:[^:]*:(image|subnet|network-interface|security-group|volume|"
                                r"key-pair|spot-instances-request)/\*", resource), resource
    assert {a for a, _, _ in grants} == {"ec2:DescribeInstances", "ec2:RunInstances", "ec2:CreateTags",
                                         "ec2:TerminateInstances", "iam:PassRole", *(a for a, _ in BUCKET_GRANTS)}
    # cache_stopped_nodes: false, so the autoscaler terminates idle workers and never stops/starts them
    assert cfg["provider"]["cache_stopped_nodes"] is False


def test_no_port_is_open_to_the_internet_and_ssh_only_from_the_users_cidr(cluster_config):
    """Without SecurityGroupIds, Ray 2.60 creates a security group with SSH from 0.0.0.0/0 (whatever
    provider.security_group adds to it): every node type names the user's group instead, whose
    rules (docker/security-group-ingress.json) are SSH from the user's CIDR and the cluster's nodes
    to each other, nothing else."""
    from ray.autoscaler._private.aws import config as aws_config

    assert "0.0.0.0/0" in json.dumps(aws_config._create_default_inbound_rules(set()))  # why: Ray's own group
    cfg = _prepared(cluster_config)
    groups = [t["node_config"].get("SecurityGroupIds") for t in cfg["available_node_types"].values()]
    assert all(groups) and len({tuple(g) for g in groups}) == 1, groups
    # Ray's bootstrap then creates no group of its own (it returns before any AWS call).
    assert aws_config._configure_security_group(copy.deepcopy(cfg))["available_node_types"] == cfg["available_node_types"]
    assert "security_group" not in cfg["provider"]  # rules that Ray would add to a group it creates

    rules = json.loads((REPO / "docker" / "security-group-ingress.json").read_text())
    text = json.dumps(rules)
    assert "0.0.0.0/0" not in text and "::/0" not in text and "0.0.0.0/0" not in json.dumps(cfg)
    for rule in rules:
        assert not rule.get("Ipv6Ranges") and not rule.get("PrefixListIds")
        if rule.get("IpRanges"):  # from outside the cluster: SSH, from the user's CIDR only
            assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22)
            assert [r["CidrIp"] for r in rule["IpRanges"]] == ["YOUR_SSH_CIDR"]
        else:  # the nodes to each other: the group itself
            assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == ["YOUR_SECURITY_GROUP_ID"]
    assert sum(bool(r.get("IpRanges")) for r in rules) == 1


def test_ray_token_authentication_is_on_for_every_node(cluster_config):
    cfg = _prepared(cluster_config)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in cfg[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token ray start" in c for c in starts), key
    # Clients inside the containers (ray exec "ray status", the job's driver) get the mode too ...
    assert "--env=RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]
    # ... and every node the token generated on the user's machine (Ray's default token path).
    assert cfg["file_mounts"].get("/home/ray/.ray/auth_token") == "~/.ray/auth_token"


def test_a_workers_first_step_is_the_gpu_check(cluster_config):
    cfg = _prepared(cluster_config)  # Ray merges setup_commands in front of worker_setup_commands
    first = cfg["worker_setup_commands"][0]
    remote = next(r for r, local in cfg["file_mounts"].items() if local in (".", "./"))
    assert first.split() == ["python", f"{remote}/docker/gpu_check.py"]
    assert (REPO / "docker" / "gpu_check.py").is_file()
    assert not any("gpu_check" in c for c in cfg["head_setup_commands"])  # the head has no GPU


def _gpu_check(tmp_path, backend: str, module: str, driver: str | None) -> subprocess.CompletedProcess:
    """Run docker/gpu_check.py with a stub backend module and a stub nvidia-smi (None: absent)."""
    site, bin_dir = tmp_path / "site", tmp_path / "bin"
    site.mkdir(exist_ok=True)
    bin_dir.mkdir(exist_ok=True)
    (site / f"{backend}.py").write_text(module)
    smi = bin_dir / "nvidia-smi"
    if driver is not None:
        smi.write_text(f"#!/bin/sh\necho {driver}\n")
        smi.chmod(0o755)
    elif smi.exists():
        smi.unlink()
    env = {**os.environ, "PYTHONPATH": str(site), "PATH": f"{bin_dir}:/usr/bin:/bin", "KERAS_BACKEND": backend}
    return subprocess.run([sys.executable, str(REPO / "docker" / "gpu_check.py")], env=env,
                          capture_output=True, text=True, timeout=60)


def _tf_stub(gpus: int) -> str:
    return ("__version__ = '2.21.0'\n"
            "class _Dev:\n    def __init__(self, i): self.name = f'/physical_device:GPU:{i}'\n"
            "class config:\n    @staticmethod\n"
            f"    def list_physical_devices(kind): return [_Dev(i) for i in range({gpus})] if kind == 'GPU' else []\n")


def test_gpu_check_fails_loudly_with_one_line_saying_why(tmp_path):
    ok = _gpu_check(tmp_path, "tensorflow", _tf_stub(1), "580.126.09")
    assert ok.returncode == 0 and "TensorFlow 2.21.0 sees 1 GPU(s)" in ok.stdout and "580.126.09" in ok.stdout

    old = _gpu_check(tmp_path, "tensorflow", _tf_stub(0), "470.256.02")  # Ray's default AMI's era
    lines = old.stderr.strip().splitlines()
    assert old.returncode == 1 and len(lines) == 1
    assert "FAILED" in lines[0] and "sees 0 GPU(s)" in lines[0] and "470.256.02" in lines[0] and "R575" in lines[0]

    no_driver = _gpu_check(tmp_path, "tensorflow", _tf_stub(0), None)  # no --gpus, or a CPU instance
    assert no_driver.returncode == 1 and "--gpus all" in no_driver.stderr

    libs = _gpu_check(tmp_path, "tensorflow", _tf_stub(0), "595.71.05")  # driver fine, CUDA wheels not
    assert libs.returncode == 1 and "CUDA libraries" in libs.stderr


def test_gpu_check_follows_keras_backend_jax(tmp_path):
    none = "__version__ = '0.10.2'\ndef devices(kind=None):\n    raise RuntimeError('Unknown backend gpu')\n"
    failed = _gpu_check(tmp_path, "jax", none, "580.126.09")
    assert failed.returncode == 1 and "JAX 0.10.2 sees 0 GPU(s)" in failed.stderr
    one = "__version__ = '0.10.2'\ndef devices(kind=None):\n    return ['cuda:0']\n"
    assert _gpu_check(tmp_path, "jax", one, "580.126.09").returncode == 0


@pytest.mark.parametrize("bad_key, key", [("max_worker", "max_workers"), ("idle_timeout_minute", "idle_timeout_minutes")])
def test_misspelt_top_level_key_fails_validation(cluster_config, bad_key, key):
    import jsonschema

    cfg = copy.deepcopy(cluster_config)
    cfg[bad_key] = cfg.pop(key)  # the typo a user makes; Ray's defaults would silently fill the real key
    with pytest.raises(jsonschema.ValidationError, match=bad_key):
        _prepared(cfg)


@pytest.mark.parametrize("bad_key, key", [("min_worker", "min_workers"), ("resource", "resources"), ("node_cofig", "node_config")])
def test_misspelt_node_type_key_fails_validation(cluster_config, bad_key, key):
    import jsonschema

    cfg = copy.deepcopy(cluster_config)
    worker = cfg["available_node_types"][next(n for n in cfg["available_node_types"] if n != cfg["head_node_type"])]
    worker[bad_key] = worker.pop(key)
    with pytest.raises(jsonschema.ValidationError) as err:
        _prepared(cfg)
    assert bad_key in str(err.value) or f"'{key}' is a required property" in str(err.value)


def test_misspelt_docker_key_fails_validation(cluster_config):
    import jsonschema

    cfg = copy.deepcopy(cluster_config)
    cfg["docker"]["run_option"] = cfg["docker"].pop("run_options")
    with pytest.raises(jsonschema.ValidationError, match="run_option"):
        _prepared(cfg)


def test_rays_bootstrap_on_a_mocked_aws_creates_no_role_and_opens_no_port(cluster_config, tmp_path, monkeypatch):
    """What ``ray up`` does to the account before launching the head (Ray 2.60's ``bootstrap_aws``),
    run against moto's mocked AWS: with the security group created by docker/README.md's commands,
    it creates no IAM role or instance profile (no ray-autoscaler-v1), no security group of its own,
    and every node gets the user's group, whose only rule from outside is SSH from the user's CIDR."""
    import boto3
    import moto  # the test extra
    from ray.autoscaler._private.aws.config import bootstrap_aws

    monkeypatch.setenv("HOME", str(tmp_path))  # Ray writes the cluster's SSH key to ~/.ssh
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": cluster_config["provider"]["region"]}.items():
        monkeypatch.setenv(var, value)
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    cidr = "203.0.113.7/32"
    with moto.mock_aws():
        ec2 = boto3.client("ec2")
        vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        sg = ec2.create_security_group(GroupName="telesweep", Description="telesweep", VpcId=vpc)["GroupId"]
        rules = (REPO / "docker" / "security-group-ingress.json").read_text()
        ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=json.loads(
            rules.replace("YOUR_SECURITY_GROUP_ID", sg).replace("YOUR_SSH_CIDR", cidr)))
        text = yaml.safe_dump(cluster_config).replace("YOUR_SECURITY_GROUP_ID", sg)
        out = bootstrap_aws(_prepared(yaml.safe_load(text.replace("YOUR_AWS_ACCOUNT_ID", "123456789012"))))

        iam = boto3.client("iam")
        assert iam.list_roles()["Roles"] == [] and iam.list_instance_profiles()["InstanceProfiles"] == []
        groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
        assert sorted(g["GroupName"] for g in groups) == ["default", "telesweep"]
        (ours,) = [g for g in groups if g["GroupId"] == sg]
        outside = [(p.get("FromPort"), p.get("ToPort"), r["CidrIp"]) for p in ours["IpPermissions"] for r in p["IpRanges"]]
        assert outside == [(22, 22, cidr)] and not any(p["Ipv6Ranges"] for p in ours["IpPermissions"])
    for name, node_type in out["available_node_types"].items():
        assert node_type["node_config"]["SecurityGroupIds"] == [sg], name
        assert node_type["node_config"]["IamInstanceProfile"]["Arn"].endswith(
            "/telesweep-head" if name == out["head_node_type"] else "/telesweep-worker")


# -- the GPU image ------------------------------------------------------------------------------

def _dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG\s+([A-Z_]+)=(\S+)", DOCKERFILE.read_text(), flags=re.M))


def _dockerfile_steps(keyword: str) -> list[str]:
    """The Dockerfile's ``keyword`` (RUN, COPY, ...) steps with continuation lines joined, without
    the keyword."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line[len(keyword) + 1:] for line in joined.splitlines() if line.startswith(keyword + " ")]


def _dockerfile_runs() -> list[str]:
    """The RUN steps of the Dockerfile as the shell sees them: build ARGs substituted, as ``docker
    build`` does with the defaults, and without their ``--mount=...`` options (what they mount is
    where the tests put it)."""
    args = _dockerfile_args()
    runs = [re.sub(r"^(\s*--mount=\S+\s+)+", "", r) for r in _dockerfile_steps("RUN")]
    return [re.sub(r"\$\{([A-Z_]+)\}", lambda m: args[m.group(1)], r) for r in runs]


def test_dockerfile_pins_match_pyproject():
    project = _pyproject()["project"]
    base = _pins(project["dependencies"])
    tf = _pins(project["optional-dependencies"]["tf"])
    gpu = _pins(project["optional-dependencies"]["gpu"])
    args = _dockerfile_args()
    assert args["RAY_VERSION"] == base["ray"] == RAY_VERSION
    assert args["TF_VERSION"] == tf["tensorflow-cpu"] == tf["tensorflow"] == gpu["tensorflow"] == TF_VERSION
    assert args["BASE_IMAGE"].replace("${RAY_VERSION}", args["RAY_VERSION"]) == f"rayproject/ray:{RAY_VERSION}-py311-gpu@${{BASE_DIGEST}}"


def test_the_base_image_is_pinned_by_digest():
    """A tag can be moved to other content; the FROM line names a digest. Its value is looked up
    once (docker/README.md "Base image"): until then a placeholder, which fails the build at FROM."""
    args = _dockerfile_args()
    assert _dockerfile_steps("FROM") == ["${BASE_IMAGE}"] and "@${BASE_DIGEST}" in args["BASE_IMAGE"]
    assert re.fullmatch(r"sha256:([0-9a-f]{64}|YOUR_BASE_IMAGE_DIGEST)", args["BASE_DIGEST"]), args["BASE_DIGEST"]


def test_the_image_copies_nothing_from_the_build_context_into_a_layer():
    """No COPY/ADD of the context (what a later ``rm`` deletes stays in the image's history): the
    steps that read the sources bind-mount them for that step only."""
    assert not _dockerfile_steps("COPY") and not _dockerfile_steps("ADD")
    mounts = [re.findall(r"--mount=(\S+)", r) for r in _dockerfile_steps("RUN")]
    assert all(m.startswith("type=bind,") for step in mounts for m in step)
    assert sum(bool(step) for step in mounts) == 2  # the requirements step and the project's install


def test_the_image_gives_the_ray_user_no_passwordless_sudo(tmp_path):
    """Run the Dockerfile's sudo step on a copy of the base image's sudoers (``ray ALL=NOPASSWD:
    ALL``), then its self-check with a sudo that still lets ``ray`` in: the build fails."""
    step = next(r for r in _dockerfile_runs() if "/etc/sudoers" in r)
    etc = tmp_path / "etc"
    (etc / "sudoers.d").mkdir(parents=True)
    (etc / "sudoers").write_text("root ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\nray ALL=NOPASSWD: ALL\n")
    (etc / "sudoers.d" / "90-ray").write_text("ray ALL=(ALL) NOPASSWD:ALL\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gpasswd").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "gpasswd").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", step.replace("/etc/", f"{etc}/")], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "NOPASSWD" not in (etc / "sudoers").read_text() + (etc / "sudoers.d" / "90-ray").read_text()
    assert "root ALL=(ALL:ALL) ALL" in (etc / "sudoers").read_text()

    check = _dockerfile_runs()[-1].split(" && ")[0]  # the self-check's sudo clause
    (bin_dir / "sudo").write_text("#!/bin/sh\nexit 0\n")  # passwordless sudo still there
    (bin_dir / "sudo").chmod(0o755)
    still = subprocess.run(["bash", "-c", check], env=env, capture_output=True, text=True)
    assert still.returncode != 0 and "must not have passwordless sudo" in still.stderr
    (bin_dir / "sudo").write_text("#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n")
    assert subprocess.run(["bash", "-c", check], env=env, capture_output=True, text=True).returncode == 0


def test_base_dependencies_carry_no_keras_backend():
    """The backend is an extra: a JAX user installs no TensorFlow, and Python versions without
    TensorFlow 2.21 wheels (3.14) are refused by pip rather than failing on a missing wheel."""
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    project = _pyproject()["project"]
    names = {Requirement(r).name.lower() for r in project["dependencies"]}
    assert "keras" in names and not names & {"tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch"}
    assert {"tf", "jax", "gpu", "tensorboard", "test", "cluster"} <= set(project["optional-dependencies"])
    jax = {Requirement(r).name.lower() for r in project["optional-dependencies"]["jax"]}
    assert not jax & {"tensorflow", "tensorflow-cpu", "keras"}, jax  # .ci/run's JAX job relies on it
    supported = SpecifierSet(project["requires-python"])
    assert all(v in supported for v in ("3.11.0", "3.12.0", "3.13.5")) and "3.14.0" not in supported


@pytest.mark.parametrize("machine, wheel", [("x86_64", "tensorflow-cpu"), ("AMD64", "tensorflow-cpu"),
                                            ("aarch64", "tensorflow"), ("arm64", "tensorflow")])
def test_the_tf_extra_installs_exactly_one_tensorflow_on_each_machine(machine, wheel):
    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in _pyproject()["project"]["optional-dependencies"]["tf"]]
    chosen = [r for r in reqs if r.marker is None or r.marker.evaluate({"platform_machine": machine})]
    assert [r.name for r in chosen] == [wheel] and str(chosen[0].specifier) == f"=={TF_VERSION}"


def test_the_images_requirements_step_installs_the_gpu_tensorflow_and_never_the_cpu_one(tmp_path):
    """Run the Dockerfile's first RUN step here, on the files its COPY puts in place, with pip
    replaced by a recorder: what it would install is pyproject's pins with the CUDA TensorFlow."""
    (tmp_path / "telesweep").mkdir()
    for f in ("pyproject.toml", "docker/requirements.py"):
        (tmp_path / "telesweep" / Path(f).name).write_text((REPO / f).read_text())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    (bin_dir / "pip").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/pip.log\n")
    (bin_dir / "pip").chmod(0o755)
    # the step's bind mounts, where the tests put the files
    step = next(r for r in _dockerfile_runs() if "requirements.py" in r).replace("/tmp/telesweep", str(tmp_path / "telesweep"))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", step], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pip.log").read_text().split()[:2] == ["install", "-r"]
    reqs = proc.stdout.splitlines()  # the step prints the list it installs (and then removes it)
    pins = _pins(reqs)
    assert pins["tensorflow"] == TF_VERSION and pins["ray"] == RAY_VERSION and "tensorflow-cpu" not in pins


def _verify_step(tmp_path, installed: list[str], versions: dict[str, str], cuda: bool = True) -> subprocess.CompletedProcess:
    """Run the Dockerfile's last RUN step (the image's self-check) against a fake environment:
    ``pip show`` knows ``installed``, and ray/tensorflow/keras/search/ensemble are stub modules."""
    bin_dir, site = tmp_path / "bin", tmp_path / "site"
    bin_dir.mkdir(exist_ok=True)
    site.mkdir(exist_ok=True)
    if not (bin_dir / "python").exists():
        (bin_dir / "python").symlink_to(sys.executable)
    shown = " ".join(installed)
    (bin_dir / "pip").write_text("#!/bin/sh\n"
                                 "if [ \"$1\" = check ]; then exit 0; fi\n"
                                 f"for p in {shown}; do [ \"$2\" = \"$p\" ] && exit 0; done\nexit 1\n")
    (bin_dir / "pip").chmod(0o755)
    for mod in ("ray", "keras", "search", "ensemble"):
        (site / f"{mod}.py").write_text(f"__version__ = {versions.get(mod, '0')!r}\n")
    (site / "tensorflow.py").write_text(f"__version__ = {versions['tensorflow']!r}\n"
                                        f"class test:\n    is_built_with_cuda = staticmethod(lambda: {cuda})\n")
    step = _dockerfile_runs()[-1]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(site)}
    return subprocess.run(["bash", "-c", step], env=env, capture_output=True, text=True)


def test_the_image_refuses_the_cpu_tensorflow_and_other_versions(tmp_path):
    good = {"ray": RAY_VERSION, "tensorflow": TF_VERSION}
    ok = _verify_step(tmp_path, [], good)
    assert ok.returncode == 0 and f"telesweep image: ray {RAY_VERSION} | tensorflow {TF_VERSION}" in ok.stdout
    cpu = _verify_step(tmp_path, ["tensorflow-cpu"], good)
    assert cpu.returncode != 0 and "tensorflow-cpu must not be installed" in cpu.stderr
    assert _verify_step(tmp_path, [], {**good, "tensorflow": "2.20.0"}).returncode != 0
    assert _verify_step(tmp_path, [], {**good, "ray": "2.59.0"}).returncode != 0
    no_cuda = _verify_step(tmp_path, [], good, cuda=False)
    assert no_cuda.returncode != 0 and "TensorFlow without CUDA support" in no_cuda.stderr


def test_gpu_requirements_are_what_pyproject_declares(tmp_path):
    """docker/requirements.py (run by the Dockerfile) turns pyproject into the image's requirements:
    every pinned dependency with its pin, the GPU TensorFlow instead of the CPU one, ray with the
    cluster extras; and it refuses to run if the Dockerfile's pins disagree with pyproject."""
    args = _dockerfile_args()
    script = REPO / "docker" / "requirements.py"
    cmd = [sys.executable, str(script), str(REPO / "pyproject.toml"), "--ray", args["RAY_VERSION"], "--tensorflow", args["TF_VERSION"]]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split("\n")
    reqs = [r.strip() for r in out if r.strip() and not r.startswith("#")]
    names = {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in reqs}
    assert "tensorflow-cpu" not in names
    pins = _pins(reqs)
    assert pins["tensorflow"] == TF_VERSION and pins["ray"] == RAY_VERSION
    assert any(r.startswith("ray[") and "default" in r and "tune" in r for r in reqs)
    assert any(r.startswith("tensorflow[and-cuda]") for r in reqs)
    for dep in _pyproject()["project"]["dependencies"]:  # everything else, unchanged
        name = re.match(r"[A-Za-z0-9_.-]+", dep).group(0).lower()
        if name not in ("tensorflow-cpu", "ray"):
            assert dep in reqs, dep
    bad = subprocess.run(cmd[:-1] + ["2.20.0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "2.20.0" in bad.stderr


def _docker_context(root: Path) -> set[str]:
    """The files ``docker build`` sends from ``root`` under its .dockerignore, by Docker's rules
    (moby's patternmatcher): patterns are relative to the context root, ``*`` does not cross '/',
    ``**`` matches any number of directories (none too), a pattern that matches a directory matches
    everything below it, ``!`` lets back in what an earlier pattern left out, and the last pattern
    that matches a path decides."""
    patterns = [p.strip() for p in (root / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        out = False
        for pat in patterns:
            keep = pat.startswith("!")
            pat = pat.lstrip("!").strip("/")
            rx = re.escape(pat).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
            if any(re.fullmatch(rx, p) for p in prefixes):
                out = not keep
        return out

    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not ignored(str(p.relative_to(root)))}


# Secrets a checkout may hold, at the top and inside the folders that the image does need.
SECRETS = [".env", ".env.production", "deploy.pem", "tls.key", ".aws/credentials", ".aws/config", ".ray/auth_token",
           ".ssh/id_rsa", "search/.env", "models/private.key", "ensemble/.aws/credentials", "telemetry/creds.pem",
           ".netrc", "docker/.env"]


def test_dockerignore_is_an_allow_list_that_sends_no_secret(tmp_path):
    ctx = tmp_path / "ctx"
    files = ["pyproject.toml", "README.md", "LICENSE", "docker/Dockerfile", "docker/requirements.py", "models/base.py",
             "search/runner.py", "telemetry/schema.py", "detection/metrics.py", "ensemble/build.py", "configs/esa.yaml", "cluster.yaml",
             "data/esa/train.parquet", "results/sweeps/demo/sets.npz", ".git/HEAD", ".venv/bin/python",
             ".venv-jax/bin/python", "models/__pycache__/base.cpython-311.pyc", "telesweep.egg-info/PKG-INFO",
             ".pytest_cache/v/cache", "notes.txt", "search/scratch.ipynb", *SECRETS]
    for f in files:
        (ctx / f).parent.mkdir(parents=True, exist_ok=True)
        (ctx / f).write_text("x")
    (ctx / ".dockerignore").write_text((REPO / ".dockerignore").read_text())
    patterns = [p for p in (REPO / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]
    assert patterns[0] == "*" and all(p.startswith("!") for p in patterns[1:])  # deny all, then allow
    sent = _docker_context(ctx)
    assert sent == {"pyproject.toml", "README.md", "LICENSE", "docker/requirements.py", "models/base.py",
                    "search/runner.py", "telemetry/schema.py", "detection/metrics.py", "ensemble/build.py"}
    # and what the image installs is all there: every package's modules, the metadata pip reads
    real = {str(p.relative_to(REPO)) for pkg in ("telemetry", "detection", "models", "search", "ensemble")
            for p in (REPO / pkg).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert all(f.endswith(".py") for f in real), "a package file the allow-list would leave out of the image"
    project = _pyproject()["project"]  # the files pip's build of the project reads
    assert {project["readme"], project["license"]["file"], "pyproject.toml"} <= sent


def _rsync(src: str, dst: Path, cfg: dict) -> None:
    """The rsync of a file mount, with the options Ray 2.60 adds (command_runner.py,
    ``_create_rsync_filter_args``): ``--exclude`` per rsync_exclude, ``dir-merge`` per rsync_filter."""
    args = [a for pat in cfg.get("rsync_exclude") or [] for a in ("--exclude", pat)]
    args += [a for f in cfg.get("rsync_filter") or [] for a in ("--filter", f"dir-merge,- {f}")]
    subprocess.run(["rsync", "-a", *args, src, str(dst)], check=True, capture_output=True)


@pytest.mark.parametrize("cluster_file", ["cluster.yaml", "cluster-onprem.yaml"])
def test_the_cluster_sync_leaves_secrets_on_the_users_machine_and_mounts_the_keys(cluster_file, tmp_path):
    """``ray up`` rsyncs the checkout to every node with the file's exclusions (rsync takes no
    allow-list): no secret of a checkout arrives. The same exclusions apply to the single-file
    mounts: the token and the SSH key that Ray mounts on the head for its autoscaler
    (~/ray_bootstrap_key.pem, from auth.ssh_private_key or Ray's generated ray-autoscaler_*.pem)
    must arrive, or the head starts no worker (the first `ray up` of cluster-onprem.yaml did that)."""
    if subprocess.run(["which", "rsync"], capture_output=True).returncode != 0:
        pytest.skip("rsync not installed (the cluster launcher needs it too)")
    cfg = yaml.safe_load((REPO / cluster_file).read_text())
    checkout = tmp_path / "checkout"
    for rel in [*SECRETS, "search/runner.py", "configs/esa.yaml", "docker/gpu_check.py", "pyproject.toml"]:
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text("x")
    (checkout / ".gitignore").write_text((REPO / ".gitignore").read_text())
    _rsync(f"{checkout}/", tmp_path / "node", cfg)
    arrived = {str(p.relative_to(tmp_path / "node")) for p in (tmp_path / "node").rglob("*") if p.is_file()}
    assert not [s for s in SECRETS if s in arrived or any(a.startswith(s + "/") for a in arrived)]
    assert {"search/runner.py", "configs/esa.yaml", "docker/gpu_check.py", "pyproject.toml"} <= arrived
    home = tmp_path / "home"
    for name in ("auth_token", "id_ed25519", "id_rsa", "ray-autoscaler_us-west-2.pem", "key.pem"):
        (home / ".ssh").mkdir(parents=True, exist_ok=True)
        (home / ".ssh" / name).write_text("x")
        _rsync(str(home / ".ssh" / name), tmp_path / f"mounted-{name}", cfg)
        assert (tmp_path / f"mounted-{name}").is_file(), f"{name}: a single-file mount left out by rsync_exclude"


# -- cluster-onprem.yaml ------------------------------------------------------------------------

def test_onprem_yaml_passes_rays_own_validation():
    cfg = _prepared(yaml.safe_load((REPO / "cluster-onprem.yaml").read_text()))
    assert cfg["provider"]["type"] == "local" and cfg["provider"]["head_ip"]
    node_type = cfg["available_node_types"]["local.cluster.node"]  # the provider's own single type
    assert node_type["min_workers"] == node_type["max_workers"] == len(cfg["provider"]["worker_ips"])


def test_onprem_yaml_shares_cluster_yamls_sync_token_and_start_commands(cluster_config):
    """Ray has no include of one cluster file in another: the parts the two share are written out in
    both, and kept equal here."""
    onprem = yaml.safe_load((REPO / "cluster-onprem.yaml").read_text())
    for key in ("rsync_exclude", "rsync_filter", "cluster_synced_files", "file_mounts_sync_continuously"):
        assert onprem[key] == cluster_config[key], key
    assert onprem["file_mounts"]["~/.ray/auth_token"] == cluster_config["file_mounts"]["/home/ray/.ray/auth_token"]

    def starts(cfg, key):  # the `ray start` commands, less what only the on-premises file needs
        return [c.replace("RAY_enable_autoscaler_v2=0 ", "") for c in cfg[key] if "ray start" in c]

    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert starts(onprem, key) == starts(cluster_config, key), key
        assert onprem[key][0] == cluster_config[key][0] == "ray stop"
    assert "RAY_enable_autoscaler_v2=0 " in onprem["head_start_ray_commands"][1]  # see the file: v2 skips a worker


# -- the ESA sweep file -------------------------------------------------------------------------

def test_esa_sweep_parses_and_covers_every_architecture():
    from models import registry
    from search import spaces
    from search.config import check_against_data, load_config
    from search.runner import param_space

    cfg = load_config(ESA_YAML)  # the data files need not exist to parse
    assert Path(cfg.data.train).parent == (ESA_YAML.parent / "../data/esa").resolve()
    assert {a.name for a in cfg.architectures} == set(registry.names())
    # Every space fits the challenge's splits (14.7 M train rows at 0.6/0.2/0.2, 521,280 test rows)
    # and becomes Tune domains; placement: Keras members on GPU shares, the others on CPUs only.
    check_against_data(cfg, {"fit": 8_820_000, "validation": 2_940_000, "holdout": 2_940_000, "test": 521_280})
    windows = []
    for a in cfg.architectures:
        assert param_space(cfg, a)["arch"] == a.name
        if registry.get(a.name).tags.get("keras"):
            assert a.gpu > 0, f"{a.name} should ask for a GPU share"
        else:
            assert a.gpu == 0, f"{a.name} does not use a GPU"
        if registry.get(a.name).tags.get("windowed"):
            windows.append(spaces.bounds(a.space.get("window", a.fixed.get("window")))[0])
    assert min(windows) <= 5  # the notebook's window 5 is reachable
    # Autoscaling starts from zero GPU workers: the concurrency cannot be derived from the CPUs
    # present when the sweep starts (the head has none for trials), so the file states it.
    assert all(a.max_concurrent_trials or cfg.search.get("max_concurrent_trials") for a in cfg.architectures)


# -- GPU memory cap of fractional trials --------------------------------------------------------

def test_fractional_gpu_trials_get_a_memory_cap(monkeypatch):
    """What TensorFlow is told, per trial share of a (fake) 24,000 MiB GPU: four quarter trials fit
    on the card together, with room left for their CUDA contexts; whole-GPU trials grow instead."""
    import tensorflow as tf

    from search import backend

    real_total_memory = backend.gpu_total_memory_mb
    monkeypatch.setattr(os, "environ", dict(os.environ))  # configure_backend sets thread/GPU variables
    calls = []
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    monkeypatch.setattr(tf.config, "set_logical_device_configuration", lambda dev, cfgs: calls.append(("cap", cfgs)))
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda dev, on: calls.append(("growth", on)))
    monkeypatch.setattr(tf.config.threading, "set_intra_op_parallelism_threads", lambda n: None)
    monkeypatch.setattr(tf.config.threading, "set_inter_op_parallelism_threads", lambda n: None)
    monkeypatch.setattr(backend, "gpu_total_memory_mb", lambda visible=None: 24_000.0)
    for var in ("CUDA_VISIBLE_DEVICES", "TF_FORCE_GPU_ALLOW_GROWTH", "XLA_PYTHON_CLIENT_MEM_FRACTION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")

    quarter = backend.configure_backend(1, 0.25)
    (kind, cfgs), = calls
    assert kind == "cap" and len(cfgs) == 1 and cfgs[0].memory_limit == quarter["gpu_memory_limit_mb"]
    assert 0.2 * 24_000 <= cfgs[0].memory_limit and 4 * cfgs[0].memory_limit < 24_000
    calls.clear()
    whole = backend.configure_backend(1, 1.0)
    assert calls == [("growth", True)] and whole["gpu_memory_limit_mb"] is None
    calls.clear()
    monkeypatch.setattr(backend, "gpu_total_memory_mb", lambda visible=None: None)  # size unknown: grow
    assert backend.configure_backend(1, 0.5)["gpu_memory_limit_mb"] is None and calls == [("growth", True)]

    seen = {}

    def fake_run(cmd, **kw):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 0, stdout="23028\n", stderr="")

    monkeypatch.setattr(backend.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(backend.subprocess, "run", fake_run)
    assert real_total_memory("2") == 23028.0
    assert seen["cmd"][-2:] == ["-i", "2"]
    monkeypatch.setattr(backend.shutil, "which", lambda name: None)
    assert real_total_memory("0") is None


# -- storage URIs ---------------------------------------------------------------------------------

def test_checkpoints_of_an_s3_experiment_are_read_from_s3(monkeypatch):
    """Ray gives a checkpoint's path on the experiment's filesystem, without its scheme (s3://bucket/x
    -> bucket/x); the trial table puts it under the experiment as given, or the ensemble would look
    for the scores on the local disk (tests/test_results.py reads a file:// experiment end to end)."""
    from search import results, storage

    ray_path = "bucket/sweeps/esa/conv_ae/train_member_1/checkpoint_000003"
    inside = results._within("bucket/sweeps/esa/conv_ae", ray_path)
    assert storage.join("s3://bucket/sweeps/esa/conv_ae", inside) == "s3://" + ray_path
    assert results._within("/shared/nfs/sweeps/esa", "/shared/nfs/sweeps/esa/x") == "x"
    monkeypatch.setenv("TELESWEEP_STORAGE", "s3://bucket/sweeps")
    assert results.default_storage() == "s3://bucket/sweeps"


# -- a sweep on a simulated cluster -------------------------------------------------------------

@pytest.fixture(scope="module")
def fake_gpu_cluster():
    """A head that runs no trials and two workers with 2 CPUs and 1 (fake) GPU each, one machine.
    Ray only counts GPUs: it assigns ids and sets CUDA_VISIBLE_DEVICES; TensorFlow finds none."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "num_gpus": 0})
    workers = [cluster.add_node(num_cpus=2, num_gpus=1) for _ in range(2)]
    try:
        cluster.wait_for_nodes()
        ray.init(address=cluster.address)
        yield cluster, cluster.head_node.node_id, {w.node_id for w in workers}
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def tiny_mission(tmp_path_factory):
    from telemetry.synthetic.mission import generate_mission

    d = tmp_path_factory.mktemp("mission")
    generate_mission(d, rows=6_000, seed=3, test_rows=2_000)
    return d


def _tiny_sweep(mission: Path, storage: Path):
    from search.config import parse_config

    return parse_config({
        "name": "fake-gpus", "seed": 1, "storage": str(storage),
        "data": {"train": str(mission / "train.parquet"), "test": str(mission / "test.parquet"),
                 "channels": "41-46", "fractions": [0.5, 0.25, 0.25]},
        "search": {"max_failures": 0},
        "architectures": {
            "global_std": {"trials": 3, "resources": {"cpu": 1, "gpu": 0.5},
                           "space": {"ddof": {"choice": [0, 1]}}},
            "dense_ae": {"trials": 1, "resources": {"cpu": 1, "gpu": 0.5},
                         "fixed": {"window": 8, "latent": 2, "units": 4, "epochs": 1, "batch_size": 256,
                                   "train_stride": 8, "score_stride": 4}},
        },
    })


@pytest.mark.slow
def test_sweep_trials_land_on_gpu_workers_with_their_fractions(fake_gpu_cluster, tiny_mission, tmp_path):
    from ray.tune import ExperimentAnalysis

    from search.experiment import load_trial
    from search.results import leaderboard
    from search.runner import run_sweep

    cluster, head_id, worker_ids = fake_gpu_cluster
    summary = run_sweep(_tiny_sweep(tiny_mission, tmp_path), address=cluster.address, shared_storage=True)
    assert summary["architectures"]["global_std"] == {"trials": 3, "completed": 3, "errored": 0}
    assert summary["architectures"]["dense_ae"] == {"trials": 1, "completed": 1, "errored": 0}
    results = []
    for arch in ("global_std", "dense_ae"):
        results += [t.last_result for t in ExperimentAnalysis(str(tmp_path / "fake-gpus" / arch)).trials]
    assert len(results) == 4
    for r in results:
        assert r["node_id"] in worker_ids and r["node_id"] != head_id
        assert r["trial_gpus"] == 0.5 and r["trial_cpus"] == 1.0
        assert len(r["gpu_ids"]) == 1  # a fraction of one (fake) GPU, which Ray made visible to the trial
    board = leaderboard(summary["experiment"], write=False)
    assert len(board) == 4
    # The Keras trial asked for half a GPU, was shown one by Ray, found none in TensorFlow: no cap.
    meta, scores = load_trial(board[board.arch == "dense_ae"].checkpoint.iloc[0])
    assert meta.backend["gpus"] == 0.5 and meta.backend["gpu_memory_limit_mb"] is None
    assert scores["validation"].size > 0
