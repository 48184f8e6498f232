#!/usr/bin/env python
"""Mix-train a regression restorer (a NAFNet, or another registered backbone) on every degradation at once.

This is both the base that per-degradation experts are later trained on
(``train_uir_lora.py --pretrained_model_name_or_path OUTPUT_DIR/pipeline``) and the baseline
they must beat: one model, trained on all types, without experts. Batches mix all types.

    accelerate launch train/train_restorer.py --output_dir runs/base
    accelerate launch train/train_restorer.py --config nafnet.json --output_dir runs/base   # other sizes
    accelerate launch train/train_restorer.py --backbone srresnet --output_dir runs/srresnet  # uir.backbones

Writes ``OUTPUT_DIR/pipeline``, a ``RestorerPipeline`` (no experts, no router yet).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uir.backbones import BACKBONES, get_backbone
from uir.boundary import run_script
from uir.models.experts import ExpertListModel
from uir.pipelines import RestorerPipeline
from uir.tiling import run_padded
from uir.training import (LossModule, add_data_args, add_training_args, finish, make_accelerator, mixed_batches,
                          parse_training_args, restoration_loss, restoration_validator, train, training_dataset,
                          validation_photos)
from uir.training.args import model_config
from uir.files import save_pretrained_staged

#: the size trained without ``--config``, per backbone (others: the registry's defaults)
DEFAULT_CONFIGS = {"nafnet": {"width": 16, "encoder_blocks": [1, 1, 1], "middle_blocks": 1, "decoder_blocks": [1, 1, 1]}}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_argument_group("model")
    group.add_argument("--backbone", choices=sorted(BACKBONES), default="nafnet",
                       help="the restorer network, from the registry in uir.backbones")
    group.add_argument("--config", default=None,
                       help=f"a JSON config of the backbone's arguments (default for nafnet: {DEFAULT_CONFIGS['nafnet']})")
    group.add_argument("--base_model_name", default="uir/nafnet-base",
                       help="the name experts trained on this base record as their base model")
    group.add_argument("--loss", choices=["l1", "l2"], default="l1")
    add_data_args(parser)
    add_training_args(parser, learning_rate=1e-3, batch_size=8, max_train_steps=4000, resolution=128)
    return parse_training_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    backbone = get_backbone(args.backbone)
    config = model_config(args.config, backbone.model_class()) if args.config else DEFAULT_CONFIGS.get(args.backbone, {})
    accelerator = make_accelerator(args)
    names = args.degradations
    restorer = backbone.build(**config).to(accelerator.device)
    pipe = RestorerPipeline(restorer, experts=ExpertListModel(base_model=args.base_model_name))
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
    finish(accelerator, args, folder, f"uir {args.backbone} base (mix-trained)", args.base_model_name, names,
           f"A {args.backbone} restorer trained on all degradation types at once; the base for uir LoRA experts.")


if __name__ == "__main__":
    sys.exit(run_script(main))
