"""``ASLNetwork``: backbone, pyramid and heads of ASL (``docs/method.md`` §1), no Lightning."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

import torch
from torch import nn

from asl_tal.models.attention import ChannelPool
from asl_tal.models.encoder import ASLEncoder
from asl_tal.models.heads import ClassificationHead, LocalizationHead, OffsetActivation, pack_levels
from asl_tal.models.outputs import NetworkOutput
from asl_tal.settings import (
    BELOW_ONE,
    FRACTION,
    NON_NEGATIVE,
    ODD,
    OPEN_FRACTION,
    POSITIVE,
)

# the largest sizes a checkpoint may ask for before a network is built from it (the largest
# published rows use d_emb 512, 8 heads, l1..l3 up to 2/3/8 and 4096-wide features)
WIDTH = POSITIVE.up_to(8192)
DEPTH = NON_NEGATIVE.up_to(32)


def init_weights(module: nn.Module) -> None:
    """Weights keep PyTorch's default init (Kaiming-uniform); Linear / Conv1d biases start at 0.

    LayerNorms start at weight 1, bias 0 (their default).
    """
    if isinstance(module, (nn.Linear, nn.Conv1d)) and module.bias is not None:
        nn.init.zeros_(module.bias)


def required_multiple(l3: int) -> int:
    """Inputs of a network with ``l3`` down-sampling blocks are padded to a multiple of this:
    ``2**l3``, the coarsest stride (see :attr:`ASLNetwork.required_multiple`)."""
    return 2**l3


class ASLNetwork(nn.Module):
    """The ASL network: ``(feats, mask)`` -> per-level logits, offsets, features and masks.

    Keyword arguments come from the ``model.network`` config block (``conf/model/asl.yaml``
    holds their values); see :class:`ASLEncoder` for the backbone ones.

    Args:
        input_dim: feature width, or one width per stream (the streams are concatenated
            along channels in the input, in this order).
        num_classes: ``C``.
        stream_dims: per-stream k1 projection widths summing to ``d_emb`` (multi-stream).
        d_emb: embedding width ``d``.
        n_heads: attention heads.
        l1: TCN layers; l2: stride-1 blocks; l3: down-sampling blocks (``l3 + 1`` levels).
        head_width: width ``h`` of the heads.
        head_layers: convolutions per head, the last one included.
        t_c_alpha: temporal-branch weight ``α`` of the stride-1 blocks.
        channel_attention: build the channel-attention branch.
        channel_pool: ``"sum"`` (released code) or ``"mean"`` (length-independent) of
            ``kᵀv`` over the real steps in channel attention.
        channel_drop_path: drop-path on the channel branch's two residuals.
        offset_activation: ``"relu"`` (released code) or ``"softplus"`` on the regressed
            distances (:class:`LocalizationHead`).
        attn_window: local attention window (odd), None = global attention.
        attn_window_levels: local window only on the finest N levels (None = all levels).
        abs_pos_enc: sinusoidal absolute position encoding.
        max_seq_len: training length; longer inputs compress the encoding's positions.
        dropout: attention / projection dropout.
        path_drop: drop-path probability.
        prior_prob: class prior ``π`` of the logit bias.
        class_counts: training instances per class (classes with 0 get ``π = 1e-6``).
    """

    def __init__(
        self,
        *,
        input_dim: Annotated[int | Sequence[int], POSITIVE.up_to(65536)],
        num_classes: int,
        stream_dims: Annotated[Sequence[int] | None, POSITIVE],
        d_emb: Annotated[int, WIDTH],
        n_heads: Annotated[int, POSITIVE.up_to(128)],
        l1: Annotated[int, DEPTH],
        l2: Annotated[int, DEPTH],
        l3: Annotated[int, NON_NEGATIVE.up_to(12)],
        head_width: Annotated[int, WIDTH],
        head_layers: Annotated[int, POSITIVE.up_to(32)],
        offset_activation: OffsetActivation,
        t_c_alpha: Annotated[float, FRACTION],
        channel_attention: bool,
        channel_pool: ChannelPool,
        channel_drop_path: bool,
        attn_window: Annotated[int | None, ODD],
        attn_window_levels: Annotated[int | None, NON_NEGATIVE],
        abs_pos_enc: bool,
        max_seq_len: Annotated[int, POSITIVE.up_to(1 << 20)],
        dropout: Annotated[float, FRACTION],
        path_drop: Annotated[float, BELOW_ONE],
        prior_prob: Annotated[float, OPEN_FRACTION],
        class_counts: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.input_dims = [input_dim] if isinstance(input_dim, int) else [*input_dim]
        self.num_classes = num_classes
        self.d_emb = d_emb
        self.l3 = l3
        self.encoder = ASLEncoder(
            self.input_dims,
            stream_dims,
            d_emb,
            n_heads,
            l1,
            l2,
            l3,
            t_c_alpha=t_c_alpha,
            channel_attention=channel_attention,
            channel_pool=channel_pool,
            channel_drop_path=channel_drop_path,
            attn_window=attn_window,
            attn_window_levels=attn_window_levels,
            abs_pos_enc=abs_pos_enc,
            max_seq_len=max_seq_len,
            dropout=dropout,
            path_drop=path_drop,
        )
        self.cls_head = ClassificationHead(
            d_emb, head_width, num_classes, head_layers, prior_prob, class_counts
        )
        self.loc_head = LocalizationHead(
            d_emb, head_width, self.num_levels, head_layers, offset_activation
        )
        self.apply(init_weights)
        self.cls_head.reset_prior_bias()

    @staticmethod
    def config_rules(values: Mapping[str, Any], key: Callable[[str], str]) -> list[str]:
        """The rules between the ``model.network`` keys (:mod:`asl_tal.settings`): heads
        that split ``d_emb`` evenly, stream widths that sum to it."""
        d_emb, n_heads, stream_dims = values["d_emb"], values["n_heads"], values["stream_dims"]
        found = []
        if d_emb % n_heads:
            found.append(
                f"{key('d_emb')}: {d_emb} is not a multiple of {key('n_heads')} = {n_heads}"
            )
        if stream_dims is not None and sum(stream_dims) != d_emb:
            found.append(
                f"{key('stream_dims')}: {list(stream_dims)} sum to {sum(stream_dims)}, "
                f"not {key('d_emb')} = {d_emb}"
            )
        return found

    @property
    def num_levels(self) -> int:
        """Pyramid levels, ``l3 + 1``."""
        return self.l3 + 1

    @property
    def required_multiple(self) -> int:
        """The input length must be a multiple of this: ``2**l3``, the coarsest stride.

        The local attention window adds no constraint here (keys are gathered per query with
        edge padding). ActionFormer's sliding-chunk local attention does: it splits level
        ``l`` into chunks of ``2·⌊w/2⌋`` steps, so it pads ``T`` to a multiple of
        ``max_l 2**l · 2·⌊w_l/2⌋`` over the windowed levels (96 for ActivityNet's window 7
        on strides 1–16).
        """
        return required_multiple(self.l3)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> NetworkOutput:
        """``feats (B, D, T)`` zero on padding, ``mask (B, T)`` bool -> :class:`NetworkOutput`.

        ``T`` must be a multiple of :attr:`required_multiple`; level ``l`` has
        ``T_l = T / 2**l`` steps and mask ``mask[:, ::2**l]``.
        """
        expected = sum(self.input_dims)
        if feats.dim() != 3 or feats.shape[1] != expected:
            raise ValueError(
                f"ASLNetwork expects feats (B, {expected}, T) (model.network.input_dim="
                f"{self.input_dims}), got {tuple(feats.shape)}"
            )
        if mask.shape != (feats.shape[0], feats.shape[2]) or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be bool (B, T) = {(feats.shape[0], feats.shape[2])}, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        if feats.shape[2] % self.required_multiple:
            raise ValueError(
                f"input length {feats.shape[2]} is not a multiple of {self.required_multiple} "
                f"(2**l3): pad the batch to network.required_multiple"
            )
        pyramid, masks = self.encoder(feats, mask)
        packed = pack_levels(pyramid, masks)
        return NetworkOutput(
            cls_logits=self.cls_head(packed),
            offsets=self.loc_head(packed),
            feats=pyramid,
            masks=masks,
        )
