"""ASLObjective: Table c weights, loss values by formula, gradients, the N EMA, maps."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.model_defaults import make_objective

from asl_tal.data.batch import Batch, VideoMeta
from asl_tal.models.outputs import NetworkOutput
from asl_tal.models.points import PointGenerator, doubling_ranges
from asl_tal.objective.assignment import assign_targets
from asl_tal.objective.objective import zero_distance_shares

C, D, T = 3, 8, 64


def make_inputs(seed=0, num_gt=4):
    generator = torch.Generator().manual_seed(seed)
    pg = PointGenerator(4, doubling_ranges(4))
    points = pg(T)
    sizes = pg.level_sizes(T)

    def leaf(*shape, positive=False):
        x = torch.randn(*shape, generator=generator)
        return (x.abs() + 0.1 if positive else x).requires_grad_()

    out = NetworkOutput(
        cls_logits=[leaf(2, s, C) for s in sizes],
        offsets=[leaf(2, s, 2, positive=True) for s in sizes],
        feats=[leaf(2, D, s) for s in sizes],
        masks=[torch.ones(2, s, dtype=torch.bool) for s in sizes],
    )
    out.masks[0][1, 56:] = False
    for lvl in range(1, len(sizes)):
        out.masks[lvl][1] = out.masks[0][1, :: 2**lvl]
    start = torch.rand(2, num_gt, generator=generator) * 40
    length = 2 + torch.rand(2, num_gt, generator=generator) * 14
    segments = torch.stack([start, start + length], -1)
    seg_mask = torch.ones(2, num_gt, dtype=torch.bool)
    seg_mask[1, -1] = False
    labels = torch.randint(0, C, (2, num_gt), generator=generator)
    labels[~seg_mask] = -1
    meta = [VideoMeta(f"v{i}", 10.0, 30.0, 4.0, 16.0) for i in range(2)]
    batch = Batch(torch.zeros(2, 5, T), out.masks[0].clone(), segments, seg_mask, labels, meta)
    return out, points, batch


def p_by_formula(points, batch, targets):
    """Initial Gaussians (mu 0 / -0.5 / 0.5, sigma 1) evaluated from the definition."""
    gt = targets.gt_index.clamp(min=0)
    seg = torch.gather(batch.segments, 1, gt[..., None].expand(-1, -1, 2)).detach()
    x = (0.5 * (seg[..., 0] + seg[..., 1]) - points[:, 0]) / (
        points[:, 3] * (seg[..., 1] - seg[..., 0])
    )
    g = lambda mu: torch.exp(-((x - mu) ** 2) / 2)
    return g(0.0), 0.5 * (g(-0.5) + g(0.5))


def focal_by_formula(logits, targets, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(logits)
    pos = -alpha * (1 - p) ** gamma * torch.log(p)
    neg = -(1 - alpha) * p**gamma * torch.log(1 - p)
    return (targets * pos + (1 - targets) * neg).sum(-1)


def diou_by_formula(pred, target):
    start_p, end_p = -pred[:, 0], pred[:, 1]
    start_t, end_t = -target[:, 0], target[:, 1]
    inter = (torch.minimum(end_p, end_t) - torch.maximum(start_p, start_t)).clamp(min=0)
    union = (end_p - start_p) + (end_t - start_t) - inter
    enclosing = torch.maximum(end_p, end_t) - torch.minimum(start_p, start_t)
    rho = 0.5 * (start_p + end_p) - 0.5 * (start_t + end_t)
    return 1 - inter / union + rho**2 / enclosing**2


@pytest.mark.parametrize(
    ("class_level", "instance_level", "includes_cls"),
    [
        (False, False, True),
        (False, True, True),
        (True, False, True),
        (True, True, True),
        (True, True, False),
    ],
)
def test_table_c_weights_and_loss_values(class_level, instance_level, includes_cls):
    torch.manual_seed(0)
    out, points, batch = make_inputs()
    objective = make_objective(
        C,
        D,
        sensitivity={
            "class_level": class_level,
            "instance_level": instance_level,
            "loc_weight_includes_cls": includes_cls,
            "normalize": "none",
            "divide_by_stride": True,
            "weight_normalize": "none",
        },
        ascl={"weight": 0.0},
        loss={"init_loss_norm": 50.0},
    ).eval()
    targets = assign_targets(
        points, batch.segments, batch.seg_mask, batch.labels, C, objective.center_radius
    )
    valid = out.flat_mask()
    pos = targets.pos_mask & valid
    sens = objective.point_sensitivity(out, points, batch, targets, pos)

    p_cls, p_loc = p_by_formula(points, batch, targets)
    q_cls = q_loc = None
    if instance_level:
        q_cls, q_loc = objective.instance_sensitivity.at_positives(
            out.feats, out.masks, points, batch.segments, targets.gt_index, pos
        )
        q_cls, q_loc = q_cls.detach(), q_loc.detach()
    want_h_cls = {
        (False, False): torch.ones_like(p_cls),
        (False, True): q_cls,
        (True, False): p_cls,
        (True, True): None if q_cls is None else p_cls + q_cls,
    }[(class_level, instance_level)]
    want_h_loc = {
        (False, False): torch.ones_like(p_loc),
        (False, True): q_loc,
        (True, False): p_loc,
        (True, True): None if q_loc is None else p_loc + q_loc,
    }[(class_level, instance_level)]
    torch.testing.assert_close(sens["h_cls"][pos], want_h_cls[pos])
    torch.testing.assert_close(sens["h_loc"][pos], want_h_loc[pos])
    assert torch.all(sens["w_cls"][~pos] == 1)
    want_w_loc = want_h_loc * p_cls if (class_level and includes_cls) else want_h_loc
    torch.testing.assert_close(sens["w_loc"][pos], want_w_loc[pos])
    if instance_level and not class_level:
        assert not sens["h_cls"].requires_grad  # q enters the weights detached

    losses = objective(out, points, batch)
    w_cls = torch.where(pos, want_h_cls, torch.ones_like(want_h_cls))
    focal = focal_by_formula(out.flat_logits(), targets.cls_targets)
    want_cls = (focal * w_cls * valid).sum() / 50.0
    diou = diou_by_formula(out.flat_offsets()[pos], targets.reg_targets[pos])
    want_loc = (diou * want_w_loc[pos]).sum() / 50.0
    torch.testing.assert_close(losses["cls"], want_cls, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses["loc"], want_loc, rtol=1e-5, atol=1e-6)
    assert losses["num_pos"].item() == pos.sum().item()
    if instance_level:
        logits = out.flat_logits().detach()
        gt_label = torch.gather(batch.labels, 1, targets.gt_index.clamp(min=0))
        quality_cls = torch.sigmoid(torch.gather(logits, 2, gt_label[..., None]).squeeze(-1))
        offsets = out.flat_offsets().detach()
        start_p, end_p = -offsets[..., 0], offsets[..., 1]
        start_t, end_t = -targets.reg_targets[..., 0], targets.reg_targets[..., 1]
        inter = (torch.minimum(end_p, end_t) - torch.maximum(start_p, start_t)).clamp(min=0)
        iou = inter / ((end_p - start_p) + (end_t - start_t) - inter)
        want_sens = ((q_cls - quality_cls) ** 2 + (q_loc - iou) ** 2)[pos].sum() / 50.0
        torch.testing.assert_close(losses["sens"], want_sens, rtol=1e-5, atol=1e-6)
    else:
        assert losses["sens"].item() == 0.0
    torch.testing.assert_close(
        losses["loss"], losses["cls"] + losses["loc"] + losses["sens"] + 0 * losses["ascl"]
    )


def test_switched_off_modules_are_not_built():
    names = {
        n.split(".")[0]
        for n, _ in make_objective(
            C, D, sensitivity={"class_level": False, "instance_level": False}, ascl={"weight": 0}
        ).named_parameters()
    }
    assert names == set()
    full = make_objective(C, D)
    names = {n.split(".")[0] for n, _ in full.named_parameters()}
    assert names == {"class_sensitivity", "instance_sensitivity", "ascl"}
    with pytest.raises(ValueError, match=r"unknown model\.ascl\.lambda"):
        make_objective(C, D, ascl={"lambda": 0.1})


def test_gradients_reach_gaussians_evaluators_and_features():
    torch.manual_seed(0)
    out, points, batch = make_inputs(1)
    objective = make_objective(C, D, sensitivity={"normalize": "none"}).train()
    losses = objective(out, points, batch)
    assert losses["ascl"].item() > 0 and losses["sens"].item() > 0
    losses["loss"].backward()
    for name in ("mu_cls", "sigma_cls", "mu_L", "sigma_L", "mu_R", "sigma_R"):
        assert getattr(objective.class_sensitivity, name).grad.abs().sum() > 0, name
    for param in objective.instance_sensitivity.parameters():
        assert param.grad.abs().sum() > 0
    assert objective.ascl.proj[0].weight.grad.abs().sum() > 0
    assert out.feats[0].grad.abs().sum() > 0 and out.feats[1].grad.abs().sum() > 0


def test_detach_instance_switch():
    out, points, batch = make_inputs(2)
    for detach, expect_grad in ((True, False), (False, True)):
        objective = make_objective(
            C,
            D,
            sensitivity={"class_level": False, "detach_instance": detach},
            ascl={"weight": 0},
        )
        objective(out, points, batch)["cls"].backward()
        grads = [p.grad for p in objective.instance_sensitivity.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads) == expect_grad


def test_loss_normalizer_ema_and_state_dict():
    out, points, batch = make_inputs(3)
    objective = make_objective(C, D, ascl={"weight": 0}, loss={"init_loss_norm": 200.0})
    assert "loss_normalizer" in objective.state_dict()
    num_pos = objective.eval()(out, points, batch)["num_pos"].item()
    assert objective.loss_normalizer.item() == 200.0  # eval: no update
    objective.train()(out, points, batch)
    want = 0.9 * 200.0 + 0.1 * max(num_pos, 1)
    assert objective.loss_normalizer.item() == pytest.approx(want, rel=1e-6)
    empty = Batch(
        batch.feats,
        batch.mask,
        batch.segments,
        torch.zeros_like(batch.seg_mask),
        torch.full_like(batch.labels, -1),
        batch.meta,
    )
    losses = objective(out, points, empty)
    assert losses["num_pos"].item() == 0 and math.isfinite(losses["loss"].item())
    assert objective.loss_normalizer.item() == pytest.approx(0.9 * want + 0.1, rel=1e-6)
    restored = make_objective(C, D, ascl={"weight": 0}, loss={"init_loss_norm": 1.0})
    restored.load_state_dict(objective.state_dict())
    assert restored.loss_normalizer.item() == pytest.approx(0.9 * want + 0.1, rel=1e-6)


def test_sensitivity_maps():
    out, points, batch = make_inputs(4)
    objective = make_objective(C, D, sensitivity={"normalize": "none"})
    records = objective.sensitivity_maps(out, points, batch)
    assert len(records) == int(batch.seg_mask.sum())
    for rec in records:
        a, e = rec["segment"]
        frames = rec["frames"]
        assert frames.min() >= a and frames.max() <= e
        x = (0.5 * (a + e) - frames) / (e - a)
        assert rec["p_cls"] == pytest.approx(
            torch.exp(-(torch.tensor(x) ** 2) / 2).numpy(), rel=1e-5
        )
        assert rec["h_cls"] == pytest.approx(rec["p_cls"] + rec["q_cls"], rel=1e-6)
        assert rec["gaussians"]["mu_L"] == pytest.approx(-0.5)


def test_narrow_loc_gaussians_send_the_ascl_loc_frames_to_the_boundaries():
    """With ``loc_sigma_init`` 0.25 and no ``q``, ``h_loc`` on level 0 grows with |x| up to
    the action's ends, so its two highest frames (what ASCL's ``f_loc`` averages first) are
    the first and the last frame inside the GT; ``h_cls`` keeps its highest at the centre."""
    out, points, batch = make_inputs(4)
    objective = make_objective(
        C, D, sensitivity={"normalize": "none", "instance_level": False, "loc_sigma_init": 0.25}
    )
    records = objective.sensitivity_maps(out, points, batch)
    checked = 0
    for rec in records:
        frames = rec["frames"]
        if len(frames) < 4:
            continue
        top_two = set(frames[torch.tensor(rec["h_loc"]).topk(2).indices.numpy()].tolist())
        assert top_two == {frames.min(), frames.max()}
        centre = 0.5 * sum(rec["segment"])
        nearest = frames[abs(frames - centre).argmin()]
        assert frames[torch.tensor(rec["h_cls"]).argmax()] == nearest
        checked += 1
    assert checked >= 3


def test_point_table_mismatch_is_reported():
    out, points, batch = make_inputs(5)
    with pytest.raises(ValueError, match="point table"):
        make_objective(C, D)(out, points[:-1], batch)


@pytest.mark.parametrize("mode", ["batch", "gt"])
def test_weight_normalisation_keeps_the_positives_total(mode):
    """``weight_normalize``: weights / their detached mean over the batch's (or each GT's)
    positives, so each group's weights average exactly 1 and their ratios are unchanged."""
    torch.manual_seed(0)
    out, points, batch = make_inputs()
    settings = {"normalize": "none", "loc_weight_includes_cls": True, "weight_normalize": "none"}
    plain = make_objective(C, D, sensitivity=settings, ascl={"weight": 0.0}).eval()
    scaled = make_objective(
        C, D, sensitivity={**settings, "weight_normalize": mode}, ascl={"weight": 0.0}
    ).eval()
    scaled.load_state_dict(plain.state_dict())
    targets = assign_targets(
        points, batch.segments, batch.seg_mask, batch.labels, C, plain.center_radius
    )
    pos = targets.pos_mask & out.flat_mask()
    before = plain.point_sensitivity(out, points, batch, targets, pos)
    after = scaled.point_sensitivity(out, points, batch, targets, pos)
    groups = (
        [pos]
        if mode == "batch"
        else [
            pos & (targets.gt_index == n) & (torch.arange(2)[:, None] == b)
            for b in range(2)
            for n in range(batch.seg_mask.shape[1])
        ]
    )
    for group in (g for g in groups if g.any()):
        for key in ("w_cls", "w_loc"):
            raw = before[key][group]
            torch.testing.assert_close(after[key][group], raw / raw.mean())
    assert torch.all(after["w_cls"][~pos] == 1)


