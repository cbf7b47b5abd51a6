"""``preflight``: the feature pre-flight check on 1,000 THUMOS-sized files.

Times ``asl_tal.data.preflight.check_feature_files``. Writes ``--files`` ``.npy`` feature
files (float32, ``T`` drawn uniformly in 400..2,300, ``D`` 2,048, i.e. THUMOS I3D) to a
temporary folder, with THUMOS timing (30 fps, stride 4, window 16, durations so that every
``T`` is the expected one), times the check over all of them and deletes the folder. The
files are *sparse* (``numpy.lib.format.open_memmap``: the header is written, the data part
is a hole of the full size, about 11 GB apparent for 1,000 files but a few MB on disk); the
check reads headers and file sizes only, so sparse and dense files cost it the same.

- ``cold``: one pass after every file's pages were dropped from the page cache
  (``fsync`` + ``posix_fadvise(DONTNEED)`` per file; directory entries and inodes stay
  cached, hence "cold-ish");
- ``warm``: median of ``--repeats`` further passes.

Reports ``{"files", "seconds", "per_file_ms", "cold": {...}, "warm": {...}}``
(``seconds`` / ``per_file_ms`` are the warm figures).

    python scripts/benchmark.py preflight [--files 1000] [--repeats 5] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from asl_tal.data.annotations import VideoAnnotation
from asl_tal.data.features import FeatureStream
from asl_tal.data.preflight import check_feature_files
from benchmarking.loading import thumos_sampling

DIM = 2048
FPS, STRIDE, WINDOW = 30.0, 4, 16


def write_files(root: Path, num: int, seed: int = 0) -> list[VideoAnnotation]:
    """``num`` sparse ``(T, DIM)`` float32 ``.npy`` files and their videos."""
    rng = np.random.default_rng(seed)
    videos = []
    for i, length in enumerate(rng.integers(400, 2301, size=num)):
        video_id = f"video_{i:05d}"
        np.lib.format.open_memmap(
            root / f"{video_id}.npy", "w+", np.float32, (int(length), DIM)
        ).flush()
        duration = ((int(length) - 1) * STRIDE + WINDOW) / FPS
        empty = np.zeros((0, 2))
        videos.append(
            VideoAnnotation(video_id, "test", duration, FPS, empty, np.zeros(0, np.int64))
        )
    return videos


def drop_cache(root: Path) -> None:
    """Evict the files' pages from the page cache (per file; no root rights needed)."""
    for path in root.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed(videos, streams, config) -> float:
    """Seconds of one ``check_feature_files`` pass over every video."""
    start = time.perf_counter()
    report = check_feature_files(videos, streams, config)
    seconds = time.perf_counter() - start
    assert report.num_files == len(videos)
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default=None, help="parent of the temporary folder")


def run(args: argparse.Namespace) -> dict:
    """One cold-ish pass and the median warm pass, in seconds and per file."""
    root = Path(tempfile.mkdtemp(prefix="bench_preflight_", dir=args.dir))
    try:
        videos = write_files(root, args.files)
        apparent = sum(p.stat().st_size for p in root.iterdir())
        on_disk = sum(p.stat().st_blocks * 512 for p in root.iterdir())
        streams = [FeatureStream(root, DIM)]
        config = thumos_sampling(fps=None, feat_stride=STRIDE, feat_window=WINDOW)
        drop_cache(root)
        cold = timed(videos, streams, config)
        warm = statistics.median(timed(videos, streams, config) for _ in range(args.repeats))
    finally:
        shutil.rmtree(root)

    def figures(seconds: float) -> dict:
        return {"seconds": round(seconds, 4), "per_file_ms": round(1e3 * seconds / args.files, 4)}

    return {
        "files": args.files,
        **figures(warm),
        "cold": figures(cold),
        "warm": {**figures(warm), "repeats": args.repeats},
        "apparent_gb": round(apparent / 1e9, 2),
        "on_disk_mb": round(on_disk / 1e6, 1),
    }
