"""The epoch-seeded sampler: a permutation per epoch that depends only on (seed, epoch)."""

from asl_tal.data.sampling import EpochShuffleSampler


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
