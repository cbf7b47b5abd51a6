"""Batched non-maximum suppression for 1-D segments, in plain torch (``docs/method.md`` §8).

Candidates of all videos are regrouped into one padded ``(G, K_g)`` table, one row per
``(video, class)`` group (per video when class-agnostic), sorted by score. Soft-NMS then
runs in selection rounds: every round, each live group selects its highest remaining
candidate and decays the others by their overlap with it. A video stops once
``max_seg_num`` of its selections score at least as high as anything it could still select,
because selections never outrank earlier ones within a group, so its final top-k is fixed.
"""

from __future__ import annotations

import torch

from asl_tal.postprocess.config import PostprocessConfig


def segment_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Broadcast IoU of ``a (..., 2)`` and ``b (..., 2)``; 0 where the union is empty."""
    inter = (torch.minimum(a[..., 1], b[..., 1]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)


def _decay(iou: torch.Tensor, cfg: PostprocessConfig) -> torch.Tensor:
    if cfg.nms_method == "soft_gaussian":
        return torch.exp(-(iou**2) / cfg.sigma)
    above = iou > cfg.iou_threshold
    if cfg.nms_method == "soft_linear":
        return torch.where(above, 1.0 - iou, 1.0)
    return torch.where(above, 0.0, 1.0)


def _group_table(
    scores: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, class_agnostic: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ``(video, class)`` groups (``(video,)`` when class-agnostic), sorted by score.

    Returns:
        ``source (G, K_g)``: flat index into the ``B·K`` candidates, -1 on padding;
        ``group_video (G,)``: the video of each group.
    """
    batch, k = scores.shape
    video = torch.arange(batch, device=scores.device).repeat_interleave(k)
    flat_labels = torch.zeros_like(video) if class_agnostic else labels.reshape(-1)
    num_keys = int(flat_labels.max().item()) + 1 if flat_labels.numel() else 1
    key = torch.where(valid.reshape(-1), video * num_keys + flat_labels, batch * num_keys)
    by_score = torch.sort(scores.reshape(-1), descending=True, stable=True).indices
    order = by_score[torch.sort(key[by_score], stable=True).indices]
    sorted_key = key[order]
    real = sorted_key < batch * num_keys
    order, sorted_key = order[real], sorted_key[real]
    group_key, counts = torch.unique_consecutive(sorted_key, return_counts=True)
    num_groups = group_key.numel()
    width = int(counts.max().item()) if num_groups else 0
    starts = torch.cumsum(counts, 0) - counts
    group = torch.arange(num_groups, device=scores.device).repeat_interleave(counts)
    rank = torch.arange(order.numel(), device=scores.device) - starts.repeat_interleave(counts)
    source = torch.full((num_groups, width), -1, dtype=torch.long, device=scores.device)
    source[group, rank] = order
    return source, group_key // num_keys


