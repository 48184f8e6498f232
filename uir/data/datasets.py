"""Datasets of (low-quality, ground-truth) pairs, as dicts of (3,H,W) float tensors in [0, 1].

* :class:`PairedFolderDataset`: ``lq/`` and ``gt/`` folders matched by file stem.
* :class:`CleanCropDataset`: random crops of clean images alone.
* :class:`SyntheticDegradationDataset`: clean images degraded on the fly by
  :func:`uir.degradations.apply`; item ``i`` is the same for the same seed, in any process.
* :class:`DropMaskDataset`, :class:`ShadowMapDataset` (:class:`DetectorDataset`): with and without
  one type, and its map: what the router's detectors learn from.
* :class:`DegradationConcatDataset`: one paired dataset per degradation, labelled by name.

Items are ``{"lq", "gt", "degradation", "degradation_index", "path"}``.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from .. import degradations
from ..images import IMAGE_SUFFIXES, load_image, resize_shorter
from ..degradations.photometric import SHADOW_CLASS
from ..degradations.weather import RAINDROP_CLASS, raindrop_alpha
from ..networks.shadows import global_view
from .transforms import crop_frame, paired_random_crop, paired_random_flip


def _image_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


#: datasets of at most this many images keep them decoded in memory (a few GB of photos)
CACHE_LIMIT = 4096


def item_generator(seed: int, index: int, epoch: int = 0) -> torch.Generator:
    """A generator owned by one item (an index, or a streamed example's pixel hash), so items do
    not depend on the order they are read in."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 10_000_019 + index)


class PairedTransforms:
    def __init__(self, crop_size: int | None, flip: bool):
        self.crop_size, self.flip = crop_size, flip

    def __call__(self, lq, gt, generator):
        pair = [lq, gt]
        if self.crop_size:
            pair = paired_random_crop(pair, self.crop_size, generator)
        if self.flip:
            pair = paired_random_flip(pair, generator)
        return pair


class PairedFolderDataset(Dataset):
    """Pairs ``lq_dir/NAME.*`` with ``gt_dir/NAME.*``; every file must have its partner.

    ``degradation`` labels every pair with one name (for single-degradation folders).
    """

    def __init__(self, lq_dir, gt_dir, crop_size: int | None = None, flip: bool = False, seed: int = 0,
                 degradation: str | None = None):
        lq, gt = _image_files(Path(lq_dir)), _image_files(Path(gt_dir))
        only_lq, only_gt = sorted(set(lq) - set(gt)), sorted(set(gt) - set(lq))
        if only_lq or only_gt:
            raise ValueError(
                f"unmatched files: {len(only_lq)} only in {lq_dir} ({', '.join(only_lq[:5])}), "
                f"{len(only_gt)} only in {gt_dir} ({', '.join(only_gt[:5])})"
            )
        if not lq:
            raise ValueError(f"no images in {lq_dir}")
        self.pairs = [(lq[k], gt[k]) for k in sorted(lq)]
        self.transforms = PairedTransforms(crop_size, flip)
        self.seed, self.epoch = seed, 0
        self.degradation = degradation

    def __len__(self):
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index):
        lq_path, gt_path = self.pairs[index]
        lq, gt = load_image(lq_path), load_image(gt_path)
        if lq.shape != gt.shape:
            raise ValueError(f"{lq_path.name}: low-quality {tuple(lq.shape)} and ground truth {tuple(gt.shape)} differ in size")
        lq, gt = self.transforms(lq, gt, item_generator(self.seed, index, self.epoch))
        return {"lq": lq, "gt": gt, "degradation": self.degradation or "", "degradation_index": -1, "path": str(gt_path)}


class ImageFiles(Sequence):
    """Image files as a sequence of decoded (3,H,W) images; ``name(i)`` is file ``i``'s path.
    The same interface as :class:`uir.data.hf_datasets.DatasetImages`, so a dataset takes either."""

    def __init__(self, files: Sequence):
        self.paths = [Path(f) for f in files]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_image(self.paths[index])

    def name(self, index: int) -> str:
        return str(self.paths[index])


