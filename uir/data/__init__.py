"""Data: paired and synthetic datasets, paired augmentations, single-type batches, photo split.

Names are imported from their submodules on first use, so that :mod:`.photos` (where the
photos are) loads without torch, for ``uir info``.
"""

from uir.lazy import lazy_attributes

_LAZY = {
    "CleanCropDataset": ".datasets",
    "DegradationConcatDataset": ".datasets",
    "DetectorDataset": ".datasets",
    "DropMaskDataset": ".datasets",
    "ShadowMapDataset": ".datasets",
    "PairedFolderDataset": ".datasets",
    "SyntheticDegradationDataset": ".datasets",
    "HOLDOUT_EVERY": ".photos",
    "REAL_CAPTURES": ".photos",
    "default_photos_dir": ".photos",
    "held_out_photos": ".photos",
    "link_photos": ".photos",
    "photo_files": ".photos",
    "photo_root": ".photos",
    "photo_split": ".photos",
    "validation_photos": ".photos",
    "split_photos": ".photos",
    "validation_split": ".photos",
    "training_photos": ".photos",
    "SingleDegradationBatchSampler": ".samplers",
    "paired_random_crop": ".transforms",
    "paired_random_flip": ".transforms",
}


__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = sorted(_LAZY)
