#!/usr/bin/env python
"""Train the degradation router's DA-CLIP controller (UIR-LoRA sec. 3.3, DA-CLIP).

The controller, a full copy of CLIP's image tower, trains end to end; the base CLIP stays
frozen, and so does the degradation bank (the text embeddings of the vocabulary) unless
``--train_text_tower`` trains the text tower with it (what a router built from scratch needs:
a random text tower's embeddings are arbitrary). The controller learns degradation vectors
``d`` whose scaled cosine similarities to the bank (the logits of eq. 3) pick the true
degradation: a CLIP contrastive loss between each image and the vocabulary's texts, i.e.
cross-entropy over ``logit_scale * norm(d) @ norm(B)^T``, with ``d`` from the global view and
the native-resolution crops (crop correction, :mod:`uir.models.router`). Training images are clean
photos degraded on the fly, every batch mixing all types and, unless ``--no_clean_class``, the
undegraded ``clean`` class. ``--clean_above_psnr DB`` labels by effect: a draw whose degraded
image is still within ``DB`` of its clean crop (PSNR >= DB; a JPEG at quality 90, five small
raindrops) is labelled ``clean``, since no degradation is visible to learn from and no expert
should run on it; without it such draws keep their type's label, which only the crop's content
can then fit. ``--clean_twins W`` holds the content fixed: each degraded draw's own clean crop
trains too, labelled ``clean`` with weight ``W`` (``W`` times the mean cross-entropy over those
twins), so a texture (grass, white flowers, mist) scores its look-alike type only when the crop
is more degraded than itself; the router's ``logit_bias`` then undoes the prior this puts on
``clean`` (:func:`uir.models.router.prior_correction`) when it routes and calibrates.
``--skip_traced`` leaves out of the loss (and the calibration) the draws that carry a trace
the router is told to read (``--jpeg_max_quality``, ``--call_missing_pixels``): the trace
decides those, so eq. 3 learns only the rest. At the end the temperature is calibrated
(``logit_scale``, by temperature scaling) on fresh degradations of the training photos, never
the held-out ones; ``--calibration views`` fits instead each view's weight per class, the
global view's and the crops' (``view_weights``, :func:`uir.models.router.calibrate_views`), of
which one temperature is the special case. ``--calibrate_only`` with ``--router`` trains
nothing: it calibrates a saved router again and saves it.

Without captions there is no content loss, so DA-CLIP's zero linears (which feed the
controller into the content branch) get no gradient; they stay zero and the router's content
embedding stays CLIP's own.

    # from a pretrained CLIP (needs the weights):
    accelerate launch train/train_router.py --clip_model ViT-B-32 --clip_pretrained laion2b_s34b_b79k \\
        --output_dir runs/router
    # from scratch, on an open_clip config written to JSON (what the README's proof does):
    accelerate launch train/train_router.py --clip_model tiny-clip.json --output_dir runs/router
    # a saved router's views weighed per class on the training photos, nothing trained:
    python train/train_router.py --router runs/router/router --calibrate_only --calibration views \\
        --calibration_repeats 2 --output_dir runs/router-views

Writes ``OUTPUT_DIR/router`` (load with ``DegradationRouter.from_pretrained``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from uir.boundary import positive_float, run_script
from uir.degradations import CLEAN
from uir.evaluation import degraded_pairs, evaluate_router
from uir.lora.strategies import LOW_CONFIDENCE_POLICIES
from uir.models.router import (DegradationRouter, calibrate_temperature, calibrate_views, expected_calibration_error,
                               prior_correction)
from uir.training import (LossModule, add_data_args, add_training_args, finish, make_accelerator, mixed_batches,
                          parse_training_args, photo_split, train, training_dataset, validation_photos)
from uir.files import save_pretrained_staged
from uir.metrics import psnr


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_argument_group("model")
    group.add_argument("--clip_model", default="ViT-B-32",
                       help="an open_clip model name, or a JSON file holding an open_clip model config")
    group.add_argument("--clip_pretrained", default=None, help="open_clip pretrained tag or checkpoint file")
    group.add_argument("--router", default=None, help="continue from a saved router folder instead")
    group.add_argument("--no_crop_correction", action="store_true", help="score the resized image only")
    group.add_argument("--crop_grid", type=int, default=1, help="crop correction's native crops per side")
    group.add_argument("--no_clean_class", action="store_true", help="no 'clean' entry in the vocabulary")
    group.add_argument("--min_confidence", type=float, default=0.25, help="below this max s_o an input is unknown")
    group.add_argument("--low_confidence", choices=LOW_CONFIDENCE_POLICIES, default="soft",
                       help="expert weights for unknown inputs: soft top-3, or the base alone")
    group.add_argument("--jpeg_max_quality", type=float, default=None,
                       help="call an image jpeg-compressed when its JPEG trace implies this quality or less")
    group.add_argument("--call_missing_pixels", action="store_true",
                       help="call an image with missing pixels (one exact value in every channel) uncompleted")
    group.add_argument("--skip_traced", action="store_true",
                       help="train and calibrate only on draws without a trace the router reads")
    group.add_argument("--train_text_tower", action="store_true", help="train the text tower (the bank) too")
    group.add_argument("--clean_above_psnr", type=float, default=None,
                       help="label a draw 'clean' when its PSNR to the clean crop is at least this (dB)")
    group.add_argument("--clean_twins", type=positive_float, default=None,
                       help="also train each degraded draw's own clean crop as 'clean', with this weight")
    group.add_argument("--calibration_repeats", type=int, default=1,
                       help="degraded copies of each training photo and type to calibrate on (0: no calibration)")
    group.add_argument("--calibration", choices=("temperature", "views"), default="temperature",
                       help="calibrate one temperature, or each view's weight per class (view_weights)")
    group.add_argument("--calibrate_only", action="store_true",
                       help="with --router: no training; calibrate that router again and save it to OUTPUT_DIR/router")
    add_data_args(parser)
    add_training_args(parser, learning_rate=1e-4, batch_size=32, max_train_steps=2000, resolution=256)
    return parse_training_args(parser, argv)


def effect_labels(names: list[str], lq: torch.Tensor, gt: torch.Tensor, vocabulary: list[str],
                  clean_above_psnr: float | None) -> torch.Tensor:
    """The class indices to train and calibrate on: each draw's degradation, or ``clean`` where
    ``clean_above_psnr`` is set and the degraded image is at least that close to its clean one."""
    target = torch.tensor([vocabulary.index(name) for name in names], device=lq.device)
    if clean_above_psnr is None:
        return target
    invisible = psnr(lq.clamp(0, 1), gt.to(lq)) >= clean_above_psnr
    return torch.where(invisible, vocabulary.index(CLEAN), target)


def untraced(router: DegradationRouter, lq: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the images that carry none of the traces the router reads (``RouterInference.traces``)."""
    traced = torch.zeros(lq.shape[0], dtype=torch.bool)
    for found in router.traces(lq).values():
        traced |= found.cpu()
    return ~traced.to(lq.device)


