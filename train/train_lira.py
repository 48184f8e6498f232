#!/usr/bin/env python
"""Train LIRA (fork-join experts, growing, pseudo-replay) and its lifelong baselines.

    accelerate launch train/train_lira.py experts    --output_dir runs/lira/experts
    accelerate launch train/train_lira.py join       --init runs/lira/experts/model --output_dir runs/lira/join
    accelerate launch train/train_lira.py replay-gan --base runs/lira/join/model --output_dir runs/lira/gan
    accelerate launch train/train_lira.py grow       --base runs/lira/join/model --method lira \\
        --generator runs/lira/gan/generator --output_dir runs/lira/grow-lira
    python train/train_lira.py evaluate --model runs/lira/grow-lira/model --task 0 --degradations lira-blended

* ``experts`` (fork, sec. 3.1): expert ``i`` alone on single-factor batches of degradation
  ``i`` (default ``lira-blur,lira-noise,lira-jpeg``), sharing the extractor and decoder.
* ``join``: the whole base network on blended distortions (``lira-blended``).
* ``replay-gan`` (sec. 3.3, eq. 15-17): the generator ``G`` (clean -> old blended distortion)
  with the cycle loss through the frozen base network, ``lambda_1 = 10``.
* ``grow`` (sec. 3.2-3.3): a new task for a new distortion (``lira-blended-haze``). A warm-up
  trains only the new branch with the old expert frozen, then ``--method`` decides the rest:
  ``lira`` (eq. 18: ``L_new + lambda_2 L_old`` on pseudo pairs ``(G(y2), R(G(y2)))``, old
  parameters at ``rho`` x the learning rate), ``setting-a`` (new data only, ``rho``),
  ``finetune`` (new data only, one learning rate), ``ewc`` (new data plus the EWC penalty on
  the old expert), ``lwf`` (new data plus ``lambda_2 ||R~(x2) - R(x2)||_1``) or ``lira-lwf``
  (both of LIRA's and LwF's terms, to separate replay from distillation).
* ``evaluate``: held-out PSNR at the mild, moderate and severe levels.
* ``replay-quality``: how close the replay generator's ``G(y)`` is to the real old distortion
  of the same clean held-out photos: PSNR of each against ``y``, the base's PSNR on each, and
  the two-sample Kolmogorov-Smirnov statistic between the per-image input PSNRs.

Training and evaluation use the paper's moderate level by default (sec. 4.1). Every stage
writes ``OUTPUT_DIR/model`` (a ``LIRANetwork``); ``join`` and ``grow`` also write
``OUTPUT_DIR/pipeline``, a ``RestorerPipeline`` that ``DiffusionPipeline.from_pretrained``
loads (restoring for the newest task).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from uir.boundary import run_script
from uir.data import SingleDegradationBatchSampler
from uir.degradations import parse_names
from uir.evaluation import evaluate_severities, report
from uir.lira import ewc_penalty, fisher_diagonal, pseudo_replay_gan_loss
from uir.models.experts import ExpertListModel
from uir.lira import LIRANetwork, PatchDiscriminator, ResnetGenerator
from uir.pipelines import RestorerPipeline
from uir.tiling import run_padded
from uir.training import (LossModule, add_data_args, add_training_args, finish, held_out_photos, make_accelerator,
                          parse_training_args, restoration_loss, restoration_validator, saved_model_config, train,
                          training_dataset, validation_photos)
from uir.files import save_pretrained_staged

DEFAULT_RHO = {"lira": 1e-3, "lira-lwf": 1e-3, "setting-a": 1e-3, "finetune": 1.0, "ewc": 1.0, "lwf": 1.0}
#: the growing methods that replay pseudo old pairs made by the generator, and those that distil the base on the new inputs
REPLAYING, DISTILLING = ("lira", "lira-lwf"), ("lwf", "lira-lwf")
STAGE_DEGRADATIONS = {"experts": "lira-blur,lira-noise,lira-jpeg", "join": "lira-blended",
                      "replay-gan": "lira-blended", "grow": "lira-blended-haze"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    stages = parser.add_subparsers(dest="stage", required=True)
    for stage, degraded in STAGE_DEGRADATIONS.items():
        sub = stages.add_parser(stage)
        model = sub.add_argument_group("model")
        model.add_argument("--channels", type=int, default=32)
        model.add_argument("--num_blocks", type=int, default=6, help="M, SK-DuRBs per expert")
        if stage == "experts":
            model.add_argument("--init", default=None, help="continue from a LIRANetwork folder")
        if stage == "join":
            model.add_argument("--init", required=True, help="the experts stage's model folder")
        if stage in ("replay-gan", "grow"):
            model.add_argument("--base", required=True, help="the trained base network (join's model folder)")
        if stage == "replay-gan":
            model.add_argument("--generator_width", type=int, default=64)
            model.add_argument("--num_res_blocks", type=int, default=9)
            model.add_argument("--cycle_weight", type=float, default=10.0, help="lambda_1 (eq. 17)")
        if stage == "grow":
            model.add_argument("--method", choices=sorted(DEFAULT_RHO), default="lira")
            model.add_argument("--generator", default=None, help=f"replay-gan's generator folder (--method {' or '.join(REPLAYING)})")
            model.add_argument("--old_degradations", type=parse_names, default="lira-blended",
                               help="the old task (EWC's Fisher information and validation)")
            model.add_argument("--rho", type=float, default=None,
                               help=f"learning-rate factor of the old parameters (default per method: {DEFAULT_RHO})")
            model.add_argument("--replay_weight", type=float, default=0.2, help="lambda_2 (eq. 18; LwF's weight too)")
            model.add_argument("--ewc_lambda", type=float, default=100.0)
            model.add_argument("--fisher_batches", type=int, default=16)
            model.add_argument("--warmup_steps", type=int, default=200,
                               help="steps training only the new branch, the old expert frozen")
            model.add_argument("--warmup_from", default=None,
                               help="a grown model folder from an earlier warm-up (shared across methods)")
        add_data_args(sub, default_degradations=degraded)
        sub.set_defaults(severity="moderate")
        add_training_args(sub, learning_rate=1e-4, batch_size=8, max_train_steps=1000, resolution=64)
    evaluate = stages.add_parser("evaluate", help="held-out PSNR at the three levels")
    evaluate.add_argument("--model", required=True, help="a LIRANetwork folder")
    evaluate.add_argument("--task", type=int, default=None, help="the task to run (default: the newest)")
    evaluate.add_argument("--degradations", type=parse_names, default="lira-blended")
    quality = stages.add_parser("replay-quality", help="the replay generator against the real old distortion")
    quality.add_argument("--generator", required=True, help="replay-gan's generator folder")
    quality.add_argument("--base", required=True, help="the base network it was trained with (join's model folder)")
    quality.add_argument("--degradations", type=parse_names, default="lira-blended", help="the old distortion")
    quality.add_argument("--severity", default="moderate")
    for scoring in (evaluate, quality):
        scoring.add_argument("--data", default=None, help="clean photos (default: the held-out split)")
        scoring.add_argument("--limit", type=int, default=None, help="use only the first N photos")
        scoring.add_argument("--seed", type=int, default=0)
        scoring.add_argument("--output", default=None, help="write the rows as JSON here")
    return parse_training_args(parser, argv)


l1 = restoration_loss(kind="l1")


def save_outputs(accelerator, args, network: LIRANetwork, names, title: str) -> None:
    """``OUTPUT_DIR/model`` and a ``RestorerPipeline`` in ``OUTPUT_DIR/pipeline``."""
    folder = Path(args.output_dir)
    if accelerator.is_main_process:
        save_pretrained_staged(network, folder / "model")
        save_pretrained_staged(RestorerPipeline(network, experts=ExpertListModel(base_model="uir/lira")), folder / "pipeline")
    finish(accelerator, args, folder / "model", title, "", names,
           "A LIRA fork-join restorer (Liu et al., lifelong image restoration), trained with uir.")


def validator(args, network: LIRANetwork, names, task_of):
    files = validation_photos(args)
    if not files:
        return None
    restore = lambda lq, name: run_padded(lambda x: network(x, task=task_of(name)), lq, network.size_multiple)  # noqa: E731
    return restoration_validator(restore, files, names, args.output_dir, seed=args.seed)


def train_experts(args, accelerator):
    names = args.degradations
    network = (LIRANetwork.from_pretrained(args.init) if args.init else
               LIRANetwork(channels=args.channels, num_experts=len(names), num_blocks=args.num_blocks))
    if network.config.num_experts != len(names):
        raise SystemExit(f"{len(names)} degradations for {network.config.num_experts} experts")
    network.to(accelerator.device).train().requires_grad_(True)
    # each batch holds one factor; expert i alone restores it (its gates too; the attention idles)
    model = LossModule({"lira": network}, lambda b: l1(network(b["lq"], expert=int(b["degradation_index"][0])), b["gt"]))
    dataset = training_dataset(args, names)
    sampler = SingleDegradationBatchSampler(dataset, args.train_batch_size, seed=args.seed,
                                            group_size=accelerator.num_processes * args.gradient_accumulation_steps)
    trainable = {f"lira.{n}": p for n, p in network.named_parameters() if not n.startswith("amalgamator.attention.")}
    train(accelerator, args, model=model, trainable=trainable, dataset=dataset, batch_sampler=sampler)
    if accelerator.is_main_process:
        save_pretrained_staged(network, Path(args.output_dir) / "model")
    finish(accelerator, args, Path(args.output_dir) / "model", "uir LIRA experts (fork stage)", "", names,
           "LIRA's experts, each trained alone on one distortion factor.")


def train_join(args, accelerator):
    names = args.degradations
    network = LIRANetwork.from_pretrained(args.init).to(accelerator.device).train().requires_grad_(True)
    model = LossModule({"lira": network}, lambda b: l1(network(b["lq"]), b["gt"]))
    dataset = training_dataset(args, names)
    sampler = SingleDegradationBatchSampler(dataset, args.train_batch_size, seed=args.seed, mix_types=True)
    train(accelerator, args, model=model, trainable={f"lira.{n}": p for n, p in network.named_parameters()},
          dataset=dataset, batch_sampler=sampler, validate=validator(args, network, names, lambda name: 0))
    network.eval()
    save_outputs(accelerator, args, network, names, "uir LIRA base network")


def train_replay_gan(args, accelerator):
    names = args.degradations
    base = LIRANetwork.from_pretrained(args.base).to(accelerator.device).eval().requires_grad_(False)
    generator = ResnetGenerator(width=args.generator_width, num_res_blocks=args.num_res_blocks).to(accelerator.device)
    discriminator = PatchDiscriminator(width=args.generator_width).to(accelerator.device)

    def loss(batch):
        # unpaired: the degraded batch is rolled by one, so no clean image meets its own degradation
        value, _ = pseudo_replay_gan_loss(generator, discriminator, base, batch["gt"], batch["lq"].roll(1, dims=0),
                                          cycle_weight=args.cycle_weight)
        return value

    trainable = {**{f"generator.{n}": p for n, p in generator.named_parameters()},
                 **{f"discriminator.{n}": p for n, p in discriminator.named_parameters()}}
    dataset = training_dataset(args, names)
    sampler = SingleDegradationBatchSampler(dataset, args.train_batch_size, seed=args.seed, mix_types=True)
    train(accelerator, args, model=LossModule({"generator": generator, "discriminator": discriminator}, loss),
          trainable=trainable, dataset=dataset, batch_sampler=sampler)
    if accelerator.is_main_process:
        save_pretrained_staged(generator, Path(args.output_dir) / "generator")
        save_pretrained_staged(discriminator, Path(args.output_dir) / "discriminator")
    finish(accelerator, args, Path(args.output_dir) / "generator", "uir LIRA pseudo-replay generator", "", names,
           "Maps clean images to LIRA's old-task blended distortion, for pseudo-replay.")


def warm_up(args, accelerator, base: LIRANetwork, names) -> LIRANetwork:
    """The grown network after training only its new branch (old expert frozen)."""
    folder = Path(args.output_dir) / "warmup"
    if args.warmup_from or (folder / "model").is_dir():
        return LIRANetwork.from_pretrained(args.warmup_from or folder / "model").to(accelerator.device)
    grown = base.grow().train()
    groups = grown.parameter_groups()
    grown.requires_grad_(False)
    for param in groups["new"].values():
        param.requires_grad_(True)
    stage = argparse.Namespace(**{**vars(args), "output_dir": str(folder), "max_train_steps": args.warmup_steps})
    model = LossModule({"lira": grown}, lambda b: l1(grown(b["lq"]), b["gt"]))
    dataset = training_dataset(stage, names)
    sampler = SingleDegradationBatchSampler(dataset, args.train_batch_size, seed=args.seed, mix_types=True)
    train(accelerator, stage, model=model, trainable={f"lira.{n}": p for n, p in groups["new"].items()},
          dataset=dataset, batch_sampler=sampler)
    if accelerator.is_main_process:
        save_pretrained_staged(grown, folder / "model")
    accelerator.wait_for_everyone()
    return grown


def old_task_fisher(args, base: LIRANetwork) -> dict[str, torch.Tensor]:
    """EWC's Fisher diagonal of the old expert (the base amalgamator) on old-task batches."""
    old_names = args.old_degradations
    # a few batches, read here rather than by train(): degraded in this process whatever --synthesis says
    stage = argparse.Namespace(**{**vars(args), "degradations": args.old_degradations, "synthesis": "workers"})
    dataset = training_dataset(stage, old_names)
    sampler = SingleDegradationBatchSampler(dataset, args.train_batch_size, seed=args.seed + 1, mix_types=True)
    batches = [torch.utils.data.default_collate([dataset[i] for i in indices])
               for indices, _ in zip(sampler, range(args.fisher_batches))]
    params = {n: p for n, p in base.named_parameters() if n.startswith("amalgamator.")}
    for param in params.values():
        param.requires_grad_(True)
    device = base.device
    fisher = fisher_diagonal(lambda b: l1(base(b["lq"].to(device)), b["gt"].to(device)), params, batches)
    base.requires_grad_(False)
    return {"amalgamator.old." + n[len("amalgamator."):]: f for n, f in fisher.items()}


