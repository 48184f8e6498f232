"""Batch sampling where every batch holds one degradation type (UIR-LoRA sec. 3.5).

Training a LoRA expert per degradation needs batches in which only that expert is active, so
each batch is drawn from the indices of a single type. Works with any dataset that exposes
``degradation_index(i)`` (e.g. :class:`~uir.data.datasets.SyntheticDegradationDataset`).
Pass it as ``DataLoader(dataset, batch_sampler=...)``; ``accelerate`` shards whole batches
across processes, so the property survives distributed training.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class SingleDegradationBatchSampler(Sampler[list[int]]):
    """Shuffle within each degradation type, cut into batches, then shuffle the batch order.

    ``group_size`` keeps runs of that many consecutive batches of one type, and shuffles the
    runs instead. With ``group_size = processes x gradient accumulation steps``, every
    optimizer step of a distributed run sees one type on every process (accelerate deals
    consecutive batches to consecutive processes). ``drop_last`` drops each type's incomplete
    final batch and run. ``set_epoch`` reshuffles reproducibly. ``mix_types=True`` treats all
    items as one type, for stages that train on every degradation at once.
    """

    def __init__(self, dataset, batch_size: int, seed: int = 0, drop_last: bool = True, group_size: int = 1,
                 mix_types: bool = False):
        if not hasattr(dataset, "__len__"):
            raise ValueError("single-type batches need a dataset of known length; --streaming works with the "
                             "trainers whose batches mix types (train_restorer.py, train_router.py)")
        if batch_size < 1 or group_size < 1:
            raise ValueError(f"batch_size and group_size must be positive, got {batch_size} and {group_size}")
        self.batch_size, self.seed, self.drop_last, self.epoch = batch_size, seed, drop_last, 0
        self.group_size = group_size
        self.groups: dict[int, list[int]] = {}
        for index in range(len(dataset)):
            self.groups.setdefault(0 if mix_types else dataset.degradation_index(index), []).append(index)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        runs = []
        for kind in sorted(self.groups):
            indices = self.groups[kind]
            order = [indices[i] for i in torch.randperm(len(indices), generator=generator).tolist()]
            batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
            if self.drop_last and batches and len(batches[-1]) < self.batch_size:
                batches.pop()
            for start in range(0, len(batches), self.group_size):
                run = batches[start : start + self.group_size]
                if len(run) == self.group_size or not self.drop_last:
                    runs.append(run)
        return [batch for i in torch.randperm(len(runs), generator=generator).tolist() for batch in runs[i]]

    def __iter__(self):
        return iter(self._batches())

    def __len__(self):
        if not self.drop_last:
            return sum(-(-len(v) // self.batch_size) for v in self.groups.values())
        return sum(len(v) // self.batch_size // self.group_size * self.group_size for v in self.groups.values())
