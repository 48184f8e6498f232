#!/usr/bin/env python
"""Stage 1 of UIR-LoRA (sec. 4.2): train the VAE skip connections on mixed degradations.

Before any expert exists, the four skip convolutions of the VAE (and, with
``--train_vae_lora``, a shared LoRA on the VAE) learn to carry the input's detail past the
frozen SD-turbo. The loss is L2 (plus optional LPIPS) between the pipeline's one-step output
and the clean image, on batches that mix every degradation.

    accelerate launch train/train_vae_skips.py --output_dir runs/vae-skips
    accelerate launch --num_processes 2 --cpu train/train_vae_skips.py --output_dir runs/vae-skips

Writes ``OUTPUT_DIR/vae`` (a :class:`~uir.models.SkipAutoencoderKL`, any VAE LoRA merged into
its weights); pass it to ``train_uir_lora.py --vae``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uir.boundary import run_script
from uir.data import SingleDegradationBatchSampler
from uir.lora.targets import VAE_RANK, VAE_TARGETS
from uir.tiling import run_padded
from uir.training import (LossModule, add_data_args, add_training_args, add_uir_lora_args, finish,
                          load_uir_lora_pipeline, make_accelerator, parse_training_args, restoration_loss,
                          restoration_validator, train, training_dataset, validation_photos)
from uir.files import save_pretrained_staged

STAGE1_ADAPTER = "vae_stage1"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_uir_lora_args(parser)
    add_data_args(parser)
    add_training_args(parser, learning_rate=2e-4, batch_size=8, max_train_steps=10_000, resolution=256)
    parser.add_argument("--skip_gamma", type=float, default=1.0, help="scale of the skip connections")
    parser.add_argument("--train_vae_lora", action="store_true", help="also train a LoRA on the VAE (merged at the end)")
    parser.add_argument("--vae_lora_rank", type=int, default=VAE_RANK)
    return parse_training_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    names = args.degradations
    pipe = load_uir_lora_pipeline(args)
    pipe.to(accelerator.device)
    vae = pipe.vae
    vae.register_to_config(skip_gamma=args.skip_gamma)
    if args.train_vae_lora:
        from peft import LoraConfig

        vae.add_adapter(LoraConfig(r=args.vae_lora_rank, lora_alpha=args.vae_lora_rank,
                                   target_modules=list(VAE_TARGETS)), adapter_name=STAGE1_ADAPTER)
    trainable = {f"vae.{n}": p for n, p in vae.named_parameters() if n.startswith("skip_convs.") or "lora_" in n}
    for param in trainable.values():
        param.requires_grad_(True)

    loss_fn = restoration_loss(args.lpips_weight)
    model = LossModule({"vae": vae}, lambda batch: loss_fn(pipe.restore_tensor(batch["lq"], None), batch["gt"]))
    dataset = training_dataset(args, names)
    sampler = SingleDegradationBatchSampler(dataset, args.train_batch_size, seed=args.seed, mix_types=True)
    validation_files = validation_photos(args)
    validate = None
    if validation_files:
        restore = lambda lq, name: run_padded(lambda x: pipe.restore_tensor(x, None), lq.to(accelerator.device), pipe.size_multiple)  # noqa: E731
        validate = restoration_validator(restore, validation_files, names, args.output_dir, seed=args.seed)
    train(accelerator, args, model=model, trainable=trainable, dataset=dataset, batch_sampler=sampler,
          validate=validate)

    if accelerator.is_main_process:
        if args.train_vae_lora:
            vae.fuse_lora(adapter_names=[STAGE1_ADAPTER])
            vae.unload_lora()
        folder = Path(args.output_dir) / "vae"
        save_pretrained_staged(vae, folder)
    finish(accelerator, args, Path(args.output_dir) / "vae", "UIR-LoRA skip-connection VAE",
           args.pretrained_model_name_or_path, names,
           "SD-turbo's VAE with trained skip connections (UIR-LoRA stage 1), for uir's UIRLoRAPipeline.")


if __name__ == "__main__":
    sys.exit(run_script(main))