def grow_objective(args, grown: LIRANetwork, base: LIRANetwork, generator=None, fisher=None):
    """The loss of one growing batch ``b`` for ``args.method``: the new task's L1, plus

    * ``lira`` (eq. 18): ``replay_weight * L1(grown(G(y2), task 0), R(G(y2)))``, pseudo old pairs
      made by the replay generator ``G`` from the new batch's clean images and labelled by the
      frozen base ``R``;
    * ``lwf``: ``replay_weight * L1(grown(x2, task 0), R(x2))``, distillation on the new inputs;
    * ``lira-lwf``: both terms;
    * ``ewc``: ``ewc_lambda * EWC penalty`` with the old task's Fisher diagonal;
    * ``finetune`` / ``setting-a``: nothing more (they differ in ``rho``).
    """
    def new_loss(b):
        return l1(grown(b["lq"]), b["gt"])

    def kept_old(x):  # the grown network's old task on x, pulled toward the frozen base's output
        with torch.no_grad():
            target = base(x)
        return args.replay_weight * l1(grown(x, task=0), target)

    if args.method in REPLAYING + DISTILLING:
        def loss(b):
            value = new_loss(b)
            if args.method in REPLAYING:
                with torch.no_grad():  # pseudo old inputs x1' = G(y2), labelled R(x1') by kept_old
                    pseudo = generator(b["gt"])
                value = value + kept_old(pseudo)
            if args.method in DISTILLING:
                value = value + kept_old(b["lq"])
            return value
        return loss
    if args.method == "ewc":
        anchor = {n: p.detach().clone() for n, p in grown.named_parameters() if n in fisher}
        params = dict(grown.named_parameters())
        return lambda b: new_loss(b) + args.ewc_lambda * ewc_penalty(params, anchor, fisher)
    return new_loss


