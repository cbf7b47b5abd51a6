"""What the ASL network returns (the contract between network, losses and decoding)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class NetworkOutput:
    """Per-level outputs of :class:`asl_tal.models.network.ASLNetwork`.

    Lists have one entry per pyramid level ``l`` (length ``T_l = T / 2**l``).

    Attributes:
        cls_logits: ``(B, T_l, C)`` classification logits.
        offsets: ``(B, T_l, 2)`` non-negative distances to start / end, in units of the
            level's stride.
        feats: ``(B, d, T_l)`` pyramid features (after the pre-head LayerNorm).
        masks: ``(B, T_l)`` bool validity masks.
    """

    cls_logits: list[torch.Tensor]
    offsets: list[torch.Tensor]
    feats: list[torch.Tensor]
    masks: list[torch.Tensor]

    def flat_logits(self) -> torch.Tensor:
        """``(B, P, C)``: logits of all levels, row-aligned with the point table."""
        return torch.cat(self.cls_logits, dim=1)

    def flat_offsets(self) -> torch.Tensor:
        """``(B, P, 2)``."""
        return torch.cat(self.offsets, dim=1)

    def flat_mask(self) -> torch.Tensor:
        """``(B, P)`` bool."""
        return torch.cat(self.masks, dim=1)
