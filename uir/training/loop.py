"""The training loop shared by the ``train/`` scripts, in the diffusers ``examples/`` style.

A script builds its models, says which parameters it trains and how a batch becomes a loss,
and hands over to :func:`train`: an :class:`~accelerate.Accelerator` with a
``ProjectConfiguration`` (:func:`make_accelerator`), AdamW with per-group learning-rate
scales, a diffusers LR schedule, gradient accumulation, clipping, a tqdm bar on the main
process, metrics in ``logs/metrics.jsonl`` (and in any ``--report_to`` tracker), resumable
checkpoints (:mod:`.checkpoints`) and a model card at the end (:func:`finish`).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from .checkpoints import load_checkpoint, resolve_checkpoint, save_checkpoint, trained_buffers

logger = logging.getLogger("uir.training")


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


# --- the loop ----------------------------------------------------------------------------------
#: steps a time-budgeted run (``--max_train_seconds``) times before it fixes its length
BUDGET_PROBE_STEPS = 30


def lr_schedule(args, optimizer, num_processes: int, num_training_steps: int):
    """The diffusers schedule the options name. A prepared scheduler steps once per process per
    optimizer step, hence the factor."""
    from diffusers.optimization import get_scheduler

    return get_scheduler(args.lr_scheduler, optimizer=optimizer, num_warmup_steps=args.lr_warmup_steps * num_processes,
                         num_training_steps=num_training_steps * num_processes)


def fit_to_budget(args, lr_scheduler, step: int, seconds_per_step: float, seconds_left: float,
                  num_processes: int = 1) -> int:
    """``--max_train_seconds``: shorten ``args.max_train_steps`` to the steps that fit in the time
    left at the measured speed, and stretch the LR schedule over the new length (the schedule's
    lambdas are rebuilt; its step count and the optimizer are untouched). Returns the new length."""
    fitting = step + max(1, int(seconds_left / seconds_per_step))
    if fitting >= args.max_train_steps:
        return args.max_train_steps
    args.max_train_steps = fitting
    inner = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate wraps the LambdaLR
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    fresh = lr_schedule(args, probe, num_processes, fitting)
    inner.lr_lambdas = [fresh.lr_lambdas[0]] * len(inner.lr_lambdas)
    return fitting

def train(accelerator, args, *, model: LossModule, trainable: dict[str, nn.Parameter], dataset, batch_sampler,
          validate: Callable[[int], dict] | None = None, collate_fn=None, lr_scales: dict[str, float] | None = None,
          step_logs: Callable[[], dict] | None = None) -> int:
    """Optimise ``trainable`` on ``model(batch)`` for ``args.max_train_steps`` steps.

    ``lr_scales`` multiplies the learning rate of the named parameters (one AdamW group per
    scale; the schedule scales every group alike), e.g. LIRA's ``rho`` on old parameters.

    ``batch_sampler`` and ``dataset`` get ``set_epoch`` every epoch, so data order depends only
    on the seed and the epoch. ``validate(step)`` runs on the main process every
    ``args.validation_steps`` and at the end, and returns metrics to log; ``step_logs()``, after
    every optimizer step, returns more (e.g. each loss term). Returns the final step.
    """
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    params = list(trainable.values())
    groups: dict[float, list[nn.Parameter]] = {}
    for name, param in trainable.items():
        groups.setdefault(float((lr_scales or {}).get(name, 1.0)), []).append(param)
    optimizer = torch.optim.AdamW([{"params": group, "lr": args.learning_rate * scale} for scale, group in groups.items()],
                                  lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
    if args.dataloader_num_workers and hasattr(dataset, "preload"):
        dataset.preload()  # workers fork with the decoded images
    streamed = batch_sampler is None  # an iterable dataset: batches in stream order, epochs of unknown length
    batching = dict(batch_size=args.train_batch_size, drop_last=True) if streamed else dict(batch_sampler=batch_sampler)
    loader = DataLoader(dataset, num_workers=args.dataloader_num_workers, collate_fn=collate_fn,
                        pin_memory=accelerator.device.type == "cuda", **batching)
    lr_scheduler = lr_schedule(args, optimizer, accelerator.num_processes, args.max_train_steps)
    if streamed:  # each process already reads its own part of the stream (uir.data.hf_datasets)
        model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
        steps_per_epoch = None
    else:
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
        state = load_checkpoint(accelerator, checkpoint, trainable, optimizer, lr_scheduler,
                                trained_buffers(accelerator.unwrap_model(model), trainable))
        step = state["step"]
        if streamed:  # a stream cannot seek: resume with the next epoch's pass over it
            first_epoch, skip = state.get("epoch", 0) + 1, 0
        else:
            first_epoch, skip = divmod(step, steps_per_epoch)
            skip *= args.gradient_accumulation_steps
        accelerator.print(f"resumed from {checkpoint} at step {step}")

    progress = tqdm(range(args.max_train_steps), initial=step, desc="steps", disable=not accelerator.is_local_main_process)
    metrics_file = Path(args.output_dir) / "logs" / "metrics.jsonl"
    budget = args.max_train_seconds
    started, probe_from = time.perf_counter(), step + 5  # the first steps include start-up costs
    probe_start = None
    epoch = first_epoch
    while step < args.max_train_steps:
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        skip = 0
        # accelerate re-seeds the batch sampler with its own iteration count when iterating;
        # set that count (and the dataset's epoch) to ours, also on a resumed epoch's loader.
        if not streamed:
            batches.set_epoch(epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        yielded = step
        model.train()
        window = []  # the micro-batch losses of the current optimizer step
        for batch in batches:
            if getattr(dataset, "on_device", False):  # --synthesis device: degrade here, not in the workers
                batch = dataset.degrade_batch(batch, accelerator.device)
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
            if budget and step == probe_from:
                probe_start = time.perf_counter()
            if budget and step == probe_from + BUDGET_PROBE_STEPS:
                now = time.perf_counter()
                speed = torch.tensor([(now - probe_start) / BUDGET_PROBE_STEPS, budget - (now - started)],
                                     device=accelerator.device)
                speed = accelerator.reduce(speed, reduction="mean")  # every process stops at the same step
                length = fit_to_budget(args, lr_scheduler, step, float(speed[0]), float(speed[1]),
                                       accelerator.num_processes)
                progress.total = length
                accelerator.print(f"time budget {budget:.0f} s at {float(speed[0]) * 1000:.1f} ms a step: "
                                  f"{length} steps in all")
            logs = {"loss": accelerator.gather(torch.stack(window).mean()[None]).mean().item(),
                    "lr": lr_scheduler.get_last_lr()[0], **(step_logs() if step_logs is not None else {})}
            window = []
            progress.set_postfix(**{k: f"{v:.4g}" for k, v in logs.items()})
            if args.checkpointing_steps and step % args.checkpointing_steps == 0:
                save_checkpoint(accelerator, args.output_dir, step, epoch, trainable, optimizer, lr_scheduler,
                                args.checkpoints_total_limit,
                                trained_buffers(accelerator.unwrap_model(model), trainable))
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
        if streamed and step == yielded and step < args.max_train_steps:
            raise ValueError("this process's part of the stream yields no full batch; lower --train_batch_size")
        epoch += 1
    progress.close()
    accelerator.wait_for_everyone()
    return step


def finish(accelerator, args, folder, title: str, base_model: str, names: Iterable[str], description: str) -> None:
    """End the run: write a model card into ``folder`` and, with ``--push_to_hub``, upload it."""
    if accelerator.is_main_process:
        from ..hub import upload_folder, write_model_card

        write_model_card(folder, title, base_model, list(names), description)
        if args.push_to_hub:
            upload_folder(folder, args.hub_model_id or Path(args.output_dir).name, token=args.hub_token)
    accelerator.end_training()


__all__ = ["LossModule", "finish", "make_accelerator", "train"]
