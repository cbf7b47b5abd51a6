"""``actionformer``: our training step and inference beside ActionFormer's official code.

Both models are built from their own code in this one process and timed alternately (ours,
then ActionFormer's, ``--repeats`` times after ``--warmup`` untimed rounds), so a load from
elsewhere on the machine falls on both alike; the ratios (ours / ActionFormer) are the
figures to quote. Float32, ``--config``'s size for ours (default the THUMOS14 row) and
ActionFormer's THUMOS14 I3D settings with the same input width and classes:

- ``train_step``: a batch of two videos of ``--seq-len`` steps with the same 30 GT segments
  per video on both sides; forward with label assignment and losses, backward, gradient
  clipping at 1.0 and each side's own AdamW step (the EMA update, cheap on both sides, is
  left out of both);
- ``inference``: one video of ``--seq-len`` steps, network, decoding and NMS (ActionFormer's
  C++ NMS with its THUMOS settings, ours with the THUMOS row's).

``--seq-len`` is 1,152 by default: ActionFormer's window of 19 on six pyramid levels
accepts only multiples of 576 (its stride 32 × 18), and 1,152 is the nearest to 1,024.

ActionFormer is not shipped with asl-tal: ``--af-source`` is a checkout of
happyharrycn/actionformer_release with its NMS extension built
(``cd libs/utils && python setup.py build_ext --inplace``); it also needs ``pyyaml``.

    python scripts/benchmark.py actionformer --af-source ../actionformer_release \\
        --setting "" --setting "model.network.attn_window=19"
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path

import torch

from asl_tal.data.batch import Batch
from asl_tal.detector import ASLDetector
from asl_tal.optim import build_optimizer
from asl_tal.postprocess.config import PostprocessConfig
from benchmarking.configs import CONFIGS, compose, synthetic_batch
from benchmarking.pipeline import detect_once
from benchmarking.timing import SectionTimer, machine_info, peak_memory_mb, summarize

GT_PER_VIDEO = 30
GT_LENGTH = (2.0, 128.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--af-source", type=Path, required=True, help="actionformer_release checkout"
    )
    parser.add_argument("--config", choices=sorted(CONFIGS), default="thumos")
    parser.add_argument(
        "--setting",
        action="append",
        default=None,
        help='our Hydra overrides, one quoted string per row ("" = the defaults); repeatable',
    )
    parser.add_argument("--seq-len", type=int, default=1152)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)


class ActionFormer:
    """ActionFormer's THUMOS14 I3D model and optimizer, built from its own checkout."""

    def __init__(self, source: Path, seq_len: int, input_dim: int, num_classes: int) -> None:
        source = source.resolve()
        if not (source / "libs" / "modeling").is_dir():
            raise SystemExit(f"error: --af-source {source}: no libs/modeling in it")
        sys.path[:0] = [str(source), str(source / "libs" / "utils")]
        from libs.core import load_config
        from libs.modeling import make_meta_arch
        from libs.utils import make_optimizer

        cfg = load_config(str(source / "configs" / "thumos_i3d.yaml"))
        cfg["model"].update(max_seq_len=seq_len, input_dim=input_dim, num_classes=num_classes)
        self.model = make_meta_arch(cfg["model_name"], **cfg["model"])
        self.optimizer = make_optimizer(self.model, cfg["opt"])
        self.clip = cfg["train_cfg"]["clip_grad_l2norm"]

    def train_step(self, videos: list[dict]) -> None:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        self.model(videos)["final_loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()

    @torch.no_grad()
    def detect(self, video: dict) -> None:
        self.model.eval()
        self.model([video])


def actionformer_videos(batch: Batch) -> list[dict]:
    """``batch`` in ActionFormer's per-video dict format (features ``(D, T)``, grid units)."""
    return [
        {
            "video_id": meta.video_id,
            "feats": batch.feats[i],
            "segments": batch.segments[i][batch.seg_mask[i]],
            "labels": batch.labels[i][batch.seg_mask[i]],
            "fps": meta.fps,
            "duration": meta.duration,
            "feat_stride": int(meta.stride),
            "feat_num_frames": int(meta.window),
        }
        for i, meta in enumerate(batch.meta)
    ]


def our_train_step(detector: ASLDetector, optimizer: torch.optim.Optimizer, batch: Batch) -> None:
    detector.train()
    optimizer.zero_grad(set_to_none=True)
    detector.losses(batch)["loss"].backward()
    torch.nn.utils.clip_grad_norm_(detector.parameters(), 1.0)
    optimizer.step()


def alternate(ours, theirs, warmup: int, repeats: int) -> dict:
    """Time ``ours()`` and ``theirs()`` in turn; medians, ratio of medians, median pair ratio."""
    times: dict[str, list[float]] = {"ours": [], "actionformer": []}
    for rep in range(warmup + repeats):
        for name, fn in (("ours", ours), ("actionformer", theirs)):
            timer = SectionTimer(torch.device("cpu"))
            timer.run(name, fn)
            if rep >= warmup:
                times[name] += timer.times[name]
    pairs = [a / b for a, b in zip(times["ours"], times["actionformer"], strict=True)]
    return {
        "ours": summarize(times["ours"]),
        "actionformer": summarize(times["actionformer"]),
        "ratio_of_medians": round(
            statistics.median(times["ours"]) / statistics.median(times["actionformer"]), 3
        ),
        "pairwise_ratio_median": round(statistics.median(pairs), 3),
    }


def run(args: argparse.Namespace) -> dict:
    """Each ``--setting`` of ours against ActionFormer: training step, then inference."""
    torch.set_num_threads(args.threads)
    bench = CONFIGS[args.config]
    base = compose(bench)
    input_dim, num_classes = base["model"]["network"]["input_dim"], base["dataset"]["num_classes"]
    actionformer = ActionFormer(args.af_source, args.seq_len, input_dim, num_classes)
    generator = torch.Generator().manual_seed(args.seed)
    shape = (input_dim, args.seq_len)
    train_batch = synthetic_batch(*shape, 2, num_classes, GT_PER_VIDEO, GT_LENGTH, generator)
    video = synthetic_batch(*shape, 1, num_classes, GT_PER_VIDEO, GT_LENGTH, generator)
    rows = []
    for setting in args.setting or [""]:
        cfg = compose(bench, shlex.split(setting))
        torch.manual_seed(args.seed)
        detector = ASLDetector.from_config(cfg["model"], cfg["dataset"]["num_classes"])
        optimizer = build_optimizer(detector, cfg["optimizer"])
        post = PostprocessConfig(**cfg["postprocess"])
        train = alternate(
            lambda d=detector, o=optimizer: our_train_step(d, o, train_batch),
            lambda: actionformer.train_step(actionformer_videos(train_batch)),
            args.warmup,
            args.repeats,
        )
        detector.eval()
        inference = alternate(
            lambda d=detector, p=post: detect_once(
                d, video, p, SectionTimer(torch.device("cpu")), "32"
            ),
            lambda: actionformer.detect(actionformer_videos(video)[0]),
            args.warmup,
            args.repeats,
        )
        rows.append(
            {
                "setting": setting,
                "parameters": sum(p.numel() for p in detector.network.parameters()),
                "train_step": train,
                "inference": inference,
            }
        )
    return {
        "config": args.config,
        "seq_len": args.seq_len,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "actionformer_parameters": sum(p.numel() for p in actionformer.model.parameters()),
        "machine": machine_info(args.threads, torch.device("cpu")),
        "rows": rows,
        "peak_memory": peak_memory_mb(torch.device("cpu")),
    }
