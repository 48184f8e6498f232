#!/usr/bin/env python
"""Train a DL-Net for inpainting, interpolation or super-resolution over a spectrum of levels (DL-Net sec. 4).

    accelerate launch train/train_dlnet.py train --model reference --task interpolation --output_dir runs/dlnet/ref
    accelerate launch train/train_dlnet.py train --model dlnet --init runs/dlnet/ref/model \\
        --task interpolation --output_dir runs/dlnet/dlnet
    python train/train_dlnet.py evaluate --model runs/dlnet/dlnet/model --task interpolation
    python train/train_dlnet.py evaluate --model fill --task interpolation      # the non-learned row

As in the paper, a reference network is first trained on every level at once ("Autoencoder
(Joint)"), then wrapped as a DL-Net and fine-tuned; ``--model reference --init`` fine-tunes the
reference alone for the same number of steps, the fair comparison. The loss is the L2 of eq. 6
over the whole image.

* ``interpolation`` removes a fraction ``r ~ U[0, 0.75]`` of pixels (Bernoulli); ``inpainting``
  one square of side ``s ~ U{1..30}`` (at 64 pixels, scaled with the size), centred and shifted
  by up to +-10 pixels (sec. 4.1; ``--hole_placement anywhere`` drops the centring). Photos are
  rescaled so their shorter side is ``--image_size`` x 1.25 and cropped to ``--image_size``
  (64, the paper's size). The reference sees the observed pixels ``M . x`` (zero elsewhere), as
  the authors' code feeds it: the paper's context encoder (``--reference context-encoder``) or a
  full-resolution NAFNet (``--reference nafnet``, or another backbone of :mod:`uir.backbones`).
* ``sisr`` (sec. 4.2): the luma of a crop is blurred by a Gaussian of width ``u ~ U[0, 3]`` and
  downsampled by ``--scale`` (:class:`~uir.degradations.operators.SISROperator`, the same ``A``
  the likelihood steps use); the reference is a small VDSR (``--reference vdsr``).

``--variant authors`` wraps the reference as the authors' TF code runs it (``K - 1`` updates,
ADAM's bias correction) instead of eq. 5 as printed.

``evaluate`` scores held-out photos (rescaled and centre-cropped) at the paper's test levels:
r = 15 / 45 / 75 %, s = 10 / 20 / 30, or u = 0 / 1.3 / 2.6, ``--masks`` draws per photo; PSNR
on RGB, or on the luma with a ``scale``-pixel border cropped for SISR. ``psnr_out`` scores the
network's whole output, as the paper does; ``psnr_kept`` pastes the observed pixels back first,
which scores only what the network fills in. ``--model fill`` is the
non-learned baseline: normalised convolution for masks, bicubic upscaling for SISR (whose
``psnr_in`` is bicubic's too).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from uir.boundary import run_script
from uir.data import CleanCropDataset, SingleDegradationBatchSampler
from uir.degradations.operators import MaskOperator, SISROperator, fill_missing
from uir.evaluation import report
from uir.images import load_image, resize_shorter
from uir.metrics import psnr, rgb_to_y
from uir.backbones import BACKBONES, get_backbone
from uir.dlnet import VARIANTS, VDSR, ContextEncoder, DLNet, variant_settings
from uir.training import (LossModule, add_training_args, finish, held_out_photos, make_accelerator,
                          saved_model_config, train, training_photos)
from uir.files import save_pretrained_staged

TEST_LEVELS = {"interpolation": (0.15, 0.45, 0.75), "inpainting": (10, 20, 30), "sisr": (0.0, 1.3, 2.6)}
MAX_MISSING, MAX_HOLE, MAX_BLUR = 0.75, 30, 3.0
MAX_SHIFT = 10  # inpainting: hole centres within +-10 pixels of the image centre, at 64 pixels
REFERENCES = {"interpolation": "context-encoder", "inpainting": "context-encoder", "sisr": "vdsr"}
#: the paper's references, beside the registered backbones (uir.backbones)
PAPER_REFERENCES = {"context-encoder": ContextEncoder, "vdsr": VDSR}
#: a registered backbone's size as a DL-Net reference (docs/dlnet.md's NAFNet row)
BACKBONE_SIZES = {"nafnet": {"encoder_blocks": (1, 1, 1), "middle_blocks": 1, "decoder_blocks": (1, 1, 1)}}


def masking(task: str, level: float, shape, generator: torch.Generator, centred: bool = True) -> MaskOperator:
    """The mask operator of ``task`` at ``level`` (missing ratio, or hole side at 64 pixels)."""
    b, h, w = shape
    if task == "interpolation":
        return MaskOperator.bernoulli(shape, float(level), generator)
    scale = min(h, w) / 64
    return MaskOperator.square_hole(shape, max(1, round(level * scale)), generator,
                                    max_shift=round(MAX_SHIFT * scale) if centred else None)


def random_level(task: str, generator: torch.Generator) -> float:
    if task == "interpolation":
        return MAX_MISSING * torch.rand((), generator=generator).item()
    if task == "sisr":
        return MAX_BLUR * torch.rand((), generator=generator).item()
    return float(torch.randint(1, MAX_HOLE + 1, (), generator=generator).item())


def observation(task: str, gt: torch.Tensor, level: float, scale: int, mask: torch.Tensor | None = None):
    """``(y, A, x)``: the observation, its operator and the target for clean RGB ``gt`` (B,3,H,W).
    SISR works on the luma, blurred by ``level`` and downsampled by ``scale``."""
    if task == "sisr":
        target = rgb_to_y(gt)
        operator = SISROperator(scale, blur_sigma=level)
        return operator(target), operator, target
    operator = MaskOperator(mask)
    return operator(gt), operator, gt


class LevelledCropDataset(CleanCropDataset):
    """Clean crops with a random level: ``{"gt", "level"}``, and ``"mask"`` for the mask tasks."""

    def __init__(self, files, task: str, image_size: int, seed: int = 0, centred: bool = True):
        super().__init__(files, crop_size=image_size, flip=True, seed=seed, shorter_side=round(image_size * 1.25))
        self.task, self.centred = task, centred

    def __getitem__(self, index):
        item = super().__getitem__(index)
        generator = self.item_generator(index + len(self))  # not the crop's stream
        item["level"] = random_level(self.task, generator)
        if self.task != "sisr":
            size = item["gt"].shape[-1]
            item["mask"] = masking(self.task, item["level"], (1, size, size), generator, self.centred).mask[0]
        return item


def build_reference(args):
    reference = args.reference or REFERENCES[args.task]
    if (reference == "vdsr") != (args.task == "sisr"):
        raise SystemExit(f"--reference {reference} does not fit --task {args.task}: vdsr is the sisr reference")
    if reference == "vdsr":
        return VDSR(scale=args.scale, width=args.width, depth=args.depth)
    if reference == "context-encoder":
        return ContextEncoder(width=args.width, image_size=args.image_size)
    return get_backbone(reference).build(width=args.width, **BACKBONE_SIZES.get(reference, {}))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    stages = parser.add_subparsers(dest="stage", required=True)
    fit = stages.add_parser("train")
    fit.add_argument("--model", choices=["reference", "dlnet"], default="dlnet")
    fit.add_argument("--reference", choices=sorted([*PAPER_REFERENCES, *BACKBONES]), default=None,
                     help="default: the paper's for the task (context-encoder; vdsr for sisr)")
    fit.add_argument("--width", type=int, default=64, help="reference width (64 in the paper)")
    fit.add_argument("--depth", type=int, default=20, help="vdsr: conv layers (20 in the paper)")
    fit.add_argument("--init", default=None, help="a trained reference (or DL-Net) folder to start from")
    fit.add_argument("--steps", type=int, default=5, help="K, unrolled likelihood steps")
    fit.add_argument("--step_size", type=float, default=1e-3, help="gamma (the paper uses 1e-2 for interpolation)")
    fit.add_argument("--variant", choices=VARIANTS, default="paper",
                     help="paper: eq. 5 as printed; authors: their code's K - 1 updates with ADAM's bias correction")
    fit.add_argument("--split", default=None, help="the module whose input is z (default: the reference's choice)")
    fit.add_argument("--hole_placement", choices=["centred", "anywhere"], default="centred",
                     help="inpainting: centred +-10 px (the paper) or anywhere in the crop")
    fit.add_argument("--train_data_dir", default=None, help="clean photos (default: the training split)")
    add_training_args(fit, learning_rate=1e-3, batch_size=16, max_train_steps=2000, resolution=64)
    fit.set_defaults(adam_weight_decay=1e-4)
    evaluate = stages.add_parser("evaluate")
    evaluate.add_argument("--model", required=True, help='a DLNet or reference folder (a paper reference or a registered backbone), or "fill"')
    evaluate.add_argument("--masks", type=int, default=10, help="masks per photo (one for sisr)")
    evaluate.add_argument("--data", default=None, help="clean photos (default: the held-out split)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--output", default=None, help="write the rows as JSON here")
    for stage in (fit, evaluate):
        stage.add_argument("--task", choices=sorted(TEST_LEVELS), default="interpolation")
        stage.add_argument("--image_size", type=int, default=None, help="crop side (default: 64; 96 for sisr)")
        stage.add_argument("--scale", type=int, default=3, help="sisr: the upscaling factor")
    args = parser.parse_args(argv)
    args.image_size = args.image_size or (96 if args.task == "sisr" else 64)
    if args.task == "sisr" and args.image_size % args.scale:
        parser.error(f"--image_size {args.image_size} is not a multiple of --scale {args.scale}")
    return args


def load_model(folder):
    """A DLNet or a plain reference, by the class its config names."""
    name = saved_model_config(folder)["_class_name"]
    classes = {cls.__name__: cls for cls in (DLNet, *PAPER_REFERENCES.values(),
                                             *(spec.model_class() for spec in BACKBONES.values()))}
    if name not in classes:
        raise SystemExit(f"{folder} holds a {name}, not a DL-Net or one of its references")
    return classes[name].from_pretrained(folder)


def restore(model, lq, operator):
    """``model`` on the observation ``lq``; the likelihood steps of a DL-Net use ``operator``;
    ``model=None`` is the non-learned fill (normalised convolution, or bicubic upscaling)."""
    if model is None:
        if isinstance(operator, SISROperator):
            return F.interpolate(lq, scale_factor=operator.scale, mode="bicubic", align_corners=False)
        return fill_missing(lq, operator.mask)
    return model(lq, operator) if isinstance(model, DLNet) else model(lq)


def train_model(args):
    accelerator = make_accelerator(args)
    wrapping = dict(step_size=args.step_size, split=args.split, **variant_settings(args.variant, args.steps))
    if args.init:
        model = load_model(args.init)
        if args.model == "dlnet" and not isinstance(model, DLNet):
            model = DLNet.wrap(model, **wrapping)
    else:
        reference = build_reference(args)
        model = DLNet.wrap(reference, **wrapping) if args.model == "dlnet" else reference
    model.to(accelerator.device).train().requires_grad_(True)

    def loss(batch):
        # one level per batch (the first sample's): the sisr operator blurs the batch alike
        lq, operator, target = observation(args.task, batch["gt"], float(batch["level"][0]), args.scale, batch.get("mask"))
        return F.mse_loss(restore(model, lq, operator), target)

    dataset = LevelledCropDataset(training_photos(args.train_data_dir), args.task, args.image_size, seed=args.seed,
                                  centred=args.hole_placement == "centred")
    sampler = SingleDegradationBatchSampler(dataset, args.train_batch_size, seed=args.seed, mix_types=True)
    train(accelerator, args, model=LossModule({"model": model}, loss),
          trainable={f"model.{n}": p for n, p in model.named_parameters()}, dataset=dataset, batch_sampler=sampler)
    folder = Path(args.output_dir) / "model"
    if accelerator.is_main_process:
        save_pretrained_staged(model.eval(), folder)
    finish(accelerator, args, folder, f"uir DL-Net {args.task} ({args.model})", "", [args.task],
           "A restorer trained with uir for inpainting, interpolation or super-resolution over a spectrum of "
           "levels (DL-Net: Guo et al., deep likelihood network).")


def evaluate(args):
    try:
        files = held_out_photos(args.data)
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None
    model = None if args.model == "fill" else load_model(args.model).eval()
    size, sisr = args.image_size, args.task == "sisr"
    draws = 1 if sisr else args.masks

    def score(restored, target):  # sisr: on the luma (the target already is), without a scale-pixel border
        return psnr(restored, target, crop_border=args.scale if sisr else 0)

    rows = []
    for level in TEST_LEVELS[args.task]:
        totals = [0.0, 0.0, 0.0]
        for f, path in enumerate(files):
            image = resize_shorter(load_image(path), size)
            top, left = (image.shape[-2] - size) // 2, (image.shape[-1] - size) // 2
            gt = image[None, :, top : top + size, left : left + size].expand(draws, -1, -1, -1)
            generator = torch.Generator().manual_seed((args.seed * 7919 + f) * 131 + int(level * 100))
            mask = None if sisr else masking(args.task, level, (draws, size, size), generator).mask
            lq, operator, target = observation(args.task, gt, level, args.scale, mask)
            with torch.no_grad():
                restored = restore(model, lq, operator).clamp(0, 1)
                before = restore(None, lq, operator).clamp(0, 1) if sisr else lq
            kept = restored if sisr else lq + (1 - operator.mask) * restored  # observed pixels pasted back
            totals[0] += score(before, target).mean().item() / len(files)
            totals[1] += score(restored, target).mean().item() / len(files)
            totals[2] += score(kept, target).mean().item() / len(files)
        rows.append({"level": level, "psnr_in": totals[0], "psnr_out": totals[1], "psnr_kept": totals[2]})
    keys = ("psnr_in", "psnr_out", "psnr_kept")
    rows.append({"level": "mean", **{k: sum(r[k] for r in rows) / len(rows) for k in keys}})
    return report(rows, args.output)


def main(argv=None):
    args = parse_args(argv)
    train_model(args) if args.stage == "train" else evaluate(args)


if __name__ == "__main__":
    sys.exit(run_script(main))
