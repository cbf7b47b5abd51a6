"""The batch contract between the data layer, the network, the losses and decoding.

Time is measured on the *feature grid*: grid index ``g`` is the centre of feature ``g``.
A video's grid relates to seconds through its frame rate, feature stride and window
(``docs/data.md`` §3)::

    grid    = (seconds * fps - window / 2) / stride
    seconds = (grid * stride + window / 2) / fps

A training crop that starts at grid index ``offset`` of the full video shifts the grid:
index ``g`` of the crop is index ``g + offset`` of the video.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch


@dataclass(frozen=True)
class VideoMeta:
    """Per-video record needed to map grid positions back to seconds.

    Attributes:
        video_id: the annotation file's key.
        duration: video length in seconds.
        fps: frames per second used by the grid formulas.
        stride: feature stride in frames (after any fixed-length resampling).
        window: feature window in frames (after any fixed-length resampling).
        offset: grid index, in the uncropped video, of the first feature of this sample.
        num_frames: number of feature steps of this sample before padding.
    """

    video_id: str
    duration: float
    fps: float
    stride: float
    window: float
    offset: float = 0.0
    num_frames: int = 0

    def seconds_to_grid(self, seconds: np.ndarray | torch.Tensor | float):
        """Map times in seconds to this sample's grid (crop offset applied)."""
        return (seconds * self.fps - 0.5 * self.window) / self.stride - self.offset

    def grid_to_seconds(self, grid: np.ndarray | torch.Tensor | float):
        """Map this sample's grid positions to seconds (not clipped; see ``clip_seconds``)."""
        return ((grid + self.offset) * self.stride + 0.5 * self.window) / self.fps

    def with_offset(self, offset: float, num_frames: int) -> VideoMeta:
        """The same video seen through a crop starting at grid index ``offset``."""
        return replace(self, offset=offset, num_frames=num_frames)


@dataclass
class Batch:
    """A padded batch of videos.

    Attributes:
        feats: ``(B, D, T)`` float features, zero on padded steps.
        mask: ``(B, T)`` bool, True on real steps.
        segments: ``(B, N, 2)`` float GT ``[start, end]`` in grid units (padding rows are 0).
        seg_mask: ``(B, N)`` bool, True on real GT rows.
        labels: ``(B, N)`` int64 class ids, -1 on padding. A multi-label instance is one
            row per label, with identical segments.
        meta: one :class:`VideoMeta` per video.
    """

    feats: torch.Tensor
    mask: torch.Tensor
    segments: torch.Tensor
    seg_mask: torch.Tensor
    labels: torch.Tensor
    meta: list[VideoMeta]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Move every tensor to ``device``; ``meta`` stays on the host."""
        return Batch(
            feats=self.feats.to(device, non_blocking=non_blocking),
            mask=self.mask.to(device, non_blocking=non_blocking),
            segments=self.segments.to(device, non_blocking=non_blocking),
            seg_mask=self.seg_mask.to(device, non_blocking=non_blocking),
            labels=self.labels.to(device, non_blocking=non_blocking),
            meta=self.meta,
        )

    def pin_memory(self) -> Batch:
        """Pin host tensors (called by ``DataLoader(pin_memory=True)``)."""
        return Batch(
            feats=self.feats.pin_memory(),
            mask=self.mask.pin_memory(),
            segments=self.segments.pin_memory(),
            seg_mask=self.seg_mask.pin_memory(),
            labels=self.labels.pin_memory(),
            meta=self.meta,
        )

    def __len__(self) -> int:
        return self.feats.shape[0]

    @property
    def video_ids(self) -> list[str]:
        return [m.video_id for m in self.meta]
