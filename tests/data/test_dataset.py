"""TALDataset samples and collate padding."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from helpers.model_defaults import sample_config

from asl_tal.data.annotations import load_annotations
from asl_tal.data.batch import VideoMeta
from asl_tal.data.collate import collate, padded_length
from asl_tal.data.dataset import TALDataset, VideoSample
from asl_tal.data.features import FeatureReader, FeatureStream


@pytest.fixture
def two_videos(tiny_dataset, entry):
    database = {
        "a": entry("training", 10.0, [("run", 2.0, 4.0), ("jump", 2.0, 4.0)], fps=10.0),
        "b": entry("training", 8.0, [("run", 1.0, 3.0)], fps=None),
        "empty": entry("training", 5.0, [], fps=10.0),
    }
    root = tiny_dataset(database, {"a": 46, "b": 36, "empty": 20}, dim=3)
    videos, class_map = load_annotations(root / "annotations.json")
    reader = FeatureReader([FeatureStream(root / "features", 3)])
    return videos, reader, class_map


def test_eval_sample_grid_units_and_multilabel_rows(two_videos):
    videos, reader, class_map = two_videos
    config = sample_config(default_fps=5.0, feat_stride=2, feat_window=4)
    ds = TALDataset(videos, reader, config, train=False)
    assert len(ds) == 3
    sample = ds[0]
    assert sample.feats.shape == (3, 46) and sample.feats[1, 7] == 701.0
    # grid = (t * fps - window / 2) / stride = (t * 10 - 2) / 2
    np.testing.assert_allclose(sample.segments.numpy(), [[9.0, 19.0], [9.0, 19.0]])
    assert sample.labels.tolist() == [class_map.id_of("run"), class_map.id_of("jump")]
    assert sample.meta == VideoMeta("a", 10.0, 10.0, 2.0, 4.0, 0.0, 46)
    # video b has no fps in the JSON: default_fps 5 -> (t * 5 - 2) / 2
    np.testing.assert_allclose(ds[1].segments.numpy(), [[1.5, 6.5]])


def test_missing_fps_is_an_error(two_videos):
    videos, reader, _ = two_videos
    ds = TALDataset(videos, reader, sample_config(feat_stride=2), train=False)
    with pytest.raises(ValueError, match="video 'b': no field 'fps'"):
        ds[1]


def test_training_skips_videos_without_annotation(two_videos, caplog):
    videos, reader, _ = two_videos
    with caplog.at_level(logging.WARNING, logger="asl_tal.data.dataset"):
        ds = TALDataset(videos, reader, sample_config(fps=10.0), train=True)
    assert [v.video_id for v in ds.videos] == ["a", "b"]
    assert ds.num_skipped == 1
    assert "skipped 1 of 3 training video(s)" in caplog.text


def test_fixed_length_resamples_features_and_geometry(two_videos):
    videos, reader, _ = two_videos
    config = sample_config(fps=10.0, feat_stride=2, feat_window=2, fixed_length=23)
    sample = TALDataset(videos, reader, config, train=True)[0]
    # 46 -> 23 steps: output j reads input x = (j + 0.5) * 2 - 0.5 = 2 j + 0.5: 100 x + c
    expected = 100 * (2 * np.arange(23) + 0.5)
    np.testing.assert_allclose(sample.feats[0].numpy(), expected, rtol=1e-6)
    # stride' = (45 * 2 + 2) / 23 = 4 = window'; grid = (t * 10 - 2) / 4
    assert (sample.meta.stride, sample.meta.window) == (4.0, 4.0)
    np.testing.assert_allclose(sample.segments[0].numpy(), [4.5, 9.5])


def test_training_crop_and_class_agnostic(two_videos):
    videos, reader, _ = two_videos
    config = sample_config(fps=10.0, max_seq_len=16, trunc_thresh=0.5, class_agnostic=True)
    ds = TALDataset(videos, reader, config, train=True, seed=3)
    sample = ds[0]
    assert sample.feats.shape == (3, 16)
    start = int(sample.meta.offset)
    np.testing.assert_array_equal(sample.feats[0].numpy(), 100.0 * np.arange(start, start + 16))
    assert sample.labels.tolist() == [0] * len(sample.labels)
    # both rows of the multi-label instance [19.5, 39.5] (grid) survive or drop together
    assert len(sample.labels) in (0, 2)
    offsets = {int(ds[(epoch, 0)].meta.offset) for epoch in range(30)}
    assert len(offsets) > 1  # each epoch draws a new crop
    assert int(ds[(7, 0)].meta.offset) == int(ds[(7, 0)].meta.offset)  # ... a reproducible one
    again = TALDataset(videos, reader, config, train=True, seed=3)
    assert int(again[0].meta.offset) == start


def test_feature_cache_avoids_rereading(two_videos, tmp_path):
    videos, reader, _ = two_videos
    ds = TALDataset(videos, reader, sample_config(fps=10.0), train=False, cache_features=True)
    first = ds[0].feats
    (tmp_path / "dataset" / "features" / "a.npy").unlink()
    assert torch.equal(ds[0].feats, first)
    uncached = TALDataset(videos, reader, sample_config(fps=10.0), train=False)
    with pytest.raises(ValueError, match="not found"):
        uncached[0]


def _sample(video_id: str, length: int, n: int, dim: int = 2) -> VideoSample:
    return VideoSample(
        feats=torch.ones(dim, length),
        segments=torch.arange(2 * n, dtype=torch.float32).reshape(n, 2),
        labels=torch.arange(n) + 1,
        meta=VideoMeta(video_id, 10.0, 1.0, 1.0, 1.0, num_frames=length),
    )


def test_padded_length():
    assert padded_length(100, 32, 256) == 256
    assert padded_length(300, 32, 256) == 320
    assert padded_length(300, 1, None) == 300
    assert padded_length(257, 64, 200) == 320


def test_collate_pads_time_and_gt():
    batch = collate(
        [_sample("x", 5, 2), _sample("y", 9, 0)],
        pad_multiple=4,
        max_seq_len=None,
        train=False,
        train_padding="longest",
    )
    assert batch.feats.shape == (2, 2, 12)  # longest 9 rounded up to a multiple of 4
    assert batch.mask.sum(1).tolist() == [5, 9]
    assert float(batch.feats[0, :, 5:].abs().sum()) == 0.0
    assert batch.labels.tolist() == [[1, 2], [-1, -1]]
    assert batch.seg_mask.tolist() == [[True, True], [False, False]]
    assert batch.segments[0].tolist() == [[0, 1], [2, 3]]
    assert batch.video_ids == ["x", "y"]


def test_collate_training_pads_to_the_longest_crop():
    batch = collate(
        [_sample("x", 5, 0), _sample("y", 11, 0)],
        pad_multiple=8,
        max_seq_len=40,
        train=True,
        train_padding="longest",
    )
    assert batch.feats.shape == (2, 2, 16)  # longest 11 rounded up to 16, not 40
    assert batch.mask.sum(1).tolist() == [5, 11]


def test_collate_training_pads_to_max_seq_len_on_request_and_rejects_longer():
    batch = collate(
        [_sample("x", 5, 0)],
        pad_multiple=8,
        max_seq_len=20,
        train=True,
        train_padding="max_seq_len",
    )
    assert batch.feats.shape == (1, 2, 24)
    assert batch.labels.shape == (1, 1) and batch.labels.tolist() == [[-1]]
    with pytest.raises(ValueError, match="video 'long': 30 feature steps exceed max_seq_len 20"):
        collate([_sample("x", 5, 1), _sample("long", 30, 1)], 8, 20, True, "longest")
    with pytest.raises(ValueError, match="train_padding must be 'longest' or 'max_seq_len'"):
        collate([_sample("x", 5, 1)], 8, 20, train=True, train_padding="max")
    evaluated = collate([_sample("long", 30, 1)], 8, 20, train=False, train_padding="max_seq_len")
    assert evaluated.feats.shape[-1] == 32


def test_collate_evaluation_pads_only_to_the_multiple():
    short = collate([_sample("x", 5, 0)], 8, 20, train=False, train_padding="max_seq_len")
    assert short.feats.shape[-1] == 8  # not max_seq_len 20 rounded up to 24
