"""``eval``: the detection scorer and batched Soft-NMS at the scale of a large test set.

Scorer: ``--videos`` videos × ``--preds`` predictions × ``--classes`` classes × 5 tIoU
thresholds, ~``--gt`` GT per video (a third of the predictions jittered around GT).
Soft-NMS (Gaussian, σ 0.5): ``--candidates`` candidates over the classes → 200 kept per
video, batch of 1 vs ``--batch`` (the ratio is the figure to compare across machines).

    python scripts/benchmark.py eval [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from asl_tal.conf import compose
from omegaconf import OmegaConf

from asl_tal.metrics.matching import GroundTruth, detection_ap, mean_ap
from asl_tal.postprocess.config import PostprocessConfig
from asl_tal.postprocess.nms import batched_nms


def scorer_inputs(rng: np.random.Generator, videos: int, preds: int, classes: int, gt: int):
    """``gt`` GT per video and ``preds`` predictions per video, a third of them near a GT.

    Returns:
        ``(GroundTruth, video (N,), segments (N, 2), scores (N,), labels (N,))`` with
        ``N = videos * preds``, in the argument order of ``detection_ap``.
    """
    gt_video = np.repeat(np.arange(videos), gt)
    start = rng.uniform(0, 900, gt_video.size)
    gt_arr = GroundTruth(
        gt_video,
        np.stack([start, start + rng.uniform(2, 60, start.size)], 1),
        rng.integers(classes, size=gt_video.size),
    )
    n = videos * preds
    video = np.repeat(np.arange(videos), preds)
    labels = rng.integers(classes, size=n)
    start = rng.uniform(0, 900, n)
    segments = np.stack([start, start + rng.uniform(1, 60, n)], 1)
    near = rng.random(n) < 1 / 3
    pick = video[near] * gt + rng.integers(gt, size=near.sum())
    segments[near] = gt_arr.segments[pick] + rng.normal(0, 3, (near.sum(), 2))
    segments[near] = np.sort(segments[near], axis=1) + np.array([0.0, 0.1])
    labels[near] = np.where(rng.random(near.sum()) < 0.7, gt_arr.labels[pick], labels[near])
    return gt_arr, video, segments, rng.random(n), labels


def time_call(fn, repeats: int) -> float:
    """Mean seconds of ``fn()`` over ``repeats`` calls after one untimed call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def nms_inputs(batch: int, candidates: int, classes: int, seed: int = 0):
    """Random candidates in ``batched_nms``'s argument order: segments ``(B, N, 2)``,
    scores ``(B, N)``, labels ``(B, N)``, valid ``(B, N)``."""
    gen = torch.Generator().manual_seed(seed)
    start = torch.rand(batch, candidates, generator=gen) * 2000
    segments = torch.stack(
        [start, start + 1 + torch.rand(batch, candidates, generator=gen) * 60], -1
    )
    return (
        segments,
        torch.rand(batch, candidates, generator=gen),
        torch.randint(classes, (batch, candidates), generator=gen),
        torch.ones(batch, candidates, dtype=torch.bool),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", type=int, default=500)
    parser.add_argument("--preds", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--gt", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)


def run(args: argparse.Namespace) -> dict:
    """The scorer's time and mAP, and Soft-NMS per video at batch 1 and at ``--batch``."""
    torch.set_num_threads(args.threads)
    thresholds = np.array([0.3, 0.4, 0.5, 0.6, 0.7])
    gt, *preds = scorer_inputs(
        np.random.default_rng(0), args.videos, args.preds, args.classes, args.gt
    )
    per_class = detection_ap(gt, *preds, args.classes, thresholds)
    scorer_s = time_call(lambda: detection_ap(gt, *preds, args.classes, thresholds), args.repeats)

    cfg = PostprocessConfig(**OmegaConf.to_container(compose("train").postprocess))
    single = nms_inputs(1, args.candidates, args.classes)
    batched = nms_inputs(args.batch, args.candidates, args.classes)
    single_s = time_call(lambda: batched_nms(*single, cfg), args.repeats)
    batch_s = time_call(lambda: batched_nms(*batched, cfg), args.repeats) / args.batch
    return {
        "torch_threads": args.threads,
        "scorer": {
            "videos": args.videos,
            "predictions": args.videos * args.preds,
            "classes": args.classes,
            "thresholds": thresholds.size,
            "gt": int(gt.labels.size),
            "seconds": round(scorer_s, 4),
            "average_mAP": round(float(mean_ap(per_class).mean()), 6),
        },
        "soft_nms": {
            "candidates_per_video": args.candidates,
            "classes": args.classes,
            "kept_per_video": cfg.max_seg_num,
            "ms_per_video_batch_1": round(single_s * 1000, 3),
            f"ms_per_video_batch_{args.batch}": round(batch_s * 1000, 3),
            "batch_speedup": round(single_s / batch_s, 2),
        },
    }
