"""Videos given as feature files alone: listing a folder, reading it through the one
dataset class, and batching it as the test subset is (``unlabelled_loader``)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from helpers.features import save_features
from helpers.model_defaults import sample_config
from test_datamodules import make

from asl_tal.data.batch import VideoMeta
from asl_tal.data.dataset import TALDataset
from asl_tal.data.feature_folder import (
    Skipped,
    SourceReader,
    VideoSource,
    find_videos,
    unlabelled_videos,
)
from asl_tal.data.features import FeatureError

DIM = 4
# the videos of the folder fixture: id -> feature steps
LENGTHS = {"a": 10, "b": 25, "d": 7, "e": 40, "f": 13}


def test_find_videos_lists_hdf5_datasets_and_reports_bad_hdf5_files(tmp_path, ramp):
    with h5py.File(tmp_path / "a.HDF5", "w") as h5:
        h5["x"] = ramp(5, DIM)
        h5.create_group("meta")
    (tmp_path / "b.h5").write_bytes(b"not hdf5")
    with (tmp_path / "x.Npz.npy").open("wb") as f:  # suffix .npy, video id "x.Npz"
        np.save(f, ramp(5, DIM))
    inv = find_videos(tmp_path)
    assert [(s.video_id, s.key) for s in inv.sources] == [("x", "x"), ("x.Npz", None)]
    assert [s.what for s in inv.skipped] == [str(tmp_path / "b.h5")]
    assert "cannot read HDF5" in inv.skipped[0].reason
    assert [s.what for s in inv.ignored] == [f"{tmp_path / 'a.HDF5'}:meta"]


def test_find_videos_refuses_an_unsupported_single_file_and_an_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FeatureError, match="unsupported feature file suffix"):
        find_videos(tmp_path / "notes.txt")
    with pytest.raises(FeatureError, match="no feature files"):
        find_videos(tmp_path)


@pytest.fixture
def folder(tmp_path, ramp):
    """The videos of :data:`LENGTHS`, and ``c_bad.npy`` of the wrong width."""
    for video_id, length in LENGTHS.items():
        save_features(tmp_path / "feats" / f"{video_id}.npy", ramp(length, DIM))
    save_features(tmp_path / "feats" / "c_bad.npy", ramp(5, DIM + 1))
    return tmp_path / "feats"


def test_the_dataset_reads_unlabelled_videos_and_sets_an_unreadable_one_aside(folder):
    sources = find_videos(folder).sources
    config = sample_config(fps=10.0, feat_stride=2, feat_window=4)
    ds = TALDataset(unlabelled_videos(sources), SourceReader(sources, DIM), config, train=False)
    a, bad = ds[0], ds[2]
    assert a.feats.shape == (DIM, 10) and a.feats[3, 7] == 703.0
    assert a.segments.shape == (0, 2) and a.labels.shape == (0,)
    # no annotation: duration = ((T - 1) * stride + window) / fps = (9 * 2 + 4) / 10
    assert a.meta == VideoMeta("a", 2.2, 10.0, 2.0, 4.0, 0.0, 10)
    assert bad == Skipped(
        str(folder / "c_bad.npy"),
        "video 'c_bad': wrong feature width: expected input_dim 4, got 5 (shape (5, 5))",
    )


def test_a_given_duration_and_features_per_second(folder):
    source = VideoSource("a", folder / "a.npy")
    reader = SourceReader([source], DIM)
    videos = unlabelled_videos([source], duration=5.0)
    ds = TALDataset(videos, reader, sample_config(fps=10.0, feat_stride=2), train=False)
    assert ds[0].meta == VideoMeta("a", 5.0, 10.0, 2.0, 2.0, 0.0, 10)
    # features per second: fps = T / duration, stride 1, window 1
    ds = TALDataset(videos, reader, sample_config(feat_stride=None), train=False)
    assert ds[0].meta == VideoMeta("a", 5.0, 2.0, 1.0, 1.0, 0.0, 10)
    no_duration = TALDataset(
        unlabelled_videos([source]), reader, sample_config(feat_stride=None), train=False
    )
    with pytest.raises(ValueError, match="features per second"):
        no_duration[0]


# six files in name order, c_bad the third: a b c_bad | d e f, or a b | c_bad d | e f
@pytest.mark.parametrize(("eval_batch_size", "sizes"), [(3, [2, 3]), (None, [2, 1, 2])])
def test_the_unlabelled_loader_batches_like_the_test_subset(
    tmp_path, folder, eval_batch_size, sizes
):
    dm = make(tmp_path, batch_size=2, eval_batch_size=eval_batch_size, fixed_length=None)
    batches = dm.unlabelled_loader(find_videos(folder).sources, fps=5.0)
    assert batches.loader.batch_size == (eval_batch_size or 2)
    got = list(batches)
    assert [len(batch) for batch in got] == sizes
    assert [m.video_id for b in got for m in b.meta] == ["a", "b", "d", "e", "f"]
    assert [s.what for s in batches.skipped] == [str(folder / "c_bad.npy")]
    for batch in got:
        # padded to the batch's longest video, rounded up to pad_multiple 8
        longest = max(LENGTHS[v] for v in batch.video_ids)
        assert batch.feats.shape[2] == -(-longest // 8) * 8
        assert batch.mask.sum(1).tolist() == [LENGTHS[v] for v in batch.video_ids]
        assert batch.labels.shape == (len(batch), 1) and not batch.seg_mask.any()
    # fps=5 replaces the dataset's (none); stride 2, window 2: ((T - 1) * 2 + 2) / 5
    assert batches.durations == {v: 2 * t / 5 for v, t in LENGTHS.items()}
    assert {m.fps for b in got for m in b.meta} == {5.0}


def test_the_unlabelled_loader_resamples_to_the_fixed_length(tmp_path, folder):
    dm = make(tmp_path, fixed_length=16, max_seq_len=16, default_fps=10.0)
    batch = next(iter(dm.unlabelled_loader([VideoSource("e", folder / "e.npy")])))
    assert batch.feats.shape == (1, DIM, 16)
    # stride' = ((40 - 1) * 2 + 2) / 16 = 5 frames; the duration stays (39 * 2 + 2) / 10 s
    assert batch.meta[0].stride == 5.0 and batch.meta[0].duration == 8.0


def test_the_unlabelled_loader_refuses_several_streams(tmp_path, folder):
    dm = make(tmp_path, feat_dir=["rgb", "flow"], input_dim=[3, 1])
    with pytest.raises(ValueError, match="one stream; this dataset has 2"):
        dm.unlabelled_loader([VideoSource("a", folder / "a.npy")])
