"""Timers, summaries, fits and the machine record shared by the benchmark sub-commands.

Timings use ``time.perf_counter`` with a device synchronisation around each measured
section (a no-op on CPU).
"""

from __future__ import annotations

import math
import os
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """bf16 autocast on ``device`` for ``precision == "bf16"``, else a no-op."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


class SectionTimer:
    """Accumulates named section times of repeated runs; ``summary`` gives median and spread."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: dict[str, list[float]] = {}

    def run(self, name: str, fn: Callable[[], object]) -> object:
        synchronize(self.device)
        start = time.perf_counter()
        result = fn()
        synchronize(self.device)
        self.times.setdefault(name, []).append(time.perf_counter() - start)
        return result

    def summary(self) -> dict[str, dict[str, float]]:
        return {name: summarize(values) for name, values in self.times.items()}


def summarize(values: Sequence[float]) -> dict[str, float]:
    """``median_s``, ``min_s``, ``max_s`` and the relative spread ``(max - min) / median``."""
    median = statistics.median(values)
    return {
        "median_s": round(median, 5),
        "min_s": round(min(values), 5),
        "max_s": round(max(values), 5),
        "spread": round((max(values) - min(values)) / median, 3) if median > 0 else 0.0,
        "n": len(values),
    }


def fit_growth_exponent(sizes: Sequence[float], times: Sequence[float]) -> float:
    """Least-squares slope of ``log(time)`` against ``log(size)``: ``time ≈ c · size^k``."""
    if len(sizes) != len(times) or len(sizes) < 2:
        raise ValueError("fit_growth_exponent needs at least two (size, time) pairs")
    xs = [math.log(s) for s in sizes]
    ys = [math.log(t) for t in times]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        raise ValueError("fit_growth_exponent needs at least two distinct sizes")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak resident set size of this process (and peak CUDA allocation on GPU), in MiB."""
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def machine_info(threads: int, device: torch.device) -> dict[str, object]:
    """CPU model, cores, torch version, threads, load average (and GPU name on CUDA)."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    info: dict[str, object] = {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": threads,
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
