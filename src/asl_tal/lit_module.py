"""LightningModule around :class:`~asl_tal.detector.ASLDetector`.

Training logs every loss term, the learning rate (callback) and the learned class-level
Gaussians; validation and test decode with the EMA weights, run NMS and update the
detection mAP metric; ``predict_step`` returns detections in seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import lightning as L
import torch

from asl_tal.config_blocks import from_target, settings_from
from asl_tal.data.annotations import VideoAnnotation
from asl_tal.data.batch import Batch
from asl_tal.detector import ASLDetector
from asl_tal.ema import EMASettings, ModelEMA
from asl_tal.metrics.detection_map import TemporalActionDetectionMAP
from asl_tal.metrics.protocol import EvaluationSettings
from asl_tal.metrics.recall import RecallAtK
from asl_tal.optim import build_optimizer
from asl_tal.postprocess.config import PostprocessConfig
from asl_tal.postprocess.decode import Detections

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN/Inf; the message names the batch's videos."""


def share_evaluation_weights(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (an :class:`ASLLitModule` state dict) with every ``detector.*`` tensor
    replaced by its ``ema.module.*`` twin, when the module has an EMA copy.

    ``torch.save`` writes a storage shared by two names once, so the file holds one set of
    weights (the EMA's, the ones evaluation uses) and still loads into a complete module:
    its training weights then start as the EMA's.
    """
    prefix, ema_prefix = "detector.", "ema.module."
    out = dict(state)
    if not any(name.startswith(ema_prefix) for name in state):
        return out
    for name in state:
        if name.startswith(prefix):
            out[name] = state[ema_prefix + name[len(prefix) :]]
    return out


class ASLLitModule(L.LightningModule):
    """Train / evaluate / predict an ASL detector.

    Args:
        model: the ``model`` config: the detector's blocks (:meth:`ASLDetector.from_config`),
            ``ema`` (:class:`EMASettings`) and ``compile``.
        optimizer: the ``optimizer`` config, a partial torch optimizer (``_target_``).
        scheduler: the ``scheduler`` config, a partial of a schedule in :mod:`asl_tal.optim`.
        postprocess: :class:`PostprocessConfig` fields.
        evaluation: :class:`EvaluationSettings` fields.
        class_names: the class map (names by id) of the dataset the model is trained on.
        class_counts: training instances per class (class-bias prior), or None.
        num_model_classes: classes the network predicts (1 for class-agnostic training).
        skip_nonfinite: skip a step with a non-finite loss (counted) instead of stopping.
        seed: the run's seed (the training noise is re-seeded from it at every step).
        dataset: the run's ``dataset`` block, resolved (``root`` absolute); not used here,
            stored in the checkpoint so eval and predict read the data it was trained on.
            None: not stored (a checkpoint from before runs stored it, or a module built
            outside a run).
    """

    def __init__(
        self,
        model: Mapping,
        optimizer: Mapping,
        scheduler: Mapping,
        postprocess: Mapping,
        evaluation: Mapping,
        class_names: Sequence[str],
        class_counts: Sequence[int] | None = None,
        num_model_classes: int | None = None,
        skip_nonfinite: bool = False,
        seed: int = 0,
        dataset: Mapping | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.class_names = list(class_names)
        self.num_model_classes = num_model_classes or len(self.class_names)
        self.detector = ASLDetector.from_config(model, self.num_model_classes, class_counts)
        ema = settings_from(EMASettings, model["ema"], "model.ema")
        self.ema = ModelEMA(self.detector, ema.decay, ema.warmup) if ema.enabled else None
        if model["compile"]:
            # compile the bound forward: parameter names (and so checkpoints) stay unchanged
            network = self.detector.network
            network.forward = torch.compile(network.forward, dynamic=True)
        self.postprocess_cfg = settings_from(PostprocessConfig, postprocess, "postprocess")
        self.evaluation = settings_from(EvaluationSettings, evaluation, "evaluation")
        self.skip_nonfinite = skip_nonfinite
        self.register_buffer("skipped_steps", torch.zeros((), dtype=torch.long))
        self.metrics: dict[str, TemporalActionDetectionMAP] = {}
        self.recalls: dict[str, RecallAtK] = {}
        self.video_indices: dict[str, dict[str, int]] = {}
        self.last_results: dict[str, dict] = {}
        self.detections: list[tuple[str, Detections]] = []
        self.dead_distances: torch.Tensor | None = None  # (2,) bool over the epoch's steps

    # ----------------------------------------------------------------------------------
    # ground truth for the metrics
    def attach_ground_truth(
        self, stage: str, gt: Mapping[str, VideoAnnotation], video_index: Mapping[str, int]
    ) -> None:
        """Create the ``stage`` ("val" / "test") metrics from the subset's annotations."""
        metric = TemporalActionDetectionMAP(
            gt=gt,
            video_index=video_index,
            num_classes=len(self.class_names),
            tiou_thresholds=self.evaluation.tiou_thresholds,
        )
        self.metrics[stage] = metric.to(self.device)
        self.video_indices[stage] = dict(video_index)
        recall_topk = self.evaluation.recall_topk
        if recall_topk:
            recall = RecallAtK(
                gt=gt,
                video_index=video_index,
                num_classes=len(self.class_names),
                ks=tuple(recall_topk),
                tiou_thresholds=self.evaluation.recall_tiou_thresholds,
                strict_greater=self.evaluation.recall_strict_greater,
                average=self.evaluation.recall_average,
            )
            self.recalls[stage] = recall.to(self.device)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            return
        stages = {"fit": ("val",), "validate": ("val",), "test": ("test",)}.get(stage, ())
        for name in stages:
            self.attach_ground_truth(
                name, datamodule.annotations(name), datamodule.video_index(name)
            )

    # ----------------------------------------------------------------------------------
    # training
    @property
    def eval_detector(self) -> ASLDetector:
        """The weights used for validation, test and prediction (EMA when enabled)."""
        return self.ema.module if self.ema is not None else self.detector

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | None:
        # drop-path and ASCL's background draws depend only on (seed, step): a run resumed
        # from a checkpoint repeats the uninterrupted one exactly
        torch.manual_seed(self.hparams.seed * 1_000_003 + self.global_step)
        losses = self.detector.losses(batch)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            if not self.skip_nonfinite:
                raise NonFiniteLossError(
                    f"non-finite training loss {loss.item()} at epoch {self.current_epoch}, "
                    f"step {self.global_step}; videos: {batch.video_ids}"
                )
            self.skipped_steps += 1
            self.log("train/skipped_steps", self.skipped_steps.float())
            return None
        dead = torch.stack([losses["zero_start"], losses["zero_end"]]) == 1.0
        self.dead_distances = dead if self.dead_distances is None else self.dead_distances & dead
        batch_size = len(batch)
        for name, value in losses.items():
            self.log(
                f"train/{name}", value.detach(), batch_size=batch_size, prog_bar=name == "loss"
            )
        return loss

    def on_train_batch_end(self, outputs, batch: Batch, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.detector)

    def on_train_epoch_start(self) -> None:
        self.dead_distances = None

    def on_train_epoch_end(self) -> None:
        self.warn_dead_distances()
        gaussians = getattr(self.detector.objective, "class_sensitivity", None)
        if gaussians is None:
            return
        for name in gaussians.weight_decay_params:
            values = getattr(gaussians, name).detach()
            self.log(f"sensitivity/{name}_mean", values.mean())
            if name.startswith("sigma"):
                self.log(f"sensitivity/{name}_min", values.abs().min())

    def warn_dead_distances(self) -> None:
        """One warning line if the start or end distance was 0 at every positive point of
        every step of the epoch: a ReLU output channel that has died trains no more."""
        if self.dead_distances is None:
            return
        for name, dead in zip(("start", "end"), self.dead_distances.tolist(), strict=True):
            if dead:
                log.warning(
                    "epoch %d: the regressed %s distance was 0 at every positive point, so %s "
                    "boundaries no longer train (a dead ReLU channel); train with "
                    "model.network.offset_activation=softplus",
                    self.current_epoch,
                    name,
                    name,
                )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """A weights-only checkpoint (Lightning leaves out ``optimizer_states``: ``best.ckpt``,
        ``save_weights_only: true``) keeps the EMA weights only
        (:func:`share_evaluation_weights`); a full one (``last.ckpt``) keeps both sets."""
        if "optimizer_states" not in checkpoint:
            checkpoint["state_dict"] = share_evaluation_weights(checkpoint["state_dict"])

    # ----------------------------------------------------------------------------------
    # evaluation
    def _video_scores(self, batch: Batch) -> torch.Tensor | None:
        """``(B, C)`` external class scores in the class-agnostic variant, else None."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.num_model_classes != 1 or not getattr(datamodule, "class_agnostic", False):
            return None
        rows = [torch.as_tensor(datamodule.video_scores(v)) for v in batch.video_ids]
        return torch.stack(rows).float().to(self.device)

    def _detect(self, batch: Batch) -> list[Detections]:
        return self.eval_detector.detect(batch, self.postprocess_cfg, self._video_scores(batch))

    def _update_metrics(self, stage: str, batch: Batch, detections: list[Detections]) -> None:
        index = self.video_indices[stage]
        video_idx = torch.cat(
            [
                torch.full((len(d.scores),), index[vid], dtype=torch.long, device=self.device)
                for vid, d in zip(batch.video_ids, detections, strict=True)
            ]
        )
        segments = torch.cat([d.segments for d in detections]).to(self.device)
        scores = torch.cat([d.scores for d in detections]).to(self.device)
        labels = torch.cat([d.labels for d in detections]).to(self.device)
        self.metrics[stage].update(video_idx, segments, scores, labels)
        if stage in self.recalls:
            self.recalls[stage].update(video_idx, segments, scores, labels)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._update_metrics("val", batch, self._detect(batch))

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        detections = self._detect(batch)
        self._update_metrics("test", batch, detections)
        self.detections.extend(zip(batch.video_ids, [d.to("cpu") for d in detections], strict=True))

    def predict_step(self, batch: Batch, batch_idx: int) -> list[tuple[str, Detections]]:
        detections = [d.to("cpu") for d in self._detect(batch)]
        return list(zip(batch.video_ids, detections, strict=True))

    def _log_metrics(self, stage: str) -> dict:
        result = self.metrics[stage].compute()
        self.metrics[stage].reset()
        thresholds = self.evaluation.tiou_thresholds
        for thr, value in zip(thresholds, result["mAP"], strict=True):
            self.log(f"{stage}/mAP@{thr:g}", value, sync_dist=False)
        self.log(f"{stage}/average_mAP", result["average_mAP"], prog_bar=True, sync_dist=False)
        if stage in self.recalls:
            recall = self.recalls[stage].compute()
            self.recalls[stage].reset()
            for key, values in recall.items():
                for thr, value in zip(self.evaluation.recall_tiou_thresholds, values, strict=True):
                    self.log(f"{stage}/{key}@{thr:g}", value, sync_dist=False)
            result["recall"] = recall
        self.last_results[stage] = result
        return result

    def on_validation_epoch_end(self) -> None:
        if "val" in self.metrics:
            self._log_metrics("val")

    def on_test_epoch_start(self) -> None:
        self.detections = []

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    # ----------------------------------------------------------------------------------
    # optimisation
    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Lightning's clipping, done here when there is no gradient scaler (bf16, fp32).

        Lightning refuses to clip for a fused optimizer under any mixed precision, because
        with fp16 such an optimizer unscales inside its step. bf16 has no scaler, so the
        gradients are already true and clipping them before the fused step is exact.
        """
        if not gradient_clip_val or getattr(self.trainer.precision_plugin, "scaler", None):
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.detector, self.hparams.optimizer)
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        steps_per_epoch = max(1, total_steps // max(1, self.trainer.max_epochs or 1))
        scheduler = from_target(
            self.hparams.scheduler,
            "scheduler",
            optimizer=optimizer,
            steps_per_epoch=steps_per_epoch,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