def test_center_radius_null_makes_every_point_inside_the_gt_a_positive():
    points = PointGenerator(2, regression_ranges=[(0, 1000), (1000, 2000)])(16)
    segments = torch.tensor([[[2.0, 9.0]]])
    seg_mask = torch.ones(1, 1, dtype=torch.bool)
    labels = torch.zeros(1, 1, dtype=torch.long)
    objective = make_objective(C, D, loss={"center_radius": None})
    assert objective.center_radius == math.inf
    wide = assign_targets(points, segments, seg_mask, labels, C, objective.center_radius)
    narrow = assign_targets(points, segments, seg_mask, labels, C, 1.5)
    # level 0 (stride 1) points sit at t = 0..15: strictly inside (2, 9) are t = 3..8
    assert wide.pos_mask[0, :16].nonzero().squeeze(1).tolist() == [3, 4, 5, 6, 7, 8]
    # centre 5.5 +- 1.5: t in (4, 7) -> 5, 6
    assert narrow.pos_mask[0, :16].nonzero().squeeze(1).tolist() == [5, 6]


def test_zero_distance_shares_count_the_positives_at_exactly_zero():
    offsets = torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.0, 0.0], [1e-30, 3.0]])
    shares = zero_distance_shares(offsets, torch.tensor(4.0))
    assert shares["zero_start"].item() == 0.5  # rows 0 and 2; 1e-30 is not 0
    assert shares["zero_end"].item() == 0.5  # rows 1 and 2
    none = zero_distance_shares(torch.zeros(0, 2), torch.tensor(0.0))
    assert (none["zero_start"].item(), none["zero_end"].item()) == (0.0, 0.0)
