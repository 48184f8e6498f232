"""The training loop shared by the ``train/`` scripts, in the diffusers ``examples/`` style.

A script builds its models, says which parameters it trains and how a batch becomes a loss,
and hands over to :func:`train`. This module owns what every script needs the same way:

* the common command-line options (:func:`add_training_args`);
* an :class:`~accelerate.Accelerator` with a ``ProjectConfiguration`` (:func:`make_accelerator`);
* AdamW, a diffusers LR schedule, gradient accumulation, clipping, a tqdm bar on the main
  process, metrics in ``logs/metrics.jsonl`` (and in any ``--report_to`` tracker);
* checkpoints (:func:`save_checkpoint`, :func:`load_checkpoint`).

**Checkpoints** hold only the trained parameters, never a frozen base, and contain no
pickles: ``trainable.safetensors``, ``optimizer.safetensors`` (AdamW moments and steps),
``rng-<rank>.safetensors`` (each process's torch RNG state) and ``state.json`` (step, epoch,
LR schedule, optimizer hyper-parameters). A checkpoint is written to ``checkpoint-N.tmp`` and
renamed into place, so an interrupted save never looks like a checkpoint.
``--resume_from_checkpoint latest`` restores all of it and skips the batches already seen
in the current epoch: on CPU the resumed run reproduces the uninterrupted one bit for bit.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .degradations import parse_names

logger = logging.getLogger("uir.training")

CHECKPOINT_PREFIX = "checkpoint-"
TRAINABLE_FILE, OPTIMIZER_FILE, STATE_FILE = "trainable.safetensors", "optimizer.safetensors", "state.json"


def add_training_args(parser: argparse.ArgumentParser, *, learning_rate: float = 2e-4, batch_size: int = 8,
                      max_train_steps: int = 1000, resolution: int = 256) -> argparse.ArgumentParser:
    """Options every ``train/`` script shares (names follow the diffusers examples)."""
    group = parser.add_argument_group("training")
    group.add_argument("--output_dir", required=True, help="where checkpoints, logs and results go")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--resolution", type=int, default=resolution, help="square training crop size (pixels)")
    group.add_argument("--train_batch_size", type=int, default=batch_size, help="batch size per process")
    group.add_argument("--max_train_steps", type=int, default=max_train_steps, help="optimizer steps in total")
    group.add_argument("--gradient_accumulation_steps", type=int, default=1)
    group.add_argument("--gradient_checkpointing", action="store_true", help="trade compute for memory")
    group.add_argument("--learning_rate", type=float, default=learning_rate)
    group.add_argument("--lr_scheduler", default="cosine",
                       help="a diffusers schedule: cosine (annealing, the papers' choice), constant, linear, ...")
    group.add_argument("--lr_warmup_steps", type=int, default=0)
    group.add_argument("--adam_beta1", type=float, default=0.9)
    group.add_argument("--adam_beta2", type=float, default=0.999)
    group.add_argument("--adam_weight_decay", type=float, default=1e-2)
    group.add_argument("--adam_epsilon", type=float, default=1e-8)
    group.add_argument("--max_grad_norm", type=float, default=1.0)
    group.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None,
                       help="defaults to accelerate's config (no on CPU)")
    group.add_argument("--dataloader_num_workers", type=int, default=0)
    group.add_argument("--checkpointing_steps", type=int, default=500, help="save a resumable checkpoint every N steps")
    group.add_argument("--checkpoints_total_limit", type=int, default=None, help="keep at most this many checkpoints")
    group.add_argument("--resume_from_checkpoint", default=None, help='a checkpoint folder, or "latest"')
    group.add_argument("--validation_steps", type=int, default=100, help="validate every N steps (0: only at the end)")
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
    group.add_argument("--paired", action="append", default=[], metavar="NAME=LQ_DIR:GT_DIR",
                       help="a paired folder for one degradation (repeatable); replaces --train_data_dir")
    group.add_argument("--degradations", type=parse_names, default=default_degradations,
                       help='comma-separated degradation names, or "all" (the 10 DA-CLIP types)')
    group.add_argument("--severity", default="random", help="mild|moderate|severe|random, or default for the protocol")
    group.add_argument("--validation_data_dir", default=None,
                       help="clean photos for validation (default: the held-out split)")
    group.add_argument("--num_validation_images", type=int, default=4)
    return parser


def _given_or_split(folder, part: int, option: str) -> list[Path]:
    from .data import photo_files, photo_root, split_photos

    return photo_files(folder) if folder is not None else split_photos(photo_root(None, option))[part]


def training_photos(train_data_dir) -> list[Path]:
    """The clean photos in ``train_data_dir``, or the training split of the default photos."""
    return _given_or_split(train_data_dir, 0, "--train_data_dir")


def held_out_photos(data_dir) -> list[Path]:
    """The clean photos in ``data_dir``, or the held-out split of the default photos."""
    return _given_or_split(data_dir, 1, "--data")


def photo_split(args) -> tuple[list[Path], list[Path]]:
    """(training files, validation files) from the data options; without ``--validation_data_dir``
    the held-out split of the default photos, or none when there are none."""
    from .data import default_photos_dir, photo_files, split_photos

    train_files = training_photos(args.train_data_dir)
    if args.validation_data_dir is not None:
        held_out = photo_files(args.validation_data_dir)
    else:
        root = default_photos_dir()
        held_out = split_photos(root)[1] if root is not None else []
    return train_files, held_out[: args.num_validation_images]


def training_dataset(args, names: list[str]):
    """The dataset the options describe; items are labelled by degradation name."""
    from .data import DegradationConcatDataset, PairedFolderDataset, SyntheticDegradationDataset

    if args.paired:
        folders = {}
        for spec in args.paired:
            name, sep, dirs = spec.partition("=")
            lq, sep2, gt = dirs.partition(":")
            if not (sep and sep2 and name and lq and gt):
                raise ValueError(f"--paired expects NAME=LQ_DIR:GT_DIR, got {spec!r}")
            folders[name] = PairedFolderDataset(lq, gt, crop_size=args.resolution, flip=True, seed=args.seed,
                                                degradation=name)
        return DegradationConcatDataset(folders)
    train_files, _ = photo_split(args)
    severity = None if args.severity == "default" else args.severity
    return SyntheticDegradationDataset(train_files, names, crop_size=args.resolution, flip=True, seed=args.seed,
                                       severity=severity)


def make_accelerator(args, find_unused_parameters: bool = False):
    """An ``Accelerator`` writing under ``args.output_dir``, seeded with ``args.seed``.

    ``find_unused_parameters`` is for scripts whose steps train different parameter subsets
    (one expert per batch): DDP then leaves the gradients of parameters unused on every
    process untouched (``None``), and AdamW skips them.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import ProjectConfiguration, set_seed

    output_dir = Path(args.output_dir)
    project = ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs"))
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=project,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)],
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(args.seed)
    return accelerator


