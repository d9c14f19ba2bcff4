"""Training order that can be stopped and resumed at any step, on any number of ranks.

Two things make a run resumable bit for bit:

* The epoch's order is drawn once, when the epoch starts, by PML's
  MPerClassSampler (class-balanced batches), and kept as a plain list that
  a checkpoint stores with a cursor. Resuming replays the rest of the list.
* Every draw of an image carries its own seed, derived from the run's seed,
  the epoch and the draw's position. The dataset seeds the augmentation with
  it, so an image looks the same however many loader workers or ranks there
  are and wherever the run was interrupted. (torch's global RNG in the main
  process is left to the model: dropout, prompt dropout.)

Written here because PML's sampler has no position, and torch's samplers
neither keep their order nor seed single samples.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from pytorch_metric_learning.samplers import MPerClassSampler

_MIX = 0x9E3779B97F4A7C15  # a large odd constant (golden ratio) to spread seeds
SAMPLERS = ("m-per-class", "class-random")


def _draw(items: Sequence[int], n: int) -> list[int]:
    """n of ``items`` at random: without replacement, or every item as often as fits
    and the rest at random (the reference's ``_smart_sample``), shuffled."""
    import numpy as np

    whole, rest = divmod(n, len(items))
    drawn = list(items) * whole + list(np.random.choice(items, rest, replace=False))
    np.random.shuffle(drawn)
    return drawn


def draw_seed(run_seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed per (run, epoch, position in the epoch's order)."""
    x = (run_seed * _MIX + epoch) * _MIX + position
    x ^= x >> 31
    return (x * _MIX) % (2**63 - 1)


class ResumableMPerClassSampler(torch.utils.data.Sampler):
    """Class-balanced batches (m images of each of batch/m classes) with a cursor.

    Yields ``(index, seed)`` pairs; :class:`~dmlbench.data.image_list.ImageListDataset`
    accepts them. ``rank``/``world`` give each process of a distributed run
    its contiguous share of every global batch.
    """

    def __init__(
        self,
        targets: Sequence[int],
        m: int,
        batch_size: int,
        steps_per_epoch: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        kind: str = "m-per-class",
    ):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by {world} processes")
        if kind not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, not {kind!r}")
        self.kind = kind
        self._inner = MPerClassSampler(
            targets, m=m, batch_size=batch_size, length_before_new_iter=steps_per_epoch * batch_size
        )
        self._by_class: dict[int, list[int]] = {}
        for index, label in enumerate(targets):
            self._by_class.setdefault(int(label), []).append(index)
        self.m = m
        self.batch_size, self.steps_per_epoch, self.seed = batch_size, steps_per_epoch, seed
        self.rank, self.world = rank, world
        self.epoch = 0
        self.order: list[int] = []
        self.step = 0  # global batches of this epoch already consumed

    def begin_epoch(self, epoch: int) -> None:
        """Draw the epoch's order (from NumPy's global RNG, as PML does)."""
        self.epoch, self.step = epoch, 0
        if self.kind == "class-random":
            self.order = self._class_random_order()
        else:
            self.order = [int(i) for i in self._inner][: self.steps_per_epoch * self.batch_size]

    def _class_random_order(self) -> list[int]:
        """The VPTSP reference's sampler (datasampler/class_random_sampler.py): each
        batch draws batch/m classes afresh, then m images of each, without
        replacement where there are enough (PML's instead walks a shuffled list
        of classes, so an epoch sees them more evenly)."""
        classes = sorted(self._by_class)
        order = []
        for _ in range(self.steps_per_epoch):
            for label in _draw(classes, self.batch_size // self.m):
                order += _draw(self._by_class[label], self.m)
        return [int(i) for i in order]

    def batches_left(self) -> int:
        return self.steps_per_epoch - self.step

    def __len__(self) -> int:
        return self.batches_left() * self.batch_size // self.world

    def __iter__(self) -> Iterator[tuple[int, int]]:
        share = self.batch_size // self.world
        for b in range(self.step, self.steps_per_epoch):
            start = b * self.batch_size + self.rank * share
            for position in range(start, start + share):
                yield self.order[position], draw_seed(self.seed, self.epoch, position)

    def state_dict(self) -> dict:
        # PML's sampler shuffles its class list in place, so the next epoch's
        # order depends on it too.
        labels = [int(c) for c in self._inner.labels]
        return {"epoch": self.epoch, "order": list(self.order), "step": self.step, "labels": labels}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.order, self.step = state["epoch"], list(state["order"]), state["step"]
        self._inner.labels[:] = state["labels"]
