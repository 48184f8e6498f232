"""The command-line options the ``train/`` scripts share (names follow the diffusers examples),
and the training data they describe."""

from __future__ import annotations

import argparse

from pathlib import Path

from ..boundary import positive_float, positive_int, whole_number
from ..degradations import DEFAULT_VOCABULARY, parse_names
from ..files import file_in_the_way
from ..hub import looks_local, require_hub
from ..degradations.registry import SEVERITIES

#: training crops are whole multiples of this (every restorer's and SD-turbo's VAE's padding unit)
CROP_MULTIPLE = 8


def non_negative_int(value: str) -> int:
    """An argparse type: a whole number >= 0 (0 turns the feature off)."""
    return whole_number(value, 0)


def crop_size(value: str) -> int:
    """An argparse type: a training crop of at least 16 pixels, a multiple of :data:`CROP_MULTIPLE`."""
    size = whole_number(value, 2 * CROP_MULTIPLE, "a crop size in pixels")
    if size % CROP_MULTIPLE:
        raise argparse.ArgumentTypeError(f"must be a multiple of {CROP_MULTIPLE}, got {size}")
    return size


def positive_seconds(value: str) -> float:
    """An argparse type: a number of seconds > 0."""
    return positive_float(value)


def add_training_args(parser: argparse.ArgumentParser, *, learning_rate: float = 2e-4, batch_size: int = 8,
                      max_train_steps: int = 1000, resolution: int = 256) -> argparse.ArgumentParser:
    """Options every ``train/`` script shares (names follow the diffusers examples)."""
    from diffusers.optimization import SchedulerType

    group = parser.add_argument_group("training")
    group.add_argument("--output_dir", required=True, help="where checkpoints, logs and results go")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--resolution", type=crop_size, default=resolution,
                       help=f"square training crop size (pixels, a multiple of {CROP_MULTIPLE}, at most the photos' size)")
    group.add_argument("--train_batch_size", type=positive_int, default=batch_size, help="batch size per process")
    group.add_argument("--max_train_steps", type=positive_int, default=max_train_steps, help="optimizer steps in total")
    group.add_argument("--max_train_seconds", type=positive_seconds, default=None,
                       help="a time budget: after timing its first steps the run shortens --max_train_steps to fit "
                            "and stretches the LR schedule over that length (a resumed run times itself again)")
    group.add_argument("--gradient_accumulation_steps", type=positive_int, default=1)
    group.add_argument("--gradient_checkpointing", action="store_true", help="trade compute for memory")
    group.add_argument("--learning_rate", type=positive_float, default=learning_rate)
    group.add_argument("--lr_scheduler", default="cosine", choices=[kind.value for kind in SchedulerType],
                       help="a diffusers schedule: cosine (annealing, the papers' choice), constant, linear, ...")
    group.add_argument("--lr_warmup_steps", type=non_negative_int, default=0)
    group.add_argument("--adam_beta1", type=float, default=0.9)
    group.add_argument("--adam_beta2", type=float, default=0.999)
    group.add_argument("--adam_weight_decay", type=float, default=1e-2)
    group.add_argument("--adam_epsilon", type=float, default=1e-8)
    group.add_argument("--max_grad_norm", type=float, default=1.0)
    group.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None,
                       help="defaults to accelerate's config (no on CPU)")
    group.add_argument("--dataloader_num_workers", type=non_negative_int, default=0)
    group.add_argument("--checkpointing_steps", type=non_negative_int, default=500,
                       help="save a resumable checkpoint every N steps (0: none)")
    group.add_argument("--checkpoints_total_limit", type=positive_int, default=None,
                       help="keep at most this many checkpoints")
    group.add_argument("--resume_from_checkpoint", default=None, help='a checkpoint folder, or "latest"')
    group.add_argument("--validation_steps", type=non_negative_int, default=100,
                       help="validate every N steps (0: only at the end)")
    group.add_argument("--report_to", default="none", help='an accelerate tracker ("tensorboard", "wandb") or "none"')
    group.add_argument("--push_to_hub", action="store_true", help="upload the result to the Hugging Face Hub")
    group.add_argument("--hub_model_id", default=None, help="the Hub repository (default: the output folder's name)")
    group.add_argument("--hub_token", default=None)
    return parser


