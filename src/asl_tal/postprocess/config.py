"""Post-processing settings (``docs/method.md`` §8); defaults are ActionFormer's THUMOS14 values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from asl_tal.settings import FRACTION, NON_NEGATIVE, POSITIVE

NmsMethod = Literal["soft_gaussian", "soft_linear", "hard", "none"]


@dataclass(frozen=True)
class PostprocessConfig:
    """How network outputs become detections.

    Build it from a config block with ``settings_from(PostprocessConfig, block,
    "postprocess")`` (:mod:`asl_tal.settings`), which checks the types and the ranges
    declared below.

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

    score_thresh: Annotated[float, FRACTION]
    pre_nms_topk: Annotated[int, POSITIVE]
    topk_per_level: bool
    duration_thresh: Annotated[float, NON_NEGATIVE]
    nms_method: NmsMethod
    sigma: Annotated[float, POSITIVE]
    iou_threshold: Annotated[float, FRACTION]
    min_score: Annotated[float, FRACTION]
    max_seg_num: Annotated[int, POSITIVE]
    class_agnostic: bool
    voting_thresh: Annotated[float, FRACTION]
    fusion_topk: Annotated[int, POSITIVE]