def router_loss(router: DegradationRouter, batch: dict, args) -> torch.Tensor:
    """Cross-entropy of eq. 3's logits against each draw's label, plus ``--clean_twins`` times
    that of the draws' clean crops against ``clean``."""
    lq, gt = batch["lq"], batch["gt"]
    target = effect_labels(batch["degradation"], lq, gt, router.vocabulary, args.clean_above_psnr)
    if args.skip_traced:
        keep = untraced(router, lq)
        if not bool(keep.any()):  # every draw is the traces' to decide: nothing for eq. 3 to learn
            return router.logit_scale * 0.0
        lq, gt, target = lq[keep], gt[keep], target[keep]
    bank = router.text_bank() if args.train_text_tower else None
    value = F.cross_entropy(router.logits(lq, bank=bank), target)
    if args.clean_twins is not None:
        clean = router.vocabulary.index(CLEAN)
        twins = gt[target != clean]
        if len(twins):
            labels = torch.full((len(twins),), clean, device=twins.device)
            value = value + args.clean_twins * F.cross_entropy(router.logits(twins, bank=bank), labels)
    return value


def build_router(args, names: list[str]) -> DegradationRouter:
    crop = dict(crop_correction=not args.no_crop_correction, crop_grid=args.crop_grid,
                min_confidence=args.min_confidence, low_confidence=args.low_confidence,
                jpeg_max_quality=args.jpeg_max_quality, call_missing_pixels=args.call_missing_pixels)
    if args.router:
        router = DegradationRouter.from_pretrained(args.router, torch_dtype=torch.float32)  # trains in fp32
        missing = [n for n in names if n not in router.vocabulary]
        for name in missing:
            router.add_degradation(name)
        return router
    if args.clip_pretrained:
        return DegradationRouter.from_open_clip(args.clip_model, args.clip_pretrained, vocabulary=names,
                                                **crop)
    if Path(args.clip_model).is_file():
        config = json.loads(Path(args.clip_model).read_text())
    else:
        import open_clip

        config = open_clip.get_model_config(args.clip_model)
        if config is None:
            raise ValueError(f"unknown open_clip model {args.clip_model!r} and no such JSON file")
    router = DegradationRouter(clip_config=config, vocabulary=names, **crop)
    router.refresh_bank()
    return router


