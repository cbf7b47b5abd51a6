"""Exponential moving average of a model's weights (docs/method.md §7).

ActionFormer's fixed decay 0.999 leaves the average close to the initial weights for the
first few hundred steps, so short runs would evaluate stale weights. With ``warmup`` the
decay at update ``n`` is ``min(decay, (1 + n) / (10 + n))``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated

import torch
from torch import nn

from asl_tal.settings import FRACTION


@dataclass(frozen=True)
class EMASettings:
    """The ``model.ema`` block.

    Attributes:
        enabled: keep an averaged copy (:class:`ModelEMA`) and evaluate with it.
        decay: the decay once warmed up.
        warmup: ramp the decay up (module docstring); False = fixed ``decay``.
    """

    enabled: bool
    decay: Annotated[float, FRACTION]
    warmup: bool


class ModelEMA(nn.Module):
    """Holds an averaged copy of ``model``; its state (weights, buffers, step) is module state,
    so it is saved in checkpoints and restored on resume.

    Args:
        model: the model being trained.
        decay: the decay once warmed up.
        warmup: use the warm-up schedule above (False = fixed ``decay``).
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> torch.Tensor:
        """The decay the next update uses (a 0-d tensor, no host sync)."""
        if not self.warmup:
            return torch.full((), self.decay, device=self.num_updates.device)
        n = self.num_updates.to(torch.float32)
        return torch.clamp((1.0 + n) / (10.0 + n), max=self.decay)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``ema ← d · ema + (1 − d) · model`` for floating parameters; buffers are copied."""
        decay = self.current_decay()
        ema_params = [p for p in self.module.parameters() if p.dtype.is_floating_point]
        params = [p.detach() for p in model.parameters() if p.dtype.is_floating_point]
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        for ema_buf, buf in zip(self.module.buffers(), model.buffers(), strict=True):
            ema_buf.copy_(buf)
        self.num_updates += 1

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def train(self, mode: bool = True) -> ModelEMA:
        """The averaged copy always stays in eval mode (no dropout / drop-path)."""
        super().train(mode)
        self.module.eval()
        return self
