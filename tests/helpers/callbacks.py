"""Callbacks that tests hand to a training run (``+callbacks.x._target_=helpers.callbacks.X``):
a full disk while plotting, and SIGKILLs of the run's own process at a given global step or
half-way through writing a checkpoint (resume tests, which run in a process of their own)."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import signal
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from matplotlib.figure import Figure


def _disk_full(self, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


class DiskFullSavefig(Callback):
    """From ``setup`` to ``teardown`` every ``Figure.savefig`` fails as on a full disk."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._savefig = Figure.savefig
        Figure.savefig = _disk_full

    def teardown(self, trainer, pl_module, stage: str) -> None:
        Figure.savefig = self._savefig


class KillAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class KillInCheckpointWrite(Callback):
    """SIGKILLs its own process half-way through writing ``last.ckpt`` at the end of epoch
    ``epoch``: half of the checkpoint's bytes go into the file being written, are flushed to
    disk, and the process dies. Just before, ``record`` (JSON) gets the size and SHA-256 of
    the ``last.ckpt`` already there and the number of bytes written (``partial``)."""

    def __init__(self, epoch: int, record: str) -> None:
        self.epoch = epoch
        self.record = Path(record)

    def setup(self, trainer, pl_module, stage: str) -> None:
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            name = Path(str(getattr(f, "name", "")))
            if (
                isinstance(obj, dict)
                and obj.get("epoch") == self.epoch
                and name.name.startswith(".last.ckpt.")
            ):
                buffer = io.BytesIO()
                real_save(obj, buffer, *args, **kwargs)
                data = buffer.getvalue()
                previous = (name.parent / "last.ckpt").read_bytes()
                self.record.write_text(
                    json.dumps(
                        {
                            "size": len(previous),
                            "sha256": hashlib.sha256(previous).hexdigest(),
                            "partial": len(data) // 2,
                        }
                    )
                )
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, f, *args, **kwargs)

        torch.save = save
