#!/usr/bin/env python
"""Train a DL-Net for inpainting or interpolation over a spectrum of levels (DL-Net sec. 4.1).

    accelerate launch train/train_dlnet.py train --model reference --task interpolation --output_dir runs/dlnet/ref
    accelerate launch train/train_dlnet.py train --model dlnet --init runs/dlnet/ref/model \\
        --task interpolation --output_dir runs/dlnet/dlnet
    python train/train_dlnet.py evaluate --model runs/dlnet/dlnet/model --task interpolation

As in the paper, a reference network is first trained on every level at once ("Autoencoder
(Joint)"), then wrapped as a DL-Net and fine-tuned; ``--model reference --init`` fine-tunes the
reference alone for the same number of steps, the fair comparison. Photos are rescaled so
their shorter side is ``--image_size`` x 1.25 and cropped to ``--image_size`` (64, the paper's
size). Levels: interpolation removes a fraction ``r ~ U[0, 0.75]`` of pixels (Bernoulli);
inpainting removes one square of side ``s ~ U{1..30}`` (at 64 pixels, scaled with the size) at
a random place. The loss is the L2 of eq. 6 over the whole image. The reference is the
paper's context encoder (``--reference context-encoder``) or a NAFNet (``--reference nafnet``).

``evaluate`` scores held-out photos (rescaled and centre-cropped) at the paper's test levels:
r = 15 / 45 / 75 % or s = 10 / 20 / 30, ``--masks`` masks per photo.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from uir.data import CleanCropDataset, SingleDegradationBatchSampler
from uir.degradations.operators import MaskOperator
from uir.evaluation import report
from uir.images import load_image, resize_shorter
from uir.metrics import psnr
from uir.models import NAFNet
from uir.dlnet import ContextEncoder, DLNet
from uir.training import (LossModule, add_training_args, finish, held_out_photos, make_accelerator,
                          saved_model_config, train, training_photos)
from uir.files import save_pretrained_staged

TEST_LEVELS = {"interpolation": (0.15, 0.45, 0.75), "inpainting": (10, 20, 30)}
MAX_MISSING, MAX_HOLE = 0.75, 30


def masking(task: str, level: float, shape, generator: torch.Generator) -> MaskOperator:
    """The mask operator of ``task`` at ``level`` (missing ratio, or hole side at 64 pixels)."""
    b, h, w = shape
    if task == "interpolation":
        return MaskOperator.bernoulli(shape, float(level), generator)
    return MaskOperator.square_hole(shape, max(1, round(level * min(h, w) / 64)), generator)


def random_level(task: str, generator: torch.Generator) -> float:
    if task == "interpolation":
        return MAX_MISSING * torch.rand((), generator=generator).item()
    return float(torch.randint(1, MAX_HOLE + 1, (), generator=generator).item())


class MaskedCropDataset(CleanCropDataset):
    """Clean crops with a mask at a random level: ``{"gt", "mask"}``; ``lq`` is ``mask . gt``."""

    def __init__(self, files, task: str, image_size: int, seed: int = 0):
        super().__init__(files, crop_size=image_size, flip=True, seed=seed, shorter_side=round(image_size * 1.25))
        self.task = task

    def __getitem__(self, index):
        item = super().__getitem__(index)
        generator = self.item_generator(index + len(self))  # not the crop's stream
        size = item["gt"].shape[-1]
        item["mask"] = masking(self.task, random_level(self.task, generator), (1, size, size), generator).mask[0]
        return item


def build_reference(args):
    if args.reference == "context-encoder":
        return ContextEncoder(width=args.width, image_size=args.image_size)
    return NAFNet(width=args.width, encoder_blocks=(1, 1, 1), middle_blocks=1, decoder_blocks=(1, 1, 1))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    stages = parser.add_subparsers(dest="stage", required=True)
    fit = stages.add_parser("train")
    fit.add_argument("--model", choices=["reference", "dlnet"], default="dlnet")
    fit.add_argument("--task", choices=sorted(TEST_LEVELS), default="interpolation")
    fit.add_argument("--reference", choices=["context-encoder", "nafnet"], default="context-encoder")
    fit.add_argument("--width", type=int, default=64, help="reference width (64 in the paper)")
    fit.add_argument("--image_size", type=int, default=64)
    fit.add_argument("--init", default=None, help="a trained reference (or DL-Net) folder to start from")
    fit.add_argument("--steps", type=int, default=5, help="K, unrolled likelihood steps")
    fit.add_argument("--step_size", type=float, default=1e-3, help="gamma (the paper uses 1e-2 for interpolation)")
    fit.add_argument("--split", default=None, help="the module whose input is z (default: the reference's choice)")
    fit.add_argument("--train_data_dir", default=None, help="clean photos (default: the training split)")
    add_training_args(fit, learning_rate=1e-3, batch_size=16, max_train_steps=2000, resolution=64)
    fit.set_defaults(adam_weight_decay=1e-4)
    evaluate = stages.add_parser("evaluate")
    evaluate.add_argument("--model", required=True, help="a ContextEncoder/NAFNet or DLNet folder")
    evaluate.add_argument("--task", choices=sorted(TEST_LEVELS), default="interpolation")
    evaluate.add_argument("--image_size", type=int, default=64)
    evaluate.add_argument("--masks", type=int, default=10, help="masks per photo")
    evaluate.add_argument("--data", default=None, help="clean photos (default: the held-out split)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--output", default=None, help="write the rows as JSON here")
    return parser.parse_args(argv)


def load_model(folder):
    """A DLNet or a plain reference, by the class its config names."""
    name = saved_model_config(folder)["_class_name"]
    classes = {"DLNet": DLNet, "ContextEncoder": ContextEncoder, "NAFNet": NAFNet}
    if name not in classes:
        raise SystemExit(f"{folder} holds a {name}, not a DL-Net or one of its references")
    return classes[name].from_pretrained(folder)


def restore(model, lq, operator):
    return model(lq, operator) if isinstance(model, DLNet) else model(lq)


def train_model(args):
    accelerator = make_accelerator(args)
    if args.init:
        model = load_model(args.init)
        if args.model == "dlnet" and not isinstance(model, DLNet):
            model = DLNet.wrap(model, steps=args.steps, step_size=args.step_size, split=args.split)
    else:
        reference = build_reference(args)
        model = DLNet.wrap(reference, steps=args.steps, step_size=args.step_size, split=args.split) \
            if args.model == "dlnet" else reference
    model.to(accelerator.device).train().requires_grad_(True)

    def loss(batch):
        operator = MaskOperator(batch["mask"])
        return F.mse_loss(restore(model, operator(batch["gt"]), operator), batch["gt"])

    dataset = MaskedCropDataset(training_photos(args.train_data_dir), args.task, args.image_size, seed=args.seed)
    sampler = SingleDegradationBatchSampler(dataset, args.train_batch_size, seed=args.seed, mix_types=True)
    train(accelerator, args, model=LossModule({"model": model}, loss),
          trainable={f"model.{n}": p for n, p in model.named_parameters()}, dataset=dataset, batch_sampler=sampler)
    folder = Path(args.output_dir) / "model"
    if accelerator.is_main_process:
        save_pretrained_staged(model.eval(), folder)
    finish(accelerator, args, folder, f"uir DL-Net {args.task} ({args.model})", "", [args.task],
           "A restorer trained with uir for inpainting/interpolation over a spectrum of levels "
           "(DL-Net: Guo et al., deep likelihood network).")


def evaluate(args):
    try:
        files = held_out_photos(args.data)
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None
    model = load_model(args.model).eval()
    size = args.image_size
    rows = []
    for level in TEST_LEVELS[args.task]:
        totals = [0.0, 0.0]
        for f, path in enumerate(files):
            image = resize_shorter(load_image(path), size)
            top, left = (image.shape[-2] - size) // 2, (image.shape[-1] - size) // 2
            gt = image[None, :, top : top + size, left : left + size].expand(args.masks, -1, -1, -1)
            generator = torch.Generator().manual_seed((args.seed * 7919 + f) * 131 + int(level * 100))
            operator = masking(args.task, level, (args.masks, size, size), generator)
            lq = operator(gt)
            with torch.no_grad():
                restored = restore(model, lq, operator).clamp(0, 1)
            totals[0] += psnr(lq, gt).mean().item() / len(files)
            totals[1] += psnr(restored, gt).mean().item() / len(files)
        rows.append({"level": level, "psnr_in": totals[0], "psnr_out": totals[1]})
    rows.append({"level": "mean", **{k: sum(r[k] for r in rows) / len(rows) for k in ("psnr_in", "psnr_out")}})
    return report(rows, args.output)


def main(argv=None):
    args = parse_args(argv)
    train_model(args) if args.stage == "train" else evaluate(args)


if __name__ == "__main__":
    main()
