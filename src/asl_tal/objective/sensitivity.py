"""Action sensitivity: class-level ``p`` (``docs/method.md`` §3) and instance-level ``q`` (§4).

``p`` is a fixed-form Gaussian of a point's normalised distance to its GT's centre, with
learnable per-class means and widths. ``q`` comes from the instance evaluators ``Phi``,
small conv stacks run on the pyramid features of one GT at a time (features masked to the
GT's frames), so a GT's frames are judged on their own.

Running ``Phi`` once per (GT, level) span would be a loop over GTs. Instead every span is
cut into tiles of ``tile_len`` frames; each tile is gathered with a halo of ``l4`` frames
on each side (``l4`` conv layers of kernel 3 see exactly ``l4`` frames either way), so all
tiles of all spans run as one ``(tiles, d, tile_len + 2 l4)`` batch and the tile centres are
exact. Memory grows with the frames evaluated, not with the longest GT times the GT count.
At the positive points only the few frames holding positives are evaluated (each needs its
``l4`` neighbours only). On every level-0 frame inside a GT (for ASCL) each GT's frames run
as one span; where GTs overlap so much that this costs more than the whole video, one dense
pass serves all frames at least ``l4`` from a GT end, and only those ends are evaluated per
GT.
"""

from __future__ import annotations

import itertools
import math
import typing
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from asl_tal.models.blocks import ConvNormReLU

Normalize = Literal["none", "mean"]
EvaluatorMask = Literal["inside_gt", "positives"]
WeightNormalize = Literal["none", "batch", "gt"]
SENSITIVITY_MODES = typing.get_args(Normalize)
EVALUATOR_MASKS = typing.get_args(EvaluatorMask)


