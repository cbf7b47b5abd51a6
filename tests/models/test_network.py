"""ASLNetwork: pyramid shapes, padding invariance, init values, gradients, parameter groups."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers.model_defaults import network_kwargs
from torch import nn

from asl_tal.models.blocks import AffineDropPath
from asl_tal.models.heads import pack_levels
from asl_tal.models.network import ASLNetwork
from asl_tal.objective.sensitivity import ClassSensitivity
from asl_tal.optim import build_optimizer, parameter_groups, warmup_cosine

SMALL = network_kwargs(
    input_dim=12, num_classes=5, d_emb=16, n_heads=4, l1=1, l2=2, l3=3, head_width=8,
    path_drop=0.0, max_seq_len=16,
)  # fmt: skip


def make_net(**overrides) -> ASLNetwork:
    """A small network with every residual branch and norm bias switched fully on."""
    torch.manual_seed(0)
    net = ASLNetwork(**{**SMALL, **overrides}).double().eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, AffineDropPath):
                module.scale.fill_(1.0)  # 1e-4 would hide a leak through the residual branches
            if isinstance(module, nn.LayerNorm):
                module.bias.normal_()  # LN(0) = bias: a padded step would leak this
        net.loc_head.scales.copy_(torch.linspace(0.5, 2.0, net.num_levels))
    return net


def batch(lengths: list[int], t: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
    feats = torch.randn(len(lengths), dim, t, generator=g, dtype=torch.float64)
    return feats * mask[:, None, :], mask


def test_levels_lengths_and_masks() -> None:
    net = make_net()
    assert net.num_levels == 4 and net.required_multiple == 8
    feats, mask = batch([13, 24], 24, 12)
    out = net(feats, mask)
    assert len(out.cls_logits) == len(out.offsets) == len(out.feats) == len(out.masks) == 4
    for level in range(4):
        t_l = 24 // 2**level
        assert out.cls_logits[level].shape == (2, t_l, 5)
        assert out.offsets[level].shape == (2, t_l, 2)
        assert out.feats[level].shape == (2, 16, t_l)
        # 13 real steps -> ceil(13 / 2**level) real steps on level l: 13, 7, 4, 2
        assert out.masks[level].sum(dim=1).tolist() == [[13, 7, 4, 2][level], t_l]
        assert out.masks[level].equal(mask[:, :: 2**level])
        pad = ~out.masks[level]
        assert out.cls_logits[level][pad].abs().max() == 0
        assert out.feats[level].transpose(1, 2)[pad].abs().max() == 0
    assert out.flat_logits().shape == (2, 24 + 12 + 6 + 3, 5)


CONFIGS = {
    "global": {},
    "no_channel_attention": {"channel_attention": False},
    "local_window_all_levels": {"attn_window": 3},
    "local_window_fine_levels": {"attn_window": 5, "attn_window_levels": 2},
    "multi_stream_pos_enc": {
        "input_dim": [4, 8], "stream_dims": [10, 6], "abs_pos_enc": True, "max_seq_len": 8,
    },
}  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("length", [13, 16])
def test_outputs_do_not_depend_on_batch_padding(config: dict, length: int) -> None:
    """Float64; tolerance 1e-10. Alone: padded to a multiple of 8; batched: to 40."""
    net = make_net(**config)
    dim = 12
    alone_t = math.ceil(length / 8) * 8
    feats, _ = batch([length], alone_t, dim, seed=1)
    alone = net(feats, torch.arange(alone_t)[None] < length)
    long_feats, long_mask = batch([length, 40], 40, dim, seed=2)
    long_feats[0] = 0
    long_feats[0, :, :alone_t] = feats[0]
    together = net(long_feats, long_mask)
    for level in range(net.num_levels):
        n = math.ceil(length / 2**level)
        for name in ("cls_logits", "offsets"):
            a = getattr(alone, name)[level][0, :n]
            b = getattr(together, name)[level][0, :n]
            torch.testing.assert_close(b, a, rtol=0, atol=1e-10, msg=f"{name} level {level}")
        torch.testing.assert_close(
            together.feats[level][0, :, :n], alone.feats[level][0, :, :n], rtol=0, atol=1e-10
        )


def test_values_on_padded_steps_never_reach_real_ones() -> None:
    net = make_net(attn_window=3, attn_window_levels=2, abs_pos_enc=True)
    feats, mask = batch([11, 24], 24, 12)
    ref = net(feats, mask)
    noisy = feats.clone()
    noisy[0, :, 11:] = 1e3 * torch.randn(12, 13, dtype=torch.float64)
    out = net(noisy, mask)
    for level in range(net.num_levels):
        real = out.masks[level]
        torch.testing.assert_close(out.cls_logits[level][real], ref.cls_logits[level][real])
        torch.testing.assert_close(out.offsets[level][real], ref.offsets[level][real])


def test_initial_offsets_scales_and_class_prior() -> None:
    torch.manual_seed(0)
    net = ASLNetwork(**{**SMALL, "prior_prob": 0.01}, class_counts=[3, 0, 1, 0, 7])
    assert torch.equal(net.loc_head.scales.detach(), torch.ones(4))
    bias = net.cls_head.trunk.out.bias.detach()
    # -log((1 - π) / π): π = 0.01 -> log(1/99); π = 1e-6 -> log(1e-6 / 0.999999)
    expected = [-4.59511985, -13.81551156, -4.59511985, -13.81551156, -4.59511985]
    torch.testing.assert_close(bias, torch.tensor(expected), rtol=0, atol=1e-5)
    feats, mask = batch([20, 16], 24, 12)
    out = net(feats.float(), mask)
    assert all((o >= 0).all() for o in out.offsets)
    assert sum(int((o > 0).sum()) for o in out.offsets) > 0


def test_class_counts_length_is_checked() -> None:
    with pytest.raises(ValueError, match="class_counts"):
        ASLNetwork(**SMALL, class_counts=[1, 2])


def test_bad_inputs_name_the_field() -> None:
    net = ASLNetwork(**SMALL)
    with pytest.raises(ValueError, match="input_dim"):
        net(torch.zeros(1, 7, 16), torch.ones(1, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="multiple of 8"):
        net(torch.zeros(1, 12, 12), torch.ones(1, 12, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        net(torch.zeros(1, 12, 16), torch.ones(1, 16))
    with pytest.raises(ValueError, match="stream_dims"):
        ASLNetwork(**{**SMALL, "input_dim": [4, 8], "stream_dims": [10, 5]})


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    net = ASLNetwork(**{**SMALL, "input_dim": [4, 8], "stream_dims": [10, 6], "abs_pos_enc": True})
    net.train()
    feats, mask = batch([20, 16], 24, 12)
    out = net(feats.float(), mask)
    loss = sum(o.square().sum() for o in out.cls_logits + out.offsets + out.feats)
    loss.backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().max() > 0, name


class GaussianLike(nn.Module):
    weight_decay_params = ("mu", "sigma")

    def __init__(self) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(3))
        self.sigma = nn.Parameter(torch.ones(3))
        self.offset = nn.Parameter(torch.zeros(3))


def test_parameter_groups_partition() -> None:
    net = ASLNetwork(**SMALL)
    model = nn.ModuleDict({"net": net, "sens": GaussianLike()})
    decay, no_decay = parameter_groups(model)
    assert "weight_decay" not in decay and no_decay["weight_decay"] == 0.0
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    decay_ids = {id(p) for p in decay["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = sorted(names[i] for i in decay_ids)
    expected = sorted(
        [n for n, _ in model.named_parameters() if n.endswith("weight") and "norm" not in n]
        + ["sens.mu", "sens.sigma"]
    )
    assert decayed == expected
    for name in ("net.loc_head.scales", "sens.offset", "net.cls_head.trunk.out.bias"):
        assert name not in decayed
    assert any("drop_path" in names[id(p)] for p in no_decay["params"])
    assert any("qkv_conv.weight" in n for n in decayed)


def test_parameter_groups_reject_a_listed_non_parameter() -> None:
    class Broken(nn.Module):
        weight_decay_params = ("missing",)

    with pytest.raises(TypeError, match="missing"):
        parameter_groups(Broken())


def test_fused_adamw_takes_the_same_step_as_the_reference_rule() -> None:
    """One AdamW step from zero moments moves each weight by ``-lr·(sign(g) + wd·w)`` (bias
    correction makes the first step ``m̂/√v̂ = g/|g|``), fused or not."""
    cfg = {
        "_target_": "torch.optim.AdamW",
        "_partial_": True,
        "lr": 0.01,
        "weight_decay": 0.5,
        "betas": [0.9, 0.999],
    }
    for fused in (False, True):
        torch.manual_seed(0)
        layer = nn.Linear(4, 3)
        before = layer.weight.detach().clone()
        bias_before = layer.bias.detach().clone()  # not decayed: the second group
        optimizer = build_optimizer(layer, {**cfg, "fused": fused})
        assert optimizer.defaults["fused"] is fused
        layer.weight.grad = torch.tensor([[1.0, -2.0, 3.0, -4.0]] * 3)
        layer.bias.grad = torch.tensor([0.5, -0.5, 2.0])
        optimizer.step()
        decayed = before * (1 - 0.01 * 0.5)  # AdamW decays before the Adam update
        expected = decayed - 0.01 * torch.sign(layer.weight.grad)
        assert torch.allclose(layer.weight, expected, atol=1e-6)
        bias_step = -0.01 * torch.tensor([1.0, -1.0, 1.0])
        assert torch.allclose(layer.bias.detach(), bias_before + bias_step, atol=1e-6)


def test_gaussian_lr_scale_trains_the_gaussians_at_a_multiple_of_the_rate() -> None:
    """First AdamW step (no decay): every element moves by ``-lr·sign(g)``, so the
    Gaussians with ``lr_scale`` 10 move 10× as far as the layer; the schedule keeps the
    ratio."""
    cfg = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 0.01, "weight_decay": 0.0}
    model = nn.ModuleDict(
        {
            "sens": ClassSensitivity(2, True, "none", lr_scale=10.0, loc_sigma_init=1.0),
            "layer": nn.Linear(2, 1),
        }
    )
    optimizer = build_optimizer(model, cfg)
    by_rate = {group["lr"]: group for group in optimizer.param_groups}
    assert sorted(by_rate) == [0.01, 0.1]
    sens = model["sens"]
    gaussians = [sens.mu_cls, sens.sigma_cls, sens.mu_L, sens.sigma_L, sens.mu_R, sens.sigma_R]
    assert {id(p) for p in by_rate[0.1]["params"]} == {id(p) for p in gaussians}
    assert by_rate[0.1]["lr_scale"] == 10.0
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.full_like(p, -1.0)
    optimizer.step()
    for name, p in model.named_parameters():
        rate = 0.1 if name.startswith("sens.") else 0.01
        assert torch.allclose(p.detach(), before[name] + rate, atol=1e-6), name
    # warm-up over 2 steps: step 0 runs at (0 + 1) / 2 of each group's rate
    scheduled = warmup_cosine(
        build_optimizer(model, cfg), steps_per_epoch=2, warmup_epochs=1, epochs=1, eta_min=0.0
    )
    assert sorted(g["lr"] for g in scheduled.optimizer.param_groups) == pytest.approx(
        [0.005, 0.005, 0.05]
    )


@pytest.mark.parametrize(
    ("activation", "reference"), [("softplus", F.softplus), ("relu", torch.relu)]
)
def test_heads_over_packed_levels_equal_one_level_at_a_time(activation, reference) -> None:
    """The heads run over all levels at once; each level must come out as if run alone."""
    net = make_net(offset_activation=activation)
    feats = [torch.randn(2, 16, n, dtype=torch.float64) for n in (16, 8, 4, 2)]
    masks = [torch.ones(2, n, dtype=torch.bool) for n in (16, 8, 4, 2)]
    for level, m in enumerate(masks):
        m[1, -(2 ** (2 - level)) if level < 3 else -1 :] = False  # video 1 is padded
        feats[level] = feats[level] * m[:, None, :]
    with torch.no_grad():
        net.loc_head.scales.copy_(torch.tensor([0.5, 1.0, 2.0, 3.0]))
        packed = pack_levels(feats, masks)
        logits = net.cls_head(packed)
        offsets = net.loc_head(packed)
        for level, (x, m) in enumerate(zip(feats, masks, strict=True)):
            alone = net.cls_head.trunk(x, m).transpose(1, 2)
            assert torch.allclose(logits[level], alone, atol=1e-10), level
            scale = net.loc_head.scales[level]
            alone = reference(scale * net.loc_head.trunk(x, m)).transpose(1, 2)
            assert torch.allclose(offsets[level], alone, atol=1e-10), level


def test_softplus_offsets_keep_a_gradient_where_relu_has_died() -> None:
    """An output channel pushed negative on every point: ReLU gives 0 and no gradient (the
    channel can never recover), softplus a positive distance and a gradient."""
    from asl_tal.models.heads import LocalizationHead, pack_levels

    feats = [torch.randn(1, 8, 16), torch.randn(1, 8, 8)]
    masks = [torch.ones(1, 16, dtype=torch.bool), torch.ones(1, 8, dtype=torch.bool)]
    grads = {}
    for activation in ("relu", "softplus"):
        torch.manual_seed(0)
        head = LocalizationHead(8, 8, 2, activation=activation)
        bias = [p for n, p in head.named_parameters() if n.endswith("bias")][-1]
        assert bias.shape == (2,)  # the output convolution's: start, end
        with torch.no_grad():
            bias[0] = -10.0  # the start-distance channel is negative everywhere
        offsets = head(pack_levels(feats, masks))
        start = torch.cat([o[..., 0] for o in offsets], dim=1)
        start.sum().backward()
        grads[activation] = float(bias.grad[0])
        assert bool((start > 0).all()) is (activation == "softplus")
    assert grads["relu"] == 0.0 and grads["softplus"] > 0.0