def train_grow(args, accelerator):
    names = args.degradations
    old_names = args.old_degradations
    base = LIRANetwork.from_pretrained(args.base).to(accelerator.device).eval().requires_grad_(False)
    if base.config.num_tasks != 1:
        raise SystemExit("--base must be a base network with one task; this script grows a base network once")
    if args.method in REPLAYING and not args.generator:
        raise SystemExit(f"--method {args.method} needs --generator (train it with the replay-gan stage)")
    grown = warm_up(args, accelerator, base, names).train().requires_grad_(True)
    groups = grown.parameter_groups()
    rho = DEFAULT_RHO[args.method] if args.rho is None else args.rho
    lr_scales = {f"lira.{n}": rho for n in groups["old"]}
    new_task = grown.config.num_tasks - 1

    generator = None
    if args.method in REPLAYING:
        generator = ResnetGenerator.from_pretrained(args.generator).to(accelerator.device).eval().requires_grad_(False)
    fisher = old_task_fisher(args, base) if args.method == "ewc" else None
    loss = grow_objective(args, grown, base, generator, fisher)

    dataset = training_dataset(args, names)
    sampler = SingleDegradationBatchSampler(dataset, args.train_batch_size, seed=args.seed, mix_types=True)
    validate = validator(args, grown, old_names + names, lambda name: 0 if name in old_names else new_task)
    train(accelerator, args, model=LossModule({"lira": grown}, loss),
          trainable={f"lira.{n}": p for n, p in grown.named_parameters()}, dataset=dataset, batch_sampler=sampler,
          validate=validate, lr_scales=lr_scales)
    grown.eval()
    save_outputs(accelerator, args, grown, old_names + names, f"uir LIRA grown network ({args.method})")