def _soft_nms_rounds(
    seg: torch.Tensor,
    score: torch.Tensor,
    live: torch.Tensor,
    group_video: torch.Tensor,
    num_videos: int,
    cfg: PostprocessConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selection rounds over padded groups.

    Every round works on the whole table (a few elementwise ops on ``G·K_g`` values) rather
    than gathering the live rows: rows that cannot select (nothing left above
    ``min_score``, or their video is done) are updated too but never record a selection,
    and their updates cannot matter (a dead row stays dead, a done video stays done).

    Args:
        seg: ``(G, K_g, 2)``; score: ``(G, K_g)``; live: ``(G, K_g)`` bool; group_video: ``(G,)``.

    Returns:
        ``selected (G, K_g)`` bool and ``selected_score (G, K_g)`` (the score when selected).
    """
    if score.shape[1] == 0:  # no candidate in any video: nothing to select
        return torch.zeros_like(live), torch.full_like(score, -torch.inf)
    start, end = seg[..., 0].contiguous(), seg[..., 1].contiguous()
    length = end - start
    score = score.clone()
    live = live & (score >= cfg.min_score)
    num_groups, width = score.shape
    rows = torch.arange(num_groups, device=seg.device)
    selected_score = torch.full_like(score, -torch.inf)
    # Scores of each group's selections, in selection order (hence non-increasing).
    history = torch.full_like(score, -1.0)
    video_done = torch.zeros(num_videos, dtype=torch.bool, device=seg.device)
    neg = torch.tensor(-1.0, dtype=score.dtype, device=seg.device)
    tiny = torch.finfo(score.dtype).tiny
    best, idx = torch.where(live, score, neg).max(dim=1)
    for step in range(width):
        active = (best >= cfg.min_score) & ~video_done[group_video]
        if not bool(active.any()):
            break
        selected_score[rows, idx] = torch.where(active, best, selected_score[rows, idx])
        history[:, step] = torch.where(active, best, neg)
        live[rows, idx] = False
        pick_start, pick_end = start[rows, idx, None], end[rows, idx, None]
        inter = (torch.minimum(end, pick_end) - torch.maximum(start, pick_start)).clamp(min=0)
        union = length + (pick_end - pick_start) - inter
        iou = inter / union.clamp(min=tiny)  # union 0 means inter 0: the IoU is then 0
        score = score * _decay(iou, cfg)
        live &= score >= cfg.min_score
        best, idx = torch.where(live, score, neg).max(dim=1)

        # A video is done once max_seg_num selections beat everything it could still select.
        reachable = torch.where(best >= cfg.min_score, best, neg)
        ceiling = torch.full((num_videos,), -1.0, dtype=score.dtype, device=seg.device)
        ceiling = ceiling.scatter_reduce(0, group_video, reachable, "amax")
        sure = (history[:, : step + 1] >= ceiling[group_video][:, None]).sum(dim=1)
        sure_per_video = torch.zeros(num_videos, dtype=torch.long, device=seg.device)
        sure_per_video.scatter_add_(0, group_video, sure)
        video_done |= sure_per_video >= cfg.max_seg_num
    return torch.isfinite(selected_score), selected_score


def segment_voting(
    kept: torch.Tensor,
    kept_valid: torch.Tensor,
    candidates: torch.Tensor,
    candidate_scores: torch.Tensor,
    candidate_valid: torch.Tensor,
    voting_thresh: float,
) -> torch.Tensor:
    """Refine kept segments as the IoU·score-weighted mean of candidates with IoU >= thresh.

    Args:
        kept: ``(B, S, 2)``; kept_valid: ``(B, S)``.
        candidates: ``(B, K, 2)`` pre-NMS candidates; candidate_scores, candidate_valid: ``(B, K)``.

    Returns:
        ``(B, S, 2)`` refined segments (unchanged where a row has no voter).
    """
    iou = segment_iou(kept[:, :, None, :], candidates[:, None, :, :])
    weight = torch.where(
        (iou >= voting_thresh) & candidate_valid[:, None, :], iou * candidate_scores[:, None], 0.0
    )
    total = weight.sum(dim=2, keepdim=True)
    voted = weight @ candidates / total.clamp(min=torch.finfo(weight.dtype).tiny)
    return torch.where((total > 0) & kept_valid[..., None], voted, kept)


def batched_nms(
    segments: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    cfg: PostprocessConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """NMS of every video's candidates at once.

    Args:
        segments: ``(B, K, 2)`` candidate segments (any unit).
        scores: ``(B, K)``.
        labels: ``(B, K)`` int64.
        valid: ``(B, K)`` bool.
        cfg: ``nms_method``, ``sigma``, ``iou_threshold``, ``min_score``, ``max_seg_num``,
            ``class_agnostic``, ``voting_thresh``.

    Returns:
        ``segments (B, S, 2)``, ``scores (B, S)``, ``labels (B, S)``, ``valid (B, S)``, each
        video's survivors sorted by (decayed) score, ``S = min(max_seg_num, K)``.
    """
    batch, k = scores.shape
    if cfg.nms_method == "none":
        final = torch.where(valid & (scores >= cfg.min_score), scores, -torch.inf)
    else:
        source, group_video = _group_table(scores, labels, valid, cfg.class_agnostic)
        present = source >= 0
        src = source.clamp(min=0)
        selected, selected_score = _soft_nms_rounds(
            segments.reshape(-1, 2)[src],
            scores.reshape(-1)[src],
            present,
            group_video,
            batch,
            cfg,
        )
        final = torch.full((batch * k,), -torch.inf, dtype=scores.dtype, device=scores.device)
        final[source[selected]] = selected_score[selected]
        final = final.reshape(batch, k)
    top = torch.topk(final, min(cfg.max_seg_num, k), dim=1)
    keep = top.values > -torch.inf
    out_segments = torch.gather(segments, 1, top.indices[..., None].expand(-1, -1, 2))
    if cfg.class_agnostic and cfg.voting_thresh > 0:
        out_segments = segment_voting(
            out_segments, keep, segments, scores, valid, cfg.voting_thresh
        )
    out_scores = torch.where(keep, top.values, 0.0)
    return out_segments, out_scores, torch.gather(labels, 1, top.indices), keep
