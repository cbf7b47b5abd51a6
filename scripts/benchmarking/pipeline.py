"""``pipeline``: one benchmark of the whole ASL pipeline, section by section.

Sections (``--what``, comma-separated; default all):

- ``train``: one training step through ``ASLDetector.losses`` on a synthetic batch with
  realistic GT (forward incl. assignment and losses, backward, clip + AdamW step, each timed
  separately; median and spread over ``--repeats`` after warm-up) and peak memory;
- ``infer``: per video (batch 1) network, decoding and NMS, over the config's video lengths;
- ``nms``: Gaussian Soft-NMS alone on one video's candidates;
- ``score``: the offline scorer (``detection_ap``) on the large case;
- ``load``: building one training batch / one full evaluation batch from ``.npy`` files;
- ``scaling``: network inference time against ``T`` with global attention and with a local
  window, plus the fitted growth exponent ``k`` of ``time ≈ c · T^k``;
- ``peak``: the machine's matrix-product ceiling, ``(2048 × 512) @ (512 × 2048)`` (8192³ on
  a GPU) in float32 and bfloat16 (GFLOP/s), against which ``train`` and ``infer`` report
  their achieved rate (FLOPs counted by ``torch.utils.flop_counter`` on one untimed pass).

``--compare A B`` times two sets of Hydra overrides (each one quoted string) alternately in
one process and reports the ratio of their training-step medians (A / B); on a shared,
noisy machine that ratio is the figure to quote.

    python scripts/benchmark.py pipeline --config thumos --what train,infer --repeats 5
    python scripts/benchmark.py pipeline --config thumos --what train --compare \
        "model.sensitivity.class_level=false model.sensitivity.instance_level=false \
         model.ascl.weight=0" ""
"""

from __future__ import annotations

import argparse
import os
import shlex
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from asl_tal.data.annotations import load_annotations
from asl_tal.data.dataset import TALDataset
from asl_tal.data.features import FeatureReader, FeatureStream
from asl_tal.detector import ASLDetector
from asl_tal.metrics.matching import detection_ap
from asl_tal.optim import build_optimizer
from asl_tal.postprocess.config import PostprocessConfig
from asl_tal.postprocess.decode import decode_candidates
from asl_tal.postprocess.nms import batched_nms
from benchmarking import evaluation, loading
from benchmarking.configs import CONFIGS, BenchConfig, compose, synthetic_batch
from benchmarking.timing import (
    SectionTimer,
    autocast,
    fit_growth_exponent,
    machine_info,
    peak_memory_mb,
    summarize,
)

SECTIONS = ("train", "infer", "nms", "score", "load", "scaling", "peak")


