"""Sigmoid focal loss on multi-hot targets (``docs/method.md`` §5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SigmoidFocalLoss(nn.Module):
    """``FL = -alpha_t (1 - p_t)^gamma log p_t`` per logit, with sigmoid probabilities.

    Args:
        alpha: weight of the positive class (``1 - alpha`` for negatives); < 0 disables it.
        gamma: focusing exponent.
        label_smoothing: ``eps``; targets become ``y (1 - eps) + eps / (C + 1)``.
        reduction: ``"none"`` (elementwise) or ``"sum"``.
    """

    def __init__(
        self,
        alpha: float = 0.25,
        gamma: float = 2.0,
        label_smoothing: float = 0.0,
        reduction: str = "none",
    ) -> None:
        super().__init__()
        if reduction not in ("none", "sum"):
            raise ValueError(
                f"SigmoidFocalLoss: reduction must be 'none' or 'sum', not {reduction!r}"
            )
        self.alpha = alpha
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Focal loss of ``logits`` ``(..., C)`` against ``targets`` ``(..., C)`` in [0, 1]."""
        if self.label_smoothing > 0:
            num_classes = logits.shape[-1]
            targets = targets * (1 - self.label_smoothing) + self.label_smoothing / (
                num_classes + 1
            )
        prob = torch.sigmoid(logits)
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p_t = prob * targets + (1 - prob) * (1 - targets)
        loss = bce * (1 - p_t) ** self.gamma
        if self.alpha >= 0:
            loss = loss * (self.alpha * targets + (1 - self.alpha) * (1 - targets))
        return loss.sum() if self.reduction == "sum" else loss
