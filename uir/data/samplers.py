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

    ``drop_last`` drops each type's incomplete final batch. ``set_epoch`` reshuffles
    reproducibly.
    """

    def __init__(self, dataset, batch_size: int, seed: int = 0, drop_last: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size, self.seed, self.drop_last, self.epoch = batch_size, seed, drop_last, 0
        self.groups: dict[int, list[int]] = {}
        for index in range(len(dataset)):
            self.groups.setdefault(dataset.degradation_index(index), []).append(index)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        batches = []
        for kind in sorted(self.groups):
            indices = self.groups[kind]
            order = [indices[i] for i in torch.randperm(len(indices), generator=generator).tolist()]
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def __iter__(self):
        return iter(self._batches())

    def __len__(self):
        full = sum(len(v) // self.batch_size for v in self.groups.values())
        partial = sum(1 for v in self.groups.values() if len(v) % self.batch_size)
        return full if self.drop_last else full + partial
