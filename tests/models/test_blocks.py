"""Blocks and attention of the ASL network against direct formulas on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from asl_tal.models.attention import ChannelAttention, MaskedSelfAttention
from asl_tal.models.blocks import (
    AffineDropPath,
    ConvNormReLU,
    LayerNormChannels,
    MaskedConv1d,
    downsample_mask,
    k3_taps,
)
from asl_tal.models.encoder import TransformerBlock, sinusoidal_position_encoding


def prefix_mask(lengths: list[int], t: int) -> torch.Tensor:
    return torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]


def test_downsample_mask_keeps_every_second_step() -> None:
    mask = prefix_mask([5, 8], 8)
    out = downsample_mask(mask, 2)
    assert out.tolist() == [[True, True, True, False], [True] * 4]  # ceil(5/2) = 3


def test_masked_conv_matches_conv_on_real_steps_and_zeroes_padding() -> None:
    torch.manual_seed(0)
    conv = MaskedConv1d(3, 4, 3)
    x = torch.randn(1, 3, 6)
    mask = prefix_mask([4], 6)
    x = x * mask[:, None]
    out, out_mask = conv(x, mask)
    # step t: bias + sum_k w[:, :, k] x[t - 1 + k] with zeros outside [0, 6)
    xp = F.pad(x, (1, 1))
    ref = torch.stack(
        [conv.bias + torch.einsum("oik,ik->o", conv.weight, xp[0, :, t : t + 3]) for t in range(6)],
        dim=1,
    )
    torch.testing.assert_close(out[0, :, :4], ref[:, :4])
    assert out[0, :, 4:].abs().max() == 0
    assert out_mask.equal(mask)


def test_layer_norm_channels_normalises_each_step_over_channels() -> None:
    x = torch.tensor([[[1.0, 0.0], [2.0, 5.0], [3.0, 10.0]]])  # (1, C=3, T=2)
    out = LayerNormChannels(3, eps=0.0)(x)
    # step 0: values 1, 2, 3 -> mean 2, var 2/3
    expected0 = torch.tensor([-1.0, 0.0, 1.0]) / math.sqrt(2 / 3)
    torch.testing.assert_close(out[0, :, 0], expected0)
    torch.testing.assert_close(out[0, :, 1], expected0)  # 0, 5, 10 is an affine image


def test_conv_norm_relu_is_zero_on_padding() -> None:
    torch.manual_seed(0)
    layer = ConvNormReLU(4, 6)
    torch.nn.init.normal_(layer.norm.bias)  # LN(0) = bias would leak without the mask
    mask = prefix_mask([3], 5)
    out = layer(torch.randn(1, 4, 5) * mask[:, None], mask)
    assert out[0, :, 3:].abs().max() == 0
    assert (out[0, :, :3] >= 0).all()


def test_affine_drop_path_scale_and_sample_dropping() -> None:
    torch.manual_seed(0)
    layer = AffineDropPath(4, drop_prob=0.5)
    assert torch.equal(layer.scale.detach(), torch.full((4,), 1e-4))
    x = torch.randn(64, 3, 4)
    layer.eval()
    torch.testing.assert_close(layer(x), x * 1e-4)
    layer.train()
    out = layer(x)
    ratio = out / (x * 1e-4)
    per_sample = ratio.flatten(1)
    # each sample is dropped (0) or kept and rescaled by 1 / (1 - 0.5) = 2, as a whole
    assert (
        ((per_sample - 2).abs().max(dim=1).values < 1e-5)
        .logical_xor(per_sample.abs().max(dim=1).values == 0)
        .all()
    )
    kept = (per_sample[:, 0] > 1).float().mean()
    assert 0.25 < kept < 0.75


def reference_channel_attention(ca: ChannelAttention, x: torch.Tensor, mask: torch.Tensor):
    """docs/method.md §1 read literally, one video and one head at a time."""
    b, t, c = x.shape
    h = ca.n_heads
    dh = c // h
    out = torch.zeros(b, t, c, dtype=x.dtype)
    for i in range(b):
        n = int(mask[i].sum())
        qkv = x[i, :n] @ ca.qkv.weight.T  # (n, 3c), no bias
        q, k, v = qkv[:, :c], qkv[:, c : 2 * c], qkv[:, 2 * c :]
        heads = []
        for j in range(h):
            sl = slice(j * dh, (j + 1) * dh)
            a = torch.softmax((k[:, sl] / math.sqrt(dh)).T @ v[:, sl], dim=-1)  # (dh, dh)
            heads.append((a @ q[:, sl].T).T)  # A applied to each step's q: (n, dh)
        out[i, :n] = torch.cat(heads, dim=1) @ ca.proj.weight.T + ca.proj.bias
    return out


def test_channel_attention_matches_direct_formula_and_ignores_padding() -> None:
    torch.manual_seed(0)
    ca = ChannelAttention(8, 2).double()
    torch.nn.init.normal_(ca.proj.bias)
    mask = prefix_mask([5, 7], 7)
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    x[0, 5:] = 3.0  # padded steps hold garbage: must not enter kᵀv
    out = ca(x, mask)
    torch.testing.assert_close(out, reference_channel_attention(ca, x, mask))
    assert out[0, 5:].abs().max() == 0


def reference_attention(attn: MaskedSelfAttention, x: torch.Tensor, mask: torch.Tensor):
    """Dense masked softmax attention with an explicit band, one video at a time."""
    b, _, c = x.shape
    h = attn.n_heads
    dh = c // h
    conv = F.conv1d(
        x.transpose(1, 2), attn.qkv_conv.weight, stride=attn.stride, padding=1, groups=c
    )
    conv = conv.unflatten(1, (c, 3))
    q = attn.q_proj(attn.q_norm(conv[:, :, 0].transpose(1, 2)))
    k = attn.k_proj(attn.k_norm(conv[:, :, 1].transpose(1, 2)))
    v = attn.v_proj(attn.v_norm(conv[:, :, 2].transpose(1, 2)))
    out_mask = mask[:, :: attn.stride]
    t_out = q.shape[1]
    out = torch.zeros(b, t_out, c, dtype=x.dtype)
    for i in range(b):
        for t in range(t_out):
            if not out_mask[i, t]:
                continue
            keys = [
                s
                for s in range(t_out)
                if out_mask[i, s] and (attn.window is None or abs(s - t) <= attn.window // 2)
            ]
            for j in range(h):
                sl = slice(j * dh, (j + 1) * dh)
                scores = torch.stack([q[i, t, sl] @ k[i, s, sl] for s in keys]) / math.sqrt(dh)
                w = torch.softmax(scores, dim=0)
                out[i, t, sl] = sum(wk * v[i, s, sl] for wk, s in zip(w, keys, strict=True))
    return attn.out_proj(out) * out_mask[..., None]


@pytest.fixture(params=["run", "export"])
def attention_form(request, monkeypatch) -> str:
    """Both forms of the local window: blocked when run, gathered while torch.export traces."""
    if request.param == "export":
        monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    return request.param


@pytest.mark.parametrize(("stride", "window"), [(1, None), (2, None), (1, 3), (2, 3)])
def test_masked_self_attention_matches_dense_reference(
    stride: int, window: int | None, attention_form: str
) -> None:
    torch.manual_seed(1)
    attn = MaskedSelfAttention(8, 2, stride=stride, window=window).double()
    for norm in (attn.q_norm, attn.k_norm, attn.v_norm):
        torch.nn.init.normal_(norm.bias)
    mask = prefix_mask([9, 12], 12)
    x = torch.randn(2, 12, 8, dtype=torch.float64) * mask[..., None]
    out, out_mask = attn(x, mask)
    assert out_mask.equal(mask[:, ::stride])
    torch.testing.assert_close(out, reference_attention(attn, x, mask))


@pytest.mark.parametrize(("stride", "window"), [(1, 5), (2, 7)])
def test_local_attention_across_query_blocks_matches_dense_reference(
    stride, window, attention_form
) -> None:
    # 70 and 45 real steps over several 32-query blocks, the last one part padding
    torch.manual_seed(2)
    attn = MaskedSelfAttention(8, 2, stride=stride, window=window).double()
    mask = prefix_mask([70, 45], 76)
    x = torch.randn(2, 76, 8, dtype=torch.float64) * mask[..., None]
    out, _ = attn(x, mask)
    torch.testing.assert_close(out, reference_attention(attn, x, mask))


def test_all_padded_video_gives_finite_zero_output(attention_form: str) -> None:
    attn = MaskedSelfAttention(8, 2, window=3)
    mask = torch.zeros(1, 6, dtype=torch.bool)
    out, _ = attn(torch.zeros(1, 6, 8), mask)
    assert torch.isfinite(out).all() and out.abs().max() == 0


@pytest.mark.parametrize(
    ("stride", "expected"),
    [
        (1, [[9, 1, 2, 3, 4], [1, 2, 3, 4, 5], [2, 3, 4, 5, 9]]),
        (2, [[9, 2, 4], [1, 3, 5], [2, 4, 9]]),  # output t reads steps 2t - 1, 2t, 2t + 1
    ],
)
def test_k3_taps_are_the_windows_of_a_same_padded_kernel(stride: int, expected: list) -> None:
    x = torch.arange(1.0, 6.0)[None, :, None].expand(1, 5, 2)  # T = 5, two channels alike
    taps = k3_taps(x, stride, math.ceil(5 / stride), fill=9.0)
    assert [tap[0, :, 1].tolist() for tap in taps] == expected


def test_down_sampling_skip_is_a_max_pool_over_real_steps() -> None:
    # real steps 0..4 (values), padding 5..7; pooled j = max(x[2j-1], x[2j], x[2j+1])
    x = torch.tensor([-1.0, -2.0, -3.0, -4.0, -5.0, 0.0, 0.0, 0.0])[None, :, None]
    mask = prefix_mask([5], 8)
    pooled = TransformerBlock._max_pool(x, mask, mask[:, ::2])
    # j=2 sees -4, -5 and a padded 0: the padded 0 must not win
    assert pooled[0, :, 0].tolist() == [-1.0, -2.0, -4.0, 0.0]


def test_sinusoidal_position_encoding_values_and_compression() -> None:
    dim = 4
    mask = prefix_mask([3, 8], 8)
    enc = sinusoidal_position_encoding(mask, dim, max_seq_len=4, dtype=torch.float64)

    # ω = [1, 10000^(-1/2)]; channels [sin ω0 p, sin ω1 p, cos ω0 p, cos ω1 p] / sqrt(4)
    def pe(p: float) -> list[float]:
        w = [1.0, 0.01]
        return [
            math.sin(w[0] * p) / 2,
            math.sin(w[1] * p) / 2,
            math.cos(w[0] * p) / 2,
            math.cos(w[1] * p) / 2,
        ]

    torch.testing.assert_close(enc[0, 2], torch.tensor(pe(2.0), dtype=torch.float64))
    assert enc[0, 3:].abs().max() == 0
    # video of 8 > max_seq_len 4: positions compressed by 4/8, step 6 reads position 3
    torch.testing.assert_close(enc[1, 6], torch.tensor(pe(3.0), dtype=torch.float64))


def test_channel_attention_mean_pool_does_not_depend_on_length() -> None:
    """A video and the same video played twice: ``mean`` pooling gives every step the same
    output (kᵀv / T is the same average), ``sum`` pooling does not (its logits double)."""
    torch.manual_seed(0)
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    twice = torch.cat([x, x], dim=1)
    for pool, same in (("mean", True), ("sum", False)):
        ca = ChannelAttention(8, 2, pool=pool).double()
        short = ca(x, prefix_mask([6], 6))
        long = ca(twice, prefix_mask([12], 12))
        assert torch.allclose(short, long[:, :6]) is same, pool
    with pytest.raises(ValueError, match="pool must be one of"):
        ChannelAttention(8, 2, pool="max")