def scored_photos(args) -> list[Path]:
    """The held-out photos (or ``--data``'s), the first ``--limit`` of them."""
    try:
        files = held_out_photos(args.data)
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None
    return files[: args.limit] if args.limit else files


def evaluate(args):
    files = scored_photos(args)
    saved_model_config(args.model)
    network = LIRANetwork.from_pretrained(args.model).eval()
    restore = lambda lq, pair: run_padded(lambda x: network(x, task=args.task), lq, network.size_multiple)  # noqa: E731
    rows = evaluate_severities(restore, files, args.degradations, ("mild", "moderate", "severe"),
                               seed=args.seed)
    return report(rows, args.output)


def replay_quality(args) -> list[dict]:
    """Rows ``real`` and ``generated`` (mean PSNR of the input and of the base's output against
    the clean photo) and the KS statistic and p-value between the per-image input PSNRs."""
    from scipy.stats import ks_2samp

    from uir.evaluation import degraded_pairs
    from uir.metrics import psnr

    files = scored_photos(args)
    for folder in (args.generator, args.base):
        saved_model_config(folder)
    generator = ResnetGenerator.from_pretrained(args.generator).eval()
    base = LIRANetwork.from_pretrained(args.base).eval()
    scores = {"real": ([], []), "generated": ([], [])}
    with torch.no_grad():
        for pair in degraded_pairs(files, args.degradations, seed=args.seed, severity=args.severity):
            fake = run_padded(generator, pair.gt, generator.size_multiple).clamp(0, 1)
            for source, lq in (("real", pair.lq), ("generated", fake)):
                restored = run_padded(base, lq, base.size_multiple).clamp(0, 1)
                scores[source][0].append(float(psnr(lq, pair.gt)))
                scores[source][1].append(float(psnr(restored, pair.gt)))
    test = ks_2samp(scores["real"][0], scores["generated"][0])
    rows = [{"source": source, "images": len(inputs), "psnr_in": sum(inputs) / len(inputs),
             "psnr_base": sum(outputs) / len(outputs), "ks_statistic": float(test.statistic),
             "ks_pvalue": float(test.pvalue)} for source, (inputs, outputs) in scores.items()]
    return report(rows, args.output)


def main(argv=None):
    args = parse_args(argv)
    if args.stage in ("evaluate", "replay-quality"):
        {"evaluate": evaluate, "replay-quality": replay_quality}[args.stage](args)
        return
    # steps that use a subset of the parameters (one expert) need DDP to tolerate unused ones
    accelerator = make_accelerator(args, find_unused_parameters=args.stage in ("experts", "grow"))
    {"experts": train_experts, "join": train_join, "replay-gan": train_replay_gan, "grow": train_grow}[args.stage](
        args, accelerator)


if __name__ == "__main__":
    sys.exit(run_script(main))