class LossModule(nn.Module):
    """The trained modules plus the loss, as one module, so that DDP sees a single forward.

    ``loss(batch)`` may use the modules however it likes (a pipeline's one-step forward, a
    router's logits); wrapping it here is what makes distributed gradient sync see it.
    """

    def __init__(self, modules: dict[str, nn.Module], loss: Callable[[dict], torch.Tensor]):
        super().__init__()
        self.parts = nn.ModuleDict(modules)
        self.loss = loss

    def forward(self, batch: dict) -> torch.Tensor:
        return self.loss(batch)


def restoration_validator(restore: Callable[[torch.Tensor, str], torch.Tensor], files, names, output_dir,
                          seed: int = 0) -> Callable[[int], dict]:
    """A ``validate(step)`` for restorers: PSNR on held-out ``files`` under each of ``names``
    (protocol severities), logged as ``val_psnr/<name>``; writes ``validation/step-N.png``
    (input | output | ground truth per degradation)."""
    from .evaluation import comparison_grid, evaluate_restoration
    from .images import save_image

    def validate(step: int) -> dict:
        rows = []

        def keep_first(pair, restored):
            if pair.path == str(files[0]):
                rows.append((pair.name, [pair.lq, restored, pair.gt]))

        scores = evaluate_restoration(lambda lq, pair: restore(lq, pair.name), files, names, seed=seed,
                                      on_pair=keep_first)
        save_image(comparison_grid(rows), Path(output_dir) / "validation" / f"step-{step}.png")
        logs = {f"val_psnr/{name}": value for name, value in scores.psnr_out.items()}
        logs["val_psnr"] = scores.mean("psnr_out")
        logs["val_psnr_input"] = scores.mean("psnr_in")
        return logs

    return validate