class CleanCropDataset(Dataset):
    """Random crops (and flips) of clean images: item ``i`` is image ``i``, ``{"gt", "path"}``.

    For stages that make their own inputs from clean crops (super-resolution, DL-Net's masks).
    :meth:`item_generator` is the generator that owns item ``i`` in the current epoch.
    ``shorter_side`` first resizes each image (antialiased) so its shorter side has that many
    pixels, for models trained on whole rescaled photos.
    """

    def __init__(self, files: Sequence, crop_size: int | None = None, flip: bool = False, seed: int = 0,
                 shorter_side: int | None = None):
        # image files, or a sequence of decoded images with names (ImageFiles, DatasetImages)
        self.files = files if hasattr(files, "name") else ImageFiles(files)
        if not len(self.files):
            raise ValueError("no clean images given")
        self.transforms = PairedTransforms(crop_size, flip)
        self.seed, self.epoch, self.shorter_side = seed, 0, shorter_side
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self):
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def item_generator(self, index: int) -> torch.Generator:
        return item_generator(self.seed, index, self.epoch)

    def path(self, file_index: int) -> str:
        return self.files.name(file_index)

    def clean(self, file_index: int) -> torch.Tensor:
        """Clean image ``file_index``, decoded (and, up to :data:`CACHE_LIMIT` images, cached)."""
        if file_index in self._cache:
            return self._cache[file_index]
        image = self.files[file_index]
        image = image if self.shorter_side is None else resize_shorter(image, self.shorter_side)
        if len(self.files) <= CACHE_LIMIT:
            self._cache[file_index] = image
        return image

    def preload(self) -> None:
        """Decode every image now (up to :data:`CACHE_LIMIT`): data-loader workers forked
        afterwards share the cache instead of each decoding every image again every epoch."""
        if len(self.files) <= CACHE_LIMIT:
            for file_index in range(len(self.files)):
                self.clean(file_index)

    def crop(self, file_index: int, generator: torch.Generator) -> torch.Tensor:
        """A random crop of clean image ``file_index``, drawn from ``generator``."""
        return self.framed_crop(file_index, generator)[0]

    def framed_crop(self, file_index: int, generator: torch.Generator) -> tuple[torch.Tensor, tuple[int, int]]:
        """:meth:`crop` and the size of the photo it was cut from (:func:`crop_frame`), from one decode."""
        clean = self.clean(file_index)
        crop = self.transforms(clean, clean, generator)[0]
        return crop, crop_frame(clean, crop)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        return {"gt": self.crop(index, self.item_generator(index)), "path": self.path(index)}


def check_clean_inputs(share: float) -> float:
    """``share`` if it is a share of clean inputs a dataset can draw (in [0, 1)), else a one-line ``ValueError``."""
    if not 0 <= share < 1:
        raise ValueError(f"clean_inputs must be in [0, 1), got {share:g}")
    return share


