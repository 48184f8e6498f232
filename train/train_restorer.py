#!/usr/bin/env python
"""Mix-train a regression restorer (a NAFNet) on every degradation at once.

This is both the base that per-degradation experts are later trained on
(``train_uir_lora.py --pretrained_model_name_or_path OUTPUT_DIR/pipeline``) and the baseline
they must beat: one model, trained on all types, without experts. Batches mix all types.

    accelerate launch train/train_restorer.py --output_dir runs/base
    accelerate launch train/train_restorer.py --config nafnet.json --output_dir runs/base   # other sizes

Writes ``OUTPUT_DIR/pipeline``, a ``RestorerPipeline`` (no experts, no router yet).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uir.boundary import run_script
from uir.lora.bank import ExpertBank
from uir.models import NAFNet
from uir.pipelines import RestorerPipeline
from uir.tiling import run_padded
from uir.training import (LossModule, add_data_args, add_training_args, finish, make_accelerator, mixed_batches,
                          parse_training_args, restoration_loss, restoration_validator, train, training_dataset,
                          validation_photos)
from uir.training.args import model_config
from uir.files import save_pretrained_staged

DEFAULT_CONFIG = {"width": 16, "encoder_blocks": [1, 1, 1], "middle_blocks": 1, "decoder_blocks": [1, 1, 1]}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_argument_group("model")
    group.add_argument("--config", default=None, help=f"a JSON NAFNet config (default {DEFAULT_CONFIG})")
    group.add_argument("--base_model_name", default="uir/nafnet-base",
                       help="the name experts trained on this base record as their base model")
    group.add_argument("--loss", choices=["l1", "l2"], default="l1")
    add_data_args(parser)
    add_training_args(parser, learning_rate=1e-3, batch_size=8, max_train_steps=4000, resolution=128)
    return parse_training_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    config = model_config(args.config, NAFNet) if args.config else DEFAULT_CONFIG
    accelerator = make_accelerator(args)
    names = args.degradations
    restorer = NAFNet(**config).to(accelerator.device)
    pipe = RestorerPipeline(restorer, experts=ExpertBank(base_model=args.base_model_name))
    restorer.requires_grad_(True)
    trainable = {f"restorer.{n}": p for n, p in restorer.named_parameters()}
    loss_fn = restoration_loss(0.0, args.loss)
    model = LossModule({"restorer": restorer}, lambda batch: loss_fn(restorer(batch["lq"]), batch["gt"]))
    dataset = training_dataset(args, names)
    sampler = mixed_batches(args, dataset)
    validation_files = validation_photos(args)
    validate = None
    if validation_files:
        restore = lambda lq, name: run_padded(lambda x: pipe.restore_tensor(x, None), lq, pipe.size_multiple)  # noqa: E731
        validate = restoration_validator(restore, validation_files, names, args.output_dir, seed=args.seed)
    train(accelerator, args, model=model, trainable=trainable, dataset=dataset, batch_sampler=sampler,
          validate=validate)
    folder = Path(args.output_dir) / "pipeline"
    if accelerator.is_main_process:
        restorer.requires_grad_(False)
        save_pretrained_staged(pipe, folder)
    finish(accelerator, args, folder, "uir NAFNet base (mix-trained)", args.base_model_name, names,
           "A NAFNet restorer trained on all degradation types at once; the base for uir LoRA experts.")


if __name__ == "__main__":
    sys.exit(run_script(main))
