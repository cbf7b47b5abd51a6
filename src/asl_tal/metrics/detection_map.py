"""Detection mAP as a ``torchmetrics.Metric`` (ActivityNet protocol, ``docs/data.md`` §4).

Predictions arrive as flat tensors; states are gathered across ranks by torchmetrics
(``dist_reduce_fx="cat"``). A distributed sampler repeats some videos to even out the ranks,
so every row is tagged with the id of the ``update`` call that brought it (unique across
ranks: ``rank * 2**32 + call number``), and ``compute`` keeps, per video, only the rows of the
smallest such id. One ``update`` call must therefore carry all of a video's predictions,
which holds when each call gets one batch of whole videos. Rows of identical value are not
merged: two copies of one video from different ranks need not be bit-identical.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from asl_tal.data.annotations import VideoAnnotation
from asl_tal.metrics.matching import detection_ap, ground_truth_from_annotations, mean_ap

_CALL_ID_BITS = 32


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


class FlatDetectionMetric(Metric):
    """Base of the detection metrics: flat prediction states and per-video de-duplication.

    Args:
        gt: the evaluated subset's annotations (segments in seconds).
        video_index: video id -> integer index used in ``update`` (covers every GT video).
        num_classes: ``C``.
        tiou_thresholds: tIoU thresholds.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(
        self,
        gt: dict[str, VideoAnnotation],
        video_index: dict[str, int],
        num_classes: int,
        tiou_thresholds: list[float],
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.gt = ground_truth_from_annotations(gt, video_index)
        if len(self.gt.labels) == 0:
            raise ValueError("the evaluated subset has no ground-truth segment")
        if self.gt.labels.max() >= num_classes:
            raise ValueError(f"GT label {self.gt.labels.max()} >= num_classes {num_classes}")
        self.num_classes = num_classes
        self.tiou_thresholds = [float(t) for t in tiou_thresholds]
        self._calls = 0
        for name in ("video_idx", "segments", "scores", "labels", "call_id"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        video_idx: torch.Tensor,
        segments: torch.Tensor,
        scores: torch.Tensor,
        labels: torch.Tensor,
    ) -> None:
        """Add predictions.

        Args:
            video_idx: ``(K,)`` int64 video index (``video_index``).
            segments: ``(K, 2)`` ``[start, end]`` seconds.
            scores: ``(K,)`` confidence.
            labels: ``(K,)`` int64 class id.
        """
        k = video_idx.shape[0]
        if video_idx.dim() != 1 or segments.shape != (k, 2) or scores.shape != (k,):
            raise ValueError(
                "update expects video_idx (K,), segments (K, 2), scores (K,), labels (K,); got "
                f"{tuple(video_idx.shape)}, {tuple(segments.shape)}, {tuple(scores.shape)}, "
                f"{tuple(labels.shape)}"
            )
        if labels.shape != (k,):
            raise ValueError(f"labels must be ({k},), got {tuple(labels.shape)}")
        call_id = (_rank() << _CALL_ID_BITS) + self._calls
        self._calls += 1
        self.video_idx.append(video_idx.detach().long())
        self.segments.append(segments.detach().double())
        self.scores.append(scores.detach().double())
        self.labels.append(labels.detach().long())
        self.call_id.append(torch.full_like(self.video_idx[-1], call_id))

    def predictions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """De-duplicated predictions: video ``(N,)``, segments ``(N, 2)``, scores, labels."""
        if isinstance(self.video_idx, list) and not self.video_idx:
            return (
                np.zeros(0, np.int64),
                np.zeros((0, 2)),
                np.zeros(0),
                np.zeros(0, np.int64),
            )
        video = dim_zero_cat(self.video_idx).cpu().numpy()
        call = dim_zero_cat(self.call_id).cpu().numpy()
        _, inverse = np.unique(video, return_inverse=True)
        first_call = np.full(inverse.max(initial=-1) + 1, np.iinfo(np.int64).max)
        np.minimum.at(first_call, inverse, call)
        keep = call == first_call[inverse]
        return (
            video[keep],
            dim_zero_cat(self.segments).cpu().numpy().reshape(-1, 2)[keep],
            dim_zero_cat(self.scores).cpu().numpy()[keep],
            dim_zero_cat(self.labels).cpu().numpy()[keep],
        )


class TemporalActionDetectionMAP(FlatDetectionMetric):
    """ActivityNet detection mAP.

    ``compute`` returns ``{"mAP": (T,), "average_mAP": (), "per_class_AP": (T, C)}``,
    fractions in [0, 1]; ``per_class_AP`` is NaN for classes without GT in the subset, and
    the means run over the classes with GT.
    """

    def compute(self) -> dict[str, torch.Tensor]:
        per_class = detection_ap(
            self.gt, *self.predictions(), self.num_classes, np.array(self.tiou_thresholds)
        )
        mean = mean_ap(per_class)
        return {
            "mAP": torch.from_numpy(mean),
            "average_mAP": torch.tensor(mean.mean(), dtype=torch.float64),
            "per_class_AP": torch.from_numpy(per_class),
        }
