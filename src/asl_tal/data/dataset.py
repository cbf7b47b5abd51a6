"""One video per item: features, GT in grid units, and the grid's geometry.

The same :class:`TALDataset` serves the subsets of an annotation file (train / val / test)
and videos given as feature files alone (:mod:`asl_tal.data.feature_folder`), which have no
segments and a duration derived from their features.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from asl_tal.data.annotations import VideoAnnotation
from asl_tal.data.batch import VideoMeta
from asl_tal.data.feature_folder import Skipped, SourceReader, UnreadableVideo
from asl_tal.data.features import FeatureReader
from asl_tal.data.transforms import random_crop, resample_features, resample_meta

log = logging.getLogger(__name__)


@dataclass
class VideoSample:
    """One video as the dataset yields it.

    Attributes:
        feats: ``(D, T)`` float32, contiguous.
        segments: ``(N, 2)`` float32 ``[start, end]`` in grid units of this sample.
        labels: ``(N,)`` int64; a multi-label instance is one row per label.
        meta: geometry of the grid (crop offset included).
    """

    feats: torch.Tensor
    segments: torch.Tensor
    labels: torch.Tensor
    meta: VideoMeta


@dataclass(frozen=True)
class SampleConfig:
    """How a video's features become a sample (the ``dataset.*`` keys of that name; their
    generic values are in ``conf/dataset_defaults.yaml``).

    Attributes:
        fps: frame rate for every video (None = the JSON's per-video ``fps``).
        default_fps: used when neither ``fps`` nor the JSON gives one.
        feat_stride: feature stride in frames; None = features per second
            (``fps = T / duration``, stride 1, window 1).
        feat_window: feature window in frames (None = ``feat_stride``).
        max_seq_len: longest training window (None = no crop).
        fixed_length: resample every video to this many steps (None = keep ``T``).
        crop_after_resample: also crop fixed-length videos in training.
        resample_geometry: grid geometry after resampling (:func:`resample_meta`).
        crop_ratio: ``(lo, hi)`` window-length fractions for the crop, or None.
        trunc_thresh: minimal kept fraction of an action inside a crop.
        class_agnostic: every label becomes 0 (ActivityNet's class-agnostic variant).
    """

    fps: float | None
    default_fps: float | None
    feat_stride: float | None
    feat_window: float | None
    max_seq_len: int | None
    fixed_length: int | None
    crop_after_resample: bool
    resample_geometry: str
    crop_ratio: tuple[float, float] | None
    trunc_thresh: float
    class_agnostic: bool

    @property
    def crops(self) -> bool:
        return self.max_seq_len is not None and (
            self.fixed_length is None or self.crop_after_resample
        )


def video_meta(video: VideoAnnotation, num_feats: int, config: SampleConfig) -> VideoMeta:
    """Grid geometry of a video with ``num_feats`` feature steps, before any resampling.

    The frame rate is ``config.fps``, else the video's, else ``config.default_fps``. A video
    without a duration (no annotation file) lasts ``((num_feats - 1) * stride + window) /
    fps`` seconds (docs/data.md §3); features per second (``feat_stride`` None) need it.
    """
    if config.feat_stride is None:
        if video.duration is None:
            raise ValueError(
                f"video {video.video_id!r}: features per second (dataset.feat_stride=null) "
                "need the video's duration"
            )
        return VideoMeta(
            video.video_id, video.duration, num_feats / video.duration, 1.0, 1.0, 0.0, num_feats
        )
    fps = config.fps or video.fps or config.default_fps
    if fps is None:
        raise ValueError(
            f"video {video.video_id!r}: no field 'fps' in the annotation file and neither "
            "dataset.fps nor dataset.default_fps is set"
        )
    stride = float(config.feat_stride)
    window = float(config.feat_window if config.feat_window is not None else stride)
    duration = video.duration
    if duration is None:
        duration = ((num_feats - 1) * stride + window) / fps
    return VideoMeta(video.video_id, duration, float(fps), stride, window, 0.0, num_feats)


class TALDataset(Dataset):
    """Videos of one subset as :class:`VideoSample` items.

    Training mode drops videos without any annotation (logged) and applies the random crop
    (:func:`random_crop`) after any fixed-length resampling; evaluation mode yields whole
    videos. A video the reader reports as :class:`UnreadableVideo` (a
    :class:`SourceReader`'s) comes back as its :class:`Skipped` record instead of a sample,
    for :func:`~asl_tal.data.collate.collate_readable`.

    Args:
        videos: the subset's annotations (segments in seconds), or videos without
            annotations (:func:`~asl_tal.data.feature_folder.unlabelled_videos`).
        reader: feature reader for every stream, or a :class:`SourceReader`.
        config: sample geometry and crop settings.
        train: training mode.
        cache_features: keep each video's (resampled) features in memory after the first
            read (one cache per worker process).
        seed: seed of the crop randomness: the crop of item ``index`` in epoch ``epoch``
            is drawn from a generator seeded by ``(seed, epoch, index)``.
    """

    def __init__(
        self,
        videos: Mapping[str, VideoAnnotation],
        reader: FeatureReader | SourceReader,
        config: SampleConfig,
        train: bool,
        cache_features: bool = False,
        seed: int = 0,
    ) -> None:
        items = list(videos.values())
        if train:
            usable = [v for v in items if len(v.labels)]
            if len(usable) < len(items):
                log.warning(
                    "skipped %d of %d training video(s) without usable annotation",
                    len(items) - len(usable),
                    len(items),
                )
            items = usable
        self.videos = items
        self.reader = reader
        self.config = config
        self.train = train
        self.cache_features = cache_features
        self.seed = seed
        self.num_skipped = len(videos) - len(items)
        self._cache: dict[str, tuple[torch.Tensor, VideoMeta]] = {}

    def __len__(self) -> int:
        return len(self.videos)

    def features(self, video: VideoAnnotation) -> tuple[torch.Tensor, VideoMeta]:
        """``(D, T)`` features (resampled when fixed-length) and their geometry."""
        if video.video_id in self._cache:
            return self._cache[video.video_id]
        feats = self.reader(video.video_id, video.subset)
        meta = video_meta(video, feats.shape[1], self.config)
        if self.config.fixed_length is not None:
            meta = resample_meta(
                meta, feats.shape[1], self.config.fixed_length, self.config.resample_geometry
            )
            feats = resample_features(feats, self.config.fixed_length)
        if self.cache_features:
            feats = feats.contiguous()
            self._cache[video.video_id] = (feats, meta)
        return feats, meta

    def __getitem__(self, item: int | tuple[int, int]) -> VideoSample | Skipped:
        """Item ``index`` or ``(epoch, index)`` (from :class:`EpochShuffleSampler`)."""
        epoch, index = item if isinstance(item, tuple) else (0, item)
        video = self.videos[index]
        try:
            feats, meta = self.features(video)
        except UnreadableVideo as err:
            return err.skipped
        segments = torch.as_tensor(meta.seconds_to_grid(video.segments), dtype=torch.float32)
        labels = torch.from_numpy(video.labels)
        if self.config.class_agnostic:
            labels = torch.zeros_like(labels)
        if self.train and self.config.crops:
            feats, segments, labels, meta = random_crop(
                feats,
                segments,
                labels,
                meta,
                max_seq_len=self.config.max_seq_len,
                trunc_thresh=self.config.trunc_thresh,
                rng=np.random.default_rng([self.seed, epoch, index]),
                crop_ratio=self.config.crop_ratio,
            )
        return VideoSample(feats.contiguous(), segments.reshape(-1, 2), labels, meta)
