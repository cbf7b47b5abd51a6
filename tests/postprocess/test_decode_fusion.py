"""Decoding on a hand-made point table, fusion with video scores, and the full chain."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from helpers.model_defaults import postprocess_config

from asl_tal.data.batch import VideoMeta
from asl_tal.postprocess.decode import decode_candidates, postprocess
from asl_tal.postprocess.fusion import fuse_video_scores

# Level 0 (stride 1): t = 0, 1, 2, 3; level 1 (stride 2): t = 0, 2.  P = 6, C = 2.
POINTS = torch.tensor(
    [[0, 0, 4, 1], [1, 0, 4, 1], [2, 0, 4, 1], [3, 0, 4, 1], [0, 4, 8, 2], [2, 4, 8, 2]],
    dtype=torch.float32,
)
LOGITS = torch.full((1, 6, 2), -20.0)
OFFSETS = torch.ones(1, 6, 2)
MASK = torch.ones(1, 6, dtype=torch.bool)
LOGITS[0, 1, 0] = 0.0  # p .5; offsets (1, 2) at t=1, s=1 -> [0, 3]
OFFSETS[0, 1] = torch.tensor([1.0, 2.0])
LOGITS[0, 5, 1] = math.log(4.0)  # p .8; offsets (.5, 1.5) at t=2, s=2 -> [1, 5]
OFFSETS[0, 5] = torch.tensor([0.5, 1.5])
LOGITS[0, 2, 1] = 1.0  # p .731 but length .01 <= duration_thresh -> dropped
OFFSETS[0, 2] = torch.tensor([0.0, 0.01])
LOGITS[0, 3, 0] = 5.0  # masked point -> dropped
MASK[0, 3] = False

CFG = postprocess_config(nms_method="none")


def kept(cand):
    v = cand.valid[0]
    return sorted(
        zip(
            cand.segments[0][v].tolist(),
            cand.scores[0][v].tolist(),
            cand.labels[0][v].tolist(),
            strict=True,
        )
    )


def test_decode_by_hand() -> None:
    out = kept(decode_candidates(POINTS, LOGITS, OFFSETS, MASK, CFG))
    assert [o[0] for o in out] == [[0.0, 3.0], [1.0, 5.0]]
    assert [o[2] for o in out] == [0, 1]
    assert [o[1] for o in out] == pytest.approx([0.5, 0.8])


def test_topk_per_level() -> None:
    # With one candidate per level, level 0 keeps its best (the .731 one), which the length
    # filter then drops; only level 1's [1, 5] survives.
    out = kept(decode_candidates(POINTS, LOGITS, OFFSETS, MASK, replace(CFG, pre_nms_topk=1)))
    assert [o[0] for o in out] == [[1.0, 5.0]]


def test_topk_per_video() -> None:
    # Top 2 over the whole video: .8 ([1,5]) and .731 (dropped): [0, 3] (.5) is not among them.
    cfg = replace(CFG, pre_nms_topk=2, topk_per_level=False)
    out = kept(decode_candidates(POINTS, LOGITS, OFFSETS, MASK, cfg))
    assert [o[0] for o in out] == [[1.0, 5.0]]


def test_fusion_by_hand() -> None:
    # Proposals .64 and .25; class scores (.1, .81, .36) -> top-2 classes 1 (.81) and 2 (.36).
    # sqrt(.81·.64) = .72, sqrt(.81·.25) = .45, sqrt(.36·.64) = .48, sqrt(.36·.25) = .3.
    segs = torch.tensor([[[0.0, 10.0], [20.0, 30.0]]])
    out = fuse_video_scores(
        segs,
        torch.tensor([[0.64, 0.25]]),
        torch.ones(1, 2, dtype=torch.bool),
        torch.tensor([[0.1, 0.81, 0.36]]),
        topk=2,
    )
    seg, score, label, valid = (t[0] for t in out)
    assert score.tolist() == pytest.approx([0.72, 0.48, 0.45, 0.3])
    assert label.tolist() == [1, 2, 1, 2]
    assert seg.tolist() == [[0, 10], [0, 10], [20, 30], [20, 30]]
    assert valid.all()


def test_postprocess_to_seconds() -> None:
    # seconds = (grid·stride + window/2) / fps with fps 10, stride 4, window 8:
    # [0, 3] -> [0.4, 1.6]; [1, 5] -> [0.8, 2.4], clipped to the 2.0 s duration.
    meta = [VideoMeta("v", duration=2.0, fps=10.0, stride=4.0, window=8.0)]
    (det,) = postprocess(POINTS, LOGITS, OFFSETS, MASK, meta, postprocess_config())
    torch.testing.assert_close(
        det.segments, torch.tensor([[0.8, 2.0], [0.4, 1.6]], dtype=torch.float64)
    )
    assert det.scores.tolist() == pytest.approx([0.8, 0.5])
    assert det.labels.tolist() == [1, 0]


def test_postprocess_with_video_scores() -> None:
    meta = [VideoMeta("v", duration=2.0, fps=10.0, stride=4.0, window=8.0)]
    logits = LOGITS[..., :1]  # one class-agnostic channel: only the .5 candidate [0, 3]
    cfg = postprocess_config(class_agnostic=True, fusion_topk=1)
    (det,) = postprocess(
        POINTS, logits, OFFSETS, MASK, meta, cfg, video_scores=torch.tensor([[0.2, 0.98]])
    )
    assert det.labels.tolist() == [1]
    assert det.scores.tolist() == pytest.approx([math.sqrt(0.5 * 0.98)])


def test_batch_matches_single_videos() -> None:
    gen = torch.Generator().manual_seed(0)
    points = torch.cat(
        [
            torch.stack(
                [
                    torch.arange(0, 64, s),
                    torch.zeros(64 // s),
                    torch.zeros(64 // s),
                    torch.full((64 // s,), s),
                ],
                1,
            )
            for s in (1, 2, 4)
        ]
    ).float()
    logits = torch.randn(4, points.shape[0], 3, generator=gen) * 3
    offsets = torch.rand(4, points.shape[0], 2, generator=gen) * 4
    mask = torch.ones(4, points.shape[0], dtype=torch.bool)
    mask[1, 40:] = False
    meta = [VideoMeta(f"v{i}", 20.0, 10.0, 4.0, 8.0) for i in range(4)]
    cfg = postprocess_config(pre_nms_topk=50, max_seg_num=30)
    batched = postprocess(points, logits, offsets, mask, meta, cfg)
    for i in range(4):
        (single,) = postprocess(
            points, logits[i : i + 1], offsets[i : i + 1], mask[i : i + 1], meta[i : i + 1], cfg
        )
        torch.testing.assert_close(batched[i].segments, single.segments)
        torch.testing.assert_close(batched[i].scores, single.scores)
        assert torch.equal(batched[i].labels, single.labels)
