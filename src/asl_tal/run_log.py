"""What a training run writes about itself, readable without any experiment tracker.

:class:`EpochLog` writes one plain line per epoch through the ``asl_tal`` logger (so into
``train.log`` and onto the console, whatever loggers are configured) and one row per epoch
into ``<run dir>/metrics.csv``; when the console is not a terminal (``nohup``, SLURM, output
redirected to a file) it turns Lightning's progress bar off, whose frames would fill the file.
:func:`closing_summary` is the run's last line: best validation mAP and its epoch, test mAP,
the run folder. :func:`quiet_dependencies` keeps the dependencies' adverts and deprecation
notices about their own internals off the run's output.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from asl_tal.selection import TieRule, improves

log = logging.getLogger("asl_tal.epochs")

# Lightning advertises its cloud products at every Trainer start (rank_zero_info)
LIGHTNING_TIPS_LOGGER = "lightning.pytorch.utilities.rank_zero"
LIGHTNING_TIP_PREFIX = "💡 Tip:"
# the columns of metrics.csv that hold integers
INTEGER_COLUMNS = ("epoch", "step")


class DropLightningTips(logging.Filter):
    """Drops the records of Lightning's rank-zero logger that start with "💡 Tip:"."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(LIGHTNING_TIP_PREFIX)


LIGHTNING_TIPS_FILTER = DropLightningTips()


def quiet_dependencies() -> None:
    """Filter what the dependencies print on every run that says nothing about it, each
    where it is emitted (calling it again changes nothing):

    * Lightning's "💡 Tip" adverts (its rank-zero logger, that message prefix only);
    * the ``LeafSpec`` deprecation (torch >= 2.10) that Lightning's own pytree helper
      triggers for every batch it moves (that message, from that module only).
    """
    logging.getLogger(LIGHTNING_TIPS_LOGGER).addFilter(LIGHTNING_TIPS_FILTER)
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )


def on_terminal() -> bool:
    """True when both stdout and stderr are terminals (a progress bar can redraw itself)."""
    return sys.stdout.isatty() and sys.stderr.isatty()


def number(value: float | None) -> str:
    """``0.4123`` (4 decimals), ``-`` for a value that is missing or NaN."""
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


