"""Helpers that ``tests/app/test_hardening_runs.py`` loads into the entry points it runs
(``tests/app`` is on their ``PYTHONPATH``): ``+callbacks.x._target_=hardening_fixtures.X``."""

from __future__ import annotations

import errno

from lightning.pytorch.callbacks import Callback
from matplotlib.figure import Figure


def _disk_full(self, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


class DiskFullSavefig(Callback):
    """From ``setup`` on, every ``Figure.savefig`` of the process fails as on a full disk."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        Figure.savefig = _disk_full
