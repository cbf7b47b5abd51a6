"""Settings and synthetic inputs of the ``pipeline`` benchmark.

One :class:`BenchConfig` per benchmarked dataset row (``CONFIGS``), the model config it
composes from ``conf/``, and a padded batch with realistic GT. Everything here is
deterministic given a seed, so two settings timed in one process see the same inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from asl_tal.data.batch import Batch, VideoMeta


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark setting: the Hydra dataset file, overrides and the measured shapes.

    Attributes:
        dataset: name of the ``conf/dataset`` file the model config is composed with.
        overrides: extra Hydra overrides (``model.d_emb=32`` ...).
        train_len: training input length ``T`` (a crop or the fixed length).
        batch_size: training batch size.
        infer_lengths: real lengths of the videos timed one by one at inference.
        scaling_lengths: ``T`` of the inference growth table.
        scaling_window: local window compared against global attention in that table.
        gt_per_video: GT segments per synthetic training video.
        gt_length: ``(min, max)`` of the log-uniform GT lengths, in grid steps.
        nms: ``(candidates, classes, kept)`` of the NMS-alone case.
        scorer: ``(videos, predictions per video, classes, GT per video)``.
        loading: ``(lengths, dim)`` of the feature files of the loading case.
        peak: ``(m, k)`` of the ``(m, k) @ (k, m)`` product that measures the CPU's ceiling
            (a GPU always uses 8192, 8192; a CPU without native bf16 takes seconds per
            product at the full size).
    """

    dataset: str
    overrides: tuple[str, ...] = ()
    train_len: int = 1024
    batch_size: int = 2
    infer_lengths: tuple[int, ...] = (450, 900, 1350, 1800, 2250)
    scaling_lengths: tuple[int, ...] = (256, 512, 1024, 2048, 4096)
    scaling_window: int = 19
    gt_per_video: int = 30
    gt_length: tuple[float, float] = (2.0, 128.0)
    nms: tuple[int, int, int] = (10_000, 20, 200)
    scorer: tuple[int, int, int, int] = (500, 2000, 20, 10)
    loading: tuple[tuple[int, ...], int] = ((2500, 4500), 2048)
    peak: tuple[int, int] = (2048, 512)


CONFIGS: dict[str, BenchConfig] = {
    "thumos": BenchConfig("thumos14"),
    "anet": BenchConfig(
        "anet_tsp",
        train_len=192,
        batch_size=16,
        infer_lengths=(192,),
        gt_per_video=2,
        gt_length=(8.0, 160.0),
        nms=(10_000, 200, 100),
        scorer=(500, 100, 200, 2),
        loading=((800, 1200), 512),
    ),
    "ego4d": BenchConfig(
        "ego4d_mq",
        infer_lengths=(1024,),
        gt_per_video=10,
        gt_length=(1.0, 200.0),
        nms=(10_000, 110, 2000),
        scorer=(500, 2000, 110, 5),
        loading=((1024, 1024), 4096),
    ),
    "tiny": BenchConfig(
        "synthetic",
        overrides=(
            "model.d_emb=32",
            "model.n_heads=2",
            "model.head_width=32",
            "model.l2=1",
            "model.l3=3",
        ),
        train_len=128,
        batch_size=2,
        infer_lengths=(60, 120),
        scaling_lengths=(64, 128, 256),
        scaling_window=9,
        gt_per_video=5,
        gt_length=(2.0, 32.0),
        nms=(500, 8, 50),
        scorer=(20, 100, 8, 5),
        loading=((200, 300), 64),
        peak=(256, 128),
    ),
}


def compose(config: BenchConfig, overrides: Sequence[str] = ()) -> dict:
    """The composed ``train`` config (plain dict) for ``config`` plus ``overrides``."""
    from asl_tal.conf import compose as compose_config
    from omegaconf import OmegaConf

    cfg = compose_config(
        "train", [f"dataset={config.dataset}", "logger=none", *config.overrides, *overrides]
    )
    return {
        key: OmegaConf.to_container(cfg[key], resolve=True)
        for key in ("model", "dataset", "optimizer", "postprocess")
    }


def synthetic_batch(
    input_dim: int,
    seq_len: int,
    batch_size: int,
    num_classes: int,
    num_gt: int,
    gt_length: tuple[float, float],
    generator: torch.Generator,
    lengths: Sequence[int] | None = None,
) -> Batch:
    """A padded batch with realistic GT: ``num_gt`` segments per video, log-uniform lengths.

    Args:
        input_dim: total feature width ``D``.
        seq_len: padded length ``T``.
        lengths: real length of each video (default: all ``seq_len``).

    Returns:
        A :class:`Batch` with ``feats (B, D, T)`` standard normal on real steps.
    """
    lengths = list(lengths) if lengths is not None else [seq_len] * batch_size
    real = torch.tensor(lengths, dtype=torch.float32)[:, None]
    mask = torch.arange(seq_len)[None, :] < real
    feats = torch.randn(batch_size, input_dim, seq_len, generator=generator) * mask[:, None]
    lo, hi = (math.log(v) for v in gt_length)
    length = torch.exp(lo + torch.rand(batch_size, num_gt, generator=generator) * (hi - lo))
    length = torch.minimum(length, real - 1)
    start = torch.rand(batch_size, num_gt, generator=generator) * (real - 1 - length)
    segments = torch.stack([start, start + length], dim=-1)
    labels = torch.randint(0, num_classes, (batch_size, num_gt), generator=generator)
    meta = [
        VideoMeta(f"bench_{i}", float(n), 1.0, 1.0, 1.0, num_frames=n)
        for i, n in enumerate(lengths)
    ]
    return Batch(
        feats, mask, segments, torch.ones(batch_size, num_gt, dtype=torch.bool), labels, meta
    )
