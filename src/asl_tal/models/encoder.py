"""The ASL backbone (``docs/method.md`` §1): projection, TCN, stride-1 and down-sampling transformer
blocks, and the feature pyramid with its pre-head LayerNorms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from asl_tal.models.attention import ChannelAttention, MaskedSelfAttention
from asl_tal.models.blocks import AffineDropPath, ConvNormReLU, FeedForward, k3_taps


def _as_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` bool -> ``(B, T, 1)`` in ``like``'s dtype, for channels-last tensors."""
    return mask[..., None].to(like.dtype)


class Projection(nn.Module):
    """Input projection ``D -> d``: masked Conv1d k3 + LayerNorm + ReLU.

    With several feature streams (``input_dims`` of length > 1), each stream first gets its
    own k1 projection to ``stream_dims[i]`` (these sum to ``d``); the results are
    concatenated before the k3 layer.

    Args:
        input_dims: feature width of each stream; the input concatenates them on channels.
        d_emb: output width ``d``.
        stream_dims: per-stream k1 widths (required with more than one stream).
    """

    def __init__(
        self, input_dims: Sequence[int], d_emb: int, stream_dims: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        self.input_dims = [int(dim) for dim in input_dims]
        if len(self.input_dims) > 1 or stream_dims is not None:
            if stream_dims is None or len(stream_dims) != len(self.input_dims):
                raise ValueError(
                    f"model.network.stream_dims must give one width per input stream "
                    f"(input_dim={self.input_dims}, stream_dims={stream_dims})"
                )
            if sum(stream_dims) != d_emb:
                raise ValueError(
                    f"model.network.stream_dims {list(stream_dims)} must sum to d_emb={d_emb}"
                )
            self.streams = nn.ModuleList(
                nn.Conv1d(d_in, d_out, 1)
                for d_in, d_out in zip(input_dims, stream_dims, strict=True)
            )
            conv_in = d_emb
        else:
            self.streams = None
            conv_in = self.input_dims[0]
        self.conv = ConvNormReLU(conv_in, d_emb)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``feats (B, sum(input_dims), T)``, ``mask (B, T)`` -> ``(B, d, T)``, zero on padding."""
        m = mask[:, None, :].to(feats.dtype)
        feats = feats * m  # the input's padding need not be zero
        if self.streams is not None:
            parts = feats.split(self.input_dims, dim=1)
            feats = (
                torch.cat([proj(x) for proj, x in zip(self.streams, parts, strict=True)], dim=1) * m
            )
        return self.conv(feats, mask)


def sinusoidal_position_encoding(
    mask: torch.Tensor, dim: int, max_seq_len: int, dtype: torch.dtype
) -> torch.Tensor:
    """Sinusoidal absolute position encoding ``(B, T, dim)``, scaled by ``1 / sqrt(dim)``.

    Channels ``[0, dim/2)`` hold ``sin(pos · ω_i)``, the rest ``cos(pos · ω_i)``, with
    ``ω_i = 10000^(-2i / dim)``. A video longer than ``max_seq_len`` has its positions
    compressed by ``max_seq_len / n`` (``n`` its real length): the sinusoid evaluated where a
    linearly interpolated ``max_seq_len`` table would be read, but per video, so the encoding
    does not depend on how much padding the batch adds.

    Args:
        mask: ``(B, T)`` bool, a prefix of real steps per video.
    """
    length = mask.sum(dim=1, keepdim=True).to(torch.float32)  # (B, 1)
    scale = (max_seq_len / length.clamp(min=max_seq_len)).clamp(max=1.0)
    pos = torch.arange(mask.shape[1], device=mask.device, dtype=torch.float32) * scale  # (B, T)
    freqs = torch.exp(
        torch.arange(0, dim, 2, device=mask.device, dtype=torch.float32)
        * (-torch.log(torch.tensor(10000.0)) / dim)
    )
    angles = pos[..., None] * freqs  # (B, T, dim / 2)
    enc = torch.cat([angles.sin(), angles.cos()], dim=-1) / dim**0.5
    return enc.to(dtype) * mask[..., None].to(dtype)


class TransformerBlock(nn.Module):
    """Pre-LN transformer block with optional 2× down-sampling (``docs/method.md`` §1).

    ``x' = skip(x) + DropPath(Attn(LN(x)))``; ``out = x' + DropPath(FFN(LN(x')))``, where the
    skip path is the identity for stride 1 and a masked MaxPool1d k3 s2 p1 for stride 2.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        stride: int = 1,
        window: int | None = None,
        dropout: float = 0.0,
        path_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"TransformerBlock stride must be 1 or 2, got {stride}")
        self.stride = stride
        self.norm_attn = nn.LayerNorm(dim)
        self.attn = MaskedSelfAttention(dim, n_heads, stride=stride, window=window, dropout=dropout)
        self.drop_path_attn = AffineDropPath(dim, path_drop)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, dropout=dropout)
        self.drop_path_ffn = AffineDropPath(dim, path_drop)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, T, C)``, ``mask (B, T)`` -> ``(B, T / stride, C)`` and its mask."""
        attn, out_mask = self.attn(self.norm_attn(x) * _as_mask(mask, x), mask)
        m = _as_mask(out_mask, x)
        skip = x if self.stride == 1 else self._max_pool(x, mask, out_mask)
        x = skip + self.drop_path_attn(attn)
        return x + self.drop_path_ffn(self.ffn(self.norm_ffn(x)) * m), out_mask

    @staticmethod
    def _max_pool(x: torch.Tensor, mask: torch.Tensor, out_mask: torch.Tensor) -> torch.Tensor:
        """MaxPool1d k3 s2 p1 over real steps only: ``(B, T, C) -> (B, T / 2, C)``."""
        lowest = torch.finfo(x.dtype).min
        filled = x.masked_fill(~mask[..., None], lowest)
        left, centre, right = k3_taps(filled, 2, out_mask.shape[1], fill=lowest)
        pooled = torch.maximum(torch.maximum(left, centre), right)
        return torch.where(out_mask[..., None], pooled, torch.zeros((), dtype=x.dtype))


class StemBlock(nn.Module):
    """Stride-1 encoder block: ``α · temporal + (1 − α) · channel`` (``docs/method.md`` §1).

    The temporal branch is a whole :class:`TransformerBlock`. The channel branch starts from
    ``y = LN1(x)`` (the temporal block's first norm), then ``y = y + CA(y)`` and
    ``y = y + MLP(LN(y))``; it is zero on padded steps. With ``channel_drop_path`` both
    residuals pass an :class:`AffineDropPath` as the temporal branch's do (the released
    code's channel block). Without channel attention the block is the temporal branch alone.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        window: int | None = None,
        dropout: float = 0.0,
        path_drop: float = 0.0,
        channel_attention: bool = True,
        t_c_alpha: float = 0.8,
        channel_pool: str = "sum",
        channel_drop_path: bool = False,
    ) -> None:
        super().__init__()
        self.temporal = TransformerBlock(dim, n_heads, 1, window, dropout, path_drop)
        self.t_c_alpha = t_c_alpha
        self.channel_drop = None
        if channel_attention:
            self.channel_attn = ChannelAttention(dim, n_heads, dropout, channel_pool)
            self.norm_mlp = nn.LayerNorm(dim)
            self.mlp = FeedForward(dim, dropout=dropout)
            if channel_drop_path:
                self.channel_drop = nn.ModuleList(
                    AffineDropPath(dim, path_drop) for _ in ("attention", "mlp")
                )
        else:
            self.channel_attn = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (B, T, C)``, ``mask (B, T)`` -> ``(B, T, C)``."""
        temporal, _ = self.temporal(x, mask)
        if self.channel_attn is None:
            return temporal
        m = _as_mask(mask, x)
        y = self.temporal.norm_attn(x) * m
        attn = self.channel_attn(y, mask)
        if self.channel_drop is None:
            y = y + attn
            y = (y + self.mlp(self.norm_mlp(y))) * m
        else:
            y = y + self.channel_drop[0](attn)
            y = (y + self.channel_drop[1](self.mlp(self.norm_mlp(y)))) * m
        return self.t_c_alpha * temporal + (1.0 - self.t_c_alpha) * y


class ASLEncoder(nn.Module):
    """Projection, TCN, stride-1 blocks, down-sampling blocks and the pyramid.

    Level 0 is the output of the stride-1 blocks, level ``i`` the output of the ``i``-th
    down-sampling block; each level passes its own LayerNorm. ``window_levels`` (None = all)
    limits the local attention window to the finest levels; a block's level is that of its
    output.

    Args:
        input_dims: per-stream input widths.
        stream_dims: per-stream k1 widths (multi-stream only).
        d_emb: width ``d``.
        n_heads: attention heads.
        l1: conv layers after the projection (TCN).
        l2: stride-1 transformer blocks.
        l3: down-sampling blocks (``l3 + 1`` levels).
        t_c_alpha: weight of the temporal branch in stride-1 blocks.
        channel_attention: build the channel branch of stride-1 blocks.
        channel_pool: ``"sum"`` or ``"mean"`` over steps in channel attention.
        channel_drop_path: drop-path on the channel branch's residuals.
        attn_window: local attention window (odd), None = global.
        attn_window_levels: apply the window on the finest N levels only (None = all).
        abs_pos_enc: add the sinusoidal position encoding after the TCN.
        max_seq_len: training length of the position encoding.
        dropout: attention / projection dropout.
        path_drop: drop-path probability.
    """

    def __init__(
        self,
        input_dims: Sequence[int],
        stream_dims: Sequence[int] | None,
        d_emb: int,
        n_heads: int,
        l1: int,
        l2: int,
        l3: int,
        t_c_alpha: float = 0.8,
        channel_attention: bool = True,
        attn_window: int | None = None,
        attn_window_levels: int | None = None,
        abs_pos_enc: bool = False,
        max_seq_len: int = 2304,
        dropout: float = 0.0,
        path_drop: float = 0.1,
        channel_pool: str = "sum",
        channel_drop_path: bool = False,
    ) -> None:
        super().__init__()
        self.abs_pos_enc = abs_pos_enc
        self.max_seq_len = max_seq_len
        self.d_emb = d_emb
        windows = [
            attn_window if attn_window_levels is None or level < attn_window_levels else None
            for level in range(l3 + 1)
        ]
        self.projection = Projection(input_dims, d_emb, stream_dims)
        self.tcn = nn.ModuleList(ConvNormReLU(d_emb, d_emb) for _ in range(l1))
        self.stem = nn.ModuleList(
            StemBlock(
                d_emb,
                n_heads,
                windows[0],
                dropout,
                path_drop,
                channel_attention,
                t_c_alpha,
                channel_pool,
                channel_drop_path,
            )
            for _ in range(l2)
        )
        self.downsample = nn.ModuleList(
            TransformerBlock(d_emb, n_heads, 2, windows[level], dropout, path_drop)
            for level in range(1, l3 + 1)
        )
        self.pyramid_norms = nn.ModuleList(nn.LayerNorm(d_emb) for _ in range(l3 + 1))

    def forward(
        self, feats: torch.Tensor, mask: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``feats (B, D, T)``, ``mask (B, T)`` -> per level ``(B, d, T_l)`` and ``(B, T_l)``."""
        x = self.projection(feats, mask)
        for layer in self.tcn:
            x = layer(x, mask)
        x = x.transpose(1, 2).contiguous()  # (B, T, d), channels-last for the transformer
        if self.abs_pos_enc:
            x = x + sinusoidal_position_encoding(mask, self.d_emb, self.max_seq_len, x.dtype)
        for block in self.stem:
            x = block(x, mask)
        levels, masks = [x], [mask]
        for block in self.downsample:
            x, mask = block(x, mask)
            levels.append(x)
            masks.append(mask)
        feats_out = [
            (norm(level) * _as_mask(m, level)).transpose(1, 2).contiguous()
            for norm, level, m in zip(self.pyramid_norms, levels, masks, strict=True)
        ]
        return feats_out, masks
