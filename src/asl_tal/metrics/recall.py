"""Recall@k× (Ego4D Moment Queries, ``docs/data.md`` §4).

For each video and class, that class's predictions are ranked by score (ties as in the mAP
protocol) and the top ``k · n_gt`` kept, ``n_gt`` being the video's GT count of the class.
A GT is recalled at threshold ``θ`` when one of those overlaps it with tIoU ``>= θ``
(``> θ`` with ``strict_greater``, the Ego4D authors' evaluator). Recall is averaged over all
GT instances, or per class and then over classes with GT (ActionFormer's reading).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from asl_tal.data.annotations import VideoAnnotation
from asl_tal.metrics.detection_map import FlatDetectionMetric
from asl_tal.metrics.matching import (
    GroundTruth,
    group_pairs,
    rank_in_runs,
    ranking_order,
    segment_tiou,
)

Average = Literal["instance", "class"]


def topk_recall(
    gt: GroundTruth,
    pred_video: np.ndarray,
    pred_segments: np.ndarray,
    pred_scores: np.ndarray,
    pred_labels: np.ndarray,
    num_classes: int,
    thresholds: np.ndarray,
    ks: tuple[int, ...] = (1, 5),
    strict_greater: bool = False,
    average: Average = "instance",
) -> np.ndarray:
    """Recall@k×, ``(len(ks), T)``.

    Args:
        gt: the subset's GT.
        pred_video: ``(N,)`` int64 video index.
        pred_segments: ``(N, 2)`` seconds.
        pred_scores: ``(N,)``.
        pred_labels: ``(N,)`` int64.
        num_classes: ``C``.
        thresholds: ``(T,)`` tIoU thresholds.
        ks: the multipliers ``k``.
        strict_greater: count ``tIoU > θ`` instead of ``>=``.
        average: ``"instance"`` (over all GT) or ``"class"`` (per class, then over classes).
    """
    if average not in ("instance", "class"):
        raise ValueError(f"average must be 'instance' or 'class', got {average!r}")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    valid = (pred_video >= 0) & (pred_labels >= 0) & (pred_labels < num_classes)
    keys = np.where(valid, pred_video * num_classes + pred_labels, -1)
    order = ranking_order(keys, pred_scores)
    keys, segments = keys[order], pred_segments[order]
    rank = rank_in_runs(keys)

    gt_keys = gt.video_idx * num_classes + gt.labels
    sorted_gt_keys = np.sort(gt_keys)
    n_gt = np.searchsorted(sorted_gt_keys, keys, "right") - np.searchsorted(
        sorted_gt_keys, keys, "left"
    )
    pair_pred, pair_gt = group_pairs(keys, gt_keys)
    tiou = segment_tiou(segments[pair_pred], gt.segments[pair_gt])

    out = np.zeros((len(ks), len(thresholds)))
    for i, k in enumerate(ks):
        best = np.full(len(gt_keys), -1.0)
        in_top = rank[pair_pred] < k * n_gt[pair_pred]
        np.maximum.at(best, pair_gt[in_top], tiou[in_top])
        if strict_greater:
            recalled = best[None, :] > thresholds[:, None]
        else:
            recalled = best[None, :] >= thresholds[:, None]
        if average == "instance":
            out[i] = recalled.mean(axis=1)
        else:
            per_class = np.stack(
                [np.bincount(gt.labels, r, minlength=num_classes) for r in recalled]
            )
            counts = np.bincount(gt.labels, minlength=num_classes)
            out[i] = (per_class[:, counts > 0] / counts[counts > 0]).mean(axis=1)
    return out


class RecallAtK(FlatDetectionMetric):
    """Recall@k× as a ``torchmetrics.Metric``; same inputs and de-duplication as the mAP metric.

    ``compute`` returns ``{"recall@{k}x": (T,)}`` for each ``k``, fractions in [0, 1].
    """

    def __init__(
        self,
        gt: dict[str, VideoAnnotation],
        video_index: dict[str, int],
        num_classes: int,
        tiou_thresholds: list[float],
        ks: tuple[int, ...] = (1, 5),
        strict_greater: bool = False,
        average: Average = "instance",
        **kwargs,
    ) -> None:
        super().__init__(gt, video_index, num_classes, tiou_thresholds, **kwargs)
        if average not in ("instance", "class"):
            raise ValueError(f"average must be 'instance' or 'class', got {average!r}")
        self.ks = tuple(int(k) for k in ks)
        self.strict_greater = strict_greater
        self.average = average

    def compute(self) -> dict[str, torch.Tensor]:
        recall = topk_recall(
            self.gt,
            *self.predictions(),
            self.num_classes,
            np.array(self.tiou_thresholds),
            self.ks,
            self.strict_greater,
            self.average,
        )
        return {f"recall@{k}x": torch.from_numpy(r) for k, r in zip(self.ks, recall, strict=True)}
