"""Padding a list of :class:`VideoSample` into one :class:`Batch`, and setting aside the
videos a dataset could not read (:func:`collate_readable`, :class:`ReadableBatches`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch
from torch.utils.data import DataLoader

from asl_tal.data.batch import Batch
from asl_tal.data.dataset import VideoSample
from asl_tal.data.feature_folder import Skipped


def padded_length(longest: int, pad_multiple: int, max_seq_len: int | None) -> int:
    """``max(longest, max_seq_len)`` rounded up to a multiple of ``pad_multiple``."""
    length = max(longest, max_seq_len or 0)
    return -(-length // pad_multiple) * pad_multiple


def collate(
    samples: Sequence[VideoSample],
    pad_multiple: int,
    max_seq_len: int | None,
    train: bool,
    train_padding: Literal["longest", "max_seq_len"],
) -> Batch:
    """Pad ``T`` and the GT rows of ``samples`` into a :class:`Batch`.

    ``T`` is the longest sample rounded up to ``pad_multiple``: the network's outputs and
    the losses do not depend on padding (both tested), and two THUMOS crops of 300 and 560
    steps padded to a ``max_seq_len`` of 1,024 would cost 1.8x the work. In training,
    ``train_padding="max_seq_len"`` pads to :func:`padded_length` with ``max_seq_len``
    instead (ActionFormer's constant shapes, e.g. for ``torch.compile`` without dynamic
    shapes), and a sample longer than ``max_seq_len`` is an error either way (the crop
    should have cut it). GT rows pad to ``max(max N, 1)`` with label -1.
    """
    if not samples:
        raise ValueError("collate: empty list of samples")
    if train_padding not in ("longest", "max_seq_len"):
        raise ValueError(
            f"collate: train_padding must be 'longest' or 'max_seq_len', got {train_padding!r}"
        )
    if pad_multiple < 1:
        raise ValueError(f"collate: pad_multiple must be >= 1, got {pad_multiple}")
    lengths = [s.feats.shape[1] for s in samples]
    if train and max_seq_len is not None and max(lengths) > max_seq_len:
        long = samples[lengths.index(max(lengths))]
        raise ValueError(
            f"video {long.meta.video_id!r}: {max(lengths)} feature steps exceed "
            f"max_seq_len {max_seq_len} in training (enable cropping or raise max_seq_len)"
        )
    batch, dim = len(samples), samples[0].feats.shape[0]
    pad_to_max = train and train_padding == "max_seq_len"
    length = padded_length(max(lengths), pad_multiple, max_seq_len if pad_to_max else None)
    num_gt = max(max(len(s.labels) for s in samples), 1)
    feats = torch.zeros(batch, dim, length, dtype=torch.float32)
    mask = torch.zeros(batch, length, dtype=torch.bool)
    segments = torch.zeros(batch, num_gt, 2, dtype=torch.float32)
    seg_mask = torch.zeros(batch, num_gt, dtype=torch.bool)
    labels = torch.full((batch, num_gt), -1, dtype=torch.int64)
    for i, sample in enumerate(samples):
        n = len(sample.labels)
        feats[i, :, : lengths[i]] = sample.feats
        mask[i, : lengths[i]] = True
        segments[i, :n] = sample.segments
        seg_mask[i, :n] = True
        labels[i, :n] = sample.labels
    return Batch(feats, mask, segments, seg_mask, labels, [s.meta for s in samples])


def collate_readable(
    samples: Sequence[VideoSample | Skipped], collate_fn: Callable[[list[VideoSample]], Batch]
) -> tuple[Batch | None, list[Skipped]]:
    """``collate_fn`` of the readable samples (None if there is none) and the skipped ones."""
    skipped = [s for s in samples if isinstance(s, Skipped)]
    good = [s for s in samples if not isinstance(s, Skipped)]
    return (collate_fn(good) if good else None), skipped


class ReadableBatches:
    """The batches of a loader of :func:`collate_readable` pairs that hold a video.

    Iterating records the skipped videos in :attr:`skipped` and the duration (seconds) of
    each yielded video in :attr:`durations`.
    """

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.skipped: list[Skipped] = []
        self.durations: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for batch, skipped in self.loader:
            self.skipped.extend(skipped)
            if batch is not None:
                self.durations.update((m.video_id, m.duration) for m in batch.meta)
                yield batch