@torch.no_grad()
def calibrate(router: DegradationRouter, files, names: list[str], args) -> None:
    """Calibration on fresh degradations of the training photos (a seed training never used):
    temperature scaling, or with ``--calibration views`` the per-class view weights
    (:func:`~uir.models.router.calibrate_views`); logs the expected calibration error and the
    top-1 before and after."""
    router.eval()
    similarities, labels = [], []
    for pair in degraded_pairs(files, names, seed=args.seed + 1, severity="random", repeats=args.calibration_repeats):
        if args.skip_traced and not bool(untraced(router, pair.lq)[0]):
            continue
        similarities.append(router.view_similarities(pair.lq.to(router.degradation_bank.device))[0].cpu())
        labels.append(effect_labels([pair.name], pair.lq, pair.gt, router.vocabulary, args.clean_above_psnr))
    similarities, labels = torch.stack(similarities), torch.cat(labels)
    bias = router.logit_bias_vector()  # routing adds it; calibration fits under it

    def routed():
        return router.logits_from_similarities(similarities) + bias

    before = routed()
    if args.calibration == "views":
        calibrate_views(router, similarities, labels)
        fitted = "view weights " + ", ".join(f"{name} {w[0]:.2f}/{w[1]:.2f}"
                                             for name, w in router.config.view_weights.items())
    else:
        fitted = f"temperature {calibrate_temperature(router, before - bias, labels):.3f}"
    after = routed()
    print(f"calibration on {len(labels)} training images: {fitted}; ECE "
          f"{expected_calibration_error(before.softmax(-1), labels):.3f} -> "
          f"{expected_calibration_error(after.softmax(-1), labels):.3f}, top-1 "
          f"{float((before.argmax(-1) == labels).float().mean()):.3f} -> {float((after.argmax(-1) == labels).float().mean()):.3f}")


def main(argv=None):
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    names = list(args.degradations) + ([] if args.no_clean_class or CLEAN in args.degradations else [CLEAN])
    if args.skip_traced and args.jpeg_max_quality is None and not args.call_missing_pixels:
        raise ValueError("--skip_traced leaves traced draws out: give the traces to read (--jpeg_max_quality, "
                         "--call_missing_pixels)")
    if (args.clean_above_psnr is not None or args.clean_twins is not None) and CLEAN not in names:
        raise ValueError("--clean_above_psnr and --clean_twins label images 'clean': they need the clean class "
                         "(drop --no_clean_class)")
    if args.calibrate_only and not (args.router and args.calibration_repeats and not args.dataset_name):
        raise ValueError("--calibrate_only calibrates a saved router again on photo files: give --router, "
                         "--calibration_repeats >= 1 and --train_data_dir (not --dataset_name)")
    router = build_router(args, names).to(accelerator.device)
    if args.calibrate_only:
        router.requires_grad_(False)
        return save_router(router, accelerator, args, names)
    # the prior this training shows the classes at, undone when routing (validation included)
    router.register_to_config(logit_bias=prior_correction(router.vocabulary, args.clean_twins))
    if router.controller is None:
        raise ValueError("this router has no DA-CLIP controller to train (it was built with use_controller=False)")
    router.controller.zero_linears.requires_grad_(False)
    if args.train_text_tower:  # CLIP's text half: every parameter but the image tower and its scale
        for name, param in router.clip.named_parameters():
            param.requires_grad_(not name.startswith("visual.") and name != "logit_scale")
    # the controller's image tower, logit_scale, and the text tower when asked
    trainable = {f"router.{n}": p for n, p in router.named_parameters() if p.requires_grad}

    model = LossModule({"router": router}, lambda batch: router_loss(router, batch, args))
    dataset = training_dataset(args, names)
    sampler = mixed_batches(args, dataset)
    validation_files = validation_photos(args)

    def validate(step: int) -> dict:
        router.refresh_bank()
        logs = {}
        for key, severity in (("val_accuracy", "random"), ("val_accuracy_default_severity", None)):
            accuracy = evaluate_router(router, validation_files, names, seed=args.seed, severity=severity)
            logs |= {f"{key}/{k}" if k != "overall" else key: v for k, v in accuracy.items()}
        return logs

    train(accelerator, args, model=model, trainable=trainable, dataset=dataset, batch_sampler=sampler,
          validate=validate if validation_files else None)
    router.requires_grad_(False)
    router.refresh_bank()
    save_router(router, accelerator, args, names)


def save_router(router: DegradationRouter, accelerator, args, names: list[str]) -> None:
    """Calibrate (``--calibration_repeats``) and save to ``OUTPUT_DIR/router``, with a model card."""
    folder = Path(args.output_dir) / "router"
    if accelerator.is_main_process:
        if args.calibration_repeats and args.dataset_name:
            print("calibration skipped: it degrades photo files (--train_data_dir), not --dataset_name")
        elif args.calibration_repeats:
            calibrate(router, photo_split(args)[0], names, args)
        save_pretrained_staged(router, folder)
    finish(accelerator, args, folder, "uir degradation router", args.clip_pretrained or args.clip_model, names,
           "A CLIP degradation router with a trained DA-CLIP controller (UIR-LoRA eq. 3-4), for uir pipelines.")


if __name__ == "__main__":
    sys.exit(run_script(main))
