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
import sys

import torch
import torch.nn.functional as F

from uir.boundary import positive_float, run_script
from uir.data import DropMaskDataset
from uir.degradations.weather import RAINDROP_CLASS
from uir.networks.drops import DropDetector, check_drop_share
from uir.training import (DetectorKind, add_data_args, add_detector_args, add_training_args, parse_detector_args,
                          train_detector)

#: the router's drop detector (trained without ``--config`` as ``DEFAULT_DETECTOR_CONFIG``)
KIND = DetectorKind("drop_detector", RAINDROP_CLASS, "drop_share", check_drop_share, DropDetector)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = add_detector_args(parser, KIND, 0.01, "the router calls raindrop an image with at least this share of "
                                                  "its pixels surely under drops, in (0, 1]")
    group.add_argument("--pos_weight", type=positive_float, default=10.0,
                       help="the weight of a pixel under a drop against one without: drops cover a few percent of "
                            "the pixels, and unweighted the detector first learns to find none")
    add_data_args(parser)
    # the shipped detector's schedule (docs/default-model.md), so that the defaults reproduce it
    add_training_args(parser, learning_rate=1e-3, batch_size=8, max_train_steps=1600, resolution=192)
    parser.set_defaults(lr_warmup_steps=75)
    return parse_detector_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)

    def dataset(files, others):
        return DropMaskDataset(files, others, crop_size=args.resolution, flip=True, seed=args.seed, repeats=args.repeats)

    def loss(detector, batch):
        pos_weight = torch.tensor(args.pos_weight, device=batch["alpha"].device)
        return F.binary_cross_entropy_with_logits(detector.logits(batch["lq"]), batch["alpha"], pos_weight=pos_weight)

    train_detector(args, KIND, dataset, loss)


if __name__ == "__main__":
    sys.exit(run_script(main))
