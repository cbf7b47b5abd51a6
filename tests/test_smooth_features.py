"""scripts/research/smooth_features.py: the Gaussian kernel, edge handling, the folder round
trip."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "research"))

import smooth_features  # noqa: E402  (scripts/research/ is not a package)


def test_kernel_of_sigma_one_spans_three_sd_and_sums_to_one():
    weights = smooth_features.gaussian_kernel(1.0)
    norm = sum(math.exp(-(k**2) / 2) for k in range(-3, 4))
    expected = [math.exp(-(k**2) / 2) / norm for k in range(-3, 4)]
    np.testing.assert_allclose(weights, expected, rtol=1e-12)


def test_a_hard_cut_becomes_gradual_and_constants_stay():
    step = np.zeros((20, 3), dtype=np.float32)
    step[10:] = 1.0  # a cut between steps 9 and 10
    out = smooth_features.smooth(step, 1.0)
    norm = sum(math.exp(-(k**2) / 2) for k in range(-3, 4))
    after_cut = sum(math.exp(-(k**2) / 2) for k in range(0, 4)) / norm  # w_0 + w_1..w_3
    np.testing.assert_allclose(out[10], after_cut, rtol=1e-6)
    np.testing.assert_allclose(out[9], 1 - after_cut, rtol=1e-6)
    np.testing.assert_allclose(out[:6], 0.0, atol=1e-7)  # 4 steps or more before the cut
    np.testing.assert_allclose(out[14:], 1.0, rtol=1e-6)  # the repeated last step
    assert out.shape == step.shape and out.dtype == np.float32


def test_an_impulse_becomes_the_kernel():
    impulse = np.zeros((11, 1))
    impulse[5] = 1.0
    out = smooth_features.smooth(impulse, 1.0)[:, 0]
    np.testing.assert_allclose(out[2:9], smooth_features.gaussian_kernel(1.0), rtol=1e-12)
    np.testing.assert_allclose(out[[0, 1, 9, 10]], 0.0)


def test_folder_round_trip_and_a_bad_file_is_named(tmp_path):
    src, out = tmp_path / "features", tmp_path / "smoothed"
    src.mkdir()
    np.save(src / "video_a.npy", np.ones((8, 4), dtype=np.float32))
    assert smooth_features.smooth_folder(src, out, 2.0) == 1
    np.testing.assert_allclose(np.load(out / "video_a.npy"), 1.0, rtol=1e-6)
    np.save(src / "video_b.npy", np.ones(8, dtype=np.float32))
    with pytest.raises(ValueError, match=re.escape("video_b.npy: expected a T × D array")):
        smooth_features.smooth_folder(src, out, 2.0)
    with pytest.raises(ValueError, match="is the source folder"):
        smooth_features.smooth_folder(src, src, 2.0)
    np.testing.assert_array_equal(np.load(src / "video_a.npy"), 1.0)  # the source is kept
    with pytest.raises(ValueError, match="sigma must be > 0"):
        smooth_features.gaussian_kernel(0.0)
