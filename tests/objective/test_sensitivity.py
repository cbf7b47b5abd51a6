"""Class-level sensitivity by formula; the batched evaluator runs against per-GT references."""

from __future__ import annotations

import math

import pytest
import torch

from asl_tal.models.points import PointGenerator, doubling_ranges
from asl_tal.objective.assignment import assign_targets
from asl_tal.objective.sensitivity import ClassSensitivity, InstanceEvaluator, InstanceSensitivity


def g(x, mu, sigma):
    return math.exp(-((x - mu) ** 2) / (2 * sigma**2))


def test_class_sensitivity_by_formula():
    sens = ClassSensitivity(3, True, "none", lr_scale=1.0, loc_sigma_init=1.0)
    with torch.no_grad():
        sens.mu_cls[2], sens.sigma_cls[2] = 0.1, 0.5
        sens.mu_L[2], sens.sigma_L[2] = -0.3, 0.7
        sens.mu_R[2], sens.sigma_R[2] = 0.4, 2.0
    t = torch.tensor([6.0, 12.0])
    stride = torch.tensor([2.0, 4.0])
    seg = torch.tensor([[4.0, 14.0], [4.0, 14.0]])
    p_cls, p_loc = sens(t, stride, seg, torch.tensor([2, 2]))
    for i, (ti, si) in enumerate([(6.0, 2.0), (12.0, 4.0)]):
        x = (9.0 - ti) / (si * 10.0)
        assert p_cls[i].item() == pytest.approx(g(x, 0.1, 0.5), rel=1e-6)
        assert p_loc[i].item() == pytest.approx(0.5 * (g(x, -0.3, 0.7) + g(x, 0.4, 2.0)), rel=1e-6)


def test_initial_values_and_stride_switch():
    t, seg, label = torch.tensor([7.0]), torch.tensor([[4.0, 8.0]]), torch.tensor([0])
    p_cls, p_loc = ClassSensitivity(1, False, "none", lr_scale=1.0, loc_sigma_init=1.0)(
        t, torch.tensor([4.0]), seg, label
    )
    x = (6.0 - 7.0) / 4.0  # stride ignored
    assert p_cls.item() == pytest.approx(g(x, 0.0, 1.0), rel=1e-6)
    assert p_loc.item() == pytest.approx(0.5 * (g(x, -0.5, 1.0) + g(x, 0.5, 1.0)), rel=1e-6)
    assert ClassSensitivity.weight_decay_params == (
        "mu_cls",
        "sigma_cls",
        "mu_L",
        "sigma_L",
        "mu_R",
        "sigma_R",
    )


def test_narrow_boundary_gaussians_make_p_loc_peak_at_the_boundaries():
    """``loc_sigma_init`` 0.25 on ``[0, 10]``: at the ends (x = -0.5, 0.5) one Gaussian is
    at its peak, p_loc = (1 + e^-8) / 2; at the centre both are 2 sigma away, p_loc = e^-2.
    p_cls keeps its sigma 1."""
    sens = ClassSensitivity(1, False, "none", lr_scale=1.0, loc_sigma_init=0.25)
    assert sens.sigma_L.tolist() == [0.25] and sens.sigma_R.tolist() == [0.25]
    t = torch.tensor([0.0, 5.0, 10.0])
    seg = torch.tensor([[0.0, 10.0]] * 3)
    p_cls, p_loc = sens(t, torch.ones(3), seg, torch.zeros(3, dtype=torch.long))
    end = 0.5 * (1 + math.exp(-8))
    assert p_loc.tolist() == pytest.approx([end, math.exp(-2), end], rel=1e-6)
    assert p_cls.tolist() == pytest.approx([math.exp(-0.125), 1.0, math.exp(-0.125)], rel=1e-6)


