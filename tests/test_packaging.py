"""The wheel carries every sub-package and every config file (``pyproject.toml``'s lists), and
builds without a setuptools warning."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def conf_packages() -> set[str]:
    """``asl_tal.conf`` and one package per config group folder under ``conf/``."""
    conf = ROOT / "conf"
    folders = [conf, *(p for p in conf.rglob("*") if p.is_dir() and p.name != "__pycache__")]
    return {".".join(("asl_tal", "conf", *f.relative_to(conf).parts)) for f in folders}


def test_every_sub_package_is_listed():
    source = ROOT / "src"
    found = {
        ".".join(init.parent.relative_to(source).parts)
        for init in source.rglob("__init__.py")
        if "egg-info" not in str(init)
    }
    assert set(SETUPTOOLS["packages"]) == found | conf_packages()
    assert "asl_tal.conf.hydra.launcher" in SETUPTOOLS["packages"]
    assert SETUPTOOLS["package-dir"]["asl_tal.conf"] == "conf"


@pytest.mark.slow  # builds the wheel (pip fetches setuptools for the isolated build)
def test_the_wheel_builds_without_warnings_and_ships_every_config(tmp_path):
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # with this set, distutils notes that it skips byte-compiling: not about the project
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", str(ROOT), "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    warnings = [line for line in output.splitlines() if re.search(r"(?i)warn", line)]
    assert warnings == []

    (wheel,) = tmp_path.glob("asl_tal-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
    configs = {f"asl_tal/conf/{p.relative_to(ROOT / 'conf')}" for p in ROOT.glob("conf/**/*.yaml")}
    assert len(configs) > 40
    assert configs - names == set()
    assert "License-Expression: MIT" in metadata.splitlines()
