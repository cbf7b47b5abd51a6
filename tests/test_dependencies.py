"""The package installs beside a user's own versions: pyproject.toml holds lower bounds
(upper bounds only for a known break), the exact versions CI tests live in
constraints/ci.txt, and the sweep plugins are the optional extra ``sweep``.

The ``slow`` test asks pip's resolver (PyPI access) to install the built wheel beside numpy
and torch releases one minor step from CI's; .ci/run runs it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(line) for line in PROJECT["dependencies"]]
EXTRAS = {
    name: [Requirement(line) for line in lines]
    for name, lines in PROJECT["optional-dependencies"].items()
}
CONSTRAINTS = ROOT / "constraints" / "ci.txt"
SWEEP_PLUGINS = {"hydra-optuna-sweeper", "hydra-joblib-launcher", "hydra-submitit-launcher"}
# upper bounds allowed, each for a break that is known (the reason is in pyproject.toml)
KNOWN_BREAKS = {"sqlalchemy"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def ci_versions() -> dict[str, Version]:
    """``constraints/ci.txt`` as {canonical name: version}; every line must be ``name==X``."""
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"constraints/ci.txt: not an exact pin: {line!r}"
        pins[canonical(name)] = Version(version)
    return pins


def minor_neighbours(version: Version) -> list[Version]:
    """The releases one minor step below and above ``version``: 2.4.6 -> 2.3.0, 2.5.0."""
    major, minor = version.release[:2]
    below = [Version(f"{major}.{minor - 1}.0")] if minor > 0 else []
    return [*below, Version(f"{major}.{minor + 1}.0")]


def test_runtime_dependencies_have_lower_bounds_and_no_exact_pins():
    for req in RUNTIME:
        operators = {spec.operator for spec in req.specifier}
        assert ">=" in operators, f"{req}: no lower bound"
        assert "==" not in operators and "~=" not in operators, f"{req}: pinned"
        if canonical(req.name) not in KNOWN_BREAKS:
            assert not operators & {"<", "<="}, f"{req}: an upper bound without a known break"


def test_sweep_plugins_are_the_optional_extra_sweep():
    runtime_names = {canonical(req.name) for req in RUNTIME}
    assert not runtime_names & SWEEP_PLUGINS
    assert SWEEP_PLUGINS <= {canonical(req.name) for req in EXTRAS["sweep"]}
    for req in EXTRAS["sweep"]:
        bounded = {spec.operator for spec in req.specifier} & {"<", "<="}
        assert not bounded or canonical(req.name) in KNOWN_BREAKS, req


def test_ci_versions_pin_every_dependency_within_its_bounds():
    pins = ci_versions()
    for req in [*RUNTIME, *EXTRAS["sweep"], *EXTRAS["dev"]]:
        name = canonical(req.name)
        assert name in pins, f"constraints/ci.txt does not pin {req.name}"
        assert req.specifier.contains(pins[name]), f"CI's {name}=={pins[name]} is not {req}"
    # the CPU build of this release is what CI trains with
    assert pins["torch"] == Version("2.13.0")


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_releases_one_minor_step_from_ci_are_accepted(name):
    ci = ci_versions()[name]
    (req,) = [r for r in RUNTIME if canonical(r.name) == name]
    for neighbour in minor_neighbours(ci):
        assert req.specifier.contains(neighbour), f"{name} {neighbour} rejected by {req}"


def test_make_install_and_ci_apply_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    install = makefile.split("\ninstall:", 1)[1].split("\n\n", 1)[0]
    assert "-c constraints/ci.txt" in install and '".[dev,sweep]"' in install
    assert "constraints/ci.txt" in (ROOT / ".ci" / "run").read_text()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out, ROOT],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("asl_tal-*.whl")
    return found


@pytest.mark.slow
@pytest.mark.parametrize(
    ("numpy_spec", "torch_spec"),
    [(">=2.3,<2.4", ">=2.12,<2.13"), (">=2.4,<2.5", ">=2.14,<2.15")],
    ids=["numpy-2.3-torch-2.12", "numpy-2.4-torch-2.14"],
)
def test_wheel_resolves_beside_neighbouring_numpy_and_torch(
    wheel, tmp_path, numpy_spec, torch_spec
):
    """pip's resolver (no installation) finds a set with the sweep extra and the user's
    numpy / torch one minor step from CI's."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            report,
            f"asl-tal[sweep] @ {wheel.as_uri()}",
            f"numpy{numpy_spec}",
            f"torch{torch_spec}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    chosen = {
        canonical(item["metadata"]["name"]): Version(item["metadata"]["version"])
        for item in json.loads(report.read_text())["install"]
    }
    assert chosen["asl-tal"] == Version("0.1.0")
    assert Requirement(f"numpy{numpy_spec}").specifier.contains(chosen["numpy"])
    assert Requirement(f"torch{torch_spec}").specifier.contains(chosen["torch"])
    assert "hydra-optuna-sweeper" in chosen
