"""What the ``train/`` scripts share, one job per module:

* :mod:`.args`: the common options and the training data they describe;
* :mod:`.loop`: the accelerate loop (:func:`train`), :class:`LossModule`, :func:`finish`;
* :mod:`.checkpoints`: resumable, pickle-free checkpoints;
* :mod:`.restoration`: the pipeline to train, the loss and the validator of restorers;
* :mod:`.detectors`: training a router's detectors (drops, shadows).

The photo split the options fall back to lives in :mod:`uir.data.photos`; it is re-exported
here with everything the scripts import, so ``from uir.training import ...`` covers a script.
"""

from ..data.photos import held_out_photos, photo_split, training_photos, validation_photos
from .args import (add_data_args, add_training_args, add_uir_lora_args, mixed_batches, parse_paired,
                   parse_training_args, synthesis_severity, training_dataset)
from .checkpoints import (TRAINABLE_FILE, checkpoint_dirs, load_checkpoint, resolve_checkpoint,
                          save_checkpoint)
from .detectors import DetectorKind, add_detector_args, parse_detector_args, train_detector
from .loop import LossModule, finish, make_accelerator, train
from .restoration import load_uir_lora_pipeline, restoration_loss, restoration_validator, saved_model_config

__all__ = [
    "TRAINABLE_FILE",
    "DetectorKind",
    "LossModule",
    "add_data_args",
    "add_detector_args",
    "add_training_args",
    "add_uir_lora_args",
    "checkpoint_dirs",
    "finish",
    "held_out_photos",
    "load_checkpoint",
    "load_uir_lora_pipeline",
    "make_accelerator",
    "parse_detector_args",
    "parse_paired",
    "parse_training_args",
    "photo_split",
    "resolve_checkpoint",
    "restoration_loss",
    "restoration_validator",
    "save_checkpoint",
    "saved_model_config",
    "synthesis_severity",
    "train",
    "train_detector",
    "mixed_batches",
    "training_dataset",
    "training_photos",
    "validation_photos",
]
