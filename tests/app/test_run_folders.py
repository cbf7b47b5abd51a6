"""A run folder belongs to one run: resuming goes on in the checkpoint's folder with the best
checkpoint's score kept, a second command on a folder in use is refused, and eval never
writes into a training run's folder. The entry points run in this process."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from helpers.commands import run_command
from helpers.runs import error_line, fingerprint, tiny

from asl_tal.errors import OutputWriteError
from asl_tal.outputs import LOCK_NAME, run_folder_lock


def best_callback_state(ckpt: dict) -> dict:
    """The saved state of the ModelCheckpoint that monitors a metric (``best.ckpt``'s)."""
    states = [
        state
        for key, state in ckpt["callbacks"].items()
        if key.startswith("ModelCheckpoint") and "'monitor': None" not in key
    ]
    assert len(states) == 1, list(ckpt["callbacks"])
    return states[0]


def test_resume_goes_on_in_the_run_folder_and_keeps_the_best_checkpoint(data_dir, tmp_path):
    # the best checkpoint of "epoch, mode min" is epoch 0 whatever the data: a resume that
    # forgot the best score would write epoch 2 as the first best of its own
    run = tmp_path / "run"
    best_by_epoch = (
        "callbacks.model_checkpoint.monitor=epoch",
        "callbacks.model_checkpoint.mode=min",
        "test_after_fit=false",
    )
    first = tiny(data_dir, run, *best_by_epoch, "scheduler.warmup_epochs=1", "scheduler.epochs=1")
    run_command("train", *first, cwd=tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    best = run / "checkpoints" / "best.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1
    before = {p: fingerprint(p) for p in (best, run / ".hydra" / "config.yaml")}

    # no hydra.run.dir: the run folder follows the checkpoint
    resumed = [o for o in first if not o.startswith(("hydra.run.dir=", "scheduler.epochs="))]
    resumed += ["scheduler.epochs=2", f"ckpt_path={last}"]  # one epoch more
    with warnings.catch_warnings():
        # Lightning's warning when the best score is not restored (a moved checkpoint folder)
        warnings.filterwarnings("always", message=".*won't be reloaded")
        result = run_command("train", *resumed, cwd=tmp_path)
    assert "won't be reloaded" not in result.stderr

    assert not (tmp_path / "outputs").exists()  # no second run folder
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["epoch"] == 2
    state = best_callback_state(ckpt)
    assert float(state["best_model_score"]) == 0.0
    assert Path(state["best_model_path"]) == best.resolve()
    assert torch.load(best, weights_only=True)["epoch"] == 0
    # best.ckpt and the first command's Hydra record are the first run's, byte for byte
    assert {p: fingerprint(p) for p in before} == before
    records = sorted((run / ".hydra").glob("train_*/overrides.yaml"))
    assert len(records) == 1 and f"ckpt_path={last}" in records[0].read_text()


def test_a_second_run_on_a_folder_in_use_is_refused(data_dir, tmp_path):
    # run A has started in the folder (its Hydra record, its lock); run B is given the same
    # hydra.run.dir
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    record = run / ".hydra" / "config.yaml"
    record.write_text("task_name: train  # run A\n")
    before = fingerprint(record)
    with run_folder_lock(run):
        result = run_command("train", *tiny(data_dir, run), check=False)
    error_line(
        result,
        f"run folder {run} is in use by another run",
        str(run / LOCK_NAME),
        "hydra.run.dir",
    )
    assert fingerprint(record) == before
    assert not (run / "checkpoints").exists() and not (run / "class_map.json").exists()


def test_eval_refuses_the_folder_of_a_training_run(tmp_path):
    run = tmp_path / "run"
    files = {
        run / "checkpoints" / "best.ckpt": b"weights",
        run / "results" / "test_metrics.json": b'{"average_mAP": 0.5}',
        run / ".hydra" / "config.yaml": b"task_name: train\n",
        run / ".hydra" / "overrides.yaml": b"[]\n",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    result = run_command(
        "eval",
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
        f"hydra.run.dir={run}",
        check=False,
    )
    error_line(result, f"hydra.run.dir={run} is the folder of a training run", "own")
    assert {path: path.read_bytes() for path in files} == files
    # Hydra's record of the refused command went beside the training run's, not over it
    assert [p.name for p in (run / ".hydra").glob("eval_*")] != []


def test_a_run_folder_that_cannot_be_made_is_one_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the run folder's parent belongs")
    with pytest.raises(OutputWriteError) as info, run_folder_lock(blocker / "run"):
        pass
    assert str(info.value) == (
        f"cannot write {blocker / 'run'}: Not a directory (give a writable run directory with "
        "hydra.run.dir=...)"
    )
    assert blocker.read_text() == "a file where the run folder's parent belongs"
