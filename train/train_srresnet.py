#!/usr/bin/env python
"""Train the SRResNet whose trunk gives GRIDS' deep degradation representations (bicubic x4 SR).

    accelerate launch train/train_srresnet.py --output_dir runs/srresnet

Low-resolution inputs are the antialiased bicubic x4 downsampling of clean crops of the
training photos; the loss is L1. Writes ``OUTPUT_DIR/srresnet`` (``SRResNet.from_pretrained``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch.nn.functional as F

from uir.boundary import run_script
from uir.data import CleanCropDataset, SingleDegradationBatchSampler
from uir.models import SRResNet
from uir.training import LossModule, add_training_args, finish, make_accelerator, train, training_photos
from uir.files import save_pretrained_staged


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_argument_group("model and data")
    group.add_argument("--channels", type=int, default=32)
    group.add_argument("--num_blocks", type=int, default=6)
    group.add_argument("--scale", type=int, default=4)
    group.add_argument("--train_data_dir", default=None,
                       help="clean photos (default: the training split of $UIR_PHOTOS or ../shared/photos)")
    add_training_args(parser, learning_rate=2e-4, batch_size=16, max_train_steps=2000, resolution=96)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.resolution % args.scale:
        raise SystemExit(f"--resolution {args.resolution} must be a multiple of --scale {args.scale}")
    accelerator = make_accelerator(args)
    model = SRResNet(channels=args.channels, num_blocks=args.num_blocks, scale=args.scale).to(accelerator.device)
    trainable = {f"srresnet.{n}": p for n, p in model.named_parameters()}

    def loss(batch):
        high = batch["gt"]
        low = F.interpolate(high, scale_factor=1 / args.scale, mode="bicubic", antialias=True).clamp(0, 1)
        return F.l1_loss(model(low), high)

    dataset = CleanCropDataset(training_photos(args.train_data_dir), crop_size=args.resolution, flip=True, seed=args.seed)
    sampler = SingleDegradationBatchSampler(dataset, args.train_batch_size, seed=args.seed, mix_types=True)
    train(accelerator, args, model=LossModule({"srresnet": model}, loss), trainable=trainable, dataset=dataset,
          batch_sampler=sampler)
    folder = Path(args.output_dir) / "srresnet"
    if accelerator.is_main_process:
        save_pretrained_staged(model, folder)
    finish(accelerator, args, folder, "uir SRResNet (x4, GRIDS degradation descriptor)", "", [],
           "An MSRResNet trained for bicubic x4 super-resolution; its trunk features are GRIDS' deep "
           "degradation representations.")


if __name__ == "__main__":
    sys.exit(run_script(main))
