"""Training a router's detector: what ``train/train_drop_detector.py`` and
``train/train_shadow_detector.py`` share.

A detector (:data:`uir.networks.router.DETECTORS`) maps one type per pixel, and the router it is
added to calls that type where enough pixels are sure. Both scripts load a saved router, train a
new detector (or, with ``--init_detector``, the one the router holds) on a
:class:`~uir.data.DetectorDataset` of the training photos, and write a copy of the router with
the detector and its share in its config.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..boundary import checked_number
from ..data.photos import photo_split
from ..degradations import CLEAN
from ..files import save_pretrained_staged
from .args import mixed_batches, parse_training_args
from .loop import LossModule, finish, make_accelerator, train


#: the arguments of a detector trained without ``--config``: a width-16 ``PlaneMap`` with four
#: levels of one block each (the shipped drop detector's, docs/default-model.md)
DEFAULT_DETECTOR_CONFIG = {"width": 16, "encoder_blocks": [1, 1, 1, 1], "middle_blocks": 1,
                           "decoder_blocks": [1, 1, 1, 1]}


@dataclass(frozen=True)
class DetectorKind:
    """One kind of detector: the router's ``attribute`` that holds it (``<attribute>_config`` in its
    config), the ``target`` class it calls, the config's ``share`` option that decides the call
    and its ``check``, the detector's class and its ``default_config``."""

    attribute: str
    target: str
    share: str
    check: Callable[[float], float]
    detector_class: type
    default_config: dict = field(default_factory=lambda: dict(DEFAULT_DETECTOR_CONFIG))

    @property
    def words(self) -> str:
        return self.attribute.replace("_", " ")


def add_detector_args(parser: argparse.ArgumentParser, kind: DetectorKind, share: float, share_help: str):
    """The model options of a detector's script: ``--router``, ``--config``, ``--init_detector`` and
    the router's share option (``--<kind.share>``, default ``share``). Returns the group."""
    group = parser.add_argument_group("model")
    group.add_argument("--router", required=True, help=f"the saved router folder the {kind.words} is added to")
    group.add_argument("--config", default=None,
                       help=f"a JSON file of {kind.detector_class.__name__}'s arguments (default {kind.default_config})")
    group.add_argument("--init_detector", action="store_true",
                       help=f"start from the {kind.words} --router already holds and train it further, instead of "
                            "a new one (not with --config: the detector keeps its own)")
    group.add_argument(f"--{kind.share}", type=checked_number(kind.check), default=share, help=share_help)
    return group


def parse_detector_args(parser: argparse.ArgumentParser, argv=None):
    """:func:`~uir.training.args.parse_training_args`, refusing ``--init_detector`` with
    ``--config`` (a usage error)."""
    args = parse_training_args(parser, argv)
    if args.init_detector and args.config:
        parser.error("--init_detector trains the router's own detector further: --config cannot change it")
    return args


def train_detector(args, kind: DetectorKind, make_dataset: Callable, loss: Callable) -> Path:
    """Train ``kind``'s detector for the router ``args.router`` and save the router with it in
    ``OUTPUT_DIR/router``, which is returned.

    ``make_dataset(files, others)`` builds the training data from the training photos and the
    other classes (``args.degradations`` less the target, plus the clean class);
    ``loss(detector, batch)`` is the training loss."""
    from ..models.router import DegradationRouter

    router = DegradationRouter.from_pretrained(args.router)
    if kind.target not in router.vocabulary:
        raise ValueError(f"{args.router}: the router's vocabulary {router.vocabulary} has no {kind.target!r}")
    if args.init_detector:
        if getattr(router, kind.attribute, None) is None:
            raise ValueError(f"--init_detector: the router {args.router} holds no {kind.words} to start from")
        config = router.config[f"{kind.attribute}_config"]
        detector = getattr(router, kind.attribute).requires_grad_(True)
    else:
        config = json.loads(Path(args.config).read_text()) if args.config else kind.default_config
        detector = kind.detector_class(**config)
    accelerator = make_accelerator(args)
    detector = detector.to(accelerator.device)
    others = [name for name in args.degradations if name != kind.target] + [CLEAN]
    train_files, _ = photo_split(args)
    dataset = make_dataset(train_files, others)
    model = LossModule({"detector": detector}, lambda batch: loss(detector, batch))
    trainable = {f"detector.{n}": p for n, p in detector.named_parameters()}
    train(accelerator, args, model=model, trainable=trainable, dataset=dataset, batch_sampler=mixed_batches(args, dataset))
    folder = Path(args.output_dir) / "router"
    if accelerator.is_main_process:
        router.register_to_config(**{f"{kind.attribute}_config": config, kind.share: getattr(args, kind.share)})
        setattr(router, kind.attribute, detector.cpu().requires_grad_(False))
        save_pretrained_staged(router, folder)
    finish(accelerator, args, folder, f"uir degradation router with a {kind.words}", args.router, router.vocabulary,
           f"A CLIP degradation router whose {kind.words} calls and locates {kind.target} images.")
    return folder


__all__ = ["DEFAULT_DETECTOR_CONFIG", "DetectorKind", "add_detector_args", "parse_detector_args", "train_detector"]
