"""``trainer.max_epochs`` follows the learning-rate schedule; another value is refused
before any work instead of cutting (or overrunning) the schedule silently."""

from __future__ import annotations

import pytest
from helpers.commands import run_command

from asl_tal.cli import train as train_entry
from asl_tal.cli.train import check_epochs


def test_max_epochs_off_the_schedule_is_one_error_line(tmp_path):
    # the synthetic row: 2 warm-up + 18 epochs
    argv = ["trainer.max_epochs=2", "logger=none", f"hydra.run.dir={tmp_path}"]
    result = run_command("train", *argv, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr == (
        "error: trainer.max_epochs=2 does not match the learning-rate schedule "
        "(scheduler.warmup_epochs=2 + scheduler.epochs=18); set the run's length with the "
        "schedule instead, e.g. scheduler.warmup_epochs=1 scheduler.epochs=1 "
        "(trainer.max_epochs follows it)\n"
    )
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("max_epochs", "suggested"),
    [
        (30, "scheduler.warmup_epochs=5 scheduler.epochs=25"),  # longer: the warm-up is kept
        (5, "scheduler.warmup_epochs=2 scheduler.epochs=3"),  # no longer than the warm-up
        (1, "scheduler.warmup_epochs=0 scheduler.epochs=1"),
        (None, "scheduler.warmup_epochs=W scheduler.epochs=E"),
    ],
)
def test_the_message_suggests_a_schedule_of_that_length(max_epochs, suggested):
    with pytest.raises(train_entry.UserInputError) as info:
        check_epochs(max_epochs, 5, 20)
    assert suggested in str(info.value)


def test_the_schedules_own_length_passes():
    check_epochs(25, 5, 20)
