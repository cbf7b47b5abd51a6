"""Masked temporal self-attention (global or local window, stride 1 or 2) and channel attention.

Inputs are channels-last ``(B, T, C)`` and zero on padded steps; masks are ``(B, T)`` bool.
"""

from __future__ import annotations

import math
import typing
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from asl_tal.models.blocks import downsample_mask, k3_taps

LOCAL_BLOCK = 32  # queries per block of the local-window attention


def _guard_empty(key_mask: torch.Tensor) -> torch.Tensor:
    """Let a query whose keys are all padding attend to all of them (avoids NaN rows).

    ``key_mask (..., S)`` bool. Such rows only belong to padded queries, whose output is
    zeroed afterwards.
    """
    return key_mask | ~key_mask.any(dim=-1, keepdim=True)


class MaskedSelfAttention(nn.Module):
    """Multi-head self-attention with convolutional q, k, v (``docs/method.md`` §1).

    q, k and v each pass a depthwise Conv1d k3 (stride ``stride``) and a LayerNorm, then a
    1×1 projection; attention runs on the strided grid, padded keys are masked out.
    ``window`` (odd) restricts each query to the ``window`` keys centred on it; None means
    global attention.

    Args:
        dim: channels ``d``.
        n_heads: heads (``d`` must be divisible by it).
        stride: 1, or 2 for a down-sampling block.
        window: local attention window size, or None.
        dropout: dropout on the attention weights and after the output projection.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        stride: int = 1,
        window: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"embedding width {dim} is not divisible by n_heads={n_heads}")
        if window is not None and (window < 1 or window % 2 != 1):
            raise ValueError(f"attn_window must be a positive odd number, got {window}")
        self.n_heads = n_heads
        self.stride = stride
        self.window = window
        self.dropout = dropout
        # The three depthwise kernels as one grouped conv's weight ``(3d, 1, 3)``: output
        # channel 3c + j is branch j (q, k, v) of input channel c. :meth:`_depthwise`
        # applies them to the channels-last input.
        self.qkv_conv = nn.Conv1d(dim, 3 * dim, 3, stride=stride, padding=1, groups=dim, bias=False)
        self.q_norm = nn.LayerNorm(dim)
        self.k_norm = nn.LayerNorm(dim)
        self.v_norm = nn.LayerNorm(dim)
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.out_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, T, C)`` zero on padding, ``mask (B, T)`` -> ``(B, T', C)``, ``(B, T')``.

        ``T' = T / stride``; the output is zero on padded steps.
        """
        b, _, c = x.shape
        out_mask = downsample_mask(mask, self.stride)
        heads = (self.n_heads, c // self.n_heads)
        q, k, v = (
            proj(norm(branch)).unflatten(-1, heads).transpose(1, 2)
            for branch, norm, proj in zip(
                self._depthwise(x, out_mask.shape[1]),
                (self.q_norm, self.k_norm, self.v_norm),
                (self.q_proj, self.k_proj, self.v_proj),
                strict=True,
            )
        )  # each (B, H, T', dh)
        if self.window is None:
            out = self._global(q, k, v, out_mask)
        else:
            out = self._local(q, k, v, out_mask)
        out = self.out_drop(self.out_proj(out.transpose(1, 2).reshape(b, -1, c)))
        return out * out_mask[..., None].to(out.dtype), out_mask

    def _depthwise(self, x: torch.Tensor, steps: int) -> list[torch.Tensor]:
        """The q, k and v depthwise convs (k3, "same" padding, ``stride``) on channels-last ``x``.

        Three products of :func:`k3_taps` per branch instead of ``qkv_conv`` on the
        transposed input: the same sums without a transposed copy in or out.

        ``x (B, T, C)`` -> three ``(B, steps, C)``, ``steps = ceil(T / stride)``.
        """
        taps = k3_taps(x, self.stride, steps)
        weight = self.qkv_conv.weight.view(-1, 3, 3)  # (C, branch, tap)
        branches = []
        for j in range(3):
            out = taps[0] * weight[:, j, 0]
            for i in (1, 2):
                out = torch.addcmul(out, taps[i], weight[:, j, i])
            branches.append(out)
        return branches

    def _global(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """``(B, H, T, dh)`` each, ``mask (B, T)`` -> ``(B, H, T, dh)``."""
        key_mask = _guard_empty(mask)[:, None, None, :]
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask, dropout_p=self.dropout if self.training else 0.0
        )

    def _local(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Each query attends to keys ``t - w//2 .. t + w//2``; memory linear in ``T``.

        Blocked (:meth:`_local_blocked`) when run, gathered (:meth:`_local_gathered`) while
        ``torch.export`` traces: the block count ``ceil(T / LOCAL_BLOCK)`` is a size that
        export would fix to its value at the example length, the gathered form has none.

        ``(B, H, T, dh)`` each, ``mask (B, T)`` -> ``(B, H, T, dh)``.
        """
        if torch.compiler.is_exporting():
            return self._local_gathered(q, k, v, mask)
        return self._local_blocked(q, k, v, mask)

    def _local_gathered(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`_local` as ``w`` shifted products: score ``i`` of query ``t`` is
        ``q_t · k_{t+i-w//2}``; shapes are ``T`` and ``w`` only, with no block count and no
        comparison of ``T`` with ``w``.

        ``(B, H, T, dh)`` each, ``mask (B, T)`` -> ``(B, H, T, dh)``.
        """
        r = self.window // 2
        steps = q.shape[2]
        k_padded, v_padded = (F.pad(x, (0, 0, r, r)) for x in (k, v))  # (B, H, T + 2r, dh)
        key_padded = F.pad(mask, (r, r), value=False)
        scores = torch.stack(
            [(q * k_padded[:, :, i : i + steps]).sum(-1) for i in range(self.window)], dim=-1
        ) / math.sqrt(q.shape[-1])  # (B, H, T, w)
        key_real = torch.stack(
            [key_padded[:, i : i + steps] for i in range(self.window)], dim=-1
        )  # (B, T, w)
        scores = scores.masked_fill(~_guard_empty(key_real)[:, None], float("-inf"))
        weights = F.dropout(scores.softmax(dim=-1), self.dropout, self.training)
        return sum(
            weights[..., i, None] * v_padded[:, :, i : i + steps] for i in range(self.window)
        )

    def _local_blocked(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`_local` in blocks of queries.

        Queries run in blocks of ``LOCAL_BLOCK``; a block's keys are its own steps and
        ``w//2`` more on each side, masked to each query's band, so every product is a dense
        ``(LOCAL_BLOCK, LOCAL_BLOCK + 2·(w//2))`` tile (several times faster on CPU than
        gathering ``w`` keys per query).

        ``(B, H, T, dh)`` each, ``mask (B, T)`` -> ``(B, H, T, dh)``.
        """
        r = self.window // 2
        steps = q.shape[2]
        blocks = -(-steps // LOCAL_BLOCK)
        pad = blocks * LOCAL_BLOCK - steps
        span = LOCAL_BLOCK + 2 * r
        q_blocks = F.pad(q, (0, 0, 0, pad)).unflatten(2, (blocks, LOCAL_BLOCK))  # (B, H, n, c, dh)
        k_blocks, v_blocks = (
            F.pad(x, (0, 0, r, r + pad)).unfold(2, span, LOCAL_BLOCK).transpose(-1, -2)
            for x in (k, v)
        )  # each (B, H, n, span, dh)
        key_real = F.pad(mask, (r, r + pad), value=False).unfold(1, span, LOCAL_BLOCK)
        query = torch.arange(LOCAL_BLOCK, device=q.device)[:, None]
        key = torch.arange(span, device=q.device)[None, :]
        band = (key >= query) & (key <= query + 2 * r)  # (c, span): key j is query i's
        key_mask = _guard_empty(band & key_real[:, :, None, :])  # (B, n, c, span)
        out = F.scaled_dot_product_attention(
            q_blocks,
            k_blocks,
            v_blocks,
            attn_mask=key_mask[:, None],
            dropout_p=self.dropout if self.training else 0.0,
        )
        return out.flatten(2, 3)[:, :, :steps]


ChannelPool = Literal["sum", "mean"]
CHANNEL_POOLS = typing.get_args(ChannelPool)


class ChannelAttention(nn.Module):
    """Channel attention ``CA`` of the stride-1 blocks (``docs/method.md`` §1, [official]).

    Per head (width ``dh = d / n_heads``) with ``q, k, v (T, dh)`` from one bias-free Linear:
    ``A = softmax((k / sqrt(dh))ᵀ v)`` is ``dh × dh``, summed over the real steps only and
    normalised over its last axis; each step's output is ``A q_t`` (``out[t, i] =
    Σ_j A[i, j] q[t, j]``). Heads are concatenated and projected by a Linear.

    With ``pool="sum"`` (the released code) the logits ``kᵀv`` grow with the number of real
    steps ``T``, so ``A`` sharpens with the video's length (a 256-step training crop and a
    1,024-step test video see different attention). ``pool="mean"`` divides them by ``T``:
    the same features give the same ``A`` at every length.

    Args:
        dim: channels ``d``.
        n_heads: heads.
        dropout: dropout after the output projection.
        pool: ``"sum"`` or ``"mean"`` of ``kᵀv`` over the real steps.
    """

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0, pool: str = "sum") -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"embedding width {dim} is not divisible by n_heads={n_heads}")
        if pool not in CHANNEL_POOLS:
            raise ValueError(f"channel attention pool must be one of {CHANNEL_POOLS}, got {pool!r}")
        self.pool = pool
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (B, T, C)``, ``mask (B, T)`` -> ``(B, T, C)``, zero on padded steps."""
        b, t, c = x.shape
        dh = c // self.n_heads
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, dh).unbind(2)  # (B, T, H, dh)
        m = mask[:, :, None, None].to(x.dtype) / math.sqrt(dh)
        if self.pool == "mean":
            m = m / mask.sum(1).clamp(min=1)[:, None, None, None].to(x.dtype)
        attn = torch.einsum("bthi,bthj->bhij", k * m, v).softmax(dim=-1)
        out = torch.einsum("bhij,bthj->bthi", attn, q).reshape(b, t, c)
        return self.drop(self.proj(out)) * mask[..., None].to(x.dtype)
