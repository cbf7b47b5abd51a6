"""Fusion of class-agnostic proposals with external video-level class scores.

ActivityNet's class-agnostic variant (``docs/data.md`` §1): every proposal is repeated for
each of the video's ``topk`` highest-scoring classes, with score ``sqrt(proposal · class)``.
"""

from __future__ import annotations

import torch


def fuse_video_scores(
    segments: torch.Tensor,
    scores: torch.Tensor,
    valid: torch.Tensor,
    video_scores: torch.Tensor,
    topk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Label proposals with each video's top classes.

    Args:
        segments: ``(B, S, 2)`` proposals.
        scores: ``(B, S)`` proposal scores.
        valid: ``(B, S)`` bool.
        video_scores: ``(B, C)`` video-level class probabilities.
        topk: classes per video.

    Returns:
        ``segments (B, k·S, 2)``, ``scores (B, k·S)``, ``labels (B, k·S)`` int64,
        ``valid (B, k·S)``, sorted by fused score within each video (``k = min(topk, C)``).
    """
    batch, num = scores.shape
    if video_scores.shape[0] != batch:
        raise ValueError(f"video_scores has {video_scores.shape[0]} rows for {batch} videos")
    class_score, class_idx = video_scores.topk(min(topk, video_scores.shape[1]), dim=1)
    k = class_idx.shape[1]
    fused = torch.sqrt(class_score[:, :, None] * scores[:, None, :]).reshape(batch, k * num)
    fused_valid = valid[:, None, :].expand(batch, k, num).reshape(batch, k * num)
    fused = torch.where(fused_valid, fused, -torch.inf)
    labels = class_idx[:, :, None].expand(batch, k, num).reshape(batch, k * num)
    fused_segments = segments[:, None].expand(batch, k, num, 2).reshape(batch, k * num, 2)
    order = torch.sort(fused, dim=1, descending=True, stable=True).indices
    out_scores = torch.gather(fused, 1, order)
    out_valid = torch.gather(fused_valid, 1, order)
    return (
        torch.gather(fused_segments, 1, order[..., None].expand(-1, -1, 2)),
        torch.where(out_valid, out_scores, 0.0),
        torch.gather(labels, 1, order),
        out_valid,
    )
