"""Feature readers: every file format, multi-stream concatenation, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asl_tal.data.features import FeatureError, FeatureReader, FeatureStream


@pytest.mark.parametrize("ext", [".npy", ".npz", ".pt"])
def test_per_video_formats_read_time_major(tmp_path, ramp, save, ext):
    array = ramp(7, 3)
    save(tmp_path / f"pre_vid{ext}", array)
    reader = FeatureReader([FeatureStream(tmp_path, 3, prefix="pre_", ext=ext)])
    feats = reader("vid")
    assert feats.dtype == torch.float32
    assert feats.shape == (3, 7)
    # step t of channel c holds 100 t + c
    assert feats[2, 5] == 502.0
    np.testing.assert_array_equal(feats.numpy(), array.T)


def test_hdf5_one_file_per_split(tmp_path, ramp, save):
    save(tmp_path / "training.h5", ramp(5, 2), key="a")
    save(tmp_path / "test.h5", ramp(6, 2), key="b")
    reader = FeatureReader([FeatureStream(tmp_path, 2, ext=".h5")])
    assert reader("a", "training").shape == (2, 5)
    assert reader("b", "test").shape == (2, 6)
    with pytest.raises(FeatureError) as err:
        reader("b", "training")
    assert "training.h5" in str(err.value) and "'b'" in str(err.value)


def test_hdf5_configured_file(tmp_path, ramp, save):
    save(tmp_path / "all.hdf5", ramp(5, 2), key="v_a")
    stream = FeatureStream(tmp_path, 2, prefix="v_", ext=".hdf5", hdf5_file="all.hdf5")
    np.testing.assert_array_equal(FeatureReader([stream])("a", "anything").numpy(), ramp(5, 2).T)


def test_streams_resampled_to_longest_and_concatenated(tmp_path, save):
    long = np.arange(8, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    short = np.arange(4, dtype=np.float32)[:, None] * 10.0
    save(tmp_path / "s1" / "v.npy", long)
    save(tmp_path / "s2" / "v.npy", short)
    reader = FeatureReader([FeatureStream(tmp_path / "s1", 2), FeatureStream(tmp_path / "s2", 1)])
    feats = reader("v")
    assert feats.shape == (3, 8)
    np.testing.assert_array_equal(feats[:2].numpy(), long.T)
    # linear, align_corners=False: output j samples input x = (j + 0.5) * 4 / 8 - 0.5,
    # clamped to [0, 3]; the input is 10 * x.
    x = np.clip((np.arange(8) + 0.5) * 0.5 - 0.5, 0, 3)
    np.testing.assert_allclose(feats[2].numpy(), 10 * x, rtol=0, atol=1e-5)
    assert feats[2, 0] == 0.0 and feats[2, 1] == pytest.approx(2.5)


def test_missing_file_names_path_and_video(tmp_path):
    reader = FeatureReader([FeatureStream(tmp_path, 3)])
    with pytest.raises(FeatureError) as err:
        reader("ghost")
    assert str(tmp_path / "ghost.npy") in str(err.value) and "'ghost'" in str(err.value)


def test_wrong_width(tmp_path, ramp, save):
    save(tmp_path / "v.npy", ramp(4, 5))
    with pytest.raises(FeatureError) as err:
        FeatureReader([FeatureStream(tmp_path, 3)])("v")
    message = str(err.value)
    assert "expected input_dim 3, got 5" in message
    assert str(tmp_path / "v.npy") in message and "'v'" in message


def test_nan_and_inf(tmp_path, ramp, save):
    array = ramp(6, 2)
    array[4, 1] = np.nan
    save(tmp_path / "v.npy", array)
    array[4, 1] = 0
    array[2, 0] = np.inf
    save(tmp_path / "w.npy", array)
    reader = FeatureReader([FeatureStream(tmp_path, 2)])
    with pytest.raises(FeatureError, match="NaN/Inf features \\(first at step 4\\)"):
        reader("v")
    with pytest.raises(FeatureError, match="first at step 2"):
        reader("w")


def test_wrong_ndim(tmp_path, save):
    save(tmp_path / "v.npy", np.zeros((2, 3, 4), np.float32))
    with pytest.raises(FeatureError, match="must be 2-D"):
        FeatureReader([FeatureStream(tmp_path, 4)])("v")


def test_unreadable_and_npz_without_key(tmp_path):
    (tmp_path / "v.npy").write_bytes(b"not a numpy file")
    with pytest.raises(FeatureError, match="cannot read features of video 'v'"):
        FeatureReader([FeatureStream(tmp_path, 4)])("v")
    np.savez(tmp_path / "w.npz", other=np.zeros((2, 4)))
    with pytest.raises(FeatureError, match="no field 'feats'"):
        FeatureReader([FeatureStream(tmp_path, 4, ext=".npz")])("w")


def test_pt_pickle_is_refused(tmp_path):
    torch.save({"feats": [1, 2, 3], "obj": object()}, tmp_path / "v.pt")
    with pytest.raises(FeatureError, match="cannot read"):
        FeatureReader([FeatureStream(tmp_path, 4, ext=".pt")])("v")
