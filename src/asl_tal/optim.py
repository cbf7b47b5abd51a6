"""Optimizer parameter groups and learning-rate schedules.

Weight decay applies to Conv1d / Linear weights and opted-in parameters: a module opts a
parameter in by listing its attribute name in a class attribute
``weight_decay_params: tuple[str, ...]`` (the sensitivity module's Gaussian ``μ``, ``σ``).
Everything else (biases, norms, per-level scales, drop-path scales) is not decayed.
A module with an attribute ``lr_scale`` other than 1 (the sensitivity Gaussians, through
``model.sensitivity.gaussian_lr_scale``) has its own parameters trained at the optimizer's
learning rate times that factor, in groups of their own.

The ``optimizer`` config group is a partial torch optimizer (``_partial_: true``) called with
:func:`parameter_groups`; the ``scheduler`` group a partial of :func:`warmup_cosine` or
:func:`warmup_step`, called with the optimizer and the training steps per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from hydra.utils import instantiate
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def parameter_groups(model: nn.Module) -> list[dict]:
    """Split ``model``'s trainable parameters by weight decay and learning-rate scale.

    Returns:
        ``[{"params": [...]}, {"params": [...], "weight_decay": 0.0}]``, then one group per
        decay setting and ``lr_scale`` other than 1 that some module asks for (the same
        keys plus ``"lr_scale"``): the first group takes the optimizer's ``weight_decay``;
        every trainable parameter is in exactly one group (shared parameters once).
    """
    decay_ids: set[int] = set()
    scale_of: dict[int, float] = {}
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            decay_ids.add(id(module.weight))
        for name in getattr(type(module), "weight_decay_params", ()):
            param = getattr(module, name, None)
            if not isinstance(param, nn.Parameter):
                raise TypeError(
                    f"{type(module).__name__}.weight_decay_params lists {name!r}, "
                    f"which is not a parameter of the module"
                )
            decay_ids.add(id(param))
        scale = float(getattr(module, "lr_scale", 1.0))
        if scale != 1.0:
            scale_of.update({id(p): scale for p in module.parameters(recurse=False)})
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {(True, 1.0): [], (False, 1.0): []}
    for param in model.parameters():
        if not param.requires_grad:
            continue
        key = (id(param) in decay_ids, scale_of.get(id(param), 1.0))
        groups.setdefault(key, []).append(param)
    return [
        {
            "params": params,
            **({} if decayed else {"weight_decay": 0.0}),
            **({} if scale == 1.0 else {"lr_scale": scale}),
        }
        for (decayed, scale), params in groups.items()
    ]


def build_optimizer(model: nn.Module, cfg: Mapping) -> torch.optim.Optimizer:
    """The ``optimizer`` config (a partial torch optimizer) over :func:`parameter_groups`,
    a scaled group's ``lr`` set to ``cfg.lr`` times its ``lr_scale``."""
    groups = parameter_groups(model)
    for group in groups:
        if "lr_scale" in group:
            group["lr"] = cfg["lr"] * group["lr_scale"]
    return instantiate(dict(cfg))(groups)


def cosine_multiplier(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up from 0 to 1, then cosine decay to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    warmup_epochs: int,
    epochs: int,
    eta_min: float,
) -> LambdaLR:
    """Linear warm-up over ``warmup_epochs``, then cosine decay over ``epochs`` to ``eta_min``
    (an absolute learning rate), stepped per iteration."""
    warmup = max(1, warmup_epochs * steps_per_epoch)
    total = (warmup_epochs + epochs) * steps_per_epoch
    min_ratio = eta_min / optimizer.defaults["lr"]
    return LambdaLR(optimizer, lambda step: cosine_multiplier(step, warmup, total, min_ratio))


def warmup_step(
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    warmup_epochs: int,
    epochs: int,
    milestones: list[float],
    gamma: float,
) -> LambdaLR:
    """Linear warm-up over ``warmup_epochs``, then the rate times ``gamma`` at each milestone
    (a fraction of the ``epochs`` after warm-up), stepped per iteration."""
    warmup = max(1, warmup_epochs * steps_per_epoch)
    steps = [warmup + round(m * epochs * steps_per_epoch) for m in sorted(milestones)]

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return gamma ** sum(step >= s for s in steps)

    return LambdaLR(optimizer, multiplier)