def add_uir_lora_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of the scripts that train parts of an expert pipeline."""
    group = parser.add_argument_group("model")
    group.add_argument("--pretrained_model_name_or_path", default="stabilityai/sd-turbo",
                       help="the frozen base: SD-turbo (a Hub id or folder), or a saved RestorerPipeline folder")
    group.add_argument("--vae", default=None, help="SD-turbo only: a trained skip-connection VAE folder "
                                                   "(train_vae_skips.py)")
    group.add_argument("--lpips_weight", type=float, default=0.0,
                       help="add LPIPS to the L2 loss (needs the lpips package and its AlexNet weights)")
    return parser


def saved_model_config(folder) -> dict:
    """The ``config.json`` of a saved model folder; a one-line exit when there is none."""
    config = Path(str(folder)) / "config.json"
    if not config.is_file():
        raise SystemExit(f"{folder} is not a saved model folder (no config.json)")
    return json.loads(config.read_text())


def is_restorer_pipeline(path) -> bool:
    """Whether ``path`` is a saved :class:`~uir.pipelines.RestorerPipeline` folder."""
    index = Path(str(path)) / "model_index.json"
    if not index.is_file():
        return False
    name = json.loads(index.read_text()).get("_class_name")
    return (name[-1] if isinstance(name, list) else name) == "RestorerPipeline"


def load_uir_lora_pipeline(args):
    """The pipeline to train (UIR-LoRA on SD-turbo, or a RestorerPipeline), with gradient
    checkpointing when asked for."""
    from .pipelines import RestorerPipeline, UIRLoRAPipeline

    if is_restorer_pipeline(args.pretrained_model_name_or_path):
        if args.vae:
            raise ValueError("--vae applies to SD-turbo, not to a RestorerPipeline")
        return RestorerPipeline.from_pretrained(args.pretrained_model_name_or_path)
    pipe = UIRLoRAPipeline.from_sd_turbo(args.pretrained_model_name_or_path, vae=args.vae)
    if args.gradient_checkpointing:
        pipe.unet.enable_gradient_checkpointing()
        pipe.vae.enable_gradient_checkpointing()
    return pipe


def restoration_loss(lpips_weight: float = 0.0, kind: str = "l2") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """L2 (or L1), plus ``lpips_weight`` x LPIPS; fails at once (not mid-run) when LPIPS is unavailable."""
    import torch.nn.functional as F

    if lpips_weight:
        from .metrics import lpips

        probe = torch.zeros(1, 3, 32, 32)
        lpips(probe, probe)  # raises LPIPSUnavailableError naming what is missing

    def loss(restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distance = F.mse_loss if kind == "l2" else F.l1_loss
        value = distance(restored.float(), target.float())
        if lpips_weight:
            value = value + lpips_weight * lpips(restored.float(), target.float()).mean()
        return value

    return loss


# --- checkpoints -------------------------------------------------------------------------------
def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for flat, value in list(tensors.items()) + list(meta["scalars"].items()):
        index, key = flat.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def checkpoint_dirs(output_dir) -> list[Path]:
    """Finished checkpoints under ``output_dir``, oldest first."""
    found = [p for p in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and p.name[len(CHECKPOINT_PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def save_checkpoint(accelerator, output_dir, step: int, epoch: int, trainable: dict[str, nn.Parameter],
                    optimizer, lr_scheduler, total_limit: int | None = None) -> Path:
    """Write ``checkpoint-<step>`` atomically; prune the oldest beyond ``total_limit``."""
    final = Path(output_dir) / f"{CHECKPOINT_PREFIX}{step}"
    staging = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    save_file({"state": torch.get_rng_state()}, staging / f"rng-{accelerator.process_index}.safetensors")
    if accelerator.is_main_process:
        save_file({name: p.detach().contiguous().cpu() for name, p in trainable.items()}, staging / TRAINABLE_FILE)
        tensors, meta = _flatten_optimizer(optimizer.state_dict())
        save_file(tensors, staging / OPTIMIZER_FILE)
        state = {"step": step, "epoch": epoch, "optimizer": meta, "lr_scheduler": lr_scheduler.state_dict(),
                 "num_processes": accelerator.num_processes}
        (staging / STATE_FILE).write_text(json.dumps(state, indent=1, default=_json_default))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        existing = checkpoint_dirs(output_dir)
        if total_limit is not None:
            for old in existing[: max(0, len(existing) - total_limit)]:
                shutil.rmtree(old, ignore_errors=True)
        logger.info("saved %s", final)
    accelerator.wait_for_everyone()
    return final


def _json_default(value):
    if isinstance(value, tuple):
        return list(value)
    if torch.is_tensor(value):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} into a checkpoint's state.json")


def resolve_checkpoint(output_dir, which: str | None) -> Path | None:
    """``"latest"`` -> the newest finished checkpoint (or None); a path -> that path."""
    if not which:
        return None
    if which == "latest":
        found = checkpoint_dirs(output_dir)
        return found[-1] if found else None
    path = Path(which)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a uir checkpoint (no {STATE_FILE})")
    return path


def load_checkpoint(accelerator, path, trainable: dict[str, nn.Parameter], optimizer, lr_scheduler) -> dict:
    """Restore parameters, optimizer, LR schedule and this process's RNG; return ``state.json``."""
    path = Path(path)
    state = json.loads((path / STATE_FILE).read_text())
    weights = load_file(path / TRAINABLE_FILE)
    missing = sorted(set(trainable) - set(weights))
    if missing:
        raise ValueError(f"{path}: checkpoint lacks trained parameters {missing[:3]}; was it made by another setup?")
    with torch.no_grad():
        for name, param in trainable.items():
            param.copy_(weights[name])
    optimizer_state = _unflatten_optimizer(load_file(path / OPTIMIZER_FILE), state["optimizer"])
    optimizer.load_state_dict(optimizer_state)
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    rng = path / f"rng-{accelerator.process_index}.safetensors"
    if rng.is_file():
        torch.set_rng_state(load_file(rng)["state"])
    return state