def add_data_args(parser: argparse.ArgumentParser, default_degradations: str = "all") -> argparse.ArgumentParser:
    """Where training pairs come from: degraded clean photos, or paired folders."""
    group = parser.add_argument_group("data")
    group.add_argument("--train_data_dir", default=None,
                       help="folder of clean photos, degraded on the fly (default: the training split of "
                            "$UIR_PHOTOS or ../shared/photos)")
    group.add_argument("--dataset_name", default=None,
                       help="a Hugging Face dataset of clean images instead: a Hub id, a save_to_disk folder or an "
                            "image folder (needs the datasets package); degraded on the fly")
    group.add_argument("--dataset_config_name", default=None, help="the dataset's configuration, if it has several")
    group.add_argument("--dataset_split", default="train")
    group.add_argument("--image_column", default="image", help="the dataset's column of images")
    group.add_argument("--streaming", action="store_true",
                       help="stream --dataset_name instead of loading it (for datasets larger than the disk); "
                            "for trainers whose batches mix types")
    group.add_argument("--paired", action="append", default=[], metavar="NAME=LQ_DIR:GT_DIR",
                       help="a paired folder for one degradation (repeatable); replaces --train_data_dir")
    group.add_argument("--degradations", type=parse_names, default=default_degradations,
                       help=f'comma-separated degradation names, or "all" (the {len(DEFAULT_VOCABULARY)} DA-CLIP types)')
    group.add_argument("--repeats", type=positive_int, default=1,
                       help="independent degraded draws of each photo and type per epoch (longer epochs)")
    group.add_argument("--severity", default="random", choices=[*SEVERITIES, "random", "default"],
                       help="the degradations' parameter level; default: each type's protocol value")
    group.add_argument("--synthesis", default="workers", choices=["workers", "device"],
                       help="where degradations are drawn: in the data-loader workers, or on the training device "
                            "(a fast accelerator outruns CPU workers); the same distribution either way")
    group.add_argument("--validation_data_dir", default=None,
                       help="clean photos for validation (default: the held-out split)")
    group.add_argument("--num_validation_images", type=non_negative_int, default=4)
    return parser


def add_uir_lora_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of the scripts that train parts of an expert pipeline."""
    group = parser.add_argument_group("model")
    group.add_argument("--pretrained_model_name_or_path", default="stabilityai/sd-turbo",
                       help="the frozen base: SD-turbo (a Hub id or folder), a saved RestorerPipeline folder, "
                            "or default (the embedded model, without its experts)")
    group.add_argument("--vae", default=None, help="SD-turbo only: a trained skip-connection VAE folder "
                                                   "(train_vae_skips.py)")
    group.add_argument("--lpips_weight", type=float, default=0.0,
                       help="add LPIPS to the L2 loss (needs the lpips package and its AlexNet weights)")
    return parser


def parse_paired(spec: str) -> tuple[str, str, str]:
    """``NAME=LQ_DIR:GT_DIR`` (one ``--paired``) as ``(name, lq_dir, gt_dir)``."""
    name, sep, dirs = spec.partition("=")
    lq, sep2, gt = dirs.partition(":")
    if not (sep and sep2 and name and lq and gt):
        raise ValueError(f"--paired expects NAME=LQ_DIR:GT_DIR, got {spec!r}")
    return name, lq, gt


def check_data_args(args) -> None:
    """The rules of whichever data options ``args`` has (a script stage may have only some, or
    none), before any model loads. Raises ValueError (one line)."""
    if getattr(args, "streaming", False) and not getattr(args, "dataset_name", None):
        raise ValueError("--streaming needs --dataset_name")
    if getattr(args, "synthesis", "workers") == "device" and (getattr(args, "streaming", False)
                                                              or getattr(args, "paired", [])):
        raise ValueError("--synthesis device degrades clean photos: not with --paired folders or --streaming")
    folders = [(f"--{option}", getattr(args, option, None)) for option in ("train_data_dir", "validation_data_dir")]
    for spec in getattr(args, "paired", []):
        _, lq, gt = parse_paired(spec)
        folders += [("--paired", lq), ("--paired", gt)]
    for option, folder in folders:
        if folder is not None and not Path(folder).is_dir():
            raise ValueError(f"{option}: folder {folder} does not exist")
    output = getattr(args, "output_dir", None)
    blocking = file_in_the_way(output) if output is not None else None
    if blocking is not None:
        raise ValueError(f"--output_dir {output}: {blocking} is a file, not a folder")
    model = getattr(args, "pretrained_model_name_or_path", None)
    if model is not None and model != "default":
        if looks_local(model) and not Path(model).is_dir():
            raise ValueError(f"--pretrained_model_name_or_path {model}: no such folder")
        try:
            require_hub(model)
        except OSError as error:
            raise ValueError(f"--pretrained_model_name_or_path: {error}") from None


def model_config(path, model_class) -> dict:
    """The JSON object of a ``--config`` file for ``model_class``, checked before the model is
    built: a missing or unparsable file, or a key ``model_class`` does not take, is a one-line
    usage error."""
    import inspect

    from ..boundary import UsageError
    from ..files import load_json_object

    if not Path(path).is_file():
        raise UsageError(f"--config {path}: no such file")
    config = load_json_object(path, UsageError)
    taken = set(inspect.signature(model_class.__init__).parameters) - {"self"}
    unknown = sorted(set(config) - taken)
    if unknown:
        raise UsageError(f"--config {path}: {model_class.__name__} takes no {', '.join(unknown)}; it takes "
                         f"{', '.join(sorted(taken))}")
    return config


def parse_training_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``parser.parse_args(argv)`` plus :func:`check_data_args`: a bad combination is a usage
    error (one line, exit 2), like a bad value."""
    args = parser.parse_args(argv)
    try:
        check_data_args(args)
    except ValueError as error:
        parser.error(str(error))
    if getattr(args, "resume_from_checkpoint", None):  # a damaged checkpoint is told before any model loads
        from .checkpoints import resolve_checkpoint

        resolve_checkpoint(args.output_dir, args.resume_from_checkpoint)
    return args


