"""From network outputs to per-video detections in seconds (``docs/method.md`` §8).

:func:`decode_candidates` turns the flat per-point outputs into scored segments on the
feature grid, :func:`postprocess` runs the whole chain: decode, NMS, optional fusion with
video-level class scores, mapping to seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from asl_tal.data.batch import VideoMeta
from asl_tal.postprocess.config import PostprocessConfig
from asl_tal.postprocess.fusion import fuse_video_scores
from asl_tal.postprocess.nms import batched_nms


@dataclass
class Candidates:
    """Padded pre-NMS candidates.

    Attributes:
        segments: ``(B, K, 2)`` ``[start, end]`` in grid units.
        scores: ``(B, K)`` class probabilities.
        labels: ``(B, K)`` int64 class ids.
        valid: ``(B, K)`` bool.
    """

    segments: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor


@dataclass
class Detections:
    """One video's detections, sorted by descending score.

    Attributes:
        segments: ``(K, 2)`` ``[start, end]`` in seconds, within ``[0, duration]``.
        scores: ``(K,)``.
        labels: ``(K,)`` int64 class ids.
    """

    segments: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.scores.shape[0]

    def to(self, device: torch.device | str) -> Detections:
        return Detections(self.segments.to(device), self.scores.to(device), self.labels.to(device))


def _level_sizes(points: torch.Tensor) -> list[int]:
    """Points per pyramid level; levels are the runs of equal stride in the point table."""
    return torch.unique_consecutive(points[:, 3], return_counts=True)[1].tolist()


def decode_candidates(
    points: torch.Tensor,
    logits: torch.Tensor,
    offsets: torch.Tensor,
    mask: torch.Tensor,
    cfg: PostprocessConfig,
    level_sizes: list[int] | None = None,
) -> Candidates:
    """Score, select and decode (point, class) candidates.

    Args:
        points: ``(P, 4)`` point table ``[t, r_lo, r_hi, stride]``.
        logits: ``(B, P, C)`` classification logits.
        offsets: ``(B, P, 2)`` distances to start / end in units of the point's stride.
        mask: ``(B, P)`` bool, False on padded points.
        cfg: ``score_thresh``, ``pre_nms_topk``, ``topk_per_level``, ``duration_thresh``.
        level_sizes: points per pyramid level; None = read from the point table (a graph
            traced by ``torch.export`` passes ``T / 2**l`` instead, as it cannot read data).

    Returns:
        Candidates with ``K`` = ``pre_nms_topk`` per level (or per video), at most ``P·C``.
    """
    batch, num_points, num_classes = logits.shape
    if points.shape[0] != num_points or offsets.shape[:2] != (batch, num_points):
        raise ValueError(
            f"points {tuple(points.shape)}, logits {tuple(logits.shape)} and offsets "
            f"{tuple(offsets.shape)} disagree on the number of points"
        )
    probs = torch.sigmoid(logits) * mask[..., None]
    if not cfg.topk_per_level:
        sizes = [num_points]
    else:
        sizes = _level_sizes(points) if level_sizes is None else level_sizes
    values, flat_idx = [], []
    start = 0
    for size in sizes:
        level = probs[:, start : start + size].reshape(batch, size * num_classes)
        top = torch.topk(level, torch.sym_min(cfg.pre_nms_topk, size * num_classes), dim=1)
        values.append(top.values)
        flat_idx.append(top.indices + start * num_classes)
        start += size
    scores, idx = torch.cat(values, dim=1), torch.cat(flat_idx, dim=1)
    point, labels = idx // num_classes, idx % num_classes
    t, stride = points[point, 0], points[point, 3]
    off = torch.gather(offsets, 1, point[..., None].expand(-1, -1, 2))
    segments = torch.stack([t - off[..., 0] * stride, t + off[..., 1] * stride], dim=-1)
    valid = (scores > cfg.score_thresh) & (
        segments[..., 1] - segments[..., 0] > cfg.duration_thresh
    )
    return Candidates(segments, torch.where(valid, scores, 0.0), labels, valid)


def postprocess(
    points: torch.Tensor,
    logits: torch.Tensor,
    offsets: torch.Tensor,
    mask: torch.Tensor,
    meta: list[VideoMeta],
    cfg: PostprocessConfig,
    video_scores: torch.Tensor | None = None,
) -> list[Detections]:
    """Decode, suppress, optionally fuse, and map to seconds.

    Args:
        points: ``(P, 4)``; logits: ``(B, P, C)``; offsets: ``(B, P, 2)``; mask: ``(B, P)``.
        meta: one record per video (grid <-> seconds, duration).
        cfg: post-processing settings.
        video_scores: ``(B, C')`` external video-level class scores; when given, each
            detection is relabelled with the video's ``cfg.fusion_topk`` classes.

    Returns:
        One :class:`Detections` per video, segments in seconds clipped to ``[0, duration]``.
    """
    if len(meta) != logits.shape[0]:
        raise ValueError(f"{len(meta)} meta records for a batch of {logits.shape[0]} videos")
    cand = decode_candidates(points, logits, offsets, mask, cfg)
    segments, scores, labels, valid = batched_nms(
        cand.segments, cand.scores, cand.labels, cand.valid, cfg
    )
    if video_scores is not None:
        segments, scores, labels, valid = fuse_video_scores(
            segments, scores, valid, video_scores, cfg.fusion_topk
        )
    out = []
    for i, video in enumerate(meta):
        keep = valid[i]
        seconds = video.grid_to_seconds(segments[i][keep].double()).clamp(0.0, video.duration)
        out.append(Detections(seconds, scores[i][keep], labels[i][keep].long()))
    return out
