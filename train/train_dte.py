#!/usr/bin/env python
"""Diffusion-training-enhanced restoration (paper 004): pre-train, match, fine-tune, unify.

    accelerate launch train/train_dte.py pretrain --output_dir runs/dte/pretrain
    python train/train_dte.py match --pretrained runs/dte/pretrain --output runs/dte/t_mat.json
    accelerate launch train/train_dte.py finetune --pretrained runs/dte/pretrain --t_mat runs/dte/t_mat.json \\
        --degradations noisy --severity moderate --method gef --output_dir runs/dte/gef
    accelerate launch train/train_dte.py unified --pretrained runs/dte/pretrain --t_mat runs/dte/t_mat.json \\
        --method tit --moe_experts 10 --output_dir runs/dte/tit
    python train/train_dte.py evaluate --model runs/dte/gef/model --t_mat runs/dte/t_mat.json --degradations noisy

* ``pretrain`` (TMGP, Alg. 1): a NAFNet (or another ``--backbone`` of :mod:`uir.backbones`) wrapped with a timestep input
  learns to denoise clean crops (eq. 11, ``T`` = 50): ``--prediction_type sample`` (the default)
  is the authors' residual denoiser (the output is the image), ``epsilon`` predicts the noise
  (the paper; restoring reads the x0-hat estimate). ``sample`` measured better on the shifted
  noise level, on haze and in unified training (docs/dte.md). The model's config records both choices, so every
  later stage reads the output out the same way. It then accumulates the parameter
  importance of Alg. 6 over ``--importance_batches`` generative batches and writes
  ``importance.safetensors`` beside ``model/``.
* ``match`` (Alg. 2): ``t_mat`` for each degradation from degraded crops of the training photos.
* ``finetune`` (GEF, Alg. 3): one task at its ``t_mat``; ``--method gef`` adds generative mixing
  on generation-sensitive layers, L_reg and L_orthog to the L1 loss; ``--method plain`` is L1 only.
  ``--generative_schedule iterations`` follows the authors' code (whole generative iterations
  with probability ``--generative_fraction``, L_reg only on those).
* ``unified``: the GEF options apply to every stage (``--lambda_reg 0 --generative_fraction 0
  --orthogonality none`` for plain L1). ``--method tit`` injects the tasks one stage at a time in ``t_mat`` order
  (Alg. 4-5), ``--steps_per_stage`` each, resuming stage by stage; ``--method mix`` trains on
  every task at once (the conventional baseline). ``--moe_experts`` adds the MoE adapters.
  ``--t_mat none`` feeds t = 0 everywhere (no time prompt).
* ``evaluate``: PSNR/SSIM on the held-out photos, each type restored at its ``t_mat``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from uir.boundary import run_script
from uir.data import CleanCropDataset, SingleDegradationBatchSampler
from uir.dte import (
    NOISE_MODELS,
    ORTHOGONALITY_FORMS,
    PREDICTION_TYPES,
    SCHEDULES,
    DiffusionProcess,
    GEFObjective,
    TimeConditionedRestorer,
    check_timestep,
    incremental_stages,
    match_timestep,
    parameter_importance,
    restore,
    time_sequential_order,
    to_diffusion_space,
)
from uir.evaluation import evaluate_severities, report
from uir.files import atomic_write, save_json
from uir.backbones import BACKBONES, get_backbone
from uir.tiling import run_padded
from uir.training import (
    TRAINABLE_FILE,
    LossModule,
    add_data_args,
    add_training_args,
    finish,
    held_out_photos,
    make_accelerator,
    parse_training_args,
    saved_model_config,
    train,
    training_dataset,
    training_photos,
)
from uir.training.checkpoints import check_checkpoint
from uir import degradations
from uir.files import save_pretrained_staged

IMPORTANCE_FILE = "importance.safetensors"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    stages = parser.add_subparsers(dest="stage", required=True)

    pretrain = stages.add_parser("pretrain", help="generative pre-training (Alg. 1)")
    pretrain.add_argument("--backbone", choices=sorted(BACKBONES), default="nafnet",
                          help="a registered backbone (uir.backbones); it must name time_condition_blocks")
    pretrain.add_argument("--width", type=int, default=16, help="backbone channels at full resolution")
    pretrain.add_argument("--num_timesteps", type=int, default=50, help="T")
    pretrain.add_argument("--noise_model", choices=NOISE_MODELS, default="ddpm",
                          help="ddpm: the paper; additive: the public code's IR-SDE-like model")
    pretrain.add_argument("--prediction_type", choices=PREDICTION_TYPES, default="sample",
                          help="sample (default, measured better in docs/dte.md): the authors' residual denoiser; "
                               "epsilon: the paper's noise prediction, read out as x0-hat")
    pretrain.add_argument("--importance_batches", type=int, default=20, help="batches for Alg. 6's importance")
    pretrain.add_argument("--train_data_dir", default=None, help="clean photos (default: the training split)")
    add_training_args(pretrain, learning_rate=1e-3, batch_size=8, max_train_steps=2000, resolution=64)

    match = stages.add_parser("match", help="timestep matching (Alg. 2)")
    match.add_argument("--pretrained", required=True, help="a pretrain output folder")
    match.add_argument("--degradations", type=degradations.parse_names, default="all")
    match.add_argument("--severity", default="moderate")
    match.add_argument("--num_images", type=int, default=16, help="training photos, one crop each")
    match.add_argument("--resolution", type=int, default=64)
    match.add_argument("--train_data_dir", default=None)
    match.add_argument("--seed", type=int, default=0)
    match.add_argument("--output", required=True, help="t_mat JSON to write")

    for name, helptext in (("finetune", "GEF or plain fine-tuning on one task"),
                           ("unified", "TIT or mix-training over many tasks")):
        stage = stages.add_parser(name, help=helptext)
        stage.add_argument("--pretrained", default=None, help="a pretrain output folder (default: train from scratch)")
        stage.add_argument("--width", type=int, default=16, help="backbone width when training from scratch")
        stage.add_argument("--t_mat", required=True, help='t_mat JSON from "match", or "none" (t = 0)')
        stage.add_argument("--lambda_reg", type=float, default=0.2, help="lambda of L_reg (0: off)")
        stage.add_argument("--decay_rate", type=float, default=0.05, help="a of w_decay(t) = exp(-a t)")
        stage.add_argument("--generative_fraction", type=float, default=0.1, help="share of each batch trained generatively")
        stage.add_argument("--orthogonality", choices=[*ORTHOGONALITY_FORMS, "none"], default="eq8",
                           help="L_orthog: eq. 8 as printed, |s| + |d| (orthogonal), the authors' 1 - cos of the "
                                "batch gradients, or none")
        stage.add_argument("--orthogonality_weight", type=float, default=1.0, help="L_orthog's weight (eq. 22: 1)")
        stage.add_argument("--detach_orthogonality", action="store_true",
                           help="log L_orthog without training on it (what the authors' code does)")
        stage.add_argument("--log_term_gradients", type=int, default=0, metavar="N",
                           help="every N steps, log the gradient norm of each loss term (0: never)")
        stage.add_argument("--generative_schedule", choices=SCHEDULES, default="split",
                           help="split: a share of every batch (L_reg every step); iterations: the authors' "
                                "whole generative iterations, L_reg only on those")
        add_data_args(stage, default_degradations="noisy" if name == "finetune" else "all")
        add_training_args(stage, learning_rate=5e-4, batch_size=8, max_train_steps=600, resolution=64)
        stage.set_defaults(severity="moderate")
    stages.choices["finetune"].add_argument("--method", choices=["gef", "plain"], default="gef",
                                            help="plain: L1 only (the GEF options are ignored)")
    unified = stages.choices["unified"]
    unified.add_argument("--method", choices=["tit", "mix"], default="tit")
    unified.add_argument("--moe_experts", type=int, default=10, help="N_E (0: no MoE adapters)")
    unified.add_argument("--steps_per_stage", type=int, default=100, help="TIT: steps per injected task")
    unified.add_argument("--ascending", action="store_true", help="TIT: inject the smallest t_mat first")
    unified.add_argument("--stage_tasks", choices=["cumulative", "new"], default="cumulative",
                         help="TIT: a stage trains on every task so far, or on its new task only (the authors' "
                              "code: equal steps per task in any order)")

    evaluate = stages.add_parser("evaluate", help="PSNR/SSIM on held-out photos")
    evaluate.add_argument("--model", required=True, help="a saved TimeConditionedRestorer folder")
    evaluate.add_argument("--checkpoint", default=None,
                          help="a training checkpoint folder whose weights replace --model's (same architecture)")
    evaluate.add_argument("--t_mat", required=True, help='t_mat JSON, or "none" (t = 0)')
    evaluate.add_argument("--degradations", type=degradations.parse_names, default="all")
    evaluate.add_argument("--severities", default="moderate", help="comma list, e.g. moderate,severe")
    evaluate.add_argument("--data", default=None, help="clean photos (default: the held-out split)")
    evaluate.add_argument("--limit", type=int, default=None, help="use the first N photos")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--output", default=None, help="write the rows as JSON here")
    return parse_training_args(parser, argv)


# --- models and files ----------------------------------------------------------------------------
def new_model(backbone: str, width: int, **diffusion) -> TimeConditionedRestorer:
    """A fresh time-conditioned backbone; ``diffusion``: ``num_timesteps``, ``noise_model``,
    ``prediction_type`` (default: a plain restorer whose output is the image)."""
    return TimeConditionedRestorer.wrap(get_backbone(backbone).build(width=width), **diffusion)


def load_model(folder) -> TimeConditionedRestorer:
    saved_model_config(folder)
    return TimeConditionedRestorer.from_pretrained(folder)


def load_t_mat(spec: str, names: list[str]) -> dict[str, int]:
    if spec == "none":
        return {name: 0 for name in names}
    try:
        table = json.loads(Path(spec).read_text())["t_mat"]
    except (OSError, ValueError, KeyError) as error:
        raise SystemExit(f"--t_mat {spec}: not a t_mat JSON written by the match stage ({error})") from None
    missing = [name for name in names if name not in table]
    if missing:
        raise SystemExit(f"--t_mat {spec} has no t_mat for {missing}; run match with those degradations")
    return {name: int(table[name]) for name in names}


def check_read_out(process: DiffusionProcess, t_mat: dict[str, int]) -> None:
    """One line, before any work, when an eps-predicting model would be read at ``t = 0``."""
    try:
        check_timestep(process, list(t_mat.values()))
    except ValueError as error:
        raise SystemExit(f"--t_mat: {error}") from None


def save_model(accelerator, args, model, names, title: str, folder=None) -> Path:
    folder = Path(folder or Path(args.output_dir) / "model")
    if accelerator.is_main_process:
        save_pretrained_staged(model, folder)
    finish(accelerator, args, folder, title, "", names,
           "A time-conditioned restorer trained with uir's diffusion-training-enhanced framework.")
    return folder


# --- stages --------------------------------------------------------------------------------------
def run_pretrain(args):
    accelerator = make_accelerator(args)
    model = new_model(args.backbone, args.width, num_timesteps=args.num_timesteps, noise_model=args.noise_model,
                      prediction_type=args.prediction_type).to(accelerator.device).train()
    process = DiffusionProcess.for_model(model)
    dataset = CleanCropDataset(training_photos(args.train_data_dir), crop_size=args.resolution, flip=True, seed=args.seed)
    sampler = SingleDegradationBatchSampler(dataset, args.train_batch_size, seed=args.seed, mix_types=True)

    def loss(batch):
        return process.generative_loss(model, to_diffusion_space(batch["gt"]))

    train(accelerator, args, model=LossModule({"model": model}, loss),
          trainable={f"model.{n}": p for n, p in model.named_parameters()}, dataset=dataset, batch_sampler=sampler)
    model.eval()
    if accelerator.is_main_process:
        generator = torch.Generator().manual_seed(args.seed)
        batches = iter(torch.utils.data.DataLoader(dataset, batch_sampler=sampler))

        def generative_batch():
            return process.generative_loss(model, to_diffusion_space(next(batches)["gt"].to(accelerator.device)),
                                           generator)

        count = min(args.importance_batches, len(sampler))
        importance = parameter_importance(model, generative_batch, count)
        atomic_write(Path(args.output_dir) / IMPORTANCE_FILE,
                     lambda stream: stream.write(save({n: v.contiguous().cpu() for n, v in importance.items()})))
    save_model(accelerator, args, model, ["clean images"], "uir DTE generative pre-training")


def pretrained_parts(folder):
    """(model, process, importance) of a pretrain output folder."""
    folder = Path(folder)
    model = load_model(folder / "model")
    importance = load_file(folder / IMPORTANCE_FILE) if (folder / IMPORTANCE_FILE).is_file() else None
    return model, DiffusionProcess.for_model(model), importance


def run_match(args):
    names = args.degradations
    model, process, _ = pretrained_parts(args.pretrained)
    model.eval()
    dataset = CleanCropDataset(training_photos(args.train_data_dir)[: args.num_images], crop_size=args.resolution,
                               seed=args.seed)
    clean = torch.stack([dataset[i]["gt"] for i in range(len(dataset))])
    table, curves = {}, {}
    for k, name in enumerate(names):
        generator = torch.Generator().manual_seed(args.seed * 1009 + k)
        degraded = degradations.apply(name, clean, generator=generator, severity=args.severity)
        found = match_timestep(model, process, degraded, clean)
        table[name], curves[name] = found.t_mat, found.errors
        print(f"{name}: t_mat = {found.t_mat}")
    save_json({"t_mat": table, "errors": curves, "severity": args.severity, "num_images": len(dataset)}, args.output)
    return table


def starting_model(args, accelerator):
    """The model to fine-tune, the process, and the L_reg reference (None without importance)."""
    if args.pretrained:
        model, process, importance = pretrained_parts(args.pretrained)
    else:
        model, importance = new_model("nafnet", args.width), None
        process = DiffusionProcess.for_model(model)
    model.to(accelerator.device).train().requires_grad_(True)
    reference = {n: p.detach().clone() for n, p in model.named_parameters()} if importance is not None else None
    return model, process, reference, importance


def objective(args, model, process, reference, importance, method: str) -> GEFObjective:
    if method == "plain":
        return GEFObjective(model, process, generative_fraction=0.0, orthogonality=None)
    use_reg = importance is not None and args.lambda_reg > 0
    return GEFObjective(model, process, reference=reference if use_reg else None,
                        importance={k: v.to(model.device) for k, v in importance.items()} if use_reg else None,
                        lam=args.lambda_reg, decay_rate=args.decay_rate,
                        generative_fraction=args.generative_fraction,
                        orthogonality=None if args.orthogonality == "none" else args.orthogonality,
                        schedule=args.generative_schedule, generator=torch.Generator().manual_seed(args.seed),
                        orthogonality_weight=args.orthogonality_weight, detach_orthogonality=args.detach_orthogonality)


def fit(accelerator, args, model, gef: GEFObjective, names, t_mat, output_dir, steps: int):
    """Train on ``names`` (single-type batches, each at its ``t_mat``) for ``steps`` steps into ``output_dir``."""
    args = argparse.Namespace(**{**vars(args), "output_dir": str(output_dir), "max_train_steps": steps})
    dataset = training_dataset(args, names)
    sampler = SingleDegradationBatchSampler(dataset, args.train_batch_size, seed=args.seed,
                                            group_size=accelerator.num_processes * args.gradient_accumulation_steps)

    logged, calls = {}, [0]

    def loss(batch):
        terms = gef(batch["lq"], batch["gt"], t_mat[batch["degradation"][0]])
        every = getattr(args, "log_term_gradients", 0)
        if every and calls[0] % (every * args.gradient_accumulation_steps) == 0:
            logged.update(gef.term_gradient_norms(terms))
        calls[0] += 1
        logged.update({f"term/{name}": float(value.detach()) for name, value in terms.items() if name != "loss"})
        return terms["loss"]

    def step_logs():  # each term of the step's last micro-batch; gradient norms on the steps that have them
        out = dict(logged)
        logged.clear()
        return out

    train(accelerator, args, model=LossModule({"model": model}, loss),
          trainable={f"model.{n}": p for n, p in model.named_parameters()}, dataset=dataset, batch_sampler=sampler,
          step_logs=step_logs)


def run_finetune(args):
    accelerator = make_accelerator(args)
    names = args.degradations
    t_mat = load_t_mat(args.t_mat, names)
    model, process, reference, importance = starting_model(args, accelerator)
    check_read_out(process, t_mat)
    gef = objective(args, model, process, reference, importance, args.method)
    fit(accelerator, args, model, gef, names, t_mat, args.output_dir, args.max_train_steps)
    model.eval()
    save_model(accelerator, args, model, names, f"uir DTE fine-tuning ({args.method})")


def run_unified(args):
    accelerator = make_accelerator(args)
    names = args.degradations
    t_mat = load_t_mat(args.t_mat, names)
    model, process, reference, importance = starting_model(args, accelerator)
    check_read_out(process, t_mat)
    if args.moe_experts:
        model.add_moe_adapters(args.moe_experts)
        model.to(accelerator.device).train().requires_grad_(True)  # the new adapters have no importance: no L_reg
    gef = objective(args, model, process, reference, importance, args.method)
    root = Path(args.output_dir)
    if args.method == "mix":
        fit(accelerator, args, model, gef, names, t_mat, root, args.max_train_steps)
    else:
        order = time_sequential_order(t_mat, descending=not args.ascending)
        for k, tasks in enumerate(incremental_stages(order, cumulative=args.stage_tasks == "cumulative")):
            stage_dir = root / f"stage-{k:02d}"
            if (stage_dir / "model" / "config.json").is_file():  # finished earlier: resume after it
                model.load_state_dict(TimeConditionedRestorer.from_pretrained(stage_dir / "model").state_dict())
                continue
            accelerator.print(f"stage {k}: {tasks[-1]} (t_mat {t_mat[tasks[-1]]}) joins {order[:k]}")
            fit(accelerator, args, model, gef, tasks, t_mat, stage_dir, args.steps_per_stage)
            if accelerator.is_main_process:
                save_pretrained_staged(model, stage_dir / "model")
            accelerator.wait_for_everyone()
    model.eval()
    save_model(accelerator, args, model, names, f"uir DTE unified ({args.method})")


def run_evaluate(args):
    names = args.degradations
    t_mat = load_t_mat(args.t_mat, names)
    model = load_model(args.model).eval()
    check_read_out(DiffusionProcess.for_model(model), t_mat)
    if args.checkpoint:
        checkpoint = check_checkpoint(args.checkpoint, "--checkpoint")
        weights = load_file(checkpoint / TRAINABLE_FILE)
        try:
            model.load_state_dict({name.removeprefix("model."): value for name, value in weights.items()})
        except RuntimeError:
            raise SystemExit(f"--checkpoint {checkpoint} holds weights of another architecture than --model {args.model}") from None
    try:
        files = held_out_photos(args.data)
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None
    files = files[: args.limit] if args.limit else files

    def restore_pair(lq, pair):
        return run_padded(lambda x: restore(model, x, t_mat[pair.name]), lq, model.size_multiple)

    return report(evaluate_severities(restore_pair, files, names, args.severities.split(","), seed=args.seed),
                  args.output)


def main(argv=None):
    args = parse_args(argv)
    {"pretrain": run_pretrain, "match": run_match, "finetune": run_finetune, "unified": run_unified,
     "evaluate": run_evaluate}[args.stage](args)


if __name__ == "__main__":
    sys.exit(run_script(main))
