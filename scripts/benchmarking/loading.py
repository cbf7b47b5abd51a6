"""``loading``: loading + resampling + collating a batch of two THUMOS-sized videos.

Writes two ``.npy`` feature files (T = 2,500 and 4,500, D = 2,048, float32) and the
annotation JSON to a temporary folder, then times building one batch through
``TALDataset`` + ``collate`` in four settings (median of ``--repeats`` runs, warm page
cache):

- ``eval_full``: whole videos, no resampling (THUMOS evaluation);
- ``train_crop``: THUMOS training (random crop of 1,024 steps);
- ``fixed_1024``: linear resampling of every video to 1,024 steps (EPIC / Ego4D style);
- ``fixed_1024_cached``: the same with the in-memory feature cache warm;
plus the ratio ``fixed_1024 / fixed_1024_cached`` (the share of reading from disk).

    python scripts/benchmark.py loading [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from asl_tal.conf import compose
from omegaconf import OmegaConf

from asl_tal.data.annotations import load_annotations
from asl_tal.data.collate import collate
from asl_tal.data.datamodules import SAMPLE_KEYS
from asl_tal.data.dataset import SampleConfig, TALDataset
from asl_tal.data.features import FeatureReader, FeatureStream

LENGTHS = {"video_a": 2500, "video_b": 4500}
DIM = 2048


def write_videos(root: Path, lengths: dict[str, int], dim: int, seed: int = 0) -> Path:
    """Random ``(T, dim)`` ``.npy`` features, THUMOS geometry (stride 4, window 16, 30 fps),
    and their annotation JSON (one action each) in ``root``; returns the JSON's path."""
    rng = np.random.default_rng(seed)
    database = {}
    for video_id, length in lengths.items():
        np.save(root / f"{video_id}.npy", rng.standard_normal((length, dim), dtype=np.float32))
        duration = (length * 4 + 12) / 30.0
        database[video_id] = {
            "subset": "validation",
            "duration": duration,
            "fps": 30.0,
            "annotations": [{"label": "a", "segment": [duration * 0.4, duration * 0.45]}],
        }
    path = root / "annotations.json"
    path.write_text(json.dumps({"version": "bench", "database": database}))
    return path


def thumos_sampling(**overrides) -> SampleConfig:
    """The THUMOS14 row's sampling settings at 30 fps for every video, whole videos (no crop)
    unless ``overrides`` say otherwise."""
    data = OmegaConf.to_container(compose("train", ["dataset=thumos14"]).dataset, resolve=True)
    values = {key: data[key] for key in SAMPLE_KEYS}
    whole = {"fps": 30.0, "max_seq_len": None, "crop_ratio": None, "class_agnostic": False}
    return SampleConfig(**{**values, **whole, **overrides})


def time_batch(dataset: TALDataset, pad_multiple: int, max_seq_len: int, repeats: int) -> float:
    """Median seconds of building one batch of every video of ``dataset``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        samples = [dataset[i] for i in range(len(dataset))]
        collate(samples, pad_multiple, max_seq_len, train=False, train_padding="longest")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)


def run(args: argparse.Namespace) -> dict:
    """One batch's seconds in each setting, and the uncached / cached ratio."""
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        videos, _ = load_annotations(write_videos(root, LENGTHS, DIM))
        reader = FeatureReader([FeatureStream(root, DIM)])
        settings = {
            "eval_full": (thumos_sampling(), False, False),
            "train_crop": (
                thumos_sampling(max_seq_len=1024, crop_ratio=(0.9, 1.0)),
                True,
                False,
            ),
            "fixed_1024": (thumos_sampling(fixed_length=1024), False, False),
            "fixed_1024_cached": (thumos_sampling(fixed_length=1024), False, True),
        }
        result: dict[str, object] = {
            "videos": LENGTHS,
            "dim": DIM,
            "repeats": args.repeats,
            "threads": args.threads,
        }
        for name, (config, train, cache) in settings.items():
            dataset = TALDataset(videos, reader, config, train=train, cache_features=cache)
            time_batch(dataset, 32, 1024, 1)
            result[f"{name}_s"] = round(time_batch(dataset, 32, 1024, args.repeats), 5)
    result["fixed_1024_uncached_over_cached"] = round(
        result["fixed_1024_s"] / result["fixed_1024_cached_s"], 2
    )
    return result