def count_gflop(fn) -> float:
    """GFLOP of the matrix products and convolutions ``fn()`` runs (one untimed call)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


class Runner:
    """Holds the command-line settings shared by every section."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.bench: BenchConfig = CONFIGS[args.config]
        self.device = torch.device(args.device)
        self.precision = args.precision
        self.compile = args.compile
        self.profile = args.profile
        self.repeats = args.repeats
        self.warmup = args.warmup if args.warmup is not None else (5 if args.compile else 3)
        self.seed = args.seed
        self.train_len = args.seq_len or self.bench.train_len
        self.overrides = shlex.split(args.overrides or "")

    def build(self, overrides: list[str]) -> tuple[ASLDetector, dict]:
        cfg = compose(self.bench, [*self.overrides, *overrides])
        torch.manual_seed(self.seed)
        detector = ASLDetector.from_config(cfg["model"], cfg["dataset"]["num_classes"])
        detector.to(self.device)
        if self.compile:
            network = detector.network
            network.forward = torch.compile(network.forward, dynamic=True)
        return detector, cfg

    def train_batch(self, cfg: dict):
        input_dim = cfg["model"]["network"]["input_dim"]
        width = input_dim if isinstance(input_dim, int) else sum(input_dim)
        batch = synthetic_batch(
            width,
            self.train_len,
            self.bench.batch_size,
            cfg["dataset"]["num_classes"],
            self.bench.gt_per_video,
            self.bench.gt_length,
            torch.Generator().manual_seed(self.seed),
        )
        return batch.to(self.device)

    # ------------------------------------------------------------------------------
    def train_step(self, detector: ASLDetector, optimizer, batch, timer: SectionTimer) -> None:
        optimizer.zero_grad(set_to_none=True)

        def forward():
            with autocast(self.device, self.precision):
                return detector.losses(batch)["loss"]

        loss = timer.run("forward", forward)
        timer.run("backward", loss.backward)

        def step():
            torch.nn.utils.clip_grad_norm_(detector.parameters(), 1.0)
            optimizer.step()

        timer.run("optimizer", step)

    def training_setup(self, overrides: list[str]):
        detector, cfg = self.build(overrides)
        detector.train()
        optimizer = build_optimizer(detector, cfg["optimizer"])
        return detector, optimizer, self.train_batch(cfg), cfg

    def train(self) -> dict:
        detector, optimizer, batch, cfg = self.training_setup([])

        def forward_backward():
            with autocast(self.device, self.precision):
                detector.losses(batch)["loss"].backward()

        gflop = count_gflop(forward_backward)
        optimizer.zero_grad(set_to_none=True)
        for _ in range(self.warmup):
            self.train_step(detector, optimizer, batch, SectionTimer(self.device))
        timer = SectionTimer(self.device)
        for _ in range(self.repeats):
            self.train_step(detector, optimizer, batch, timer)
        times = timer.summary()
        totals = [sum(parts) for parts in zip(*timer.times.values(), strict=True)]
        times["step"] = summarize(totals)
        profile = self.profile_step(detector, optimizer, batch) if self.profile else None
        return {
            "batch_size": self.bench.batch_size,
            "seq_len": self.train_len,
            "gt_per_video": self.bench.gt_per_video,
            "parameters": sum(p.numel() for p in detector.parameters()),
            "network_parameters": sum(p.numel() for p in detector.network.parameters()),
            "model": {
                **{k: cfg["model"][k] for k in ("d_emb", "l1", "l2", "l3", "l4")},
                "attn_window": cfg["model"]["network"]["attn_window"],
            },
            **times,
            "videos_per_s": round(self.bench.batch_size / times["step"]["median_s"], 3),
            "gflop_per_step": round(gflop, 3),
            "achieved_gflop_per_s": round(gflop / times["step"]["median_s"], 3),
            **peak_memory_mb(self.device),
            **({"profile_top_ops": profile} if profile else {}),
        }

    def profile_step(self, detector, optimizer, batch, top: int = 15) -> list[dict]:
        """One more step under ``torch.profiler``: the ``top`` operators by own time."""
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            self.train_step(detector, optimizer, batch, SectionTimer(self.device))
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        return [
            {
                "op": e.key,
                "self_cpu_ms": round(e.self_cpu_time_total / 1000, 2),
                "share": round(e.self_cpu_time_total / total, 3),
                "calls": e.count,
            }
            for e in events[:top]
        ]

    def compare(self, setting_a: str, setting_b: str) -> dict:
        setups = [self.training_setup(shlex.split(s)) for s in (setting_a, setting_b)]
        timers = [SectionTimer(self.device), SectionTimer(self.device)]
        for _ in range(self.warmup):
            for detector, optimizer, batch, _ in setups:
                self.train_step(detector, optimizer, batch, SectionTimer(self.device))
        for _ in range(self.repeats):
            for (detector, optimizer, batch, _), timer in zip(setups, timers, strict=True):
                self.train_step(detector, optimizer, batch, timer)
        result = {}
        steps = []
        for name, setting, timer in zip("AB", (setting_a, setting_b), timers, strict=True):
            totals = [sum(parts) for parts in zip(*timer.times.values(), strict=True)]
            steps.append(totals)
            result[name] = {"overrides": setting, **timer.summary(), "step": summarize(totals)}
        pairwise = sorted(a / b for a, b in zip(*steps, strict=True))
        result["ratio_A_over_B"] = round(
            result["A"]["step"]["median_s"] / result["B"]["step"]["median_s"], 3
        )
        result["pairwise_ratio_median"] = round(pairwise[len(pairwise) // 2], 3)
        return result

    # ------------------------------------------------------------------------------
    def infer(self) -> dict:
        detector, cfg = self.build([])
        detector.eval()
        post = PostprocessConfig(**cfg["postprocess"])
        multiple = detector.required_multiple
        input_dim = cfg["model"]["network"]["input_dim"]
        width = input_dim if isinstance(input_dim, int) else sum(input_dim)
        timer = SectionTimer(self.device)
        per_video = {}
        gflops = []
        for length in self.bench.infer_lengths:
            padded = -(-length // multiple) * multiple
            batch = synthetic_batch(
                width, padded, 1, cfg["dataset"]["num_classes"], 1, (1.0, 2.0),
                torch.Generator().manual_seed(self.seed), lengths=[length],
            ).to(self.device)  # fmt: skip
            with torch.no_grad(), autocast(self.device, self.precision):
                gflops.append(count_gflop(lambda b=batch: detector(b.feats, b.mask)))
            video_timer = SectionTimer(self.device)
            for rep in range(self.warmup + self.repeats):
                target = video_timer if rep >= self.warmup else SectionTimer(self.device)
                detect_once(detector, batch, post, target, self.precision)
            per_video[str(length)] = {k: v["median_s"] for k, v in video_timer.summary().items()}
            for name, values in video_timer.times.items():
                timer.times.setdefault(name, []).append(float(np.median(values)))
        mean = {name: round(float(np.mean(v)), 5) for name, v in timer.times.items()}
        mean["total"] = round(sum(mean.values()), 5)
        return {
            "lengths": list(self.bench.infer_lengths),
            "mean_per_video_s": mean,
            "network_gflop_per_video": round(float(np.mean(gflops)), 3),
            "network_achieved_gflop_per_s": round(float(np.mean(gflops)) / mean["network"], 1),
            "per_video_median_s": per_video,
            **peak_memory_mb(self.device),
        }

    # ------------------------------------------------------------------------------
    def nms(self) -> dict:
        candidates, classes, kept = self.bench.nms
        defaults = compose(self.bench, ["postprocess=default"])["postprocess"]
        cfg = PostprocessConfig(**{**defaults, "max_seg_num": kept})
        inputs = [t.to(self.device) for t in evaluation.nms_inputs(1, candidates, classes)]
        timer = SectionTimer(self.device)
        for rep in range(self.warmup + self.repeats):
            target = timer if rep >= self.warmup else SectionTimer(self.device)
            target.run("nms", lambda: batched_nms(*inputs, cfg))
        return {
            "candidates": candidates,
            "classes": classes,
            "kept": kept,
            "ms_per_video": round(timer.summary()["nms"]["median_s"] * 1000, 3),
            **timer.summary(),
        }

    def score(self) -> dict:
        videos, preds, classes, gt_per_video = self.bench.scorer
        thresholds = np.array([0.3, 0.4, 0.5, 0.6, 0.7])
        gt, *preds_arr = evaluation.scorer_inputs(
            np.random.default_rng(self.seed), videos, preds, classes, gt_per_video
        )
        timer = SectionTimer(torch.device("cpu"))
        for rep in range(self.warmup + self.repeats):
            target = timer if rep >= self.warmup else SectionTimer(torch.device("cpu"))
            target.run("score", lambda: detection_ap(gt, *preds_arr, classes, thresholds))
        return {
            "videos": videos,
            "predictions": videos * preds,
            "classes": classes,
            "thresholds": len(thresholds),
            **timer.summary(),
        }

    def load(self) -> dict:
        lengths, dim = self.bench.loading
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            named = {f"video_{i}": length for i, length in enumerate(lengths)}
            videos, _ = load_annotations(loading.write_videos(root, named, dim, self.seed))
            reader = FeatureReader([FeatureStream(root, dim)])
            crop = min(self.train_len, min(lengths))
            settings = {
                "train_crop": (
                    loading.thumos_sampling(max_seq_len=crop, crop_ratio=(0.9, 1.0)),
                    True,
                ),
                "eval_full": (loading.thumos_sampling(), False),
            }
            result: dict[str, object] = {"lengths": list(lengths), "dim": dim, "crop": crop}
            for name, (config, train) in settings.items():
                dataset = TALDataset(videos, reader, config, train=train)
                for _ in range(self.warmup):
                    loading.time_batch(dataset, 32, crop, 1)
                result[f"{name}_median_s"] = round(
                    loading.time_batch(dataset, 32, crop, self.repeats), 5
                )
        return result

    # ------------------------------------------------------------------------------
    def scaling(self) -> dict:
        window = self.bench.scaling_window
        settings = {
            "global": ["model.network.attn_window=null"],
            f"window_{window}": [
                f"model.network.attn_window={window}",
                "model.network.attn_window_levels=null",
            ],
        }
        table: dict[str, dict] = {}
        for name, overrides in settings.items():
            detector, cfg = self.build(overrides)
            detector.eval()
            input_dim = cfg["model"]["network"]["input_dim"]
            width = input_dim if isinstance(input_dim, int) else sum(input_dim)
            rows = {}
            for length in self.bench.scaling_lengths:
                padded = -(-length // detector.required_multiple) * detector.required_multiple
                batch = synthetic_batch(
                    width, padded, 1, cfg["dataset"]["num_classes"], 1, (1.0, 2.0),
                    torch.Generator().manual_seed(self.seed), lengths=[length],
                ).to(self.device)  # fmt: skip
                timer = SectionTimer(self.device)
                for rep in range(self.warmup + max(1, self.repeats // 2)):
                    target = timer if rep >= self.warmup else SectionTimer(self.device)
                    with torch.no_grad(), autocast(self.device, self.precision):
                        target.run("network", lambda b=batch, net=detector: net(b.feats, b.mask))
                rows[str(length)] = timer.summary()["network"]["median_s"]
            table[name] = {
                "seconds": rows,
                "growth_exponent": round(
                    fit_growth_exponent(self.bench.scaling_lengths, list(rows.values())), 3
                ),
            }
        return table

    def peak(self) -> dict:
        """GFLOP/s of one large matrix product per dtype: the ceiling for the sections above."""
        m, k = (8192, 8192) if self.device.type == "cuda" else self.bench.peak  # a GPU needs more
        result = {"shape": [m, k, m]}
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            a = torch.randn(m, k, device=self.device, dtype=dtype)
            b = torch.randn(k, m, device=self.device, dtype=dtype)
            timer = SectionTimer(self.device)
            for rep in range(self.warmup + 10 * self.repeats):
                target = timer if rep >= self.warmup else SectionTimer(self.device)
                target.run("mm", lambda a=a, b=b: a @ b)
            seconds = timer.summary()["mm"]["median_s"]
            result[f"{name}_gflop_per_s"] = round(2 * m * k * m / seconds / 1e9, 1)
        return result


@torch.no_grad()
def detect_once(
    detector: ASLDetector, batch, post: PostprocessConfig, timer: SectionTimer, precision: str
) -> None:
    """One video's detection, timed as ``network``, ``decode`` and ``nms`` sections."""
    device = batch.feats.device

    def network():
        with autocast(device, precision):
            return detector(batch.feats, batch.mask)

    out = timer.run("network", network)
    points = detector.points(batch.feats.shape[-1], device)
    cand = timer.run(
        "decode",
        lambda: decode_candidates(
            points,
            out.flat_logits().float(),
            out.flat_offsets().float(),
            out.flat_mask(),
            post,
        ),
    )

    def nms():
        kept = batched_nms(cand.segments, cand.scores, cand.labels, cand.valid, post)
        keep = kept[3][0]
        return batch.meta[0].grid_to_seconds(kept[0][0][keep].double().cpu())

    timer.run("nms", nms)


def sections(text: str) -> list[str]:
    """``--what``: the comma-separated section names, each one of ``SECTIONS``."""
    names = [name for name in text.split(",") if name]
    unknown = set(names) - set(SECTIONS)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown sections {sorted(unknown)}; choose from {SECTIONS}"
        )
    return names


def device(text: str) -> str:
    """``--device``: ``cpu``, or a CUDA device where torch sees one."""
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("cuda requested but torch.cuda.is_available() is False")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", choices=sorted(CONFIGS), default="thumos")
    parser.add_argument("--device", type=device, default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--precision", choices=("32", "bf16"), default="32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument(
        "--profile", action="store_true", help="train: top operators of one profiled step"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed runs first; default 3 (5 with --compile): the first steps grow the heap",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seq-len", type=int, default=None, help="training T (default: config)")
    parser.add_argument("--overrides", default="", help="Hydra overrides for every section")
    parser.add_argument("--what", type=sections, default=",".join(SECTIONS))
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None)


def run(args: argparse.Namespace) -> dict:
    """The machine, then each section of ``--what`` (or the ``--compare`` pair) in turn."""
    torch.set_num_threads(args.threads)
    runner = Runner(args)
    result: dict[str, object] = {
        "config": args.config,
        "precision": args.precision,
        "compile": args.compile,
        "repeats": args.repeats,
        "warmup": runner.warmup,
        "overrides": args.overrides,
        "machine": machine_info(args.threads, runner.device),
    }
    if args.compare:
        result["compare"] = runner.compare(*args.compare)
    else:
        for section in args.what:
            result[section] = getattr(runner, section)()
    result["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    result["peak_memory"] = peak_memory_mb(runner.device)
    return result
