"""Which patches make up the batch of training step N: a pure function of (seed, step, rank).

Each epoch is a fresh permutation of all patches (seeded by ``(seed, epoch)``); step ``s`` of the
epoch takes the ``s``-th slice of ``batch * world`` patches and each distributed rank its own
``batch`` of them, so the ranks of one step never share a patch. A batch that runs past the end of
the permutation wraps to its start (every batch is full).

Because nothing is carried from step to step, resuming at step N draws exactly the batches the
uninterrupted run would have drawn, with no sampler state in the checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class StepSampler:
    """Patch indices and augmentation seeds per training step.

    Args:
        num_items: number of patches.
        batch: patches per rank per step.
        seed: the run's seed.
        rank: this process's rank. By default, 0.
        world: number of processes. By default, 1.
    """

    num_items: int
    batch: int
    seed: int
    rank: int = 0
    world: int = 1
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.num_items < 1 or self.batch < 1 or self.world < 1 or not 0 <= self.rank < self.world:
            raise ValueError(f"invalid sampler settings: {self}")

    @property
    def steps_per_epoch(self) -> int:
        """Steps that show every patch once (over all ranks)."""
        return max(1, math.ceil(self.num_items / (self.batch * self.world)))

    def epoch(self, step: int) -> float:
        """Epochs completed after ``step`` steps (fractional)."""
        return step / self.steps_per_epoch

    def _permutation(self, epoch: int) -> np.ndarray:
        perm = self._cache.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self.seed, 0x5EED, epoch]).permutation(self.num_items)
            self._cache.clear()  # one epoch at a time is all a run needs
            self._cache[epoch] = perm
        return perm

    def indices(self, step: int) -> np.ndarray:
        """Patch indices of this rank's batch at 1-based ``step``."""
        if step < 1:
            raise ValueError(f"steps count from 1, got {step}.")
        epoch, slot = divmod(step - 1, self.steps_per_epoch)
        perm = self._permutation(epoch)
        start = slot * self.batch * self.world + self.rank * self.batch
        return perm[np.arange(start, start + self.batch) % self.num_items]

    def rng(self, step: int) -> np.random.Generator:
        """The augmentation random generator of this rank's batch at ``step``."""
        return np.random.default_rng([self.seed, 0xA06, step, self.rank])
