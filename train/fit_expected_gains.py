#!/usr/bin/env python
"""Fit a pipeline router's expected-gain table on training photos (:mod:`uir.lora.strategies`).

Every training photo is degraded by every class of the router's vocabulary (``clean``
included: left as it is) at random severity, ``--repeats`` draws each, and routed. Each
candidate is then measured on it: ``expert`` (the top class's expert at weight 1, eq. 4 with
K = 1), ``half`` (that output averaged with the input), ``base`` (no expert), and for a class
with a classical prior (:data:`uir.classical.PRIORS`) ``prior`` (the prior alone) and
``prior-expert`` (the prior's output averaged with the expert's); ``identity`` changes
nothing. The PSNR change of each, against the clean photo, is recorded under the router's top
class and its confidence bin (at or above the router's ``min_confidence``, or below), split for a
class with a severity measure (:data:`uir.classical.SEVERITY_MEASURES`: noise, JPEG) by the
severity measured on the image (:func:`uir.lora.strategies.gain_bin`); the saved
record also keeps, per sample, the degradation the photo truly had and the router's
confidence, so a cell can be read by what it holds (the table does not use them). PSNR is
capped at ``--max_psnr`` so that a clean input (infinite PSNR) has a finite loss. Photos with
missing pixels (:func:`~uir.degradations.masks.holds_missing_pixels`) are left out: the pipeline
fills them and routes no expert on them, whatever the table says; so are photos where the
router's detectors find their type (raindrops cleared, a shadow lifted:
:meth:`~uir.networks.router.RouterInference.detectors`), which the pipeline restores by the
detector's own method.

The table goes into the router's config; the pipeline with it is saved to
``OUTPUT_DIR/pipeline`` (load it with ``uir.load_pipeline``), and the table with every
measured sample to ``OUTPUT_DIR/expected_gains.json``.

    python train/fit_expected_gains.py --model default --output_dir runs/gains
    uir eval --model runs/gains/pipeline --data ../shared/photos --held-out -o out
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from uir.boundary import OneLineParser, UsageError, positive_int, run_script
from uir.classical import PRIORS, measured_severities
from uir.data.photos import readable_photos, training_photos
from uir.degradations import CLEAN
from uir.degradations.masks import MISSING_CLASS, finds_missing_pixels
from uir.evaluation import degraded_pairs
from uir.files import save_json, save_pretrained_staged
from uir.lora.strategies import expected_gain_table, gain_bin
from uir.metrics import psnr


def parse_args(argv=None):
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="a saved expert pipeline with a router (default: the embedded one)")
    parser.add_argument("--train_data_dir", default=None,
                        help="clean training photos (default: the training split of shared/photos)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--repeats", type=positive_int, default=1, help="random-severity draws per photo and class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_psnr", type=float, default=50.0, help="PSNR cap in dB (a clean input's is infinite)")
    return parser.parse_args(argv)


@torch.no_grad()
def measured_gains(pipe, files, seed: int, repeats: int, max_psnr: float) -> list[tuple[str, str, str, float, str, float]]:
    """``(top class, bin, candidate, PSNR change, true class, confidence)`` of every candidate
    on every degraded photo, the bin by :func:`~uir.lora.strategies.gain_bin`."""
    router = pipe.router
    experts = set(pipe.expert_list.names)
    samples = []
    pairs = degraded_pairs(files, router.vocabulary, seed=seed, severity="random", repeats=repeats)
    for pair in tqdm(pairs, total=len(files) * len(router.vocabulary) * repeats, desc="measuring"):
        missing = finds_missing_pixels(pair.lq)
        if bool(missing[0]):
            continue
        traces = router.traces(pair.lq.to(router.device), {MISSING_CLASS: missing})  # searched once
        if any(bool(traces[name][0]) for name, _ in router.detectors()):
            continue
        routed = router(pair.lq.to(router.device), found=traces)
        name = routed.names[0]
        cell = gain_bin(bool(routed.known[0]), measured_severities([name], pair.lq)[0])
        before = psnr(pair.lq, pair.gt).clamp(max=max_psnr)

        def gain(restored: torch.Tensor) -> float:
            return float(psnr(restored.clamp(0, 1).cpu(), pair.gt).clamp(max=max_psnr) - before)

        candidates = {"base": pipe(pair.lq, weights={}, fill_missing=False, output_type="pt").images}
        prior = PRIORS[name].restore(pair.lq) if name in PRIORS else None
        if prior is not None:
            candidates["prior"] = prior
        if name in experts:
            expert = pipe(pair.lq, weights={name: 1.0}, fill_missing=False, output_type="pt").images.cpu()
            candidates["expert"] = expert
            candidates["half"] = 0.5 * pair.lq + 0.5 * expert
            if prior is not None:
                candidates["prior-expert"] = 0.5 * prior + 0.5 * expert
        confidence = float(routed.confidence[0])
        samples += [(name, cell, candidate, gain(image), pair.name, confidence) for candidate, image in candidates.items()]
    return samples


def main(argv=None):
    args = parse_args(argv)
    from uir.pipelines.loading import load_pipeline

    pipe = load_pipeline(args.model)
    if pipe.router is None:
        raise UsageError(f"{args.model} has no router to fit a table for")
    pipe.set_progress_bar_config(disable=True)
    files = readable_photos(training_photos(args.train_data_dir))
    samples = measured_gains(pipe, files, args.seed, args.repeats, args.max_psnr)
    table = expected_gain_table(samples)
    pipe.router.register_to_config(expected_gains=table)
    out = Path(args.output_dir)
    save_pretrained_staged(pipe, out / "pipeline")
    record = {"model": args.model, "photos": len(files), "repeats": args.repeats, "seed": args.seed,
              "max_psnr": args.max_psnr, "clean_class": CLEAN in pipe.router.vocabulary, "table": table,
              "samples": [list(sample) for sample in samples]}
    save_json(record, out / "expected_gains.json")
    print(f"expected-gain table from {len(samples)} measurements on {len(files)} photos: {out / 'pipeline'}")


if __name__ == "__main__":
    sys.exit(run_script(main))