def synthesis_severity(args) -> str | None:
    """``--severity`` as :func:`uir.degradations.apply` takes it: ``default`` is ``None``."""
    return None if args.severity == "default" else args.severity


def training_dataset(args, names: list[str]):
    """The dataset the options describe; items are labelled by degradation name. A streamed
    ``--dataset_name`` gives this process's part of the stream (:mod:`uir.data.hf_datasets`)."""
    from ..data import DegradationConcatDataset, PairedFolderDataset, SyntheticDegradationDataset, photo_split

    check_data_args(args)
    severity = synthesis_severity(args)
    clean_inputs = getattr(args, "clean_inputs", 0.0)  # an option of the experts' trainer alone
    if args.dataset_name:
        from ..data.hf_datasets import (DatasetImages, StreamingDegradationDataset, load_training_dataset,
                                split_between_processes)

        data = load_training_dataset(args.dataset_name, args.dataset_config_name, args.dataset_split,
                                     streaming=args.streaming)
        if args.streaming:
            from accelerate import PartialState

            state = PartialState()
            stream = split_between_processes(data, state.process_index, state.num_processes)
            return StreamingDegradationDataset(stream, names, column=args.image_column, crop_size=args.resolution,
                                               flip=True, seed=args.seed, severity=severity)
        return SyntheticDegradationDataset(DatasetImages(data, args.image_column), names, crop_size=args.resolution,
                                           flip=True, seed=args.seed, severity=severity, repeats=args.repeats,
                                           on_device=args.synthesis == "device", clean_inputs=clean_inputs)
    if args.paired:
        folders = {}
        for spec in args.paired:
            name, lq, gt = parse_paired(spec)
            folders[name] = PairedFolderDataset(lq, gt, crop_size=args.resolution, flip=True, seed=args.seed,
                                                degradation=name)
        return DegradationConcatDataset(folders)
    train_files, _ = photo_split(args)
    return SyntheticDegradationDataset(train_files, names, crop_size=args.resolution, flip=True, seed=args.seed,
                                       severity=severity, repeats=args.repeats, on_device=args.synthesis == "device",
                                       clean_inputs=clean_inputs)


def mixed_batches(args, dataset):
    """The batch sampler of a trainer whose batches mix every type: shuffled batches of any
    types, or ``None`` for a streamed dataset (the stream's own order, batched by the loader)."""
    from torch.utils.data import IterableDataset

    from ..data import SingleDegradationBatchSampler

    if isinstance(dataset, IterableDataset):
        return None
    return SingleDegradationBatchSampler(dataset, args.train_batch_size, seed=args.seed, mix_types=True)


__all__ = ["CROP_MULTIPLE", "add_data_args", "model_config", "add_training_args", "add_uir_lora_args", "mixed_batches", "synthesis_severity",
           "training_dataset"]
