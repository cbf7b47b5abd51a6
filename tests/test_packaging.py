"""The wheel carries every sub-package and every config file (``pyproject.toml``'s lists)."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_sub_package_is_listed():
    source = ROOT / "src"
    found = {
        ".".join(init.parent.relative_to(source).parts)
        for init in source.rglob("__init__.py")
        if "egg-info" not in str(init)
    }
    assert set(SETUPTOOLS["packages"]) == found | {"asl_tal.conf"}
    assert SETUPTOOLS["package-dir"]["asl_tal.conf"] == "conf"


def test_every_config_file_matches_a_package_data_pattern():
    conf = ROOT / "conf"
    shipped = {
        path
        for pattern in SETUPTOOLS["package-data"]["asl_tal.conf"]
        for path in conf.glob(pattern)
    }
    configs = set(conf.rglob("*.yaml"))
    assert len(configs) > 40
    assert configs - shipped == set()
