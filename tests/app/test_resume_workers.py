"""A training run killed with SIGKILL after an epoch and resumed from its ``last.ckpt`` ends
with the very weights of an uninterrupted run, with and without data-loader workers: the
order and the crops of an epoch come from ``(seed, epoch)``, not from the worker processes
(``docs/data.md`` §3)."""

from __future__ import annotations

import pytest
import torch
from helpers.commands import run_command, run_process
from helpers.runs import tiny

# debug=tiny: 24 training videos, batch 4 -> 6 steps per epoch; two epochs
COMMON = (
    "scheduler.warmup_epochs=1",
    "scheduler.epochs=1",
    "test_after_fit=false",
    "dataset.seed=5",
    "~callbacks.visualization",
)
STEPS_PER_EPOCH = 6


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The in-process runs on one thread, as the killed run's process (``OMP_NUM_THREADS=1``):
    oneDNN's convolutions sum in another order with another thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def uninterrupted(one_thread, data_dir, tmp_path_factory) -> dict:
    run = tmp_path_factory.mktemp("uninterrupted")
    run_command("train", *tiny(data_dir, run, *COMMON, "dataset.num_workers=2"))
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("num_workers", [0, 2])
def test_sigkill_after_an_epoch_then_resume_gives_identical_weights(
    uninterrupted, data_dir, tmp_path, num_workers
):
    workers = f"dataset.num_workers={num_workers}"
    killed = tmp_path / "killed"
    proc = run_process(
        "train",
        *tiny(
            data_dir,
            killed,
            *COMMON,
            workers,
            # the first batch of the second epoch: epoch 0's last.ckpt is on disk
            "+callbacks.kill._target_=helpers.callbacks.KillAtStep",
            f"+callbacks.kill.step={STEPS_PER_EPOCH}",
        ),
        check=False,
    )
    assert proc.returncode == -9, proc.stderr[-3000:]
    last = killed / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (0, STEPS_PER_EPOCH)

    resumed = tmp_path / "resumed"
    run_command("train", *tiny(data_dir, resumed, *COMMON, workers, f"ckpt_path={last}"))
    final = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)

    assert final["global_step"] == uninterrupted["global_step"] == 2 * STEPS_PER_EPOCH
    assert final["state_dict"].keys() == uninterrupted["state_dict"].keys()
    different = [
        key
        for key, value in uninterrupted["state_dict"].items()
        if not torch.equal(final["state_dict"][key], value)
    ]
    assert different == []
