"""Points of the feature pyramid (``docs/method.md`` §2).

Level ``l`` has stride ``s_l = 2**l`` and points at grid positions ``0, s_l, 2 s_l, ...``.
All levels are concatenated in level order into one ``(P, 4)`` table whose columns are
``[t, r_lo, r_hi, stride]``; network outputs flattened the same way line up with it row
by row.
"""

from __future__ import annotations

import math

import torch


def doubling_ranges(num_levels: int) -> list[list[float]]:
    """``[0,4] [4,8] [8,16] ... [2**L, inf]``: ActionFormer's ranges, doubling per level.

    ``conf/model/asl.yaml`` writes them as ``${doubling_ranges:${..network.l3}}`` (a
    resolver of ``asl_tal.conf``: the ranges of ``l3 + 1`` levels).
    """
    ranges = [[0.0, 4.0]]
    for level in range(1, num_levels):
        lo = 4.0 * 2 ** (level - 1)
        ranges.append([lo, 2 * lo])
    ranges[-1][1] = math.inf
    return ranges


class PointGenerator:
    """Builds the point table for an input of length ``T``.

    Args:
        num_levels: pyramid levels (``l3 + 1``).
        regression_ranges: one ``(lo, hi)`` per level (:func:`doubling_ranges`: ActionFormer's).
    """

    def __init__(self, num_levels: int, regression_ranges: list[tuple[float, float]]) -> None:
        if len(regression_ranges) != num_levels:
            raise ValueError(
                f"regression_ranges has {len(regression_ranges)} entries for {num_levels} "
                "pyramid levels"
            )
        self.num_levels = num_levels
        self.regression_ranges = [(float(lo), float(hi)) for lo, hi in regression_ranges]
        self.strides = [2**level for level in range(num_levels)]

    @property
    def max_stride(self) -> int:
        return self.strides[-1]

    def level_sizes(self, seq_len: int) -> list[int]:
        """Number of points per level for an input of ``seq_len`` (a multiple of max stride)."""
        if seq_len % self.max_stride:
            raise ValueError(f"sequence length {seq_len} is not a multiple of {self.max_stride}")
        return [seq_len // s for s in self.strides]

    def __call__(self, seq_len: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Point table ``(P, 4)`` float32: ``[t, r_lo, r_hi, stride]``, levels concatenated."""
        tables = []
        for size, stride, (lo, hi) in zip(
            self.level_sizes(seq_len), self.strides, self.regression_ranges, strict=True
        ):
            t = torch.arange(size, device=device, dtype=torch.float32) * stride
            cols = torch.tensor([lo, hi, float(stride)], device=device).expand(size, 3)
            tables.append(torch.cat([t[:, None], cols], dim=1))
        return torch.cat(tables, dim=0)
