"""Fixtures of the whole suite: a folder for the tiny synthetic data set and one tiny
trained run for the tests that need a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.commands import run_command
from helpers.runs import tiny


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def trained_run(data_dir, tmp_path_factory) -> Path:
    """One tiny training run (plots every epoch) shared by the tests that need a checkpoint."""
    run_dir = tmp_path_factory.mktemp("trained")
    run_command("train", *tiny(data_dir, run_dir, "callbacks.visualization.every_n_epochs=1"))
    return run_dir
