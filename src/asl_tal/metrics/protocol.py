"""The evaluation protocol: the ``evaluation`` block (``conf/evaluation/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass

from asl_tal.metrics.recall import Average


@dataclass(frozen=True)
class EvaluationSettings:
    """What a validation or test run scores (``docs/data.md`` §4).

    Attributes:
        tiou_thresholds: mAP at each of these tIoU thresholds, and their average.
        recall_topk: the ``k`` of Recall@k× (Ego4D Moment Queries); empty = not computed.
        recall_tiou_thresholds: Recall@k× at each of these tIoU thresholds.
        recall_strict_greater: a GT is recalled at ``tIoU > θ`` instead of ``>= θ``.
        recall_average: over all GT instances, or per class then over classes.
    """

    tiou_thresholds: list[float]
    recall_topk: list[int]
    recall_tiou_thresholds: list[float]
    recall_strict_greater: bool
    recall_average: Average
