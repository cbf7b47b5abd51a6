"""The evaluation protocol: the ``evaluation`` block (``conf/evaluation/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from asl_tal.metrics.recall import Average
from asl_tal.settings import NON_EMPTY, POSITIVE, UP_TO_ONE


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

    tiou_thresholds: Annotated[list[float], UP_TO_ONE, NON_EMPTY]
    recall_topk: Annotated[list[int], POSITIVE]
    recall_tiou_thresholds: Annotated[list[float], UP_TO_ONE]
    recall_strict_greater: bool
    recall_average: Average
