#!/usr/bin/env python
"""Train a router's shadow detector: how much light a cast shadow blocks, per pixel.

A cast shadow dims the scene, ``y = x (1 - a m)``, and leaves it all there: once its attenuation
``a m`` is known, one division lifts it. The CLIP router tells shadows poorly from clean photos
(docs/default-model.md), and the shadow expert brightens the clean photos it is wrongly handed.
The detector (:class:`uir.networks.shadows.ShadowDetector`, a small NAFNet with a one-channel
output on a 128x160 view of the whole photo) learns the attenuation from synthetic shadows cast
on whole photos, by mean squared error against the attenuation the synthesis drew
(:class:`uir.data.ShadowMapDataset`: half the photos with a shadow, half clean or under one of
the other types, attenuation 0). The router it is added to then calls ``shadowed`` an image with
at least ``--shadow_share`` of its pixels surely shadowed, and the pipeline lifts the shadow
(:func:`uir.pipelines.restoring.lift_found_shadows`).

    accelerate launch train/train_shadow_detector.py --router uir/assets/default/router --output_dir runs/shadows

Writes ``OUTPUT_DIR/router``: the ``--router`` folder with the detector in it. ``--resolution``
does not apply: the detector sees whole photos at its own view size.
"""

from __future__ import annotations

import argparse
import sys

import torch.nn.functional as F

from uir.boundary import checked_number, run_script
from uir.data import ShadowMapDataset
from uir.data.datasets import check_zoom
from uir.degradations.photometric import SHADOW_CLASS
from uir.networks.shadows import ShadowDetector, check_shadow_share
from uir.training import (DetectorKind, add_data_args, add_detector_args, add_training_args, parse_detector_args,
                          synthesis_severity, train_detector)

#: the router's shadow detector (trained without ``--config`` as ``DEFAULT_DETECTOR_CONFIG``)
KIND = DetectorKind("shadow_detector", SHADOW_CLASS, "shadow_share", check_shadow_share, ShadowDetector)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = add_detector_args(parser, KIND, 0.05, "the router calls shadowed an image with at least this share of its "
                                          "pixels surely shadowed, in (0, 1]")
    group.add_argument("--zoom", type=checked_number(check_zoom), default=1.0,
                       help="below 1, each photo is a random crop keeping a share of its sides drawn in [ZOOM, 1], "
                            "so that few photos give more scenes (1: whole photos)")
    add_data_args(parser)
    add_training_args(parser, learning_rate=1e-3, batch_size=16, max_train_steps=1500, resolution=None)
    parser.set_defaults(lr_warmup_steps=50)
    return parse_detector_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)

    def dataset(files, others):
        return ShadowMapDataset(files, others, flip=True, seed=args.seed, severity=synthesis_severity(args),
                                repeats=args.repeats, zoom=args.zoom)

    def loss(detector, batch):
        return F.mse_loss(detector.view_attenuation(batch["lq"]), batch["attenuation"])

    train_detector(args, KIND, dataset, loss)


if __name__ == "__main__":
    sys.exit(run_script(main))
