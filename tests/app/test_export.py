"""``asl-export``: the exported program + NMS gives the eager detections, for any batch size
and any length that is a multiple of the coarsest stride."""

from __future__ import annotations

import pytest
import torch
from helpers.modules import tiny_module

from asl_tal.checkpoints import load_checkpoint
from asl_tal.cli.export import main
from asl_tal.data.batch import VideoMeta
from asl_tal.data.collate import collate
from asl_tal.data.dataset import VideoSample
from asl_tal.deployment import (
    DeployableDetector,
    ExportedDetector,
    export_checkpoint,
    export_detector,
)

# the tiny config: 64-wide features, l3=3 down-sampling blocks -> strides 1..8
INPUT_DIM, COARSEST_STRIDE = 64, 2**3


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    out = tmp_path_factory.mktemp("export") / "model.pt2"
    export_checkpoint(ckpt, out, max_length=1024)
    return load_checkpoint(ckpt), ExportedDetector(out)


def feature_batch(videos: list[tuple[int, float, float, float]], seed: int):
    """A padded evaluation batch of random videos ``(T, fps, stride, window)``."""
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for i, (length, fps, stride, window) in enumerate(videos):
        duration = ((length - 1) * stride + window) / fps  # docs/data.md §3
        meta = VideoMeta(f"v{i}", duration, fps, stride, window, 0.0, length)
        feats = torch.randn(INPUT_DIM, length, generator=generator)
        samples.append(
            VideoSample(feats, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), meta)
        )
    return collate(samples, COARSEST_STRIDE, None, train=False, train_padding="longest")


def candidate_rows(outputs: tuple[torch.Tensor, ...], video: int) -> torch.Tensor:
    """``(segments (B, K, 2), scores (B, K), labels (B, K), valid (B, K))`` -> the video's valid
    candidates as rows ``(N, 4)``: start, end, score, label."""
    segments, scores, labels, valid = (t[video] for t in outputs)
    rows = torch.cat([segments, scores[:, None], labels[:, None].float()], dim=1)
    return rows[valid]


def assert_same_candidates(deployed, expected, tol: float = 1e-5) -> None:
    """Each video's valid candidates are the same set on both sides, in any order: every row
    of one side equals a row of the other to within ``tol`` (absolute and relative)."""
    assert deployed[-1].shape == expected[-1].shape
    for video in range(expected[-1].shape[0]):
        ours, reference = candidate_rows(deployed, video), candidate_rows(expected, video)
        assert ours.shape == reference.shape and len(reference) > 0
        gap = (ours[:, None, :] - reference[None, :, :]).abs()
        match = (gap <= tol + tol * reference.abs()[None, :, :]).all(dim=-1)
        assert match.any(dim=1).all() and match.any(dim=0).all(), f"video {video} differs"


def test_candidate_sets_compare_in_any_order():
    segments = torch.tensor([[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]])
    scores, labels = torch.tensor([[0.5, 0.5, 0.1]]), torch.tensor([[1, 2, 0]])
    valid = torch.tensor([[True, True, False]])
    swapped = (segments[:, [1, 0, 2]], scores[:, [1, 0, 2]], labels[:, [1, 0, 2]], valid)
    assert_same_candidates(swapped, (segments, scores, labels, valid))
    relabelled = (segments, scores, torch.tensor([[1, 3, 0]]), valid)
    with pytest.raises(AssertionError, match="video 0 differs"):
        assert_same_candidates(relabelled, (segments, scores, labels, valid))
    moved = (segments + torch.tensor([0.0, 1e-3]), scores, labels, valid)
    with pytest.raises(AssertionError, match="video 0 differs"):
        assert_same_candidates(moved, (segments, scores, labels, valid))