# --- the loop ----------------------------------------------------------------------------------
def train(accelerator, args, *, model: LossModule, trainable: dict[str, nn.Parameter], dataset, batch_sampler,
          validate: Callable[[int], dict] | None = None, collate_fn=None, lr_scales: dict[str, float] | None = None) -> int:
    """Optimise ``trainable`` on ``model(batch)`` for ``args.max_train_steps`` steps.

    ``lr_scales`` multiplies the learning rate of the named parameters (one AdamW group per
    scale; the schedule scales every group alike), e.g. LIRA's ``rho`` on old parameters.

    ``batch_sampler`` and ``dataset`` get ``set_epoch`` every epoch, so data order depends only
    on the seed and the epoch. ``validate(step)`` runs on the main process every
    ``args.validation_steps`` and at the end, and returns metrics to log. Returns the final step.
    """
    from diffusers.optimization import get_scheduler
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    params = list(trainable.values())
    groups: dict[float, list[nn.Parameter]] = {}
    for name, param in trainable.items():
        groups.setdefault(float((lr_scales or {}).get(name, 1.0)), []).append(param)
    optimizer = torch.optim.AdamW([{"params": group, "lr": args.learning_rate * scale} for scale, group in groups.items()],
                                  lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
    loader = DataLoader(dataset, batch_sampler=batch_sampler, num_workers=args.dataloader_num_workers,
                        collate_fn=collate_fn)
    # A prepared scheduler steps once per process per optimizer step, hence the factor.
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer=optimizer,
                                 num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=args.max_train_steps * accelerator.num_processes)
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    if steps_per_epoch == 0:
        raise ValueError("the data yields no full batch; lower --train_batch_size or add images")
    if accelerator.is_main_process:
        accelerator.init_trackers(Path(sys.argv[0] or "train").stem, config={k: v for k, v in vars(args).items()
                                                                  if isinstance(v, (int, float, str, bool))})

    step, first_epoch, skip = 0, 0, 0
    checkpoint = resolve_checkpoint(args.output_dir, args.resume_from_checkpoint)
    if args.resume_from_checkpoint and checkpoint is None:
        accelerator.print(f"no checkpoint in {args.output_dir}; starting a new run")
    elif checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint, trainable, optimizer, lr_scheduler)
        step = state["step"]
        first_epoch, skip = divmod(step, steps_per_epoch)
        skip *= args.gradient_accumulation_steps
        accelerator.print(f"resumed from {checkpoint} at step {step}")

    progress = tqdm(range(args.max_train_steps), initial=step, desc="steps", disable=not accelerator.is_local_main_process)
    metrics_file = Path(args.output_dir) / "logs" / "metrics.jsonl"
    epoch = first_epoch
    while step < args.max_train_steps:
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        skip = 0
        # accelerate re-seeds the batch sampler with its own iteration count when iterating;
        # set that count (and the dataset's epoch) to ours, also on a resumed epoch's loader.
        batches.set_epoch(epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        model.train()
        window = []  # the micro-batch losses of the current optimizer step
        for batch in batches:
            with accelerator.accumulate(model):
                loss = model(batch)
                window.append(loss.detach())
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower --learning_rate")
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_([p for p in params if p.grad is not None], args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            step += 1
            progress.update(1)
            logs = {"loss": accelerator.gather(torch.stack(window).mean()[None]).mean().item(),
                    "lr": lr_scheduler.get_last_lr()[0]}
            window = []
            progress.set_postfix(**{k: f"{v:.4g}" for k, v in logs.items()})
            if args.checkpointing_steps and step % args.checkpointing_steps == 0:
                save_checkpoint(accelerator, args.output_dir, step, epoch, trainable, optimizer, lr_scheduler,
                                args.checkpoints_total_limit)
            if validate is not None and (step == args.max_train_steps or (args.validation_steps and step % args.validation_steps == 0)):
                if accelerator.is_main_process:
                    model.eval()
                    logs.update(validate(step))
                    model.train()
                accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                accelerator.log(logs, step=step)
                metrics_file.parent.mkdir(parents=True, exist_ok=True)
                with metrics_file.open("a") as handle:
                    handle.write(json.dumps({"step": step, **logs}) + "\n")
            if step >= args.max_train_steps:
                break
        epoch += 1
    progress.close()
    accelerator.wait_for_everyone()
    return step


def finish(accelerator, args, folder, title: str, base_model: str, names: Iterable[str], description: str) -> None:
    """End the run: write a model card into ``folder`` and, with ``--push_to_hub``, upload it."""
    if accelerator.is_main_process:
        from .hub import upload_folder, write_model_card

        write_model_card(folder, title, base_model, list(names), description)
        if args.push_to_hub:
            upload_folder(folder, args.hub_model_id or Path(args.output_dir).name, token=args.hub_token)
    accelerator.end_training()


__all__ = [
    "TRAINABLE_FILE",
    "LossModule",
    "add_data_args",
    "add_training_args",
    "add_uir_lora_args",
    "checkpoint_dirs",
    "finish",
    "held_out_photos",
    "is_restorer_pipeline",
    "load_checkpoint",
    "load_uir_lora_pipeline",
    "make_accelerator",
    "photo_split",
    "resolve_checkpoint",
    "restoration_loss",
    "restoration_validator",
    "save_checkpoint",
    "saved_model_config",
    "train",
    "training_dataset",
    "training_photos",
]
