"""The validation split held out of the training videos (``dataset.val_holdout``)."""

from __future__ import annotations

import hashlib

import pytest

from asl_tal.data.holdout import held_out_ids


def smallest_by_sha256(ids: list[str], count: int) -> set[str]:
    return set(sorted(ids, key=lambda i: hashlib.sha256(i.encode()).hexdigest())[:count])


def test_holds_out_the_rounded_share_with_the_smallest_hashes():
    ids = [f"video_{i:03d}" for i in range(20)]
    held = held_out_ids(ids, 0.2, "ann.json")
    assert held == smallest_by_sha256(ids, 4)
    # the input order does not matter, and the choice is the same on every call
    assert held_out_ids(list(reversed(ids)), 0.2, "ann.json") == held


def test_at_least_one_video_is_held_out():
    assert len(held_out_ids(["a", "b", "c"], 0.01, "ann.json")) == 1


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_fraction_outside_the_open_unit_interval(fraction):
    with pytest.raises(ValueError, match="expected a fraction in"):
        held_out_ids(["a", "b"], fraction, "ann.json")


def test_a_split_without_training_videos_names_the_file():
    # round(0.9 * 5) = 4 of 5 is fine; round(0.95 * 10) = 10 of 10 is not
    assert len(held_out_ids([str(i) for i in range(5)], 0.9, "ann.json")) == 4
    with pytest.raises(ValueError, match=r"ann\.json: .*10 training video\(s\) leaves none"):
        held_out_ids([str(i) for i in range(10)], 0.95, "ann.json")
