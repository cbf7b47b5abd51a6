"""Runs of the real entry points (``python -m asl_tal.cli.X``) on the tiny synthetic config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def run_entry(module: str, *overrides: str, env: dict | None = None, check: bool = True):
    """Run ``python -m asl_tal.cli.<module> overrides...``; returns the CompletedProcess."""
    full_env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "WANDB_MODE": os.environ.get("WANDB_MODE", ""),
        "OMP_NUM_THREADS": "1",
        **(env or {}),
    }
    full_env.pop("WANDB_API_KEY", None)
    proc = subprocess.run(
        [sys.executable, "-m", f"asl_tal.cli.{module}", *overrides],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"asl_tal.cli.{module} exited {proc.returncode}\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-5000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


def tiny(data_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "debug=tiny",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        "trainer.accelerator=cpu",
        "trainer.deterministic=true",
        *extra,
    ]


@pytest.fixture(scope="session")
def trained_run(data_dir, tmp_path_factory) -> Path:
    """One tiny training run shared by the tests that need a checkpoint."""
    run_dir = tmp_path_factory.mktemp("trained")
    run_entry("train", *tiny(data_dir, run_dir))
    return run_dir


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
