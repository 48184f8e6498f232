#!/usr/bin/env python
"""Train a router's drop detector: where raindrops on the lens hide the scene, per pixel.

Raindrops are the one type the CLIP router could not learn (docs/default-model.md): a drop shows
a blurred, flipped copy of its surroundings, which at a glance looks like the photo. The
detector (:class:`uir.networks.drops.DropDetector`, a small NAFNet with a one-channel output)
learns the drops' alpha from synthetic drops at the photo's scale, with per-pixel binary
cross-entropy against the alpha the synthesis drew, ``--pos_weight`` on the pixels under drops
(:class:`uir.data.DropMaskDataset`: half the crops with drops, half clean or under one of the
other types, alpha 0). The router it is added to then calls ``raindrop`` an image with at least
``--drop_share`` of its pixels surely under drops, and the pipeline clears them
(:func:`uir.pipelines.restoring.clear_found_drops`).

    accelerate launch train/train_drop_detector.py --router uir/assets/default/router --output_dir runs/drops

Writes ``OUTPUT_DIR/router``: the ``--router`` folder with the detector in it. With
``--init_detector`` the detector the router already holds is trained further (a new schedule,
new draws with a new ``--seed``) instead of a new one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from uir.boundary import checked_number, positive_float, run_script
from uir.data import DropMaskDataset
from uir.degradations import CLEAN
from uir.degradations.weather import RAINDROP_CLASS
from uir.files import save_pretrained_staged
from uir.models.router import DegradationRouter
from uir.networks.drops import DropDetector, check_drop_share
from uir.training import (LossModule, add_data_args, add_training_args, finish, make_accelerator, mixed_batches,
                          parse_training_args, photo_split, train)


#: the detector trained without ``--config``
DEFAULT_CONFIG = {"width": 16, "encoder_blocks": [1, 1, 1, 1], "middle_blocks": 1, "decoder_blocks": [1, 1, 1, 1]}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_argument_group("model")
    group.add_argument("--router", required=True, help="the saved router folder the detector is added to")
    group.add_argument("--config", default=None, help=f"a JSON file of DropDetector's arguments (default {DEFAULT_CONFIG})")
    group.add_argument("--init_detector", action="store_true",
                       help="start from the detector --router already holds and train it further, instead of a new "
                            "one (not with --config: the detector keeps its own)")
    group.add_argument("--pos_weight", type=positive_float, default=10.0,
                       help="the weight of a pixel under a drop against one without: drops cover a few percent of "
                            "the pixels, and unweighted the detector first learns to find none")
    group.add_argument("--drop_share", type=checked_number(check_drop_share), default=0.01,
                       help="the router calls raindrop an image with at least this share of its pixels surely "
                            "under drops, in (0, 1]")
    add_data_args(parser)
    # the shipped detector's schedule (docs/default-model.md), so that the defaults reproduce it
    add_training_args(parser, learning_rate=1e-3, batch_size=8, max_train_steps=1600, resolution=192)
    parser.set_defaults(lr_warmup_steps=75)
    args = parse_training_args(parser, argv)
    if args.init_detector and args.config:
        parser.error("--init_detector trains the router's own detector further: --config cannot change it")
    return args


def main(argv=None):
    args = parse_args(argv)
    router = DegradationRouter.from_pretrained(args.router)
    if RAINDROP_CLASS not in router.vocabulary:
        raise ValueError(f"{args.router}: the router's vocabulary {router.vocabulary} has no {RAINDROP_CLASS!r}")
    if args.init_detector:
        if getattr(router, "drop_detector", None) is None:
            raise ValueError(f"--init_detector: the router {args.router} holds no drop detector to start from")
        config, detector = router.config.drop_detector_config, router.drop_detector.requires_grad_(True)
    else:
        config = json.loads(Path(args.config).read_text()) if args.config else DEFAULT_CONFIG
        detector = DropDetector(**config)
    accelerator = make_accelerator(args)
    detector = detector.to(accelerator.device)
    others = [name for name in args.degradations if name != RAINDROP_CLASS] + [CLEAN]
    train_files, _ = photo_split(args)
    dataset = DropMaskDataset(train_files, others, crop_size=args.resolution, flip=True, seed=args.seed,
                              repeats=args.repeats)
    pos_weight = torch.tensor(args.pos_weight, device=accelerator.device)
    model = LossModule({"detector": detector}, lambda batch: F.binary_cross_entropy_with_logits(
        detector.logits(batch["lq"]), batch["alpha"], pos_weight=pos_weight))
    trainable = {f"detector.{n}": p for n, p in detector.named_parameters()}
    train(accelerator, args, model=model, trainable=trainable, dataset=dataset, batch_sampler=mixed_batches(args, dataset))
    folder = Path(args.output_dir) / "router"
    if accelerator.is_main_process:
        router.register_to_config(drop_detector_config=config, drop_share=args.drop_share)
        router.drop_detector = detector.cpu().requires_grad_(False)
        save_pretrained_staged(router, folder)
    finish(accelerator, args, folder, "uir degradation router with a drop detector", args.router, router.vocabulary,
           "A CLIP degradation router whose drop detector calls and locates raindrops on the lens.")


if __name__ == "__main__":
    sys.exit(run_script(main))
