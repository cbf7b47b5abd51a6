"""Fixtures of the whole suite: the tiny synthetic data set and one tiny trained run, each
made once per test run (by the first pytest-xdist worker that needs it) and shared."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from asl_tal.conf import compose
from helpers.commands import run_command
from helpers.runs import tiny
from helpers.shared import shared_folder, unchanged

from asl_tal.cli.build import build_datamodule


def make_tiny_data(folder: Path) -> None:
    """The synthetic set of ``debug=tiny`` generated under ``folder``."""
    build_datamodule(compose("train", ["debug=tiny", f"paths.data_dir={folder}"])).prepare_data()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Iterator[Path]:
    """``paths.data_dir`` holding the tiny synthetic set; a test copies what it would change."""
    with unchanged(shared_folder(tmp_path_factory, "data", make_tiny_data)) as folder:
        yield folder


@pytest.fixture(scope="session")
def trained_run(data_dir, tmp_path_factory) -> Iterator[Path]:
    """The run folder of one tiny training run (plots every epoch) for the tests that need a
    checkpoint; a test copies what it would change."""

    def train(folder: Path) -> None:
        run_command("train", *tiny(data_dir, folder, "callbacks.visualization.every_n_epochs=1"))

    with unchanged(shared_folder(tmp_path_factory, "trained", train)) as run:
        yield run