def log_gaussian(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``-(x - mu)^2 / (2 sigma^2)``, the log of :func:`gaussian`."""
    return -((x - mu) ** 2) / (2 * sigma**2).clamp(min=1e-12)


def gaussian(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``exp(-(x - mu)^2 / (2 sigma^2))``: peak 1, not normalised."""
    return torch.exp(log_gaussian(x, mu, sigma))


def exp_over_group_mean(
    log_values: torch.Tensor, group: torch.Tensor, num_groups: int
) -> torch.Tensor:
    """``exp(log_values)`` divided by its mean over each group, computed stably.

    Each group's largest ``log_values`` is subtracted first (the ratio does not change), so
    a group whose values would all underflow to 0 (a very narrow Gaussian far from every
    point) still gives finite weights that average 1 instead of 0 / 0.

    Args:
        log_values: any shape.
        group: same shape, int64 group ids in ``[0, num_groups)``, -1 for elements left out
            (those get ``exp(log_values)``, as :func:`mean_per_group` divides them by 1).
        num_groups: number of groups.
    """
    flat = log_values.reshape(-1)
    flat_group = group.reshape(-1)
    used = flat_group >= 0
    index = flat_group.clamp(min=0)
    peak = flat.new_full((num_groups,), -torch.inf).scatter_reduce(
        0, index, torch.where(used, flat.detach(), -torch.inf), "amax"
    )
    shifted = torch.exp(flat - torch.where(used, peak[index], 0.0))
    return (shifted / mean_per_group(shifted, flat_group, num_groups)).reshape(log_values.shape)


def mean_per_group(values: torch.Tensor, group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Mean of ``values`` over the elements sharing a ``group`` id, read back per element.

    Args:
        values: any shape.
        group: same shape, int64 group ids in ``[0, num_groups)``, -1 for elements left out.
        num_groups: number of groups.

    Returns:
        Same shape as ``values``; 1 on elements left out.
    """
    flat_values = values.reshape(-1)
    flat_group = group.reshape(-1)
    used = flat_group >= 0
    index = flat_group.clamp(min=0)
    sums = values.new_zeros(num_groups).scatter_add(0, index, flat_values * used)
    counts = values.new_zeros(num_groups).scatter_add(0, index, used.to(values.dtype))
    means = sums / counts.clamp(min=1)
    return torch.where(used, means[index], torch.ones_like(flat_values)).reshape(values.shape)


class ClassSensitivity(nn.Module):
    """Class-level sensitivity ``p_cls``, ``p_loc`` (``docs/method.md`` §3).

    Args:
        num_classes: ``C``.
        divide_by_stride: ``x = (m - t) / (s L)`` as the released code; off uses ``s = 1``.
        normalize: ``"none"`` or ``"mean"`` (rescale ``p`` to mean 1 within each group,
            e.g. a GT's positive points).
        lr_scale: the Gaussians' learning rate over the optimizer's (``optim.parameter_groups``).
        loc_sigma_init: initial ``sigma`` of the start and end Gaussians of ``p_loc`` (the
            released code: 1, which makes ``p_loc`` peak at the action's centre; below about
            0.4 it peaks at the two boundaries).
    """

    weight_decay_params = ("mu_cls", "sigma_cls", "mu_L", "sigma_L", "mu_R", "sigma_R")

    def __init__(
        self,
        num_classes: int,
        divide_by_stride: bool,
        normalize: Normalize,
        lr_scale: float,
        loc_sigma_init: float,
    ) -> None:
        super().__init__()
        if normalize not in SENSITIVITY_MODES:
            raise ValueError(f"ClassSensitivity: normalize must be one of {SENSITIVITY_MODES}")
        self.divide_by_stride = divide_by_stride
        self.normalize = normalize
        self.lr_scale = lr_scale
        self.mu_cls = nn.Parameter(torch.zeros(num_classes))
        self.sigma_cls = nn.Parameter(torch.ones(num_classes))
        self.mu_L = nn.Parameter(torch.full((num_classes,), -0.5))
        self.sigma_L = nn.Parameter(torch.full((num_classes,), float(loc_sigma_init)))
        self.mu_R = nn.Parameter(torch.full((num_classes,), 0.5))
        self.sigma_R = nn.Parameter(torch.full((num_classes,), float(loc_sigma_init)))

    def relative_position(
        self, t: torch.Tensor, stride: torch.Tensor, seg: torch.Tensor
    ) -> torch.Tensor:
        """``x = (m - t) / (s L)``; ``t``, ``stride`` broadcast with ``seg[..., 0]``."""
        centre = 0.5 * (seg[..., 0] + seg[..., 1])
        length = (seg[..., 1] - seg[..., 0]).clamp(min=1e-6)
        scale = length * stride if self.divide_by_stride else length
        return (centre - t) / scale

    def forward(
        self,
        t: torch.Tensor,
        stride: torch.Tensor,
        seg: torch.Tensor,
        labels: torch.Tensor,
        group: torch.Tensor | None = None,
        num_groups: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(p_cls, p_loc)``, each of the broadcast shape ``S`` of the inputs.

        Args:
            t: point positions (grid units), broadcastable to ``S``.
            stride: point strides, broadcastable to ``S``.
            seg: ``(*S, 2)`` GT ``[a, b]`` of each point.
            labels: ``S`` int64 GT class (entries < 0 are read as class 0).
            group: ``S`` int64 ids of the groups ``normalize="mean"`` averages over (-1: left
                out); required in that mode.
            num_groups: number of groups.
        """
        x = self.relative_position(t, stride, seg)
        cls = labels.clamp(min=0)
        log_cls = log_gaussian(x, self.mu_cls[cls], self.sigma_cls[cls])
        log_loc = torch.logaddexp(  # log of the mean of the two boundary Gaussians
            log_gaussian(x, self.mu_L[cls], self.sigma_L[cls]),
            log_gaussian(x, self.mu_R[cls], self.sigma_R[cls]),
        ) - math.log(2.0)
        if self.normalize == "mean":
            if group is None:
                raise ValueError("ClassSensitivity(normalize='mean') needs the group ids")
            return (
                exp_over_group_mean(log_cls, group, num_groups),
                exp_over_group_mean(log_loc, group, num_groups),
            )
        return log_cls.exp(), log_loc.exp()

    def class_parameters(self, label: int) -> dict[str, float]:
        """The six Gaussian parameters of one class, as floats (for plots)."""
        return {
            name: float(getattr(self, name)[label].detach()) for name in self.weight_decay_params
        }


def per_gt_is_cheaper(inside_frames: int, num_gts: int, video_frames: int, radius: int) -> bool:
    """Whether running each GT's frames as a span (``inside_frames`` GT frames, counted
    once per GT, and a zero step per GT) evaluates no more frames than a dense pass over
    the ``video_frames`` of the batch plus two GT-masked windows of ``3 radius`` frames and
    a zero step per GT end (none when ``radius`` is 0)."""
    windows = 2 * num_gts * (3 * radius + 1) if radius else 0
    return inside_frames + num_gts <= video_frames + windows


class InstanceEvaluator(nn.Module):
    """``Phi``: ``l4`` x [masked Conv1d k3, LN, ReLU], then Linear and sigmoid.

    Args:
        d: input feature width.
        l4: conv layers.
        width: channels of the conv layers (the first maps ``d -> width``); None = ``d``.
    """

    def __init__(self, d: int, l4: int, width: int | None) -> None:
        super().__init__()
        widths = [d] + [d if width is None else width] * l4
        self.layers = nn.ModuleList(
            ConvNormReLU(d_in, d_out) for d_in, d_out in itertools.pairwise(widths)
        )
        self.out = nn.Linear(widths[-1], 1)

    @property
    def receptive_radius(self) -> int:
        """Frames either side of a frame that its output depends on."""
        return len(self.layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x``: ``(K, d, W)``, ``mask``: ``(K, W)`` bool; returns ``q`` ``(K, W)`` in float32.

        The ``K`` spans run as one sequence ``(1, d, K·(W + 1))`` with a masked zero step
        after each: a k3 convolution sees that zero exactly as it would see its "same"
        padding, and one long convolution is several times faster than ``K`` short ones.
        """
        num_spans, dim, width = x.shape
        if num_spans == 0:  # e.g. a batch whose crops dropped every GT
            return x.new_zeros(0, width, dtype=torch.float32) + 0 * self.out.bias.float().sum()
        m = F.pad(mask, (0, 1)).to(x.dtype).reshape(1, -1)  # (1, K·(W + 1))
        x = F.pad(x, (0, 1)).transpose(0, 1).reshape(1, dim, -1) * m[:, None, :]
        for layer in self.layers:
            x = layer(x, m)
        q = torch.sigmoid(self.out(x[0].T).float()).reshape(num_spans, width + 1)
        return q[:, :width]


class InstanceSensitivity(nn.Module):
    """The two evaluators ``Phi_cls``, ``Phi_loc`` and where they run (``docs/method.md`` §4).

    Args:
        d: feature width.
        l4: conv layers per evaluator.
        width: channels of the evaluators' conv layers; None = ``d``.
        evaluator_mask: ``"inside_gt"`` (input masked to the GT's frames) or ``"positives"``
            (masked to the GT's positive points on the level).
        tile_len: frames per tile of the batched evaluation.
    """

    def __init__(
        self,
        d: int,
        l4: int,
        width: int | None,
        evaluator_mask: EvaluatorMask,
        tile_len: int,
    ) -> None:
        super().__init__()
        if evaluator_mask not in EVALUATOR_MASKS:
            raise ValueError(f"evaluator_mask must be one of {EVALUATOR_MASKS}")
        self.phi_cls = InstanceEvaluator(d, l4, width)
        self.phi_loc = InstanceEvaluator(d, l4, width)
        self.evaluator_mask = evaluator_mask
        self.tile_len = tile_len

    def evaluate_spans(
        self,
        feats: torch.Tensor,
        valid: torch.Tensor,
        span_batch: torch.Tensor,
        span_lo: torch.Tensor,
        span_hi: torch.Tensor,
        owner: torch.Tensor | None = None,
        span_owner: torch.Tensor | None = None,
        out_lo: torch.Tensor | None = None,
        out_hi: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run both evaluators on ``K`` spans, each on its own masked frames.

        Span ``k`` covers frames ``span_lo[k] .. span_hi[k]`` (inclusive) of video
        ``span_batch[k]``; its input is masked to those frames that are ``valid`` and, when
        ``owner`` is given, whose ``owner`` equals ``span_owner[k]``. ``q`` is computed on
        the frames ``out_lo[k] .. out_hi[k]`` (default: the whole span); a frame's value
        depends on the span's frames within ``l4`` of it only, so a short output range
        costs little whatever the span's length.

        Args:
            feats: ``(B, d, T)`` features.
            valid: ``(B, T)`` bool.
            span_batch, span_lo, span_hi: ``(K,)`` int64.
            owner: ``(B, T)`` int64 or None.
            span_owner: ``(K,)`` int64 or None.
            out_lo, out_hi: ``(K,)`` int64 output ranges, or None.

        Returns:
            ``q_cls``, ``q_loc``, ``member``: ``(K, W)`` where entry ``[k, j]`` is frame
            ``out_lo[k] + j`` and ``W`` the longest output range; ``member`` marks the frames
            that were evaluated (``q`` is 0 elsewhere).
        """
        num_frames = feats.shape[2]
        if out_lo is None or out_hi is None:
            out_lo, out_hi = span_lo, span_hi
        lengths = (out_hi - out_lo + 1).clamp(min=0)
        longest = int(lengths.max()) if lengths.numel() else 0
        if longest == 0:
            empty = feats.new_zeros(lengths.shape[0], 0)
            return empty, empty, empty.bool()
        tile = min(self.tile_len, longest)
        halo = self.phi_cls.receptive_radius
        num_tiles = (lengths + tile - 1) // tile
        first_tile = torch.cumsum(num_tiles, 0) - num_tiles
        tile_span = torch.repeat_interleave(
            torch.arange(len(lengths), device=feats.device), num_tiles
        )
        tile_rank = torch.arange(len(tile_span), device=feats.device) - first_tile[tile_span]
        tile_start = out_lo[tile_span] + tile_rank * tile

        frames = tile_start[:, None] + torch.arange(-halo, tile + halo, device=feats.device)
        batch = span_batch[tile_span][:, None]
        clamped = frames.clamp(0, num_frames - 1)
        inside = (
            (frames >= span_lo[tile_span][:, None])
            & (frames <= span_hi[tile_span][:, None])
            & (frames >= 0)
            & (frames < num_frames)
            & valid[batch, clamped]
        )
        if owner is not None:
            inside = inside & (owner[batch, clamped] == span_owner[tile_span][:, None])
        x = feats.transpose(1, 2)[batch, clamped].transpose(1, 2)
        q_cls_tiles = self.phi_cls(x, inside)[:, halo : halo + tile]
        q_loc_tiles = self.phi_loc(x, inside)[:, halo : halo + tile]
        member_tiles = inside[:, halo : halo + tile]

        offset = torch.arange(longest, device=feats.device)
        in_span = offset[None, :] < lengths[:, None]
        tile_index = (first_tile[:, None] + offset[None, :] // tile).clamp(max=len(tile_span) - 1)
        column = (offset % tile)[None, :].expand_as(tile_index)
        member = member_tiles[tile_index, column] & in_span
        q_cls = q_cls_tiles[tile_index, column] * member
        q_loc = q_loc_tiles[tile_index, column] * member
        return q_cls, q_loc, member

    def at_positives(
        self,
        feats: list[torch.Tensor],
        masks: list[torch.Tensor],
        points: torch.Tensor,
        segments: torch.Tensor,
        gt_index: torch.Tensor,
        pos_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``q`` at every positive point, ``Phi`` run per (GT, level) with positives there.

        Args:
            feats: per level ``(B, d, T_l)``.
            masks: per level ``(B, T_l)`` bool.
            points: ``(P, 4)`` point table.
            segments: ``(B, N, 2)`` GT in grid units.
            gt_index: ``(B, P)`` chosen GT, -1 on negatives.
            pos_mask: ``(B, P)`` bool.

        Returns:
            ``q_cls``, ``q_loc``: ``(B, P)``, 0 on negatives.
        """
        device = points.device
        batch, num_gt = segments.shape[:2]
        sizes = torch.tensor([m.shape[1] for m in masks], device=device)
        num_levels = len(masks)
        level = torch.repeat_interleave(torch.arange(num_levels, device=device), sizes)
        level_start = torch.cumsum(sizes, 0) - sizes
        gt = gt_index.clamp(min=0)

        key = (torch.arange(batch, device=device)[:, None] * num_gt + gt) * num_levels + level
        has_pos = torch.zeros(batch * num_gt * num_levels, dtype=torch.long, device=device)
        has_pos.index_put_((key.reshape(-1),), pos_mask.reshape(-1).long(), accumulate=True)
        span_key = torch.nonzero(has_pos).squeeze(1)
        span_level = span_key % num_levels
        span_gt = (span_key // num_levels) % num_gt
        span_batch = span_key // (num_levels * num_gt)

        stride = (2**span_level).to(segments.dtype)
        seg = segments[span_batch, span_gt]
        first = torch.ceil(seg[:, 0] / stride).long().clamp(min=0)
        last = torch.floor(seg[:, 1] / stride).long()
        last = torch.minimum(last, sizes[span_level] - 1)
        span_lo = level_start[span_level] + first
        span_hi = level_start[span_level] + last

        # q is needed on each span's positive points only (at most a few per level)
        point = torch.arange(level.shape[0], device=device).expand_as(key)
        pos_key, pos_point = key[pos_mask], point[pos_mask]
        out_lo = torch.full_like(has_pos, level.shape[0]).scatter_reduce(
            0, pos_key, pos_point, "amin"
        )[span_key]
        out_hi = torch.full_like(has_pos, -1).scatter_reduce(0, pos_key, pos_point, "amax")[
            span_key
        ]

        flat_feats = torch.cat(feats, dim=2)
        flat_valid = torch.cat(masks, dim=1)
        owner = gt_index if self.evaluator_mask == "positives" else None
        q_cls, q_loc, _ = self.evaluate_spans(
            flat_feats, flat_valid, span_batch, span_lo, span_hi, owner, span_gt, out_lo, out_hi
        )

        if q_cls.numel() == 0:
            # no positive: zeros that still touch every evaluator parameter (DDP)
            zeros = pos_mask.to(flat_feats.dtype) * 0 + 0 * sum(
                param.sum() for param in self.parameters()
            )
            return zeros, zeros
        span_id = torch.full_like(has_pos, -1)
        span_id[span_key] = torch.arange(len(span_key), device=device)
        k = span_id[key].clamp(min=0)
        column = torch.arange(level.shape[0], device=device)[None, :] - out_lo[k]
        column = column.clamp(0, q_cls.shape[1] - 1)
        q_cls_pos = torch.where(pos_mask, q_cls[k, column], 0.0)
        q_loc_pos = torch.where(pos_mask, q_loc[k, column], 0.0)
        return q_cls_pos, q_loc_pos

    @torch.no_grad()
    def inside_gts(
        self,
        feats: torch.Tensor,
        valid: torch.Tensor,
        segments: torch.Tensor,
        seg_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``q`` on every level-0 frame inside every GT, ``Phi`` input masked to the GT.

        Two exact ways, the one that evaluates fewer frames for the batch is taken:
        :meth:`_per_gt` runs each GT's frames as one span (the frames inside GTs, counted
        once per GT), :meth:`_dense_and_ends` one dense pass over the whole video plus the
        ``l4`` frames at each GT end (cheaper where GTs overlap heavily).

        Args:
            feats: ``(B, d, T)`` level-0 features.
            valid: ``(B, T)`` bool.
            segments: ``(B, N, 2)``; seg_mask: ``(B, N)``.

        Returns:
            ``q_cls``, ``q_loc``: ``(B, N, T)``, 0 outside each GT.
        """
        num_frames = feats.shape[2]
        lo = torch.ceil(segments[..., 0]).long().clamp(min=0)  # (B, N)
        hi = torch.floor(segments[..., 1]).long().clamp(max=num_frames - 1)
        frames = torch.arange(num_frames, device=feats.device)
        inside = (
            (frames >= lo[..., None])
            & (frames <= hi[..., None])
            & (seg_mask[..., None] & valid[:, None, :])
        )  # (B, N, T)
        radius = self.phi_cls.receptive_radius
        if per_gt_is_cheaper(int(inside.sum()), int(seg_mask.sum()), valid.numel(), radius):
            return self._per_gt(feats, inside)
        return self._dense_and_ends(feats, valid, inside, lo, hi, seg_mask)

    def _per_gt(
        self, feats: torch.Tensor, inside: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``q`` with each GT's frames (``inside`` ``(B, N, T)``) run as one span: all spans
        in one sequence, a masked zero step wherever the next frame is not the same GT's
        next frame (which a k3 convolution reads as its padding)."""
        num_gt, num_frames = inside.shape[1:]
        out_cls = feats.new_zeros(inside.shape, dtype=torch.float32)
        out_loc = out_cls.clone()
        b, n, t = torch.nonzero(inside, as_tuple=True)
        if t.numel() == 0:
            return out_cls, out_loc
        key = (b * num_gt + n) * (num_frames + 1) + t  # consecutive frames of a GT: +1
        step = torch.ones_like(key)
        step[1:] += (key[1:] - key[:-1] != 1).long()
        position = torch.cumsum(step, 0) - 1
        length = int(position[-1]) + 1
        x = feats.new_zeros(1, feats.shape[1], length)
        x[0, :, position] = feats.transpose(1, 2)[b, t].T
        member = torch.zeros(1, length, dtype=torch.bool, device=feats.device)
        member[0, position] = True
        out_cls[b, n, t] = self.phi_cls(x, member)[0, position]
        out_loc[b, n, t] = self.phi_loc(x, member)[0, position]
        return out_cls, out_loc

    def _dense_and_ends(
        self,
        feats: torch.Tensor,
        valid: torch.Tensor,
        inside: torch.Tensor,
        lo: torch.Tensor,
        hi: torch.Tensor,
        seg_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``q`` from one dense pass over the video (masked to ``valid`` only), exact for a
        frame at least ``l4`` frames from both ends of its GT (``Phi`` sees ``l4`` frames
        either side); the ``l4`` frames at each end of each GT are evaluated again, in small
        windows masked to the GT. ``lo``, ``hi``: ``(B, N)`` first / last frame of each GT."""
        num_frames = feats.shape[2]
        radius = self.phi_cls.receptive_radius
        dense_cls = self.phi_cls(feats, valid)
        dense_loc = self.phi_loc(feats, valid)
        out_cls = dense_cls[:, None, :] * inside
        out_loc = dense_loc[:, None, :] * inside
        if radius == 0:
            return out_cls, out_loc

        # one window per (GT, end): its `radius` frames with a halo of `radius` each side
        win_b, win_n = torch.nonzero(seg_mask, as_tuple=True)
        win_lo, win_hi = lo[win_b, win_n], hi[win_b, win_n]
        starts = torch.cat([win_lo, win_hi - radius + 1])
        win_b, win_n = win_b.repeat(2), win_n.repeat(2)
        win_lo, win_hi = win_lo.repeat(2), win_hi.repeat(2)
        window = starts[:, None] + torch.arange(-radius, 2 * radius, device=feats.device)
        clamped = window.clamp(0, num_frames - 1)
        member = (
            (window >= win_lo[:, None])
            & (window <= win_hi[:, None])
            & (window >= 0)
            & (window < num_frames)
            & valid[win_b[:, None], clamped]
        )
        x = feats.transpose(1, 2)[win_b[:, None], clamped].transpose(1, 2)
        centre = slice(radius, 2 * radius)
        q_cls = self.phi_cls(x, member)[:, centre]
        q_loc = self.phi_loc(x, member)[:, centre]
        write = member[:, centre]
        rows_b = win_b[:, None].expand_as(write)[write]
        rows_n = win_n[:, None].expand_as(write)[write]
        cols = window[:, centre][write]
        out_cls[rows_b, rows_n, cols] = q_cls[write]
        out_loc[rows_b, rows_n, cols] = q_loc[write]
        return out_cls, out_loc


def combine_sensitivity(
    p: torch.Tensor | None, q: torch.Tensor | None, like: torch.Tensor
) -> torch.Tensor:
    """``h`` of ``Table c``: ``p + q``, ``p``, ``q`` or ones (``like``'s shape) when neither."""
    if p is None and q is None:
        return torch.ones_like(like)
    if p is None:
        return q
    if q is None:
        return p
    return p + q
