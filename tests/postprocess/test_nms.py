"""Batched NMS: hand-computed survivors and decayed scores, and a straight-loop reference."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from helpers.model_defaults import postprocess_config

from asl_tal.postprocess.config import PostprocessConfig
from asl_tal.postprocess.nms import batched_nms

GAUSS = postprocess_config(nms_method="soft_gaussian", sigma=0.5, min_score=0.001, max_seg_num=10)

# One video. Class 0: A [0,10] .9, B [5,15] .8, C [20,30] .7, D [0,8] .85; class 1: E [0,10] .5.
# IoU(A,B) = 5/15 = 1/3, IoU(A,D) = 8/10 = 0.8, IoU(B,D) = 3/15 = 0.2, C overlaps nothing.
SEGS = [[0, 10], [5, 15], [20, 30], [0, 8], [0, 10]]
SCORES = [0.9, 0.8, 0.7, 0.85, 0.5]
LABELS = [0, 0, 0, 0, 1]


def run(cfg: PostprocessConfig, segs=SEGS, scores=SCORES, labels=LABELS):
    out = batched_nms(
        torch.tensor([segs], dtype=torch.float64),
        torch.tensor([scores], dtype=torch.float64),
        torch.tensor([labels]),
        torch.ones(1, len(scores), dtype=torch.bool),
        cfg,
    )
    seg, sc, lab, keep = (t[0] for t in out)
    return seg[keep].tolist(), sc[keep].tolist(), lab[keep].tolist()


def test_soft_gaussian_by_hand() -> None:
    # Round 1 selects A: B -> .8 e^{-(1/3)^2/.5} = .8 e^{-2/9}, D -> .85 e^{-.64/.5}
    # = .85 e^{-1.28}.
    # Round 2 selects C (.7 > .8 e^{-2/9} = .6406); no overlap. Round 3 selects B: D is
    # decayed again by e^{-.2^2/.5} = e^{-.08} -> .85 e^{-1.36}. Class 1 (E) is untouched.
    segs, scores, labels = run(GAUSS)
    assert segs == [[0, 10], [20, 30], [5, 15], [0, 10], [0, 8]]
    assert labels == [0, 0, 0, 1, 0]
    expected = [0.9, 0.7, 0.8 * math.exp(-2 / 9), 0.5, 0.85 * math.exp(-1.36)]
    assert scores == pytest.approx(expected, abs=1e-12)


def test_max_seg_num_keeps_the_top() -> None:
    segs, scores, _ = run(replace(GAUSS, max_seg_num=3))
    assert segs == [[0, 10], [20, 30], [5, 15]]
    assert scores == pytest.approx([0.9, 0.7, 0.8 * math.exp(-2 / 9)], abs=1e-12)


def test_min_score_drops_decayed() -> None:
    # D reaches .85 e^{-1.28} = 0.2365 after round 1: below 0.3, dropped.
    segs, _, _ = run(replace(GAUSS, min_score=0.3))
    assert [0, 8] not in segs and len(segs) == 4


def test_soft_linear_by_hand() -> None:
    # Linear above IoU 0.1: B x (1 - 1/3) = .5333; D x (1 - .8) = .17, then x (1 - .2) = .136.
    segs, scores, _ = run(replace(GAUSS, nms_method="soft_linear", iou_threshold=0.1))
    assert segs == [[0, 10], [20, 30], [5, 15], [0, 10], [0, 8]]
    assert scores == pytest.approx([0.9, 0.7, 0.8 * 2 / 3, 0.5, 0.85 * 0.2 * 0.8], abs=1e-12)


def test_hard_nms_by_hand() -> None:
    # IoU > 0.1 with A removes B (1/3) and D (0.8).
    segs, scores, labels = run(replace(GAUSS, nms_method="hard", iou_threshold=0.1))
    assert segs == [[0, 10], [20, 30], [0, 10]]
    assert scores == pytest.approx([0.9, 0.7, 0.5])
    assert labels == [0, 0, 1]


def test_class_agnostic_decays_across_classes() -> None:
    # E [0,10] (class 1) now competes with class 0. Selection order A, C, B, D as before (E
    # is always lowest); E decays by A (IoU 1): e^{-1/.5} = e^{-2}, by B (IoU 1/3): e^{-2/9},
    # by D (IoU .8): e^{-1.28}.
    segs, scores, labels = run(replace(GAUSS, class_agnostic=True))
    assert labels == [0, 0, 0, 0, 1]
    assert segs == [[0, 10], [20, 30], [5, 15], [0, 8], [0, 10]]
    assert scores[4] == pytest.approx(0.5 * math.exp(-2 - 2 / 9 - 1.28), abs=1e-12)


def test_class_agnostic_voting_by_hand() -> None:
    # A [0,10] .9 and B [2,12] .6 (IoU 8/12 = 2/3), C [30,40] .5. Hard NMS at 0.5 keeps A, C.
    # A's voters: itself (w = .9·1) and B (w = .6·2/3 = .4): start = (0 + .4·2)/1.3,
    # end = (.9·10 + .4·12)/1.3 = 13.8/1.3. C votes alone: unchanged.
    cfg = replace(GAUSS, nms_method="hard", iou_threshold=0.5, class_agnostic=True)
    segs, scores, _ = run(
        replace(cfg, voting_thresh=0.3), [[0, 10], [2, 12], [30, 40]], [0.9, 0.6, 0.5], [0, 1, 0]
    )
    assert segs[0] == pytest.approx([0.8 / 1.3, 13.8 / 1.3], abs=1e-12)
    assert segs[1] == [30, 40]
    assert scores == pytest.approx([0.9, 0.5])


def test_none_keeps_the_top_scores() -> None:
    segs, scores, _ = run(replace(GAUSS, nms_method="none", max_seg_num=2))
    assert segs == [[0, 10], [0, 8]] and scores == pytest.approx([0.9, 0.85])


def reference_soft_nms(segs, scores, labels, cfg: PostprocessConfig):
    """Straight loops: per class, pick the best, decay the rest; then the global top-k."""

    def iou(a, b):
        inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
        union = a[1] - a[0] + b[1] - b[0] - inter
        return inter / union if union > 0 else 0.0

    kept = []
    for c in sorted(set(labels)):
        pool = [[s, list(g)] for s, g, lab in zip(scores, segs, labels, strict=True) if lab == c]
        pool = [p for p in pool if p[0] >= cfg.min_score]
        while pool:
            best = max(range(len(pool)), key=lambda i: pool[i][0])
            score, seg = pool.pop(best)
            kept.append((score, seg, c))
            for p in pool:
                o = iou(seg, p[1])
                if cfg.nms_method == "soft_gaussian":
                    p[0] *= math.exp(-(o**2) / cfg.sigma)
                elif o > cfg.iou_threshold:
                    p[0] *= (1 - o) if cfg.nms_method == "soft_linear" else 0.0
            pool = [p for p in pool if p[0] >= cfg.min_score]
    kept.sort(key=lambda k: -k[0])
    return kept[: cfg.max_seg_num]


@pytest.mark.parametrize("method", ["soft_gaussian", "soft_linear", "hard"])
def test_batched_equals_reference_on_random_videos(method: str) -> None:
    gen = torch.Generator().manual_seed(0)
    batch, num, classes = 5, 60, 3
    start = torch.rand(batch, num, generator=gen, dtype=torch.float64) * 50
    segs = torch.stack([start, start + 1 + torch.rand(batch, num, generator=gen) * 10], -1)
    scores = torch.rand(batch, num, generator=gen, dtype=torch.float64)
    labels = torch.randint(classes, (batch, num), generator=gen)
    valid = torch.rand(batch, num, generator=gen) > 0.2
    cfg = replace(GAUSS, nms_method=method, max_seg_num=25, min_score=0.05, iou_threshold=0.3)
    out_segs, out_scores, out_labels, keep = batched_nms(segs, scores, labels, valid, cfg)
    for b in range(batch):
        v = valid[b]
        expected = reference_soft_nms(
            segs[b][v].tolist(), scores[b][v].tolist(), labels[b][v].tolist(), cfg
        )
        assert int(keep[b].sum()) == len(expected)
        assert out_scores[b][keep[b]].tolist() == pytest.approx([e[0] for e in expected], abs=1e-12)
        assert out_segs[b][keep[b]].tolist() == [e[1] for e in expected]
        assert out_labels[b][keep[b]].tolist() == [e[2] for e in expected]


def test_zero_length_segments_have_iou_zero() -> None:
    # Two identical points [5, 5] and a point inside [0, 10]: no union, or no intersection,
    # so nothing decays (IoU 0, e^0 = 1) and nothing is NaN.
    segs, scores, _ = run(GAUSS, [[5, 5], [5, 5], [0, 10]], [0.9, 0.8, 0.7], [0, 0, 0])
    assert segs == [[5, 5], [5, 5], [0, 10]]
    assert scores == pytest.approx([0.9, 0.8, 0.7], abs=1e-12)


@pytest.mark.parametrize("method", ["soft_gaussian", "soft_linear", "hard"])
def test_a_batch_without_any_valid_candidate_keeps_nothing(method):
    """A video too short to produce a candidate (all invalid) must not crash the rounds."""
    segments = torch.tensor([[[0.0, 1.0], [1.0, 2.0]]])
    scores = torch.tensor([[0.9, 0.8]])
    labels = torch.zeros(1, 2, dtype=torch.long)
    valid = torch.zeros(1, 2, dtype=torch.bool)
    _, out_scores, _, keep = batched_nms(
        segments, scores, labels, valid, postprocess_config(nms_method=method)
    )
    assert not keep.any() and torch.equal(out_scores, torch.zeros(1, 2))
