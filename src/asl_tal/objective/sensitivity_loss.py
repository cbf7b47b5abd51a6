"""Sensitivity regression loss ``L_s`` (``docs/method.md`` §4, Eq. 7)."""

from __future__ import annotations

import torch
from torch import nn


class SensitivityRegressionLoss(nn.Module):
    """``L_s = sum_pos [(q_cls - Q_cls)^2 + (q_loc - Q_loc)^2] / N``.

    The quality targets ``Q`` are detached here, so no gradient reaches the network
    through them.
    """

    def forward(
        self,
        q_cls: torch.Tensor,
        q_loc: torch.Tensor,
        target_cls: torch.Tensor,
        target_loc: torch.Tensor,
        normalizer: torch.Tensor | float,
    ) -> torch.Tensor:
        """All of ``q_cls``, ``q_loc``, ``target_cls``, ``target_loc``: ``(K,)`` on positives."""
        squared = (q_cls - target_cls.detach()) ** 2 + (q_loc - target_loc.detach()) ** 2
        return squared.sum() / normalizer
