"""``losses``: label assignment + ASLObjective forward/backward at the THUMOS shape (CPU).

B 2, T 1024 (6 levels, P 2016), C 20, d 512, ~30 GT per video, random network outputs that
require grad. Two settings in one run (all switches on / sensitivity and ASCL off) and
their ratio.

    python scripts/benchmark.py losses [--repeats 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from asl_tal.conf import compose
from omegaconf import OmegaConf

from asl_tal.data.batch import Batch, VideoMeta
from asl_tal.models.outputs import NetworkOutput
from asl_tal.models.points import PointGenerator, doubling_ranges
from asl_tal.objective.objective import ASLObjective

B, T, C, D, LEVELS, NUM_GT = 2, 1024, 20, 512, 6, 30


def make_batch(generator: torch.Generator) -> tuple[NetworkOutput, torch.Tensor, Batch]:
    """Random network outputs that require grad, the points ``(P, 4)`` and a GT batch."""
    pg = PointGenerator(LEVELS, doubling_ranges(LEVELS))
    sizes = pg.level_sizes(T)
    out = NetworkOutput(
        cls_logits=[torch.randn(B, s, C, generator=generator) for s in sizes],
        offsets=[torch.rand(B, s, 2, generator=generator) * 4 for s in sizes],
        feats=[torch.randn(B, D, s, generator=generator) for s in sizes],
        masks=[torch.ones(B, s, dtype=torch.bool) for s in sizes],
    )
    for tensors in (out.cls_logits, out.offsets, out.feats):
        for x in tensors:
            x.requires_grad_()
    # THUMOS-like lengths: log-uniform 2..128 grid steps
    length = torch.exp(torch.rand(B, NUM_GT, generator=generator) * torch.log(torch.tensor(64.0)))
    length = 2 * length
    start = torch.rand(B, NUM_GT, generator=generator) * (T - length)
    segments = torch.stack([start, start + length], dim=-1)
    labels = torch.randint(0, C, (B, NUM_GT), generator=generator)
    meta = [VideoMeta(f"v{i}", 100.0, 30.0, 4.0, 16.0) for i in range(B)]
    batch = Batch(
        torch.zeros(B, 1, T),
        torch.ones(B, T, dtype=torch.bool),
        segments,
        torch.ones(B, NUM_GT, dtype=torch.bool),
        labels,
        meta,
    )
    return out, pg(T), batch


def time_setting(objective: ASLObjective, repeats: int, seed: int) -> dict[str, float]:
    """Median and min seconds of loss + backward over ``repeats`` calls after one warm-up."""
    generator = torch.Generator().manual_seed(seed)
    out, points, batch = make_batch(generator)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        objective(out, points, batch)["loss"].backward()
        times.append(time.perf_counter() - start)
    times = times[1:]  # first call warms up
    return {"median_s": statistics.median(times), "min_s": min(times)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)


def run(args: argparse.Namespace) -> dict:
    """Each setting's seconds and the all-on / sensitivity-off ratio."""
    torch.set_num_threads(args.threads)
    overrides = {
        "all_on": [],
        "no_ascl": ["model.ascl.weight=0"],
        "sensitivity_off": [
            "model.sensitivity.class_level=false",
            "model.sensitivity.instance_level=false",
            "model.ascl.weight=0",
        ],
    }
    settings = {
        name: ASLObjective.from_config(
            OmegaConf.to_container(compose("train", ["model=asl", *extra]).model, resolve=True),
            C,
            D,
        ).train()
        for name, extra in overrides.items()
    }
    result = {
        "shape": {"B": B, "T": T, "P": 2016, "C": C, "d": D, "gt_per_video": NUM_GT},
        "threads": args.threads,
        "repeats": args.repeats,
    }
    for name, objective in settings.items():
        result[name] = time_setting(objective, args.repeats, seed=0)
    base = result["sensitivity_off"]["median_s"]
    result["ratio_all_on_vs_off"] = result["all_on"]["median_s"] / base
    return result