class SyntheticDegradationDataset(CleanCropDataset):
    """Degrade clean images on the fly: item ``i`` is image ``i % N`` under degradation
    ``(i // N) % T``; ``repeats`` makes an epoch hold that many independent draws of each pair
    (longer epochs: fewer data-loader restarts on a fast accelerator).

    The crop is taken from the clean image before degrading it, so whole-image effects (haze
    depth, shadows) are synthesised at the crop's scale (a haze expert trained on the photo's
    depth instead measured worse: docs/default-model.md); degradations sized by the photo
    (raindrops) are drawn at the photo's scale (:func:`uir.degradations.apply`'s ``frame``, the
    clean image's size: each item's ``frame``). ``set_epoch`` changes the draws between epochs
    while keeping each epoch reproducible.

    ``on_device``: items carry the clean crop and a ``seed`` instead of ``lq``, and
    :meth:`degrade_batch` synthesises the batch on the training device, where the data-loader
    workers would otherwise bound a fast accelerator. The same degradations, parameter ranges
    and severities, drawn from a generator on that device: the same distribution, not the same
    draws (``tests/test_data.py`` compares the two).

    ``clean_inputs``: the share of items whose ``lq`` is their clean crop itself, still labelled
    with their type (``"clean_input"`` marks them), so that an expert learns to leave alone a
    photo without its degradation: what a wrong call of the router hands it.
    """

    def __init__(self, files: Sequence, degradation_names: Sequence[str], crop_size: int | None = None,
                 flip: bool = False, seed: int = 0, severity: str | None = "random", repeats: int = 1,
                 on_device: bool = False, clean_inputs: float = 0.0):
        super().__init__(files, crop_size, flip, seed)
        self.on_device = on_device
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.clean_inputs = check_clean_inputs(clean_inputs)
        self.repeats = repeats
        self.names = list(degradation_names)
        for name in self.names:
            degradations.get(name)
        if not self.names:
            raise ValueError("no degradation names given")
        self.severity = severity

    def __len__(self):
        return len(self.files) * len(self.names) * self.repeats

    def degradation_index(self, index: int) -> int:
        return (index // len(self.files)) % len(self.names)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        file_index, kind = index % len(self.files), self.degradation_index(index)
        generator = self.item_generator(index)
        gt, frame = self.framed_crop(file_index, generator)
        # drawn only when asked for, so that every other draw stays as it was without the option
        clean = bool(self.clean_inputs) and float(torch.rand((), generator=generator)) < self.clean_inputs
        item = {"gt": gt, "degradation": self.names[kind], "degradation_index": kind, "path": self.path(file_index),
                "frame": torch.tensor(frame), "clean_input": clean}
        if self.on_device:
            item["seed"] = int(torch.randint(0, 2**62, (), generator=generator))
        else:
            item.update({"lq": gt.clone()} if clean else self.synthesise(self.names[kind], gt, generator, frame))
        return item

    def synthesise(self, name: str, gt: torch.Tensor, generator: torch.Generator, frame: tuple[int, int]) -> dict:
        """What an item adds to its clean crop ``gt``: ``{"lq": gt degraded by name}``."""
        return {"lq": degradations.apply(name, gt, generator=generator, severity=self.severity, frame=frame)}

    def degrade_batch(self, batch: dict, device) -> dict:
        """A collated batch of ``on_device`` items with ``lq`` synthesised on ``device``: each
        image degraded by its own type from a generator on ``device`` seeded by its ``seed``
        (each image's kernels run on the device; the images go one after another), a clean
        input left as it is."""
        gt = batch["gt"].to(device, non_blocking=True)
        lq = [image.clone() if clean else
              degradations.apply(name, image, generator=torch.Generator(device=gt.device).manual_seed(seed),
                                 severity=self.severity, frame=tuple(frame))
              for image, name, seed, frame, clean in zip(gt, batch["degradation"], batch["seed"].tolist(),
                                                         batch["frame"].tolist(), batch["clean_input"].tolist())]
        return {**batch, "gt": gt, "lq": torch.stack(lq)}


def check_zoom(zoom: float) -> float:
    """``zoom`` if it is the smallest share of a photo's side a zoomed crop keeps (in (0, 1]), else a one-line ``ValueError``."""
    if not 0 < zoom <= 1:
        raise ValueError(f"zoom must be a share of the photo's side in (0, 1], got {zoom}")
    return zoom


class DetectorDataset(SyntheticDegradationDataset):
    """Items under one type and items without it, each with that type's map: the training data of
    a router's detectors. Item ``i`` is image ``i % N``; every other run of ``N`` items carries
    the ``target`` type, the runs between go through ``others`` in turn (the clean class and the
    other types, whose map is 0), so half the items have it. Subclasses name the ``target``, the
    item's ``map_key`` and how the map follows from the synthesis's draws (:meth:`target_map`)."""

    target: str
    map_key: str

    def __init__(self, files: Sequence, others: Sequence[str], crop_size: int | None = None, flip: bool = False,
                 seed: int = 0, severity: str | None = "random", repeats: int = 1):
        if self.target in others or not others:
            raise ValueError(f"others must be degradation names other than {self.target!r}, got {list(others)}")
        super().__init__(files, [self.target, *others], crop_size, flip, seed, severity, repeats)

    def __len__(self):
        return len(self.files) * 2 * (len(self.names) - 1) * self.repeats

    def degradation_index(self, index: int) -> int:
        run = index // len(self.files)
        return 0 if run % 2 == 0 else 1 + (run // 2) % (len(self.names) - 1)

    def synthesise(self, name: str, gt: torch.Tensor, generator: torch.Generator, frame: tuple[int, int]) -> dict:
        """``{"lq", map_key}``: the degraded crop, and the target type's map (1,H,W), 0 under the others."""
        if name != self.target:
            return {**super().synthesise(name, gt, generator, frame), self.map_key: torch.zeros_like(gt[:1])}
        params = degradations.get(name).resolve({}, self.severity, generator)
        state = generator.get_state()  # the map's draws are the synthesis's own
        lq = degradations.apply(name, gt, generator=generator, frame=frame, **params)
        return {"lq": lq, self.map_key: self.target_map(gt, torch.Generator().set_state(state), frame, params)}

    def target_map(self, gt: torch.Tensor, generator: torch.Generator, frame: tuple[int, int], params: dict
                   ) -> torch.Tensor:
        """(1,H,W): the map of the target type's synthesis on ``gt`` with ``params``, ``generator``
        in the state the synthesis drew from."""
        raise NotImplementedError


class DropMaskDataset(DetectorDataset):
    """Crops with raindrops and crops without, each with the drops' alpha (:class:`DetectorDataset`):
    the training data of :class:`uir.networks.drops.DropDetector`. Drops are drawn at the photo's
    scale, their alpha from :func:`~uir.degradations.weather.raindrop_alpha`."""

    target, map_key = RAINDROP_CLASS, "alpha"

    def target_map(self, gt, generator, frame, params):
        return raindrop_alpha(gt[None], generator, frame=frame, **params)[0]


class ShadowMapDataset(DetectorDataset):
    """Whole photos with a cast shadow and photos without, each with the shadow's attenuation ``a m``
    (:class:`DetectorDataset`; :func:`~uir.degradations.photometric.shadow`): the training data of
    :class:`uir.networks.shadows.ShadowDetector`. The shadow is cast on the whole photo, and an
    item holds the detector's global views (:func:`~uir.networks.shadows.global_view`) of the
    clean photo, the degraded one and the attenuation, so that photos of any size batch together.
    ``crop_size`` must be None: a crop would cut the shadow the detector must see whole.

    ``zoom``: below 1, each item is a random crop of the photo keeping a share of its height and
    width drawn in ``[zoom, 1]`` (its aspect kept), treated as a whole photo: the shadow is cast on
    it. More scenes from few photos: a dark region that fills a zoomed view, with no shadow."""

    target, map_key = SHADOW_CLASS, "attenuation"

    def __init__(self, files: Sequence, others: Sequence[str], crop_size: int | None = None, flip: bool = False,
                 seed: int = 0, severity: str | None = "random", repeats: int = 1, zoom: float = 1.0):
        if crop_size is not None:
            raise ValueError(f"ShadowMapDataset takes whole photos: crop_size must be None, got {crop_size}")
        self.zoom = check_zoom(zoom)
        super().__init__(files, others, crop_size, flip, seed, severity, repeats)

    def framed_crop(self, file_index: int, generator: torch.Generator) -> tuple[torch.Tensor, tuple[int, int]]:
        """The photo, or with ``zoom`` below 1 a random zoomed crop of it; either is its own frame."""
        photo = super().framed_crop(file_index, generator)[0]
        if self.zoom < 1:  # drawn only then, so that whole photos keep their draws
            share = self.zoom + (1 - self.zoom) * float(torch.rand((), generator=generator))
            h, w = photo.shape[-2:]
            ch, cw = max(1, round(h * share)), max(1, round(w * share))
            top = int(torch.randint(0, h - ch + 1, (), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (), generator=generator))
            photo = photo[:, top : top + ch, left : left + cw]
        return photo, tuple(photo.shape[-2:])

    def __getitem__(self, index):
        item = super().__getitem__(index)
        for key in ("gt", "lq", self.map_key):
            item[key] = global_view(item[key][None])[0]
        return item

    def target_map(self, gt, generator, frame, params):
        return 1.0 - degradations.apply(self.target, torch.ones_like(gt[:1]), generator=generator, frame=frame,
                                        **params)


class DegradationConcatDataset(Dataset):
    """Paired datasets, one per degradation, as one dataset with ``degradation_index(i)``.

    ``{"noisy": PairedFolderDataset(...), "hazy": ...}``: item labels come from the keys, so
    :class:`~uir.data.samplers.SingleDegradationBatchSampler` can batch them by type.
    """

    def __init__(self, datasets: dict[str, Dataset]):
        if not datasets:
            raise ValueError("no datasets given")
        self.names = list(datasets)
        self.datasets = list(datasets.values())
        self.offsets = [0]
        for dataset in self.datasets:
            self.offsets.append(self.offsets[-1] + len(dataset))

    def __len__(self):
        return self.offsets[-1]

    def set_epoch(self, epoch: int) -> None:
        for dataset in self.datasets:
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)

    def degradation_index(self, index: int) -> int:
        return bisect.bisect_right(self.offsets, index) - 1

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        kind = self.degradation_index(index)
        item = dict(self.datasets[kind][index - self.offsets[kind]])
        item.update(degradation=self.names[kind], degradation_index=kind)
        return item
