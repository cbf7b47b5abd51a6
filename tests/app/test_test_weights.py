"""Which weights a training run tests: never a checkpoint picked on the test videos."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
from asl_tal.conf import compose
from helpers.commands import run_command
from helpers.runs import error_line

from asl_tal.cli.train import choose_test_weights, train


def videos(*ids: str) -> dict[str, None]:
    return dict.fromkeys(ids)


def fake_datamodule(val: tuple[str, ...], test: tuple[str, ...]) -> SimpleNamespace:
    return SimpleNamespace(annotations=lambda stage: videos(*(val if stage == "val" else test)))


def test_auto_tests_the_best_checkpoint_when_validation_and_test_videos_are_apart():
    dm = fake_datamodule(val=("v1", "v2"), test=("t1", "t2"))
    weights, why = choose_test_weights("auto", "/run/checkpoints/best.ckpt", dm)
    assert weights == "best"
    assert "not test videos" in why


def test_auto_tests_the_last_epoch_when_a_validation_video_is_a_test_video():
    dm = fake_datamodule(val=("v1", "t2"), test=("t1", "t2"))
    weights, why = choose_test_weights("auto", "/run/checkpoints/best.ckpt", dm)
    assert weights == "last"
    assert why.startswith("1 validation video(s) are test videos")
    assert "dataset.val_holdout" in why


@pytest.mark.parametrize("setting", ["best", "last"])
def test_an_explicit_setting_is_taken_as_it_is(setting):
    dm = fake_datamodule(val=("t1",), test=("t1",))
    assert choose_test_weights(setting, "best.ckpt", dm)[0] == setting


def test_without_a_best_checkpoint_the_last_epoch_is_tested():
    dm = fake_datamodule(val=("v1",), test=("t1",))
    assert choose_test_weights("best", "", dm)[0] == "last"


def run_tiny(tmp_path, monkeypatch, *extra: str):
    """Train the tiny synthetic config in process, the run folder being ``tmp_path/run``."""
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)  # outside Hydra the run folder is the working directory
    cfg = compose(
        "train",
        [
            "debug=tiny",
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.output_dir={run}",
            "logger=none",
            "callbacks.visualization=null",
            "trainer.accelerator=cpu",
            *extra,
        ],
    )
    train(cfg)
    return run


def read_metrics(path):
    return json.loads(path.read_text())


def test_a_run_validating_on_its_test_videos_reports_the_last_epoch(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="asl_tal")
    run = run_tiny(tmp_path, monkeypatch, "dataset.val_subset=[test]")
    metrics = read_metrics(run / "results" / "test_metrics.json")
    assert metrics["weights"] == "last"
    assert not (run / "results" / "test_last_metrics.json").exists()
    assert "testing the last epoch's weights" in caplog.text
    assert "are test videos" in caplog.text


def test_a_run_selecting_on_other_videos_reports_the_best_and_the_last_epoch(tmp_path, monkeypatch):
    run = run_tiny(tmp_path, monkeypatch)  # validation and test subsets of their own
    assert read_metrics(run / "results" / "test_metrics.json")["weights"] == "best"
    last = read_metrics(run / "results" / "test_last_metrics.json")
    assert last["weights"] == "last"
    assert 0.0 <= last["average_mAP"] <= 1.0


def test_an_unknown_setting_is_one_error_line(tmp_path):
    result = run_command("train", "test_weights=newest", "logger=none", cwd=tmp_path, check=False)
    error_line(result, "test_weights=newest: expected one of auto, best, last")
    assert not (tmp_path / "data").exists()  # refused before the data is generated
