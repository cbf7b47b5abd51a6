"""Label assignment of pyramid points to GT segments (``docs/method.md`` §2).

A point ``t`` of stride ``s`` with regression range ``[r_lo, r_hi]`` is a candidate for a GT
``[a, b]`` (centre ``c``) when it lies strictly inside the centre region
``max(a, c - r s) < t < min(b, c + r s)`` and ``r_lo <= max(t - a, b - t) <= r_hi``. The
shortest candidate wins; every candidate within ``LENGTH_TIE`` of that length adds its class
to the multi-hot target; the shortest one (first by index) gives the regression target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LENGTH_TIE = 1e-3


@dataclass
class Targets:
    """Per-point training targets.

    Attributes:
        cls_targets: ``(B, P, C)`` float multi-hot class targets (all zero on negatives).
        reg_targets: ``(B, P, 2)`` ``((t - a) / s, (b - t) / s)`` of the chosen GT, 0 on
            negatives.
        pos_mask: ``(B, P)`` bool, True on points with at least one candidate GT.
        gt_index: ``(B, P)`` int64 row (into ``N``) of the chosen GT, -1 on negatives.
    """

    cls_targets: torch.Tensor
    reg_targets: torch.Tensor
    pos_mask: torch.Tensor
    gt_index: torch.Tensor


def candidate_mask(
    points: torch.Tensor,
    segments: torch.Tensor,
    seg_mask: torch.Tensor,
    center_radius: float,
) -> torch.Tensor:
    """``(B, P, N)`` bool: point ``p`` is a positive candidate for GT ``n``.

    Args:
        points: ``(P, 4)`` point table ``[t, r_lo, r_hi, stride]``.
        segments: ``(B, N, 2)`` GT ``[a, b]`` in grid units.
        seg_mask: ``(B, N)`` bool, True on real GT rows.
        center_radius: ``r`` of the centre region, in strides.
    """
    t, r_lo, r_hi, stride = (col[None, :, None] for col in points.unbind(dim=1))
    a = segments[..., 0][:, None, :]
    b = segments[..., 1][:, None, :]
    centre = 0.5 * (a + b)
    inside_centre = (t - torch.maximum(a, centre - center_radius * stride) > 0) & (
        torch.minimum(b, centre + center_radius * stride) - t > 0
    )
    reach = torch.maximum(t - a, b - t)
    in_range = (reach >= r_lo) & (reach <= r_hi)
    return inside_centre & in_range & seg_mask[:, None, :]


@torch.no_grad()
def assign_targets(
    points: torch.Tensor,
    segments: torch.Tensor,
    seg_mask: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    center_radius: float,
) -> Targets:
    """Assign every point of every video to at most one GT (multi-hot for ties).

    Args:
        points: ``(P, 4)`` point table ``[t, r_lo, r_hi, stride]``.
        segments: ``(B, N, 2)`` GT ``[a, b]`` in grid units.
        seg_mask: ``(B, N)`` bool, True on real GT rows.
        labels: ``(B, N)`` int64 class ids, -1 on padding.
        num_classes: ``C``.
        center_radius: ``r`` of the centre region, in strides.
    """
    if segments.shape[:2] != seg_mask.shape or labels.shape != seg_mask.shape:
        raise ValueError(
            f"assign_targets: segments {tuple(segments.shape)}, seg_mask "
            f"{tuple(seg_mask.shape)} and labels {tuple(labels.shape)} disagree on (B, N)"
        )
    real_labels = labels[seg_mask]
    if real_labels.numel() and (real_labels.min() < 0 or real_labels.max() >= num_classes):
        raise ValueError(
            f"assign_targets: a GT label lies outside [0, {num_classes}) "
            f"(min {int(real_labels.min())}, max {int(real_labels.max())})"
        )
    batch, _, _ = segments.shape
    num_points = points.shape[0]
    candidates = candidate_mask(points, segments, seg_mask, center_radius)

    lengths = (segments[..., 1] - segments[..., 0])[:, None, :].expand_as(candidates)
    cand_lengths = torch.where(candidates, lengths, torch.full_like(lengths, torch.inf))
    min_length, gt_index = cand_lengths.min(dim=2)
    pos_mask = torch.isfinite(min_length)
    gt_index = torch.where(pos_mask, gt_index, torch.full_like(gt_index, -1))

    ties = candidates & (cand_lengths <= min_length[..., None] + LENGTH_TIE)
    one_hot = torch.zeros(batch, seg_mask.shape[1], num_classes, device=segments.device)
    one_hot.scatter_(2, labels.clamp(min=0)[..., None], seg_mask[..., None].float())
    cls_targets = torch.bmm(ties.float(), one_hot).clamp_(max=1.0)

    chosen = gt_index.clamp(min=0)[..., None].expand(batch, num_points, 2)
    chosen_seg = torch.gather(segments, 1, chosen)
    t = points[:, 0][None, :]
    stride = points[:, 3][None, :]
    reg_targets = torch.stack(
        [(t - chosen_seg[..., 0]) / stride, (chosen_seg[..., 1] - t) / stride], dim=-1
    )
    reg_targets = reg_targets * pos_mask[..., None]
    return Targets(cls_targets, reg_targets, pos_mask, gt_index)
