"""Resampling geometry, grid <-> seconds, and the random training crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.model_defaults import sample_config

from asl_tal.data.annotations import VideoAnnotation
from asl_tal.data.batch import VideoMeta
from asl_tal.data.dataset import video_meta
from asl_tal.data.transforms import crop_length, random_crop, resample_features, resample_meta


def test_resample_ramp_by_formula():
    # 4 -> 8 steps: output j reads input x = (j + 0.5) * 4/8 - 0.5, clamped to [0, 3].
    ramp = torch.arange(4, dtype=torch.float32)[None] * torch.tensor([[1.0], [2.0]])
    out = resample_features(ramp, 8)
    expected = [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(out[1].numpy(), 2 * np.array(expected), atol=1e-6)
    # down-sampling 6 -> 3: x = (j + 0.5) * 2 - 0.5 = 0.5, 2.5, 4.5
    down = resample_features(torch.arange(6, dtype=torch.float32)[None], 3)
    np.testing.assert_allclose(down[0].numpy(), [0.5, 2.5, 4.5], atol=1e-6)


def test_resample_same_length_is_identity():
    x = torch.randn(3, 5)
    assert resample_features(x, 5) is x


def test_resampled_geometry_follows_the_spec_formula():
    # THUMOS-like: feature i covers frames [4 i, 4 i + 16) at 30 fps, centre (4 i + 8) / 30 s.
    meta = VideoMeta("v", duration=20.0, fps=30.0, stride=4.0, window=16.0, num_frames=140)
    np.testing.assert_allclose(meta.grid_to_seconds(np.arange(3)), [8 / 30, 12 / 30, 16 / 30])
    new = resample_meta(meta, num_feats=140, length=64)
    # stride' = ((140 - 1) * 4 + 16) / 64 = 572 / 64 = 8.9375 frames, window' = stride'
    assert new.stride == pytest.approx(8.9375) and new.window == pytest.approx(8.9375)
    assert new.num_frames == 64
    # step j is centred at (j + 0.5) * 8.9375 frames
    np.testing.assert_allclose(
        new.grid_to_seconds(np.array([0.0, 63.0])), [4.46875 / 30, 567.53125 / 30]
    )
    t = np.array([0.0, 3.3, 19.9])
    np.testing.assert_allclose(new.grid_to_seconds(new.seconds_to_grid(t)), t, rtol=1e-12)


def test_resampled_geometry_matches_interpolation_when_window_equals_stride():
    # ActivityNet-like (stride = window = 16): output step j of the interpolation reads
    # input position x_j = (j + 0.5) * T / L - 0.5, i.e. the time (16 x_j + 8) / fps.
    meta = VideoMeta("v", duration=90.0, fps=25.0, stride=16.0, window=16.0, num_frames=140)
    new = resample_meta(meta, num_feats=140, length=192)
    j = np.arange(192, dtype=np.float64)
    x = (j + 0.5) * 140 / 192 - 0.5
    np.testing.assert_allclose(new.grid_to_seconds(j), (16 * x + 8) / 25, rtol=1e-12)


def test_features_per_second_geometry_when_no_stride():
    # no stride known: grid = t * L / duration - 0.5 after resampling to L.
    video = VideoAnnotation("v", "training", 50.0, None, np.zeros((0, 2)), np.zeros(0, np.int64))
    meta = video_meta(video, num_feats=37, config=sample_config(feat_stride=None))
    assert (meta.fps, meta.stride, meta.window) == (37 / 50, 1.0, 1.0)
    new = resample_meta(meta, 37, 16)
    t = np.array([0.0, 12.5, 50.0])
    np.testing.assert_allclose(new.seconds_to_grid(t), t * 16 / 50 - 0.5, atol=1e-12)


def test_crop_length_rules():
    rng = np.random.default_rng(0)
    assert crop_length(100, 256, None, rng) == 100
    assert crop_length(1000, 256, None, rng) == 256
    draws = {crop_length(100, 256, (0.9, 1.0), rng) for _ in range(300)}
    assert draws == set(range(90, 101))  # round(0.9 * 100) .. round(1.0 * 100)
    draws = {crop_length(1000, 256, (0.9, 1.0), rng) for _ in range(50)}
    assert draws == {256}  # lower end 900 capped by the upper end min(1000, 256)


def _crop_case(seed: int):
    rng = np.random.default_rng(seed)
    num_feats = int(rng.integers(20, 400))
    n = int(rng.integers(0, 6))
    starts = rng.uniform(-2, num_feats, n)
    segments = np.stack([starts, starts + rng.uniform(0.5, num_feats / 2, n)], axis=1)
    feats = torch.arange(num_feats, dtype=torch.float32)[None].repeat(2, 1)
    meta = VideoMeta("v", 100.0, 1.0, 1.0, 1.0, offset=3.0, num_frames=num_feats)
    return feats, torch.tensor(segments, dtype=torch.float64).reshape(-1, 2), meta


@pytest.mark.parametrize("crop_ratio", [None, (0.5, 1.0)])
def test_crop_invariants_over_many_seeds(crop_ratio):
    max_seq_len, thresh = 64, 0.5
    for seed in range(300):
        feats, segments, meta = _crop_case(seed)
        labels = torch.arange(len(segments))
        out_feats, out_segs, out_labels, out_meta = random_crop(
            feats,
            segments,
            labels,
            meta,
            max_seq_len,
            thresh,
            np.random.default_rng(seed),
            crop_ratio=crop_ratio,
        )
        num_feats, length = feats.shape[1], out_feats.shape[1]
        start = out_meta.offset - meta.offset
        assert length <= max_seq_len and out_meta.num_frames == length
        assert start == int(start) and 0 <= start <= num_feats - length
        # the window shows original steps start .. start + length - 1
        np.testing.assert_array_equal(out_feats[0].numpy(), np.arange(start, start + length))
        if length == num_feats:
            assert out_segs is segments
            continue
        for k, label in enumerate(out_labels.tolist()):
            a, b = segments[label].tolist()
            lo, hi = max(a, start), min(b, start + length)
            assert hi - lo >= thresh * (b - a) - 1e-9
            assert out_segs[k].tolist() == pytest.approx([lo - start, hi - start])
        assert bool((out_segs >= 0).all()) and bool((out_segs <= length).all())
        # dropped actions had less than the threshold inside (or no window had any)
        dropped = set(range(len(segments))) - set(out_labels.tolist())
        if len(out_labels):
            for label in dropped:
                a, b = segments[label].tolist()
                inside = max(min(b, start + length) - max(a, start), 0)
                assert inside < thresh * (b - a)


def test_crop_keeps_seconds_of_actions_inside():
    meta = VideoMeta("v", duration=200.0, fps=30.0, stride=4.0, window=16.0, num_frames=1500)
    seconds = np.array([[100.0, 104.0]])
    grid = torch.tensor(meta.seconds_to_grid(seconds))
    feats = torch.zeros(1, 1500)
    _, segs, _, cropped = random_crop(
        feats, grid, torch.tensor([0]), meta, 256, 0.99, np.random.default_rng(1)
    )
    # the action is inside the kept window entirely (0.99 threshold), so seconds match
    np.testing.assert_allclose(cropped.grid_to_seconds(segs.numpy()), seconds, rtol=1e-12)


def test_crop_is_deterministic_given_seed():
    feats, segments, meta = _crop_case(5)
    labels = torch.arange(len(segments))

    def run(seed):
        rng = np.random.default_rng(seed)
        return [random_crop(feats, segments, labels, meta, 16, 0.5, rng)[3].offset for _ in "ab"]

    assert run(11) == run(11)
    assert len({tuple(run(s)) for s in range(10)}) > 1


def test_short_video_without_ratio_is_untouched():
    feats = torch.zeros(3, 50)
    segs = torch.tensor([[1.0, 5.0]])
    meta = VideoMeta("v", 50.0, 1.0, 1.0, 1.0, num_frames=50)
    out = random_crop(feats, segs, torch.tensor([2]), meta, 64, 0.5, np.random.default_rng(0))
    assert out[0] is feats and out[1] is segs and out[3] is meta


def test_interpolation_geometry_tracks_the_interpolated_centres():
    # T 4, stride 16, window 32, fps 30 -> L 2. F.interpolate reads input positions
    # x_j = (j + 0.5) * 4 / 2 - 0.5 = 0.5 and 2.5, whose centres are x * 16 + 16 frames:
    # 24 and 56 frames, i.e. 0.8 s and 56 / 30 s.
    meta = VideoMeta("v", 10.0, 30.0, 16.0, 32.0, 0.0, 4)
    exact = resample_meta(meta, num_feats=4, length=2, geometry="interpolation")
    assert (exact.stride, exact.window) == (32.0, 48.0)
    np.testing.assert_allclose(exact.grid_to_seconds(np.array([0.0, 1.0])), [24 / 30, 56 / 30])
    # the spec's geometry spreads the covered span evenly: stride' = window' = (3*16+32)/2
    spec = resample_meta(meta, num_feats=4, length=2)
    assert (spec.stride, spec.window) == (40.0, 40.0)
    np.testing.assert_allclose(spec.grid_to_seconds(np.array([0.0, 1.0])), [20 / 30, 60 / 30])
    # with window == stride the two agree
    square = VideoMeta("v", 10.0, 30.0, 16.0, 16.0, 0.0, 4)
    a = resample_meta(square, 4, 2, geometry="interpolation")
    b = resample_meta(square, 4, 2)
    assert (a.stride, a.window) == (b.stride, b.window) == (32.0, 32.0)
    with pytest.raises(ValueError, match="resample_geometry"):
        resample_meta(meta, 4, 2, geometry="nearest")
