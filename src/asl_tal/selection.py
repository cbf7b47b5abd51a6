"""Which validation epoch a run keeps as its best: the better score, and on a tie the
later epoch (``ties="latest"``) or the earlier one (``ties="earliest"``, Lightning's own
:class:`ModelCheckpoint`).

A tie means the validation videos prefer neither epoch. That is common when they are few
and the detector scores them perfectly (``dataset.val_holdout`` on a small training set):
the score then says nothing more, and the later epoch is the one the learning-rate
schedule was built to end at. :class:`BestCheckpoint` keeps ``best.ckpt`` by this rule
and :class:`asl_tal.run_log.EpochLog` reports its epoch, so the two agree.
"""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

TieRule = Literal["latest", "earliest"]


def improves(value: float, best: float | None, mode: str, ties: TieRule) -> bool:
    """Whether an epoch scoring ``value`` replaces the best so far (``best``, ``None`` when
    there is none yet): a better score by ``mode`` (``max`` / ``min``), or an equal one
    when ``ties`` is ``latest``."""
    if best is None:
        return True
    if value == best:
        return ties == "latest"
    return value > best if mode == "max" else value < best


class BestCheckpoint(ModelCheckpoint):
    """:class:`ModelCheckpoint` that, with ``ties="latest"``, also replaces its kept
    checkpoint by a later epoch with the same score (Lightning keeps the earlier one).

    Args:
        ties: ``latest`` or ``earliest``; the other arguments are :class:`ModelCheckpoint`'s
            (its other options keep Lightning's defaults).
    """

    def __init__(
        self,
        dirpath: str | None,
        filename: str,
        monitor: str,
        mode: Literal["max", "min"],
        save_top_k: int,
        save_last: bool,
        save_weights_only: bool,
        auto_insert_metric_name: bool,
        enable_version_counter: bool,
        ties: TieRule,
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=monitor,
            mode=mode,
            save_top_k=save_top_k,
            save_last=save_last,
            save_weights_only=save_weights_only,
            auto_insert_metric_name=auto_insert_metric_name,
            enable_version_counter=enable_version_counter,
        )
        self.ties = ties

    @property
    def state_key(self) -> str:
        """Lightning's key for :class:`ModelCheckpoint`'s state, so that a run resumes from a
        ``last.ckpt`` written with either class."""
        return ModelCheckpoint.__qualname__ + super().state_key.removeprefix(
            type(self).__qualname__
        )

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if (
            self.ties == "latest"
            and current is not None
            and 0 < self.save_top_k <= len(self.best_k_models)
        ):
            tied = bool(current == self.best_k_models[self.kth_best_model_path])
            if trainer.strategy.reduce_boolean_decision(tied):
                return True
        return super().check_monitor_top_k(trainer, current)
