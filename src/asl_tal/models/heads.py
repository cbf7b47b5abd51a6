"""Classification and localization heads, shared over pyramid levels (``docs/method.md`` §1).

Both heads run over all levels at once, packed by :func:`pack_levels` (once for both).
"""

from __future__ import annotations

import itertools
import typing
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from asl_tal.models.blocks import ConvNormReLU, MaskedConv1d

EMPTY_CLASS_PRIOR = 1e-6


def class_prior_bias(
    num_classes: int, prior_prob: float, class_counts: Sequence[int] | None = None
) -> torch.Tensor:
    """``(C,)`` logit biases ``−log((1 − π_c) / π_c)``.

    ``π_c = prior_prob``, or ``1e-6`` for a class with no training instance.
    """
    if not 0.0 < prior_prob < 1.0:
        raise ValueError(f"model.network.prior_prob must be in (0, 1), got {prior_prob}")
    prior = torch.full((num_classes,), float(prior_prob), dtype=torch.float64)
    if class_counts is not None:
        counts = torch.as_tensor(list(class_counts))
        if counts.shape != (num_classes,):
            raise ValueError(
                f"class_counts has {counts.numel()} entries for num_classes={num_classes}"
            )
        prior[counts == 0] = EMPTY_CLASS_PRIOR
    return (-torch.log((1.0 - prior) / prior)).to(torch.float32)


class PackedLevels(NamedTuple):
    """Pyramid levels side by side in time, each followed by one masked zero step.

    Attributes:
        feats: ``(B, d, Σ (T_l + 1))``, zero on padded steps and on the separators.
        mask: ``(B, Σ (T_l + 1))`` bool.
        lengths: ``T_l`` of each level.
    """

    feats: torch.Tensor
    mask: torch.Tensor
    lengths: list[int]


def pack_levels(feats: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> PackedLevels:
    """Pack per-level ``(B, d, T_l)`` features and ``(B, T_l)`` masks into one sequence.

    A masked k3 convolution at a level's last step sees the separator's zero exactly as it
    would see its "same" padding, so a head runs once over all levels (one long
    convolution per layer instead of one short one per level).
    """
    return PackedLevels(
        torch.cat([F.pad(x, (0, 1)) for x in feats], dim=2),
        torch.cat([F.pad(m, (0, 1)) for m in masks], dim=1),
        [m.shape[1] for m in masks],
    )


def unpack_levels(x: torch.Tensor, lengths: Sequence[int]) -> list[torch.Tensor]:
    """A head's output ``(B, C, Σ (T_l + 1))`` -> per level ``(B, T_l, C)``, contiguous."""
    parts = x.split([length + 1 for length in lengths], dim=2)
    return [
        part[:, :, :length].transpose(1, 2).contiguous()
        for part, length in zip(parts, lengths, strict=True)
    ]


class HeadTrunk(nn.Module):
    """``head_layers − 1`` × [masked Conv k3, LN, ReLU] and a last masked Conv k3 to ``out``."""

    def __init__(self, d_in: int, width: int, out_channels: int, head_layers: int) -> None:
        super().__init__()
        if head_layers < 1:
            raise ValueError(f"model.head_layers must be >= 1, got {head_layers}")
        dims = [d_in] + [width] * (head_layers - 1)
        self.layers = nn.ModuleList(ConvNormReLU(a, b) for a, b in itertools.pairwise(dims))
        self.out = MaskedConv1d(dims[-1], out_channels, 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (B, d, T)``, ``mask (B, T)`` -> ``(B, out, T)``, zero on padded steps."""
        for layer in self.layers:
            x = layer(x, mask)
        return self.out(x, mask)[0]


class ClassificationHead(nn.Module):
    """Per-point class logits; the last conv's bias starts at the class prior.

    Args:
        d_in: pyramid width ``d``.
        width: hidden width ``h``.
        num_classes: ``C``.
        head_layers: convolutions including the last one.
        prior_prob: ``π`` of the bias init.
        class_counts: training instances per class (classes with 0 get ``π = 1e-6``).
    """

    def __init__(
        self,
        d_in: int,
        width: int,
        num_classes: int,
        head_layers: int = 3,
        prior_prob: float = 0.01,
        class_counts: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.trunk = HeadTrunk(d_in, width, num_classes, head_layers)
        self.register_buffer(
            "prior_bias",
            class_prior_bias(num_classes, prior_prob, class_counts),
            persistent=False,
        )
        self.reset_prior_bias()

    def reset_prior_bias(self) -> None:
        """Set the last conv's bias to ``−log((1 − π_c) / π_c)``."""
        with torch.no_grad():
            self.trunk.out.bias.copy_(self.prior_bias)

    def forward(self, levels: PackedLevels) -> list[torch.Tensor]:
        """Packed pyramid -> per level ``(B, T_l, C)`` logits (0 on padding)."""
        return unpack_levels(self.trunk(levels.feats, levels.mask), levels.lengths)


OffsetActivation = Literal["relu", "softplus"]
OFFSET_ACTIVATIONS = typing.get_args(OffsetActivation)


class LocalizationHead(nn.Module):
    """Per-point distances to start and end: ``act(scale_l · x)``, one scale per level.

    ``act`` is ReLU in the released code. A ReLU output that turns negative on every point
    gets no gradient again: we saw whole output channels (every start, or every end
    distance, of every level) stuck at 0 in some training runs on real features, so those
    models could place one boundary only. Softplus keeps a gradient everywhere.

    Args:
        d_in: pyramid width ``d``.
        width: hidden width ``h``.
        num_levels: pyramid levels (one learnable scale each, init 1).
        head_layers: convolutions including the last one.
        activation: ``"relu"`` or ``"softplus"``.
    """

    def __init__(
        self,
        d_in: int,
        width: int,
        num_levels: int,
        head_layers: int = 3,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if activation not in OFFSET_ACTIVATIONS:
            raise ValueError(
                f"offset activation must be one of {OFFSET_ACTIVATIONS}, got {activation!r}"
            )
        self.activation = F.relu if activation == "relu" else F.softplus
        self.trunk = HeadTrunk(d_in, width, 2, head_layers)
        self.scales = nn.Parameter(torch.ones(num_levels))

    def forward(self, levels: PackedLevels) -> list[torch.Tensor]:
        """Packed pyramid -> per level ``(B, T_l, 2)`` offsets ``>= 0``."""
        outs = unpack_levels(self.trunk(levels.feats, levels.mask), levels.lengths)
        return [self.activation(self.scales[level] * x) for level, x in enumerate(outs)]
