"""Lightning callbacks of asl-tal.

:class:`VisualizationCallback` renders, every few validation epochs, what the model learned
(:mod:`asl_tal.viz`) and writes it as PNG files (and the per-class AP as a CSV file) under
``<run dir>/plots/epoch_XXX/``, named after what they show (``timeline_<video>.png``); when a
``WandbLogger`` is active, the same images and a per-class AP table also go to W&B.

Plotting never stops training: a figure that cannot be drawn (a label matplotlib rejects, a
value it cannot lay out) or written (disk full, read-only folder, a W&B logging error) is
logged as a warning and counted (``VisualizationCallback.failures``, logged as the metric
``viz/failures``).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from matplotlib.figure import Figure

from asl_tal import viz
from asl_tal.metrics.matching import precision_recall_curve
from asl_tal.settings import NON_NEGATIVE, POSITIVE, UP_TO_ONE

log = logging.getLogger("asl_tal.callbacks")


def wandb_errors() -> tuple[type[BaseException], ...]:
    """What writing W&B media may raise that must not stop training: ``OSError`` (the
    image files W&B writes first: disk full, read-only) and W&B's own ``wandb.errors.Error``
    (the base of its usage / communication errors)."""
    try:
        from wandb.errors import Error as WandbError
    except ImportError:  # no wandb: no WandbLogger either, only file errors remain
        return (OSError,)
    return (OSError, WandbError)


class VisualizationCallback(Callback):
    """Sensitivity curves, a detection timeline, PR curves and per-class AP every N epochs.

    At the end of every ``every_n_epochs``-th validation epoch (not the sanity check):

    * on every rank, the validation metric's predictions are gathered (the metric's own
      ``sync``, before the LightningModule computes and resets it);
    * on rank 0 only, the first validation batch goes through the EMA detector:
      ``sensitivity_maps`` for the ``num_instances`` longest GT instances (with the
      synthetic benchmark's sub-phases when the annotation file records them) and
      ``detect`` for a timeline of each of its first ``num_videos`` videos; the gathered
      predictions give PR curves per tIoU threshold (all classes pooled, or class
      ``pr_class``); the metric's last result gives the per-class AP bars.

    Args:
        every_n_epochs: render at epochs ``N-1, 2N-1, ...`` (0-based).
        num_instances: GT instances with a sensitivity plot.
        num_videos: videos with a timeline.
        top_k: detections per timeline.
        tiou_thresh: tIoU at which a timeline counts a detection correct.
        pr_class: class id of the PR curves; None pools all classes (micro).
        dpi: resolution of the images.
    """

    def __init__(
        self,
        every_n_epochs: Annotated[int, POSITIVE],
        num_instances: Annotated[int, NON_NEGATIVE],
        num_videos: Annotated[int, NON_NEGATIVE],
        top_k: Annotated[int, POSITIVE],
        tiou_thresh: Annotated[float, UP_TO_ONE],
        pr_class: Annotated[int | None, NON_NEGATIVE],
        dpi: Annotated[int, POSITIVE],
    ) -> None:
        super().__init__()
        self.every_n_epochs = every_n_epochs
        self.num_instances = num_instances
        self.num_videos = num_videos
        self.top_k = top_k
        self.tiou_thresh = tiou_thresh
        self.pr_class = pr_class
        self.dpi = dpi
        self._predictions: tuple[np.ndarray, ...] | None = None
        self._phase_table: dict[str, list[dict]] | None = None
        self.failures = 0  # figures / tables not drawn or written, over the whole run

    def state_dict(self) -> dict:
        return {"failures": self.failures}

    def load_state_dict(self, state_dict: dict) -> None:
        self.failures = int(state_dict.get("failures", 0))

    def _due(self, trainer: L.Trainer) -> bool:
        return (
            not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        )

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs before the module's hook, which computes and resets the metric.
        self._predictions = None
        metric = getattr(pl_module, "metrics", {}).get("val")
        if metric is None or not self._due(trainer):
            return
        with metric.sync_context(should_unsync=True):
            self._predictions = metric.predictions()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._due(trainer) or not trainer.is_global_zero:
            return
        # Rendering draws from the global RNG (iterating the validation loader takes a seed),
        # and the training that follows would see other draws (drop-path, ASCL's background
        # frames): with the state restored, plots on or off give the same run.
        cuda = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            figures, per_class = self.render(trainer, pl_module)
        self._predictions = None
        self.log_figures(trainer, figures, per_class)

    # ----------------------------------------------------------------------------------
    def _first_val_batch(self, trainer: L.Trainer):
        loaders = trainer.val_dataloaders
        if isinstance(loaders, list | tuple):
            loaders = loaders[0]
        return next(iter(loaders))

    def _phases(self, datamodule) -> dict[str, list[dict]]:
        if self._phase_table is None:
            path = getattr(datamodule, "json_path", None)
            self._phase_table = viz.load_phases(path) if path is not None else {}
        return self._phase_table

    @torch.no_grad()
    def render(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> tuple[dict[str, Figure], list[tuple[str, float]]]:
        """The figures (by file name, without ``.png``) and the per-class average AP rows
        ``(class, AP)``. A figure that cannot be drawn is left out (:meth:`_draw`)."""
        figures: dict[str, Figure] = {}
        names = list(pl_module.class_names)
        datamodule = getattr(trainer, "datamodule", None)
        batch = self._first_val_batch(trainer).to(pl_module.device)
        detector = pl_module.eval_detector

        records = detector.sensitivity_maps(batch)
        longest = sorted(range(len(records)), key=lambda i: -len(records[i]["frames"]))
        phase_table = self._phases(datamodule) if datamodule is not None else {}
        for rank, i in enumerate(longest[: self.num_instances]):
            record = records[i]
            meta = batch.meta[record["video"]]
            phases = viz.match_phases(record, meta, phase_table, names) if phase_table else None
            name = f"sensitivity_{rank}_{viz.file_stem(meta.video_id)}"
            self._draw(
                figures, name, viz.plot_sensitivity, record, phases, meta, names[record["label"]]
            )

        if datamodule is not None and self.num_videos > 0:
            gt = datamodule.annotations("val")
            detections = detector.detect(batch, pl_module.postprocess_cfg)
            for k, (meta, dets) in enumerate(zip(batch.meta, detections, strict=True)):
                if k >= self.num_videos:
                    break
                name = f"timeline_{viz.file_stem(meta.video_id)}"
                self._draw(
                    figures,
                    name,
                    viz.plot_timeline,
                    gt[meta.video_id],
                    dets,
                    names,
                    self.top_k,
                    self.tiou_thresh,
                )

        thresholds = [float(t) for t in pl_module.evaluation.tiou_thresholds]
        metric = getattr(pl_module, "metrics", {}).get("val")
        if metric is not None and self._predictions is not None:
            precision, recall, _ = precision_recall_curve(
                metric.gt,
                *self._predictions,
                metric.num_classes,
                np.array(thresholds),
                self.pr_class,
            )
            title = "all classes (micro)" if self.pr_class is None else names[self.pr_class]
            self._draw(
                figures, "pr_curves", viz.plot_pr_curves, precision, recall, thresholds, title
            )

        per_class: list[tuple[str, float]] = []
        result = getattr(pl_module, "last_results", {}).get("val")
        if result is not None:
            ap = result["per_class_AP"].double().cpu().numpy()
            self._draw(figures, "per_class_ap", viz.plot_per_class_ap, ap, names, thresholds)
            per_class = [
                (name, float(value))
                for name, value in zip(names, ap.mean(axis=0), strict=True)
                if not math.isnan(value)
            ]
        return figures, per_class

    def _failed(self, what: str, err: BaseException) -> None:
        self.failures += 1
        log.warning(
            "visualization: could not %s (%s: %s); training goes on (%d failures)",
            what,
            type(err).__name__,
            err,
            self.failures,
        )

    def _draw(
        self, figures: dict[str, Figure], name: str, plot: Callable[..., Figure], *args
    ) -> None:
        """``figures[name] = plot(*args)``; a figure matplotlib cannot draw
        (:data:`asl_tal.viz.DRAW_ERRORS`) is a warning and a failure counted."""
        try:
            figures[name] = plot(*args)
        except viz.DRAW_ERRORS as err:
            self._failed(f"draw {name}", err)

    def _write(
        self,
        what: str,
        errors: tuple[type[BaseException], ...],
        write: Callable[..., object],
        *args,
        **kwargs,
    ) -> bool:
        """``write(*args, **kwargs)``; one of ``errors`` is a warning and a failure counted
        (a full disk must not end a training run over a plot). True when written."""
        try:
            write(*args, **kwargs)
        except errors as err:
            self._failed(f"write {what}", err)
            return False
        return True

    def log_figures(
        self,
        trainer: L.Trainer,
        figures: dict[str, Figure],
        per_class: list[tuple[str, float]],
    ) -> None:
        """As ``<name>.png`` files and ``per_class_ap.csv`` under ``plots/epoch_XXX`` of the
        run folder, and to every W&B logger (images ``viz/<name>``, table
        ``viz/per_class_AP``).

        A figure or table that cannot be drawn or written is skipped with a warning and
        counted in :attr:`failures`; the count is logged as ``viz/failures`` to every logger.
        """
        out = Path(trainer.default_root_dir) / "plots" / f"epoch_{trainer.current_epoch:03d}"
        file_errors = (OSError, *viz.DRAW_ERRORS)
        for name, fig in figures.items():
            path = out / f"{name}.png"
            self._write(str(path), file_errors, viz.figure_to_png, fig, path, self.dpi)
        if per_class:
            table = out / "per_class_ap.csv"
            self._write(str(table), (OSError,), write_ap_table, table, per_class)

        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        step = trainer.global_step
        errors = wandb_errors() if wandb_loggers else (OSError,)
        for logger in wandb_loggers:
            for name, fig in figures.items():
                self._write(
                    f"W&B image viz/{name}",
                    (*errors, *viz.DRAW_ERRORS),
                    log_wandb_image,
                    logger,
                    name,
                    fig,
                    self.dpi,
                    step,
                )
            if per_class:
                self._write(
                    "W&B table viz/per_class_AP",
                    errors,
                    logger.log_table,
                    "viz/per_class_AP",
                    columns=["class", "average AP"],
                    data=[list(row) for row in per_class],
                    step=step,
                )
        for logger in trainer.loggers:
            self._write(
                f"metric viz/failures to {type(logger).__name__}",
                errors,
                logger.log_metrics,
                {"viz/failures": float(self.failures)},
                step=step,
            )


def log_wandb_image(logger: WandbLogger, name: str, fig: Figure, dpi: int, step: int) -> None:
    """``fig`` rendered at ``dpi`` as the W&B image ``viz/<name>`` at trainer step ``step``."""
    logger.log_image(f"viz/{name}", [viz.figure_to_array(fig, dpi)], step=step)


def write_ap_table(path: Path, per_class: list[tuple[str, float]]) -> None:
    """``class,average_AP`` rows of ``per_class`` as a CSV file (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("class", "average_AP"), *per_class])
