"""Epoch-seeded shuffling, so that a resumed run sees exactly the batches and crops of an
uninterrupted one.

The sampler yields ``(epoch, index)`` pairs; :class:`~asl_tal.data.dataset.TALDataset` seeds
its crop from ``(seed, epoch, index)``. The order and the crops therefore depend on nothing
but the seed and the epoch — not on worker processes or on what ran before a restart.
:class:`EpochDataLoader` makes sure the sampler has been told the epoch before it is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Sampler


class EpochShuffleSampler(Sampler[tuple[int, int]]):
    """Shuffles ``range(num_items)`` with a generator seeded by ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every training epoch; without such a call (a
    wrapper that does not forward it) each new iteration advances the epoch by one.
    """

    def __init__(self, num_items: int, seed: int = 0) -> None:
        self.num_items = num_items
        self.seed = seed
        self.epoch = 0
        self._epoch_was_set = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._epoch_was_set = True

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        if not self._epoch_was_set:
            self.epoch += 1
        self._epoch_was_set = False
        order = np.random.default_rng([self.seed, epoch]).permutation(self.num_items)
        return iter([(epoch, int(i)) for i in order])


class DeferredIterator:
    """An iterator that calls ``start()`` for the real iterator on its first ``next()``."""

    def __init__(self, start: Callable[[], Iterator[Any]]) -> None:
        self._start = start
        self._iterator: Iterator[Any] | None = None

    def __iter__(self) -> DeferredIterator:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = self._start()
        return next(self._iterator)


class EpochDataLoader(DataLoader):
    """A :class:`DataLoader` whose iteration reads the sampler at the first batch.

    Lightning calls ``iter()`` on the training loader before it calls ``set_epoch`` on the
    sampler, and a run resumed from a checkpoint trains its first epoch with that iterator.
    With ``num_workers > 0`` PyTorch's iterator draws its first indices from the sampler as
    it is created, i.e. from the epoch before ``set_epoch``: the resumed epoch would replay
    epoch 0's order and crops. Deferring the iterator to the first ``next()`` makes every
    epoch use the epoch it was given, whatever the number of workers.
    """

    def __iter__(self) -> DeferredIterator:
        return DeferredIterator(super().__iter__)