def test_mean_normalisation_per_group():
    sens = ClassSensitivity(2, True, "mean", lr_scale=1.0, loc_sigma_init=1.0)
    t = torch.tensor([1.0, 2.0, 3.0, 10.0, 11.0])
    seg = torch.tensor([[0.0, 4.0]] * 3 + [[9.0, 13.0]] * 2)
    group = torch.tensor([0, 0, 0, 1, -1])
    p_cls, _ = sens(t, torch.ones(5), seg, torch.tensor([0, 0, 0, 1, 1]), group, 2)
    raw = [g((2.0 - ti) / 4.0, 0.0, 1.0) for ti in (1.0, 2.0, 3.0)]
    assert p_cls[:3].tolist() == pytest.approx([r / (sum(raw) / 3) for r in raw], rel=1e-6)
    assert p_cls[3].item() == pytest.approx(1.0)
    assert p_cls[4].item() == pytest.approx(g((11.0 - 11.0) / 4.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="group"):
        sens(t, torch.ones(5), seg, torch.zeros(5, dtype=torch.long))


def test_mean_normalisation_of_a_gaussian_too_narrow_for_every_point():
    """sigma 1e-3 far from both points: exp underflows to 0 on each, so p / mean(p) would be
    0 / 0. Relative to the nearer point (x 0.25) the farther one (x 0.5) has
    exp(-(0.5² - 0.25²) / 2e-6) = 0, so the weights are [2, 0]: mean 1, finite gradients."""
    sens = ClassSensitivity(1, False, "mean", lr_scale=1.0, loc_sigma_init=1.0)
    with torch.no_grad():
        sens.sigma_cls[0] = 1e-3
        sens.sigma_L[0] = sens.sigma_R[0] = 1e-3
    t = torch.tensor([1.0, 0.0])  # x = (2 - t) / 4 = 0.25 and 0.5
    seg = torch.tensor([[0.0, 4.0]] * 2)
    group = torch.zeros(2, dtype=torch.long)
    p_cls, p_loc = sens(t, torch.ones(2), seg, torch.zeros(2, dtype=torch.long), group, 1)
    assert p_cls.tolist() == pytest.approx([2.0, 0.0])
    # p_loc: mu_L -0.5, mu_R 0.5 -> the farther point sits on mu_R and takes all the weight
    assert p_loc.tolist() == pytest.approx([0.0, 2.0])
    (p_cls.sum() + p_loc[1]).backward()
    assert all(torch.isfinite(p.grad).all() for p in sens.parameters())


def test_gradients_reach_gaussian_parameters():
    sens = ClassSensitivity(2, True, "none", lr_scale=1.0, loc_sigma_init=1.0)
    p_cls, p_loc = sens(
        torch.tensor([3.0]), torch.tensor([1.0]), torch.tensor([[0.0, 4.0]]), torch.tensor([1])
    )
    (p_cls + p_loc).sum().backward()
    for name in ClassSensitivity.weight_decay_params:
        grad = getattr(sens, name).grad
        assert grad[1] != 0 and grad[0] == 0, name


def reference_phi(evaluator, feats, mask):
    """Phi on one whole sequence ``(d, T)`` masked by ``mask`` ``(T,)``."""
    return evaluator(feats[None], mask[None])[0]


def make_case(seed, seq_len=64, d=8):
    generator = torch.Generator().manual_seed(seed)
    pg = PointGenerator(4, doubling_ranges(4))
    points = pg(seq_len)
    sizes = pg.level_sizes(seq_len)
    batch, num_gt = 2, 6
    start = torch.rand(batch, num_gt, generator=generator) * (seq_len - 4)
    length = 1 + torch.rand(batch, num_gt, generator=generator) * 40
    segments = torch.stack([start, (start + length).clamp(max=seq_len - 1)], -1)
    seg_mask = torch.ones(batch, num_gt, dtype=torch.bool)
    seg_mask[1, 4:] = False
    labels = torch.randint(0, 3, (batch, num_gt), generator=generator)
    feats = [torch.randn(batch, d, s, generator=generator) for s in sizes]
    masks = [torch.ones(batch, s, dtype=torch.bool) for s in sizes]
    masks[0][1, 50:] = False  # padding in video 1
    for lvl in range(1, len(sizes)):
        masks[lvl][1] = masks[0][1, :: 2**lvl]
    return points, sizes, segments, seg_mask, labels, feats, masks


@pytest.mark.parametrize(
    ("mode", "width"), [("inside_gt", None), ("positives", None), ("inside_gt", 3)]
)
@pytest.mark.parametrize("tile_len", [3, 32])
def test_q_at_positives_matches_per_gt_reference(mode, width, tile_len):
    torch.manual_seed(0)
    points, sizes, segments, seg_mask, labels, feats, masks = make_case(1)
    inst = InstanceSensitivity(8, 2, width, evaluator_mask=mode, tile_len=tile_len)
    targets = assign_targets(points, segments, seg_mask, labels, 3, 1.5)
    valid = torch.cat(masks, 1)
    pos = targets.pos_mask & valid
    q_cls, q_loc = inst.at_positives(feats, masks, points, segments, targets.gt_index, pos)

    starts = [sum(sizes[:lvl]) for lvl in range(len(sizes))]
    checked = 0
    for b in range(2):
        for p in torch.nonzero(pos[b]).squeeze(1).tolist():
            lvl = max(i for i in range(len(sizes)) if starts[i] <= p)
            n = int(targets.gt_index[b, p])
            stride = 2**lvl
            grid = torch.arange(sizes[lvl]) * stride
            a, e = segments[b, n]
            region = (grid >= a) & (grid <= e) & masks[lvl][b]
            if mode == "positives":
                region &= targets.gt_index[b, starts[lvl] : starts[lvl] + sizes[lvl]] == n
            j = p - starts[lvl]
            want_cls = reference_phi(inst.phi_cls, feats[lvl][b], region)[j]
            want_loc = reference_phi(inst.phi_loc, feats[lvl][b], region)[j]
            torch.testing.assert_close(q_cls[b, p], want_cls)
            torch.testing.assert_close(q_loc[b, p], want_loc)
            checked += 1
    assert checked > 20
    assert torch.all(q_cls[~pos] == 0)


def test_q_inside_gts_matches_per_gt_reference():
    torch.manual_seed(0)
    _, _, segments, seg_mask, _, feats, masks = make_case(2)
    inst = InstanceSensitivity(8, 3, None, "inside_gt", 4)
    q_cls, q_loc = inst.inside_gts(feats[0], masks[0], segments, seg_mask)
    grid = torch.arange(feats[0].shape[2]).float()
    for b, n in torch.nonzero(seg_mask).tolist():
        a, e = segments[b, n]
        inside = (grid >= a) & (grid <= e)
        region = inside & masks[0][b]
        want = reference_phi(inst.phi_loc, feats[0][b], region)
        torch.testing.assert_close(q_loc[b, n][region], want[region])
        assert torch.all(q_cls[b, n][~inside] == 0)
    assert torch.all(q_cls[~seg_mask] == 0)


def test_evaluator_gradients_reach_phi_and_features():
    points, _, segments, seg_mask, labels, feats, masks = make_case(3)
    feats = [f.requires_grad_() for f in feats]
    inst = InstanceSensitivity(8, 2, None, "inside_gt", 5)
    targets = assign_targets(points, segments, seg_mask, labels, 3, 1.5)
    q_cls, q_loc = inst.at_positives(
        feats, masks, points, segments, targets.gt_index, targets.pos_mask
    )
    (q_cls.sum() + q_loc.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in inst.parameters())
    assert feats[0].grad.abs().sum() > 0


@pytest.mark.parametrize(("width", "channels"), [(None, [6, 6]), (3, [3, 3])])
def test_evaluator_runs_each_span_as_if_alone(width, channels):
    """K spans evaluated together equal a plain per-span Phi (zero "same" padding at each
    span's ends), written here from the layer weights; ``width`` sets the conv channels
    (None: the input's 6)."""
    torch.manual_seed(0)
    phi = InstanceEvaluator(6, 2, width)
    assert [layer.conv.out_channels for layer in phi.layers] == channels
    assert [layer.conv.in_channels for layer in phi.layers] == [6, channels[0]]
    assert phi.out.in_features == channels[-1]
    with torch.no_grad():
        for layer in phi.layers:
            layer.norm.bias.normal_()  # LN(0) = bias: a leak across spans would show
    x = torch.randn(4, 6, 7)
    mask = torch.rand(4, 7) > 0.3
    got = phi(x, mask)
    for k in range(4):
        m = mask[k].to(x.dtype)
        y = x[k : k + 1] * m
        for layer in phi.layers:
            y = torch.nn.functional.conv1d(y, layer.conv.weight, layer.conv.bias, padding=1)
            y = torch.nn.functional.layer_norm(
                y.transpose(1, 2), (y.shape[1],), layer.norm.weight, layer.norm.bias
            ).transpose(1, 2)
            y = torch.relu(y) * m
        want = torch.sigmoid(y[0].T @ phi.out.weight[0] + phi.out.bias[0])
        assert torch.allclose(got[k], want, atol=1e-6), k
