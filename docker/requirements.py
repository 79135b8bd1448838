"""Print the GPU image's requirements, derived from pyproject.toml (the single source of pins).

    python docker/requirements.py pyproject.toml --ray 2.60.0 --tensorflow 2.21.0 > requirements.txt

The image installs this list (every base dependency as declared, plus the ``gpu`` and ``cluster``
extras; never the ``tf`` extra, whose ``tensorflow-cpu`` would overwrite the CUDA build: both write
the same ``tensorflow`` package) and then the project itself with ``pip install --no-deps``, so
that nothing resolves the dependencies a second time. A ``tensorflow-cpu`` that finds its way back
into the base dependencies is left out too.

It refuses (exit 1) when the versions the Dockerfile was given disagree with pyproject.toml (the
``tf`` extra included), so an image can never be built with a Ray or TensorFlow other than the one
the project pins.
Standard library only: it runs in the base image before anything is installed.
"""
from __future__ import annotations

import argparse
import re
import sys
import tomllib

CPU_TENSORFLOW = "tensorflow-cpu"
EXTRAS = ("gpu", "cluster")  # installed in the image
CHECKED_EXTRAS = ("tf",)     # not installed, but its TensorFlow pin must be the image's too


def name_of(req: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9_.-]*)", req)
    if not m:
        raise ValueError(f"not a requirement: {req!r}")
    return re.sub(r"[-_.]+", "-", m.group(1)).lower()


def pin_of(req: str) -> str | None:
    m = re.match(r"\s*[A-Za-z0-9_.-]+(?:\[[^\]]*\])?\s*==\s*([0-9][^;,\s]*)", req)
    return m.group(1) if m else None


def gpu_requirements(pyproject: dict, ray: str, tensorflow: str) -> list[str]:
    project = pyproject["project"]
    base = list(project["dependencies"])
    extras = project.get("optional-dependencies", {})
    missing = [e for e in EXTRAS + CHECKED_EXTRAS if e not in extras]
    if missing:
        raise ValueError(f"pyproject.toml: missing extra {missing[0]!r}")
    want = {"ray": ray, "tensorflow": tensorflow, CPU_TENSORFLOW: tensorflow}
    problems = []
    for req in base + [r for e in EXTRAS + CHECKED_EXTRAS for r in extras[e]]:
        name = name_of(req)
        if name in want and pin_of(req) != want[name]:
            problems.append(f"{req!r} in pyproject.toml, but the image is built with {name}=={want[name]}")
    if problems:
        raise ValueError("version mismatch: " + "; ".join(problems) + " (change the ARGs in docker/Dockerfile or pyproject.toml)")
    out = [r for r in base if name_of(r) not in (CPU_TENSORFLOW, "ray")]  # ray comes with its cluster extras
    out += [r for e in EXTRAS for r in extras[e]]
    names = [name_of(r) for r in out]
    for needed in ("ray", "tensorflow"):
        if needed not in names:
            raise ValueError(f"pyproject.toml: no {needed} requirement for the GPU image")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pyproject")
    ap.add_argument("--ray", required=True, help="the Ray version the image is built with")
    ap.add_argument("--tensorflow", required=True, help="the TensorFlow version the image is built with")
    args = ap.parse_args(argv)
    with open(args.pyproject, "rb") as fh:
        pyproject = tomllib.load(fh)
    try:
        reqs = gpu_requirements(pyproject, args.ray, args.tensorflow)
    except ValueError as exc:
        print(f"docker/requirements.py: {exc}", file=sys.stderr)
        return 1
    print(f"# generated from {args.pyproject} by docker/requirements.py (GPU image: no {CPU_TENSORFLOW})")
    print("\n".join(reqs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