# tracing the program costs ~45 s: these run in .ci/run's slow step, not in `make test`
@pytest.mark.slow
@pytest.mark.parametrize(
    "videos",
    [
        [(90, 1.0, 1.0, 1.0), (150, 1.0, 1.0, 1.0)],  # padded to T = 152
        [(37, 30.0, 4.0, 16.0), (300, 25.0, 8.0, 16.0), (64, 10.0, 5.0, 5.0)],  # T = 304
    ],
)
def test_exported_detections_equal_the_eager_ones(exported, videos):
    module, artifact = exported
    batch = feature_batch(videos, seed=len(videos))
    eager = module.eval_detector.detect(batch, module.postprocess_cfg)
    fps, stride, window = (torch.tensor([v[k] for v in videos]) for k in (1, 2, 3))
    durations = [m.duration for m in batch.meta]
    deployed = artifact.detect(batch.feats, batch.mask, fps, stride, window, durations)
    assert len(deployed) == len(videos)
    for ours, reference in zip(deployed, eager, strict=True):
        assert len(ours) == len(reference) > 0
        torch.testing.assert_close(ours.labels, reference.labels, rtol=0, atol=0)
        torch.testing.assert_close(ours.scores, reference.scores, rtol=0, atol=1e-6)
        # float32 seconds in the graph, float64 after NMS in the eager path
        torch.testing.assert_close(ours.segments, reference.segments, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_local_window_attention_exports_for_every_length():
    # debug=tiny with a window of 5: 8-d inputs, strides 1..8. T = 16 is one 32-query block on
    # every level, T = 296 two or more (37 steps at stride 8); the program is traced at T = 16.
    # Two candidates' scores can be equal to within float error, and the graph and the eager
    # code may then sort them in either order: the candidates are compared as sets.
    torch.manual_seed(0)
    module = tiny_module(["model.network.attn_window=5"])
    detector = module.detector.eval()
    program = export_detector(detector, module.postprocess_cfg, max_length=1024).module()
    eager = DeployableDetector(detector, module.postprocess_cfg).eval()
    generator = torch.Generator().manual_seed(0)
    for lengths in [(16,), (40, 296), (296, 150, 9)]:
        steps = max(lengths)
        feats = torch.randn(len(lengths), 8, steps, generator=generator)
        mask = torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]
        inputs = (feats * mask[:, None], mask, *torch.ones(3, len(lengths)))
        with torch.no_grad():
            expected, deployed = eager(*inputs), program(*inputs)
        assert_same_candidates(deployed, expected)
    # one step at the coarsest stride (T = 8) is below the program's range
    with pytest.raises(AssertionError, match=r"size\(\)\[2\] >= 16"):
        program(torch.zeros(1, 8, 8), torch.ones(1, 8, dtype=torch.bool), *torch.ones(3, 1))


@pytest.mark.slow
def test_artifact_metadata_describes_the_inputs(exported):
    module, artifact = exported
    meta = artifact.metadata
    assert meta["inputs"] == ["feats", "mask", "fps", "stride", "window"]
    assert meta["input_dim"] == INPUT_DIM and meta["required_multiple"] == COARSEST_STRIDE
    assert meta["max_length"] == 1024
    assert artifact.class_names == [f"action_{i:02d}" for i in range(8)]
    assert artifact.postprocess == module.postprocess_cfg


@pytest.mark.slow
def test_a_length_off_the_stride_grid_is_refused(exported):
    _, artifact = exported
    feats, mask, ones = (
        torch.zeros(1, INPUT_DIM, 100),
        torch.ones(1, 100, dtype=torch.bool),
        torch.ones(1),
    )
    with pytest.raises(AssertionError, match="size"):
        artifact.candidates(feats, mask, ones, ones, ones)


def test_a_missing_checkpoint_is_one_error_line(tmp_path, capsys):
    missing = tmp_path / "nothing.ckpt"
    with pytest.raises(SystemExit) as info:
        main([str(missing), "--out", str(tmp_path / "model.pt2")])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: checkpoint {missing} not found"
    assert not (tmp_path / "model.pt2").exists()
