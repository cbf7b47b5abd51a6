"""Building blocks of the ASL network: masked convolution, channel LayerNorm, drop-path, FFN.

Two layouts are used: convolutions work channels-first ``(B, C, T)``, the transformer parts
channels-last ``(B, T, C)``. Every tensor travels with a ``(B, T)`` bool mask (True on real
steps) and is kept zero on padded steps, so a padded step never reaches a real one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def downsample_mask(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """``(B, T) -> (B, ceil(T / stride))``: every ``stride``-th value (nearest neighbour).

    For a prefix mask of ``n`` real steps this keeps ``ceil(n / stride)`` real steps.
    """
    return mask[:, ::stride] if stride > 1 else mask


def k3_taps(x: torch.Tensor, stride: int, steps: int, fill: float = 0.0) -> list[torch.Tensor]:
    """The three inputs of a kernel-3 window with "same" padding ``fill``, channels-last.

    Tap ``i`` of output step ``t`` is input step ``stride·t + i − 1`` (``fill`` outside the
    sequence), as a strided view: a depthwise convolution or a max-pool over the window is
    then a few element-wise operations that keep ``(B, T, C)`` contiguous, where the
    library's channels-first kernels would copy a transposed tensor in and out.

    ``x (B, T, C)`` -> three ``(B, steps, C)`` views; ``steps = ceil(T / stride)``.
    """
    padded = F.pad(x, (0, 0, 1, 1), value=fill)  # (B, T + 2, C)
    end = stride * (steps - 1) + 1
    return [padded[:, i : i + end : stride] for i in range(3)]


class MaskedConv1d(nn.Conv1d):
    """``nn.Conv1d`` with "same" padding whose output is zeroed on padded steps.

    The input must be zero on padded steps (the convention of the whole network); then a
    real output step only sees real inputs and zero padding, whatever the batch's length.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"MaskedConv1d needs an odd kernel size, got {kernel_size}")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=bias,
        )

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, C_in, T)``, ``mask (B, T)`` -> ``(B, C_out, T / stride)`` and its mask."""
        out_mask = downsample_mask(mask, self.stride[0])
        out = super().forward(x)  # bf16 under autocast: keep it so, the next layer reads bf16
        return out * out_mask[:, None, :].to(out.dtype), out_mask


class LayerNormChannels(nn.LayerNorm):
    """LayerNorm over the channel axis of a channels-first ``(B, C, T)`` tensor.

    Computed along axis 1 (in float32 at least, as autocast runs a LayerNorm) rather than by
    ``nn.LayerNorm`` on the transposed view: the output stays channels-first and contiguous,
    so neither the norm nor the next convolution copies a transposed tensor.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``(B, C, T) -> (B, C, T)``, at least float32."""
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        centred = x - x.mean(dim=1, keepdim=True)
        out = centred * torch.rsqrt(centred.square().mean(dim=1, keepdim=True) + self.eps)
        return torch.addcmul(self.bias[:, None], out, self.weight[:, None])


class ConvNormReLU(nn.Module):
    """Conv1d k3 s1 ("same" padding) -> LayerNorm over channels -> ReLU, zeroed on padded steps.

    The input must be zero on padded steps. The convolution's output is not masked: the
    LayerNorm works step by step, so a padded step's value reaches no real step before the
    closing mask zeroes it.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, 3, padding=1)
        self.norm = LayerNormChannels(out_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (B, C_in, T)``, ``mask (B, T)`` -> ``(B, C_out, T)``."""
        out = self.conv(x)
        return F.relu(self.norm(out)) * mask[:, None, :].to(out.dtype)


class AffineDropPath(nn.Module):
    """Learnable per-channel scale (init ``init_scale``) followed by drop-path.

    In training each sample's branch is dropped with probability ``drop_prob`` and the kept
    ones are rescaled by ``1 / (1 - drop_prob)``. Works on channels-last ``(B, T, C)``.
    """

    def __init__(self, channels: int, drop_prob: float = 0.0, init_scale: float = 1e-4) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob
        self.scale = nn.Parameter(torch.full((channels,), init_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C) -> (B, T, C)``."""
        if not self.training or self.drop_prob == 0.0:
            return x * self.scale
        keep = 1.0 - self.drop_prob
        sample_keep = x.new_empty(x.shape[0], 1, 1).bernoulli_(keep)
        return x * (self.scale * (sample_keep / keep))  # one pass over x: (B, 1, C) factor


class FeedForward(nn.Sequential):
    """Linear ``d -> ratio·d``, GELU, Linear back to ``d`` (dropout after each Linear)."""

    def __init__(self, dim: int, ratio: int = 4, dropout: float = 0.0) -> None:
        super().__init__(
            nn.Linear(dim, ratio * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ratio * dim, dim),
            nn.Dropout(dropout),
        )
