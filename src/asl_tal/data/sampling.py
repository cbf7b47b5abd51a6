"""Epoch-seeded shuffling, so that a resumed run sees exactly the batches and crops of an
uninterrupted one.

The sampler yields ``(epoch, index)`` pairs; :class:`~asl_tal.data.dataset.TALDataset` seeds
its crop from ``(seed, epoch, index)``. The order and the crops therefore depend on nothing
but the seed and the epoch — not on worker processes or on what ran before a restart.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


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
