"""A validation split carved out of the training videos, for benchmarks whose only other
split is the test set (THUMOS14, gym-style stitched benchmarks): choosing the best epoch on
the test videos overstates test accuracy.

Which videos are held out depends only on their ids, never on the training seed, so every
run of a sweep validates on the same videos.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _rank_key(video_id: str) -> str:
    return hashlib.sha256(video_id.encode("utf-8")).hexdigest()


def held_out_ids(video_ids: Iterable[str], fraction: float, source: str) -> set[str]:
    """The ``round(fraction * N)`` videos (at least one) with the smallest SHA-256 of their id.

    Args:
        video_ids: the N training video ids.
        fraction: share of them to hold out, in ``(0, 1)``.
        source: what the ids come from, for the error message (the annotation file).

    Raises:
        ValueError: ``fraction`` outside ``(0, 1)``, or a split that leaves no training
            video.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"dataset.val_holdout={fraction:g}: expected a fraction in (0, 1)")
    ids = sorted(set(video_ids), key=_rank_key)
    count = max(1, round(fraction * len(ids)))
    if count >= len(ids):
        raise ValueError(
            f"{source}: dataset.val_holdout={fraction:g} of {len(ids)} training video(s) "
            "leaves none to train on"
        )
    return set(ids[:count])
