#!/usr/bin/env python
"""Fine-tune the degradation router's DA-CLIP controller (UIR-LoRA sec. 3.3, DA-CLIP).

The base CLIP (image and text towers) stays frozen; so does the degradation bank, the text
embeddings of the vocabulary. The controller learns degradation vectors ``d`` whose scaled
cosine similarities to the bank (the logits of eq. 3) pick the true degradation: a CLIP
contrastive loss between each image and the vocabulary's texts, i.e. cross-entropy over
``logit_scale * norm(d) @ norm(B)^T``. Training images are clean photos degraded on the fly,
every batch mixing all types.

Without captions there is no content loss, so DA-CLIP's zero linears (which feed the
controller into the content branch) get no gradient; they stay zero and the router's content
embedding stays CLIP's own.

    # from a pretrained CLIP (needs the weights):
    accelerate launch train/train_router.py --clip_model ViT-B-32 --clip_pretrained laion2b_s34b_b79k \\
        --output_dir runs/router
    # from scratch, on an open_clip config written to JSON (what the README's proof does):
    accelerate launch train/train_router.py --clip_model tiny-clip.json --output_dir runs/router

Writes ``OUTPUT_DIR/router`` (load with ``DegradationRouter.from_pretrained``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from uir.data import SingleDegradationBatchSampler
from uir.evaluation import evaluate_router
from uir.router import DegradationRouter
from uir.training import (LossModule, add_data_args, add_training_args, finish, make_accelerator,
                          photo_split, train, training_dataset)
from uir.files import save_pretrained_staged


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_argument_group("model")
    group.add_argument("--clip_model", default="ViT-B-32",
                       help="an open_clip model name, or a JSON file holding an open_clip model config")
    group.add_argument("--clip_pretrained", default=None, help="open_clip pretrained tag or checkpoint file")
    group.add_argument("--router", default=None, help="continue from a saved router folder instead")
    group.add_argument("--no_crop_correction", action="store_true", help="score the resized image only")
    add_data_args(parser)
    add_training_args(parser, learning_rate=1e-4, batch_size=32, max_train_steps=2000, resolution=256)
    return parser.parse_args(argv)


def build_router(args, names: list[str]) -> DegradationRouter:
    crop = not args.no_crop_correction
    if args.router:
        router = DegradationRouter.from_pretrained(args.router)
        missing = [n for n in names if n not in router.vocabulary]
        for name in missing:
            router.add_degradation(name)
        return router
    if args.clip_pretrained:
        return DegradationRouter.from_open_clip(args.clip_model, args.clip_pretrained, vocabulary=names,
                                                crop_correction=crop)
    if Path(args.clip_model).is_file():
        config = json.loads(Path(args.clip_model).read_text())
    else:
        import open_clip

        config = open_clip.get_model_config(args.clip_model)
        if config is None:
            raise ValueError(f"unknown open_clip model {args.clip_model!r} and no such JSON file")
    router = DegradationRouter(clip_config=config, vocabulary=names, crop_correction=crop)
    router.refresh_bank()
    return router


def main(argv=None):
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    names = args.degradations
    router = build_router(args, names).to(accelerator.device)
    if router.controller is None:
        raise ValueError("this router has no DA-CLIP controller to train (it was built with use_controller=False)")
    router.controller.zero_linears.requires_grad_(False)
    trainable = {f"router.{n}": p for n, p in router.named_parameters()
                 if n == "logit_scale" or (n.startswith("controller.visual.") and p.requires_grad)}
    labels = {name: router.vocabulary.index(name) for name in names}

    def loss(batch):
        target = torch.tensor([labels[name] for name in batch["degradation"]], device=batch["lq"].device)
        return F.cross_entropy(router.logits(batch["lq"]), target)

    model = LossModule({"router": router}, loss)
    dataset = training_dataset(args, names)
    sampler = SingleDegradationBatchSampler(dataset, args.train_batch_size, seed=args.seed, mix_types=True)
    _, validation_files = photo_split(args)

    def validate(step: int) -> dict:
        accuracy = evaluate_router(router, validation_files, names, seed=args.seed)
        return {f"val_accuracy/{k}" if k != "overall" else "val_accuracy": v for k, v in accuracy.items()}

    train(accelerator, args, model=model, trainable=trainable, dataset=dataset, batch_sampler=sampler,
          validate=validate if validation_files else None)
    folder = Path(args.output_dir) / "router"
    if accelerator.is_main_process:
        save_pretrained_staged(router, folder)
    finish(accelerator, args, folder, "uir degradation router", args.clip_pretrained or args.clip_model, names,
           "A CLIP degradation router with a trained DA-CLIP controller (UIR-LoRA eq. 3-4), for uir pipelines.")


if __name__ == "__main__":
    main()
