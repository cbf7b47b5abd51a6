"""Label assignment against a slow reference written from docs/method.md §2."""

from __future__ import annotations

import math

import pytest
import torch

from asl_tal.models.points import PointGenerator, doubling_ranges
from asl_tal.objective.assignment import assign_targets


def reference_assign(points, segments, seg_mask, labels, num_classes, radius):
    """Loops over videos, points and GTs, straight from the definition."""
    batch, num_gt = seg_mask.shape
    num_points = points.shape[0]
    cls = torch.zeros(batch, num_points, num_classes)
    reg = torch.zeros(batch, num_points, 2)
    pos = torch.zeros(batch, num_points, dtype=torch.bool)
    index = torch.full((batch, num_points), -1, dtype=torch.long)
    for b in range(batch):
        for p in range(num_points):
            t, lo, hi, s = (float(v) for v in points[p])
            cands = []
            for n in range(num_gt):
                if not seg_mask[b, n]:
                    continue
                a, e = float(segments[b, n, 0]), float(segments[b, n, 1])
                c = 0.5 * (a + e)
                in_centre = t - max(a, c - radius * s) > 0 and min(e, c + radius * s) - t > 0
                reach = max(t - a, e - t)
                if in_centre and lo <= reach <= hi:
                    cands.append((e - a, n))
            if not cands:
                continue
            shortest = min(length for length, _ in cands)
            winner = min(n for length, n in cands if length == shortest)
            pos[b, p] = True
            index[b, p] = winner
            for length, n in cands:
                if length <= shortest + 1e-3:
                    cls[b, p, int(labels[b, n])] = 1.0
            a, e = float(segments[b, winner, 0]), float(segments[b, winner, 1])
            reg[b, p] = torch.tensor([(t - a) / s, (e - t) / s])
    return cls, reg, pos, index


def random_gt(generator, batch, num_gt, seq_len, num_classes):
    """Random GT with overlapping, nested, equal-length, tiny/huge and multi-label rows."""
    start = torch.rand(batch, num_gt, generator=generator) * seq_len
    length = torch.exp(torch.rand(batch, num_gt, generator=generator) * math.log(seq_len))
    segments = torch.stack([start, (start + length).clamp(max=seq_len)], dim=-1)
    segments = torch.round(segments * 4) / 4  # quarter grid: many exact ties and boundaries
    segments[:, 1, :] = segments[:, 0, :]  # multi-label row: same segment
    segments[:, 2] = segments[:, 0] + torch.tensor([1.0, -1.0])  # nested, longer by 2
    segments[:, 3] = segments[:, 4] + 0.0005  # equal length within 1e-3, shifted
    segments[:, 3, 1] = segments[:, 3, 1] + 0.0003
    segments[:, 5] = torch.tensor([10.0, 10.5])  # very short
    segments[:, 6] = torch.tensor([0.0, float(seq_len)])  # very long
    labels = torch.randint(0, num_classes, (batch, num_gt), generator=generator)
    seg_mask = torch.rand(batch, num_gt, generator=generator) > 0.15
    seg_mask[:, :7] = True
    labels[~seg_mask] = -1
    segments[~seg_mask] = 0.0
    return segments, seg_mask, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_slow_reference(seed):
    generator = torch.Generator().manual_seed(seed)
    seq_len, num_classes = 128, 4
    points = PointGenerator(6, doubling_ranges(6))(seq_len)
    segments, seg_mask, labels = random_gt(generator, 3, 12, seq_len, num_classes)
    got = assign_targets(points, segments, seg_mask, labels, num_classes, 1.5)
    cls, reg, pos, index = reference_assign(points, segments, seg_mask, labels, num_classes, 1.5)
    assert pos.sum() > 50
    assert (cls.sum(-1) > 1).any(), "the random batch should contain multi-hot targets"
    assert torch.equal(got.pos_mask, pos)
    assert torch.equal(got.gt_index, index)
    assert torch.equal(got.cls_targets, cls)
    torch.testing.assert_close(got.reg_targets, reg)


def test_hand_case():
    # one GT [2, 6] on level 0 (stride 1, range (0, 4]) and level 1 (stride 2, (4, 8])
    points = PointGenerator(2, [(0.0, 4.0), (4.0, 8.0)])(8)
    segments = torch.tensor([[[2.0, 6.0]]])
    got = assign_targets(points, segments, torch.tensor([[True]]), torch.tensor([[1]]), 3, 1.5)
    # centre 4, radius 1.5: level 0 needs 2.5 < t < 5.5 -> t = 3, 4, 5 (reach 3, 2, 3)
    # level 1 (points 0, 2, 4, 6): 2 < t < 6 -> t = 4, reach 2 not in [4, 8] -> none
    assert got.pos_mask[0].nonzero().squeeze(1).tolist() == [3, 4, 5]
    torch.testing.assert_close(got.reg_targets[0, 3], torch.tensor([1.0, 3.0]))
    assert got.cls_targets[0, 4].tolist() == [0.0, 1.0, 0.0]
    assert got.gt_index[0].tolist() == [-1, -1, -1, 0, 0, 0, -1, -1, -1, -1, -1, -1]


def test_shortest_wins_and_ties_share_class():
    points = PointGenerator(1, [(0.0, math.inf)])(16)
    segments = torch.tensor([[[0.0, 10.0], [3.0, 7.0], [3.0, 7.0005], [2.0, 12.0]]])
    labels = torch.tensor([[0, 1, 2, 3]])
    got = assign_targets(points, segments, torch.ones(1, 4, dtype=torch.bool), labels, 4, 1.5)
    # t = 5: candidates all four; shortest is GT 1 (length 4), GT 2 ties within 1e-3
    assert int(got.gt_index[0, 5]) == 1
    assert got.cls_targets[0, 5].tolist() == [0.0, 1.0, 1.0, 0.0]
    torch.testing.assert_close(got.reg_targets[0, 5], torch.tensor([2.0, 2.0]))


def test_bad_label_is_reported():
    points = PointGenerator(1, [(0.0, math.inf)])(8)
    with pytest.raises(ValueError, match="label"):
        assign_targets(
            points,
            torch.tensor([[[1.0, 3.0]]]),
            torch.tensor([[True]]),
            torch.tensor([[5]]),
            3,
            1.5,
        )
