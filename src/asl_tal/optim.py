"""The AdamW optimizer and its parameter groups: weight decay on Conv1d / Linear weights and
opted-in parameters.

A module opts a parameter into weight decay by listing its attribute name in a class
attribute ``weight_decay_params: tuple[str, ...]`` (the sensitivity module's Gaussian
``μ``, ``σ``). Everything else (biases, norms, per-level scales, drop-path scales) is not
decayed.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split ``model``'s trainable parameters into a decayed and a non-decayed group.

    Returns:
        ``[{"params": [...], "weight_decay": weight_decay},
        {"params": [...], "weight_decay": 0.0}]``; every trainable parameter is in exactly
        one group (shared parameters once).
    """
    decay_ids: set[int] = set()
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
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if id(p) in decay_ids]
    no_decay = [p for p in params if id(p) not in decay_ids]
    assert len(decay) + len(no_decay) == len({id(p) for p in params}), "parameter in two groups"
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: Mapping) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups` from the Hydra group ``optimizer``.

    ``cfg`` keys: ``lr``, ``weight_decay``, ``betas`` (optional) and ``fused`` (optional,
    default False): the single-kernel update, about 4× faster than the multi-tensor one on
    CPU (same update rule; results differ only by floating-point rounding).
    """
    return torch.optim.AdamW(
        parameter_groups(model, cfg["weight_decay"]),
        lr=cfg["lr"],
        betas=tuple(cfg.get("betas", (0.9, 0.999))),
        fused=bool(cfg.get("fused", False)),
    )
