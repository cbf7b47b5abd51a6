"""Post-processing settings (``docs/method.md`` §8); defaults are ActionFormer's THUMOS14 values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NmsMethod = Literal["soft_gaussian", "soft_linear", "hard", "none"]


@dataclass(frozen=True)
class PostprocessConfig:
    """How network outputs become detections.

    Build it from a config block with ``settings_from(PostprocessConfig, block,
    "postprocess")`` (:mod:`asl_tal.settings`), which checks the types and the ranges
    (``asl_tal.settings.CONSTRAINTS``, keys ``postprocess.*``).

    Attributes:
        score_thresh: candidates need ``sigmoid(logit) > score_thresh``.
        pre_nms_topk: (point, class) candidates kept before NMS, per level or per video.
        topk_per_level: apply ``pre_nms_topk`` to each pyramid level (ActionFormer) rather
            than to the whole video.
        duration_thresh: candidates need a length ``> duration_thresh`` (grid units).
        nms_method: Gaussian or linear Soft-NMS, hard NMS, or none (top-scoring kept).
        sigma: Gaussian Soft-NMS decay ``score · exp(-IoU² / sigma)``.
        iou_threshold: linear Soft-NMS decays, and hard NMS removes, above this IoU.
        min_score: candidates whose (decayed) score falls below this are dropped.
        max_seg_num: detections kept per video.
        class_agnostic: NMS across classes instead of per class.
        voting_thresh: with class-agnostic NMS, > 0 enables segment voting over candidates
            with IoU >= this value.
        fusion_topk: classes per video when fusing with external video-level scores.
    """

    score_thresh: float
    pre_nms_topk: int
    topk_per_level: bool
    duration_thresh: float
    nms_method: NmsMethod
    sigma: float
    iou_threshold: float
    min_score: float
    max_seg_num: int
    class_agnostic: bool
    voting_thresh: float
    fusion_topk: int
