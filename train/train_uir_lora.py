#!/usr/bin/env python
"""Stage 2 of UIR-LoRA (sec. 3.5, 4.2): one LoRA expert per degradation on a frozen base.

The base is SD-turbo (the paper), or a saved ``RestorerPipeline`` folder (a regression
restorer made by ``train_restorer.py``; ``default`` is uir's embedded one). A saved pipeline's
own experts are removed first; load the new ones with ``uir restore --experts``, which
replaces the model's expert of the same degradation. Each expert records its base's
fingerprint, and a pipeline with another base refuses it.

Every batch holds one degradation type, and only that type's expert is active and trainable
(PEFT adapters, one per type, switched with ``set_adapter``). AdamW, lr 2e-4 with cosine
annealing, batch 8, UNet rank 8 and VAE rank 4 are the paper's defaults. The loss is L2 plus
optional LPIPS between the one-step restoration and the clean image.

    accelerate launch train/train_uir_lora.py --vae runs/vae-skips/vae \\
        --degradations noisy,hazy --output_dir runs/experts
    accelerate launch --num_processes 2 --cpu train/train_uir_lora.py ...   # DDP over gloo

In a distributed run every optimizer step sees the same type on every process, so each step
trains exactly one expert. Writes one expert folder per degradation to
``OUTPUT_DIR/experts/<name>`` (the format of ``adapters/README.md``); load them with
``UIRLoRAPipeline.load_expert``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uir.boundary import checked_number, run_script
from uir.classical import PRIORS, VEIL_BOUNDS
from uir.data import SingleDegradationBatchSampler
from uir.data.datasets import check_clean_inputs
from uir.degradations import parse_names
from uir.lora import FINGERPRINT_KEY, PRIOR_INPUT_KEY, VEIL_BOUND_KEY, ExpertComponent, LoRAExpert, lora_config
from uir.lora.targets import UNET_RANK, VAE_RANK
from uir.tiling import run_padded
from uir.training import (LossModule, add_data_args, add_training_args, add_uir_lora_args, finish,
                          load_uir_lora_pipeline, make_accelerator, parse_paired, parse_training_args,
                          restoration_loss, restoration_validator, train, training_dataset, validation_photos)


#: the value of ``--prior_input`` or ``--veil_bound`` given without types (not a string, which
#: argparse would pass through the option's ``type``)
EVERY_TYPE = object()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_uir_lora_args(parser)
    add_data_args(parser)
    add_training_args(parser, learning_rate=2e-4, batch_size=8, max_train_steps=80_000, resolution=256)
    parser.add_argument("--unet_rank", type=int, default=UNET_RANK)
    parser.add_argument("--vae_rank", type=int, default=VAE_RANK, help="0: the experts leave the VAE alone")
    parser.add_argument("--restorer_rank", type=int, default=None, help="RestorerPipeline experts' rank")
    parser.add_argument("--prior_input", nargs="?", type=parse_names, const=EVERY_TYPE, default=None, metavar="TYPES",
                        help="experts whose type has a classical prior (uir.classical.PRIORS) learn to refine the "
                             "prior's output instead of the degraded image (a physics-guided input): those of the "
                             "comma-separated TYPES, or with no value every such type")
    parser.add_argument("--veil_bound", nargs="?", type=parse_names, const=EVERY_TYPE, default=None, metavar="TYPES",
                        help="the saved experts ask the pipeline to keep their output within the veil their input "
                             "can hold (uir.classical.VEIL_BOUNDS; uir_expert.json's veil_bound): those of the "
                             "comma-separated TYPES, or with no value every type with a bound")
    parser.add_argument("--clean_inputs", type=checked_number(check_clean_inputs), default=0.0, metavar="SHARE",
                        help="the share of each expert's training inputs left clean, the target their input itself, "
                             "so that an expert the router calls wrongly learns to leave the photo alone "
                             "(synthesised degradations only)")
    args = parse_training_args(parser, argv)
    if args.clean_inputs and (args.paired or args.streaming):
        parser.error("--clean_inputs needs degradations synthesised here: not with --paired or --streaming")
    names = expert_names(args)
    args.prior_input = flagged_types(parser, "--prior_input", args.prior_input, names, PRIORS, "classical prior")
    args.veil_bound = flagged_types(parser, "--veil_bound", args.veil_bound, names, VEIL_BOUNDS, "veil bound")
    return args


def flagged_types(parser, option: str, value: list[str] | object | None, names: list[str], known: dict,
                  what: str) -> set[str]:
    """The trained types an option names: its types as :func:`~uir.degradations.parse_names` read
    them, or every type with a ``what`` for :data:`EVERY_TYPE`; ``parser.error`` for a type not
    trained here or without a ``what`` (not a key of ``known``)."""
    if value is None:
        return set()
    if value is EVERY_TYPE:
        chosen = [name for name in names if name in known]
        if not chosen:
            parser.error(f"{option}: none of {', '.join(names)} has a {what} "
                         f"(uir has one for: {', '.join(sorted(known))})")
        return set(chosen)
    for name in value:
        if name not in names:
            parser.error(f"{option}: {name!r} is not trained here (trained: {', '.join(names)})")
        if name not in known:
            parser.error(f"{option}: {name!r} has no {what} (uir has one for: {', '.join(sorted(known))})")
    return set(value)


def expert_names(args) -> list[str]:
    """One expert per ``--paired`` dataset, or else per synthesised degradation."""
    return [parse_paired(spec)[0] for spec in args.paired] or args.degradations


def expert_components(pipe, args) -> dict[str, tuple[object, int, tuple[str, ...]]]:
    """``{component: (model, rank, target suffixes)}`` of what each expert adapts; a rank of 0
    on the command line leaves that component alone."""
    parts = {}
    for part, (targets, default_rank) in pipe.expert_targets.items():
        rank = getattr(args, f"{part}_rank", None)
        rank = default_rank if rank is None else rank
        if rank:
            parts[part] = (getattr(pipe, part), rank, tuple(targets))
    return parts


def main(argv=None):
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    args = parse_args(argv)
    accelerator = make_accelerator(args, find_unused_parameters=True)
    names = expert_names(args)
    pipe = load_uir_lora_pipeline(args)
    pipe.to(accelerator.device)
    parts = expert_components(pipe, args)
    base_model = pipe.expert_list.base_model or str(args.pretrained_model_name_or_path)
    for model, rank, targets in parts.values():
        for name in names:
            model.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(targets)), adapter_name=name)
    trainable = {f"{part}.{n}": p for part, (model, _, _) in parts.items()
                 for n, p in model.named_parameters() if "lora_" in n}
    for param in trainable.values():  # DDP tracks the parameters that require grad when it wraps
        param.requires_grad_(True)

    def activate(name: str) -> None:
        for model, _, _ in parts.values():
            model.set_adapter(name)

    loss_fn = restoration_loss(args.lpips_weight)

    def network_input(lq, name):
        return PRIORS[name].restore(lq) if name in args.prior_input else lq

    def loss(batch):
        kinds = set(batch["degradation"])
        if len(kinds) != 1:
            raise RuntimeError(f"a batch mixes degradations {sorted(kinds)}; experts need single-type batches")
        name = kinds.pop()
        activate(name)
        return loss_fn(pipe.restore_tensor(network_input(batch["lq"], name), None), batch["gt"])

    model = LossModule({part: m for part, (m, _, _) in parts.items()}, loss)
    dataset = training_dataset(args, names)
    sampler = SingleDegradationBatchSampler(dataset, args.train_batch_size, seed=args.seed,
                                            group_size=accelerator.num_processes * args.gradient_accumulation_steps)
    validation_files = validation_photos(args)
    validate = None
    if validation_files and not args.paired:
        def restore(lq, name):
            activate(name)
            return run_padded(lambda x: pipe.restore_tensor(x, None), network_input(lq.to(accelerator.device), name),
                              pipe.size_multiple)

        validate = restoration_validator(restore, validation_files, names, args.output_dir, seed=args.seed)
    train(accelerator, args, model=model, trainable=trainable, dataset=dataset, batch_sampler=sampler,
          validate=validate)

    experts_dir = Path(args.output_dir) / "experts"
    if accelerator.is_main_process:
        for name in names:
            components = {
                part: ExpertComponent(
                    {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(m, adapter_name=name).items()},
                    lora_config(rank, rank, list(targets)),
                )
                for part, (m, rank, targets) in parts.items()
            }
            extra = {FINGERPRINT_KEY: pipe.base_fingerprint,
                     **({PRIOR_INPUT_KEY: True} if name in args.prior_input else {}),
                     **({VEIL_BOUND_KEY: True} if name in args.veil_bound else {})}
            LoRAExpert(name, components, base_model, extra=extra).save(
                experts_dir / name)
    finish(accelerator, args, experts_dir, "UIR-LoRA experts", base_model, names,
           "One LoRA expert per degradation for a uir pipeline (UIR-LoRA); load each folder with "
           "`pipe.load_expert(path)`.")


if __name__ == "__main__":
    sys.exit(run_script(main))