class EpochLog(Callback):
    """One log line and one ``metrics.csv`` row per training epoch (rank 0).

    A line reads, e.g.::

        epoch 3/9  train loss 1.2345 (cls 0.6, loc 0.4)  val/average_mAP 0.4120 (best 0.4500,
        epoch 1)  12.3 s

    The train losses are the means over the epoch's optimizer steps of the values the module
    logs as ``train/*`` (steps skipped for a non-finite loss left out); the validation values
    are those of the epoch's validation (``-`` in an epoch without one); the time is the
    epoch's wall-clock time, validation included.

    ``metrics.csv`` has one row per epoch: ``epoch``, ``step``, ``time_s``, ``lr`` (the first
    parameter group's), the train loss means, every ``val/*`` metric and
    ``<monitor>_best``. It is rewritten whole at each epoch end (columns: every metric any
    epoch had); a run resumed in its own folder keeps the rows of the epochs before the one
    it resumes at. ``fast_dev_run`` writes no file. A file that cannot be written is a
    warning; training goes on.

    Args:
        monitor: the validation metric whose best value (and epoch) each line reports.
        mode: ``max`` or ``min``: which value of ``monitor`` is best.
        filename: the CSV file, relative to the run folder (``trainer.default_root_dir``).
        ties: ``latest`` or ``earliest``: which of two epochs with the same best value is
            reported (:mod:`asl_tal.selection`; the same rule as the kept checkpoint).
    """

    def __init__(self, monitor: str, mode: str, filename: str, ties: TieRule) -> None:
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"EpochLog: mode must be 'max' or 'min', got {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.filename = filename
        self.ties = ties
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.rows: list[dict[str, float | int]] = []
        self._start = 0.0
        self._sums: dict[str, float] = {}
        self._steps = 0
        self._val: dict[str, float] = {}

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best = state_dict["best"]
        self.best_epoch = state_dict["best_epoch"]

    def path(self, trainer: L.Trainer) -> Path:
        return Path(trainer.default_root_dir) / self.filename

    # ----------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        bar = trainer.progress_bar_callback
        if bar is not None and not on_terminal():
            bar.disable()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after a resumed run's loop state is restored: current_epoch is the one it resumes at
        path = self.path(trainer)
        self.rows = []
        if trainer.current_epoch > 0 and path.is_file():  # resumed in its own folder
            with path.open(newline="") as f:
                self.rows = [
                    {k: int(v) if k in INTEGER_COLUMNS else float(v) for k, v in row.items() if v}
                    for row in csv.DictReader(f)
                    if int(row["epoch"]) < trainer.current_epoch
                ]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()
        self._sums, self._steps, self._val = {}, 0, {}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if not outputs:  # a step skipped for a non-finite loss returns none
            return
        self._steps += 1
        for key, value in trainer.callback_metrics.items():
            if key.startswith("train/") and key != "train/skipped_steps":
                self._sums[key] = self._sums.get(key, 0.0) + float(value)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._val = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith("val/")
        }
        value = self._val.get(self.monitor)
        if value is None or math.isnan(value):
            return
        if improves(value, self.best, self.mode, self.ties):
            self.best, self.best_epoch = value, trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        seconds = time.monotonic() - self._start
        losses = {key: total / self._steps for key, total in self._sums.items()}
        log.info("%s", self.line(trainer, losses, seconds))
        if trainer.fast_dev_run:
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else math.nan
        self.rows.append(
            {
                "epoch": trainer.current_epoch,
                "step": trainer.global_step,
                "time_s": round(seconds, 3),
                "lr": lr,
                **losses,
                **self._val,
                f"{self.monitor}_best": math.nan if self.best is None else self.best,
            }
        )
        self.write(self.path(trainer))

    # ----------------------------------------------------------------------------------
    def line(self, trainer: L.Trainer, losses: dict[str, float], seconds: float) -> str:
        """The epoch's line (see the class docstring)."""
        last = max(trainer.max_epochs - 1, trainer.current_epoch) if trainer.max_epochs else "?"
        parts = [f"epoch {trainer.current_epoch}/{last}"]
        total = losses.get("train/loss")
        terms = ", ".join(
            f"{key.removeprefix('train/')} {value:.4g}"
            for key, value in losses.items()
            if key != "train/loss"
        )
        parts.append(f"train loss {number(total)}" + (f" ({terms})" if terms else ""))
        best = "-" if self.best_epoch is None else f"{number(self.best)}, epoch {self.best_epoch}"
        parts.append(f"{self.monitor} {number(self._val.get(self.monitor))} (best {best})")
        parts.append(f"{seconds:.1f} s")
        return "  ".join(parts)

    def write(self, path: Path) -> None:
        """The rows as a CSV file (written next to ``path``, then moved onto it)."""
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        partial = path.with_name(f".{path.name}.partial")
        try:
            with partial.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=columns, restval="")
                writer.writeheader()
                writer.writerows(self.rows)
            os.replace(partial, path)
        except OSError as err:
            log.warning(
                "could not write %s (%s: %s); training goes on", path, type(err).__name__, err
            )


def closing_summary(trainer: L.Trainer, directory: Path, weights: str | None = None) -> str:
    """The run's last line: the best validation value and its epoch (:class:`EpochLog`),
    the test average mAP with the ``weights`` it tested (when the run tested) and the run
    folder."""
    epoch_log = next((c for c in trainer.callbacks if isinstance(c, EpochLog)), None)
    if epoch_log is None or epoch_log.best_epoch is None:
        best = "best validation: none recorded"
    else:
        best = f"best {epoch_log.monitor} {number(epoch_log.best)} (epoch {epoch_log.best_epoch})"
    test = trainer.callback_metrics.get("test/average_mAP")
    tested = "not tested" if test is None else f"test average mAP {number(float(test))}"
    if test is not None and weights is not None:
        tested += f" ({weights} weights)"
    return f"done: {best}, {tested}; run folder {directory}"
