"""Distance-IoU loss for 1-D segments given as offsets about a point (``docs/method.md`` §5)."""

from __future__ import annotations

import torch
from torch import nn


def offset_iou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """tIoU of segments ``[t - l, t + r]`` about the same point.

    Args:
        pred: ``(..., 2)`` non-negative ``(l, r)`` offsets.
        target: ``(..., 2)`` non-negative ``(l, r)`` offsets.

    Returns:
        ``(...)`` IoU in [0, 1].
    """
    intersection = torch.minimum(pred[..., 0], target[..., 0]) + torch.minimum(
        pred[..., 1], target[..., 1]
    )
    union = pred.sum(-1) + target.sum(-1) - intersection
    return intersection / union.clamp(min=eps)


class DIoULoss(nn.Module):
    """``1 - IoU + rho^2 / len_c^2`` on ``(l, r)`` offsets about the same point.

    ``rho`` is the distance between the two centres, ``len_c`` the length of the smallest
    segment enclosing both. Returns the elementwise loss ``(...)``.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``pred``, ``target``: ``(..., 2)`` offsets; returns ``(...)``."""
        iou = offset_iou(pred, target, self.eps)
        enclosing = torch.maximum(pred[..., 0], target[..., 0]) + torch.maximum(
            pred[..., 1], target[..., 1]
        )
        # centres relative to the point: (r - l) / 2
        rho = 0.5 * ((pred[..., 1] - pred[..., 0]) - (target[..., 1] - target[..., 0]))
        return 1 - iou + rho**2 / enclosing.clamp(min=self.eps) ** 2
