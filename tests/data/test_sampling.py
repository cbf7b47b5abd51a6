"""The epoch-seeded sampler: a permutation per epoch that depends only on (seed, epoch)."""

import numpy as np
import pytest
from torch.utils.data import Dataset

from asl_tal.data.sampling import EpochDataLoader, EpochShuffleSampler


def test_each_epoch_is_a_permutation_fixed_by_seed_and_epoch():
    sampler = EpochShuffleSampler(10, seed=5)
    sampler.set_epoch(3)
    first = list(sampler)
    assert [e for e, _ in first] == [3] * 10
    assert sorted(i for _, i in first) == list(range(10))

    restarted = EpochShuffleSampler(10, seed=5)  # e.g. after a resume
    restarted.set_epoch(3)
    assert list(restarted) == first

    sampler.set_epoch(4)
    assert [i for _, i in sampler] != [i for _, i in first]


def test_epoch_advances_without_set_epoch():
    sampler = EpochShuffleSampler(4, seed=0)
    assert {e for e, _ in sampler} == {0}
    assert {e for e, _ in sampler} == {1}


class EpochAndIndex(Dataset):
    """Item ``(epoch, index)`` is that pair: a batch shows the order and the epoch it saw."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, item: tuple[int, int]) -> tuple[int, int]:
        return item


@pytest.mark.parametrize("num_workers", [0, 2])
def test_iterator_made_before_set_epoch_reads_the_epoch_set_later(num_workers):
    # Lightning's order on resume: iter(loader), then sampler.set_epoch(k), then the first
    # batch; the epoch-3 batches must be those of a sampler that was told 3 from the start
    sampler = EpochShuffleSampler(12, seed=7)
    loader = EpochDataLoader(
        EpochAndIndex(), batch_size=4, sampler=sampler, num_workers=num_workers
    )
    iterator = iter(loader)
    sampler.set_epoch(3)
    batches = [(epochs.tolist(), indices.tolist()) for epochs, indices in iterator]

    expected = np.random.default_rng([7, 3]).permutation(12).tolist()
    assert [e for epochs, _ in batches for e in epochs] == [3] * 12
    assert [i for _, indices in batches for i in indices] == expected
