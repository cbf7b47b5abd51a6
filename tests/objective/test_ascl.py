"""ASCL: zero without positive pairs, hand cases of both modes, reference InfoNCE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers.model_defaults import make_ascl

from asl_tal.objective.ascl import ASCLoss, info_nce

# the released code's windows prototype (docs/method.md §6): temperature 0.07, no queue
WINDOWS = {"mode": "windows", "tau": 0.07, "memory_size": 0}


def identity_head(loss: ASCLoss) -> None:
    with torch.no_grad():
        for layer in (loss.proj[0], loss.proj[2]):
            layer.weight.copy_(torch.eye(layer.weight.shape[0]))
            layer.bias.zero_()


def test_no_positive_pair_is_exactly_zero_with_gradient_path():
    loss = make_ascl(4)
    feats = torch.randn(2, 4, 16, requires_grad=True)
    segments = torch.zeros(2, 3, 2)
    seg_mask = torch.zeros(2, 3, dtype=torch.bool)
    labels = torch.full((2, 3), -1)
    h = torch.zeros(2, 3, 16)
    value = loss(feats, torch.ones(2, 16, dtype=torch.bool), segments, seg_mask, labels, h, h)
    assert value.item() == 0.0
    value.backward()
    assert feats.grad is not None
    assert all(p.grad is not None for p in loss.parameters())
    windows = make_ascl(4, **WINDOWS)
    assert windows.proj is None and not list(windows.parameters())
    value = windows(feats, torch.ones(2, 16, dtype=torch.bool), segments, seg_mask, labels)
    assert value.item() == 0.0 and not torch.isnan(value)


def test_info_nce_closed_form():
    anchors = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), dim=-1)
    cands = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=-1)
    pos = torch.tensor([[True, False, False], [False, False, False]])
    neg = torch.tensor([[False, True, True], [True, True, False]])
    tau = 0.5
    s_pos, s_neg = 1.0 / tau, [0.0, math.sqrt(0.5) / tau]
    want = -s_pos + math.log(math.exp(s_pos) + sum(math.exp(s) for s in s_neg))
    assert info_nce(anchors, cands, pos, neg, tau).item() == pytest.approx(want, rel=1e-5)


def windows_case(boundary_direction: int) -> torch.Tensor:
    feats = torch.zeros(1, 3, 20)
    feats[0, 1] = 1.0  # every frame e2 (background and outside windows)
    for j in (8, 9, 10, 11):  # centre window of [5, 14]: 9.5 +- 1.8
        feats[0, :, j] = torch.tensor([1.0, 0.0, 0.0])
    for j in (5, 6, 13, 14):  # first and last 1.8
        feats[0, :, j] = F.one_hot(torch.tensor(boundary_direction), 3).float()
    return feats


def test_windows_mode_hand_case_and_pulling_positives_together():
    loss = make_ascl(3, **WINDOWS)
    args = (
        torch.ones(1, 20, dtype=torch.bool),
        torch.tensor([[[5.0, 14.0]]]),
        torch.tensor([[True]]),
        torch.tensor([[0]]),
    )
    tau = 0.07
    together = loss(windows_case(0), *args).item()  # boundary = centre = e1; outside e2
    apart = loss(windows_case(2), *args).item()  # boundary e3, orthogonal to the centre
    assert together == pytest.approx(math.log(1 + math.exp(-1 / tau)), abs=1e-6)
    assert apart == pytest.approx(math.log(2.0), rel=1e-5)
    assert together < apart


def reference_topk(feats, segments, seg_mask, labels, h_cls, h_loc, k, tau):
    """Loops straight from docs/method.md §6 (identity projection; all background frames used)."""
    d, num_frames = feats.shape[1], feats.shape[2]
    insts, background = [], []
    for b in range(feats.shape[0]):
        covered = torch.zeros(num_frames, dtype=torch.bool)
        for n in range(seg_mask.shape[1]):
            if not seg_mask[b, n]:
                continue
            a, e = segments[b, n].tolist()
            frames = [j for j in range(num_frames) if a <= j <= e]
            covered[frames] = True
            top_c = sorted(frames, key=lambda j: -h_cls[b, n, j].item())[:k]
            top_l = sorted(frames, key=lambda j: -h_loc[b, n, j].item())[:k]
            f_c = F.normalize(feats[b, :, top_c].mean(1), dim=0)
            f_l = F.normalize(feats[b, :, top_l].mean(1), dim=0)
            insts.append((b, (a, e), int(labels[b, n]), f_c, f_l))
        background += [
            F.normalize(feats[b, :, j], dim=0) for j in range(num_frames) if not covered[j]
        ]
    total, pairs = 0.0, 0
    for b, seg, label, f_c, _ in insts:
        negs = list(background)
        for b2, seg2, label2, f_c2, f_l2 in insts:
            if label2 != label and not (b2 == b and seg2 == seg):
                negs += [f_c2, f_l2]
        for _, _, label2, _, f_l2 in insts:
            if label2 == label:
                s_pos = float(f_c @ f_l2) / tau
                denom = math.exp(s_pos) + sum(math.exp(float(f_c @ n) / tau) for n in negs)
                total += -s_pos + math.log(denom)
                pairs += 1
    assert d > 0
    return total / pairs


def test_topk_mode_matches_reference():
    torch.manual_seed(0)
    feats = torch.rand(2, 6, 24)  # non-negative, so the identity head's ReLU is a no-op
    segments = torch.tensor(
        [
            [[2.0, 7.0], [2.0, 7.0], [10.0, 12.5], [15.0, 20.0]],
            [[3.0, 9.0], [12.0, 13.0], [0, 0], [0, 0]],
        ]
    )
    seg_mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    labels = torch.tensor([[0, 1, 0, 2], [0, 2, -1, -1]])
    h_cls, h_loc = torch.rand(2, 4, 24), torch.rand(2, 4, 24)
    loss = make_ascl(6, k=3, num_background=64, proj_dim=6)
    identity_head(loss)
    valid = torch.ones(2, 24, dtype=torch.bool)
    got = loss(feats, valid, segments, seg_mask, labels, h_cls, h_loc)
    want = reference_topk(feats, segments, seg_mask, labels, h_cls, h_loc, 3, 0.1)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_topk_gradient_reaches_features():
    feats = torch.randn(1, 6, 24, requires_grad=True)
    loss = make_ascl(6, k=3, proj_dim=4)
    segments = torch.tensor([[[2.0, 7.0], [10.0, 14.0]]])
    value = loss(
        feats,
        torch.ones(1, 24, dtype=torch.bool),
        segments,
        torch.ones(1, 2, dtype=torch.bool),
        torch.tensor([[0, 1]]),
        torch.rand(1, 2, 24),
        torch.rand(1, 2, 24),
    )
    value.backward()
    assert value.item() > 0
    assert feats.grad[0, :, 2:8].abs().sum() > 0
    assert loss.proj[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", [{"mode": "topk"}, WINDOWS])
def test_bf16_autocast_leaves_the_loss_in_float32(mode):
    """Under CPU bf16 autocast the loss equals the float32 one: a bf16 similarity would be
    off by up to 2⁻⁸ before the division by tau (errors of ~0.04 in the logits)."""
    torch.manual_seed(0)
    feats = torch.randn(2, 16, 40)
    segments = torch.tensor([[[2.0, 9.0], [12.0, 20.0]], [[5.0, 15.0], [22.0, 30.0]]])
    seg_mask = torch.ones(2, 2, dtype=torch.bool)
    labels = torch.tensor([[0, 1], [0, 1]])
    h_cls, h_loc = torch.rand(2, 2, 40), torch.rand(2, 2, 40)
    loss = make_ascl(16, **mode, k=3, proj_dim=8).eval()  # eval: the queue stays empty
    valid = torch.ones(2, 40, dtype=torch.bool)
    values = []
    for enabled in (False, True):
        torch.manual_seed(1)  # the same background draws
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            values.append(loss(feats, valid, segments, seg_mask, labels, h_cls, h_loc))
    assert values[1].dtype == torch.float32
    assert values[1].item() == pytest.approx(values[0].item(), rel=1e-6)


def test_memory_queue_is_first_in_first_out():
    loss = make_ascl(4, proj_dim=4, memory_size=3)
    features = torch.eye(4)
    loss._remember(features[:2], torch.tensor([5, 6]))
    loss._remember(features[2:], torch.tensor([7, 8]))
    # slots 0, 1 took 5, 6; then 7 went to slot 2 and 8 overwrote the oldest, slot 0
    assert loss.memory_label.tolist() == [8, 6, 7]
    assert torch.equal(loss.memory_z, features[[3, 1, 2]])
    assert loss.memory_next.item() == 1
    with pytest.raises(ValueError, match="memory_size"):
        make_ascl(4, **{**WINDOWS, "memory_size": 3})


def test_memory_gives_a_lone_anchor_positives_from_past_batches():
    """One GT of class 0 in the batch; the queue holds a class-0 and a class-1 feature."""
    e = torch.eye(4)
    feats = e[0].repeat(12, 1).T[None].clone()  # background frames: e0
    feats[0, :, 4:8] = e[1][:, None]  # the action's frames: e1
    segments = torch.tensor([[[4.0, 7.0]]])
    labels = torch.tensor([[0]])
    valid = torch.ones(1, 12, dtype=torch.bool)
    h = torch.rand(1, 1, 12)
    loss = make_ascl(4, k=2, num_background=3, proj_dim=4, tau=0.5, memory_size=4)
    identity_head(loss)
    loss._remember(torch.stack([e[2], e[1]]), torch.tensor([0, 1]))
    loss.eval()
    got = loss(feats, valid, segments, torch.ones(1, 1, dtype=torch.bool), labels, h, h)
    # anchor e1; positives: its own f_loc (s 1) and the stored class-0 e2 (s 0); negatives:
    # three background e0 (s 0) and the stored class-1 e1 (s 1)
    tau = 0.5
    negatives = 3 * math.exp(0.0) + math.exp(1 / tau)
    want = 0.5 * sum(-s / tau + math.log(math.exp(s / tau) + negatives) for s in (1.0, 0.0))
    assert got.item() == pytest.approx(want, rel=1e-5)
    assert loss.memory_label.tolist() == [0, 1, -1, -1]  # evaluation leaves the queue alone
    loss.train()
    loss(feats, valid, segments, torch.ones(1, 1, dtype=torch.bool), labels, h, h)
    assert loss.memory_label.tolist() == [0, 1, 0, -1]
    assert torch.equal(loss.memory_z[2], e[1])
