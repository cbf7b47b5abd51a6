"""Per-video transforms: fixed-length resampling and the random training crop.

Segments here are in grid units of the sample (``VideoMeta.seconds_to_grid``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from asl_tal.data.batch import VideoMeta


def resample_features(feats: torch.Tensor, length: int) -> torch.Tensor:
    """Linear resampling ``(D, T) -> (D, length)`` (``align_corners=False``).

    Output step ``j`` reads the input at position ``(j + 0.5) * T / length - 0.5``, so both
    grids cover the same time span.
    """
    if feats.shape[1] == length:
        return feats
    return F.interpolate(feats[None], size=length, mode="linear", align_corners=False)[0]


RESAMPLE_GEOMETRIES = ("spec", "interpolation")


def resample_meta(
    meta: VideoMeta, num_feats: int, length: int, geometry: str = "spec"
) -> VideoMeta:
    """The grid geometry after resampling ``num_feats`` features to ``length`` steps.

    ``geometry="spec"`` (docs/data.md §3): the new stride is
    ``((num_feats - 1) * stride + window) / length`` frames and the new window equals it.
    ``geometry="interpolation"`` [reading]: the centres :func:`resample_features` actually
    reads, ``stride' = num_feats * stride / length`` and ``window' = stride' + window -
    stride``. The two agree when ``window == stride``; otherwise "spec" is off by up to half
    a window at the ends. Either way ``VideoMeta.seconds_to_grid`` stays the single formula.
    """
    if geometry == "spec":
        stride = ((num_feats - 1) * meta.stride + meta.window) / length
        window = stride
    elif geometry == "interpolation":
        stride = num_feats * meta.stride / length
        window = stride + meta.window - meta.stride
    else:
        raise ValueError(
            f"resample_geometry must be one of {RESAMPLE_GEOMETRIES}, got {geometry!r}"
        )
    return replace(meta, stride=stride, window=window, num_frames=length)


def crop_length(
    num_feats: int,
    max_seq_len: int,
    crop_ratio: tuple[float, float] | None,
    rng: np.random.Generator,
) -> int:
    """Length of the training window for a video of ``num_feats`` steps.

    Without ``crop_ratio``: ``min(num_feats, max_seq_len)``. With ``crop_ratio = (lo, hi)``:
    an integer drawn uniformly from ``[round(lo * T), min(round(hi * T), max_seq_len)]``
    (the lower end capped by the upper, and at least 1).
    """
    if crop_ratio is None:
        return min(num_feats, max_seq_len)
    lo, hi = crop_ratio
    upper = max(min(round(hi * num_feats), max_seq_len, num_feats), 1)
    lower = min(max(round(lo * num_feats), 1), upper)
    return int(rng.integers(lower, upper + 1))


def random_crop(
    feats: torch.Tensor,
    segments: torch.Tensor,
    labels: torch.Tensor,
    meta: VideoMeta,
    max_seq_len: int,
    trunc_thresh: float,
    rng: np.random.Generator,
    crop_ratio: tuple[float, float] | None = None,
    num_tries: int = 200,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, VideoMeta]:
    """Random training window (ActionFormer's truncation, ``docs/data.md`` §3).

    Up to ``num_tries`` window starts are drawn; the first window in which at least one
    action keeps ``>= trunc_thresh`` of its length is used (else the last one drawn).
    Actions below the threshold are dropped, the others clipped to ``[0, window]``.

    Args:
        feats: ``(D, T)`` features.
        segments: ``(N, 2)`` ``[start, end]`` in grid units.
        labels: ``(N,)`` int64.
        meta: the sample's record; the result's ``offset`` grows by the window start.
        max_seq_len: longest window.
        trunc_thresh: minimal kept fraction of an action's length.
        rng: source of randomness (deterministic given its seed).
        crop_ratio: ``(lo, hi)`` fractions of ``T`` for the window length, or None.
        num_tries: window starts to try.

    Returns:
        ``feats (D, W)``, ``segments (N', 2)``, ``labels (N',)``, ``meta``.
    """
    num_feats = feats.shape[1]
    length = crop_length(num_feats, max_seq_len, crop_ratio, rng)
    if length == num_feats:
        return feats, segments, labels, meta
    starts = torch.from_numpy(rng.integers(0, num_feats - length + 1, size=num_tries))
    starts = starts.to(segments.dtype)
    lo = torch.maximum(starts[:, None], segments[None, :, 0])
    hi = torch.minimum(starts[:, None] + length, segments[None, :, 1])
    inside = (hi - lo).clamp(min=0) / (segments[:, 1] - segments[:, 0])
    kept = inside >= trunc_thresh
    good = kept.any(dim=1)
    choice = int(good.to(torch.int64).argmax()) if bool(good.any()) else num_tries - 1
    start = int(starts[choice])
    keep = kept[choice]
    cropped = torch.stack([lo[choice], hi[choice]], dim=1)[keep] - start
    return (
        feats[:, start : start + length],
        cropped,
        labels[keep],
        meta.with_offset(meta.offset + start, length),
    )
