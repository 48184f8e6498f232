"""Data: paired and synthetic datasets, paired augmentations, single-type batches, photo split."""

from .datasets import CleanCropDataset, DegradationConcatDataset, PairedFolderDataset, SyntheticDegradationDataset
from .photos import (HOLDOUT_EVERY, default_photos_dir, held_out_photos, photo_files, photo_root, photo_split,
                     split_photos, training_photos)
from .samplers import SingleDegradationBatchSampler
from .transforms import paired_random_crop, paired_random_flip

__all__ = [
    "CleanCropDataset",
    "DegradationConcatDataset",
    "HOLDOUT_EVERY",
    "PairedFolderDataset",
    "SingleDegradationBatchSampler",
    "SyntheticDegradationDataset",
    "default_photos_dir",
    "held_out_photos",
    "paired_random_crop",
    "paired_random_flip",
    "photo_files",
    "photo_root",
    "photo_split",
    "split_photos",
    "training_photos",
]
