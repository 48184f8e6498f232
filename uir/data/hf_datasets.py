"""Training images from a Hugging Face ``datasets`` dataset, beside plain folders.

``--dataset_name`` (the diffusers examples' option) names a Hub id, a folder written by
``Dataset.save_to_disk``, or a folder of images (read as ``imagefolder``):

* without ``--streaming``, a map-style dataset: :class:`DatasetImages` serves image ``i`` to
  :class:`~uir.data.SyntheticDegradationDataset` exactly as a file would, so sampling,
  sharding (accelerate shards the batches) and per-index determinism are those of folders;
* with ``--streaming``, an iterable one: :class:`StreamingDegradationDataset` degrades each
  example as it arrives. Processes take disjoint parts of the stream
  (``datasets.distributed.split_dataset_by_node``) and data-loader workers disjoint shards of
  each part. Each example's draws (crop, flip, type, parameters) come from a generator seeded
  by the seed, the epoch and a hash of the example's pixels, so an example is degraded the
  same way whatever the number of processes or workers, and wherever it appears in the stream.

``datasets`` is an optional dependency (``pip install datasets``), imported only here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset

from .. import degradations
from ..images import to_tensor
from .datasets import PairedTransforms, item_generator
from .transforms import crop_frame


def load_training_dataset(name: str, config: str | None = None, split: str = "train", streaming: bool = False,
                          cache_dir: str | None = None):
    """The ``split`` of a Hub dataset, a ``save_to_disk`` folder or an image folder; iterable
    with ``streaming``."""
    try:
        import datasets
    except ImportError:
        raise ImportError("--dataset_name needs the datasets package: pip install datasets") from None
    path = Path(name)
    if path.is_dir() and any((path / f).is_file() for f in ("dataset_dict.json", "state.json")):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"{name} has no split {split!r}; it has {', '.join(loaded)}")
            loaded = loaded[split]
        return loaded.to_iterable_dataset(num_shards=max(1, min(64, len(loaded)))) if streaming else loaded
    if path.is_dir():
        return datasets.load_dataset("imagefolder", data_dir=str(path), split=split, streaming=streaming,
                                     cache_dir=cache_dir)
    return datasets.load_dataset(name, config, split=split, streaming=streaming, cache_dir=cache_dir)


def _image(example: dict, column: str) -> torch.Tensor:
    if column not in example:
        raise KeyError(f"the dataset has no column {column!r} (it has {', '.join(example)}); pass --image_column")
    return to_tensor(example[column])[0]


class DatasetImages(Sequence):
    """Image ``i`` of a map-style dataset's ``column`` as a (3,H,W) tensor in [0, 1]."""

    def __init__(self, dataset, column: str = "image"):
        self.dataset, self.column = dataset, column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return _image(self.dataset[int(index)], self.column)

    def name(self, index: int) -> str:
        """What items report as their ``path``."""
        return f"{self.column}#{index}"


def pixel_seed(image: torch.Tensor) -> int:
    """A 63-bit number from an image's 8-bit pixels: the same example, the same number."""
    quantised = (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    digest = hashlib.blake2b(np.ascontiguousarray(quantised).tobytes() + str(quantised.shape).encode(),
                             digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class StreamingDegradationDataset(IterableDataset):
    """Degrade a stream of clean images on the fly (see the module docstring): each example
    becomes ``{"lq", "gt", "degradation", "degradation_index", "path"}``, its type drawn
    uniformly from ``degradation_names``."""

    def __init__(self, stream, degradation_names: Sequence[str], column: str = "image", crop_size: int | None = None,
                 flip: bool = False, seed: int = 0, severity: str | None = "random"):
        self.stream, self.column = stream, column
        self.names = list(degradation_names)
        for name in self.names:
            degradations.get(name)
        self.transforms = PairedTransforms(crop_size, flip)
        self.seed, self.severity, self.epoch = seed, severity, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.stream, "set_epoch"):
            self.stream.set_epoch(epoch)  # datasets reshuffles a shuffled stream by epoch

    def degrade(self, gt: torch.Tensor) -> dict:
        """One example's pair, from its own generator; its ``path`` names the example by its
        pixel hash."""
        key = pixel_seed(gt)
        generator = item_generator(self.seed, key, self.epoch)
        photo = gt
        gt = self.transforms(gt, gt, generator)[0]
        kind = int(torch.randint(len(self.names), (1,), generator=generator))
        lq = degradations.apply(self.names[kind], gt, generator=generator, severity=self.severity,
                                frame=crop_frame(photo, gt))
        return {"lq": lq, "gt": gt, "degradation": self.names[kind], "degradation_index": kind,
                "path": f"{self.column}@{key:016x}"}

    def __iter__(self):
        for example in self.stream:
            yield self.degrade(_image(example, self.column))


def split_between_processes(stream, process_index: int, num_processes: int):
    """This process's part of a stream (``datasets.distributed.split_dataset_by_node``)."""
    if num_processes == 1:
        return stream
    from datasets.distributed import split_dataset_by_node

    return split_dataset_by_node(stream, rank=process_index, world_size=num_processes)


__all__ = ["DatasetImages", "StreamingDegradationDataset", "load_training_dataset", "pixel_seed",
           "split_between_processes"]
