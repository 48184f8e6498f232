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

With ``--split_cells``, a pipeline that splits calls (its ``split_calls``: noise, then low light)
also gets split cells (:data:`uir.lora.strategies.SPLIT_BIN`): each training photo is degraded by each pair's mixture
(``low-light+noisy``), and where the pipeline splits its call, each candidate of the first class is
measured as the first step of the whole chain, the pipeline run as a user runs it with that
candidate forced in the split cell (the clipped mean mapped back, the second step read from the
table fitted above), against the input. ``identity`` is not measured there: the second step
follows whatever the first did.

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
from uir.degradations import CLEAN, MIX, SEVERITIES
from uir.degradations.masks import MISSING_CLASS, finds_missing_pixels
from uir.evaluation import degraded_pairs
from uir.files import save_json, save_pretrained_staged
from uir.lora.strategies import expected_gain_table, gain_bin, split_by_severity
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
    parser.add_argument("--split_cells", action="store_true",
                        help="also fit the first step of split calls on whole chains (module docstring; measured, "
                             "not shipped: docs/default-model.md)")
    return parser.parse_args(argv)


def candidates_of(name: str, experts) -> list[str]:
    """The candidates measured for an image called ``name`` (module docstring): ``base``, the
    class's ``prior`` where it has one, its ``expert`` and ``half`` where it has an expert, and
    ``prior-expert`` where it has both."""
    prior, expert = name in PRIORS, name in experts
    return ["base", *(["prior"] if prior else []), *(["expert", "half"] if expert else []),
            *(["prior-expert"] if prior and expert else [])]


def split_chains(pipe) -> dict[str, str]:
    """``{mixture: first class}`` of the pipeline's split calls whose classes its router knows:
    ``low-light+noisy`` for the pair (noisy, low-light), the class undone first last in the mixture."""
    vocabulary = pipe.router.vocabulary
    return {f"{second}{MIX}{first}": first for first, second in pipe.split_calls
            if first in vocabulary and second in vocabulary}


@torch.no_grad()
def measured_gains(pipe, files, seed: int, repeats: int, max_psnr: float, split_cells: bool = False
                   ) -> tuple[list, list]:
    """``(samples, chains)``: the ``(top class, bin, candidate, PSNR change, true class,
    confidence)`` of every candidate on every photo degraded by a class, the bin by
    :func:`~uir.lora.strategies.gain_bin`; and, with ``split_cells``, the photos degraded by a
    split call's mixture (:func:`split_chains`), for :func:`measured_split_gains`."""
    router = pipe.router
    experts = set(pipe.expert_list.names)
    mixtures = split_chains(pipe) if split_cells else {}
    samples, chains = [], []
    names = [*router.vocabulary, *mixtures]
    pairs = degraded_pairs(files, names, seed=seed, severity="random", repeats=repeats)
    for pair in tqdm(pairs, total=len(files) * len(names) * repeats, desc="measuring"):
        missing = finds_missing_pixels(pair.lq)
        if bool(missing[0]):
            continue
        traces = router.traces(pair.lq.to(router.device), {MISSING_CLASS: missing})  # searched once
        if any(bool(traces[name][0]) for name, _ in router.detectors()):
            continue
        if pair.name in mixtures:
            chains.append(pair)
            continue
        routed = router(pair.lq.to(router.device), found=traces)
        name = routed.names[0]
        cell = gain_bin(bool(routed.known[0]), measured_severities([name], pair.lq)[0])
        before = psnr(pair.lq, pair.gt).clamp(max=max_psnr)
        outputs = {"base": pipe(pair.lq, weights={}, fill_missing=False, output_type="pt").images}
        candidates = candidates_of(name, experts)
        if "prior" in candidates:
            outputs["prior"] = PRIORS[name].restore(pair.lq)
        if "expert" in candidates:
            outputs["expert"] = pipe(pair.lq, weights={name: 1.0}, fill_missing=False, output_type="pt").images.cpu()
            outputs["half"] = 0.5 * pair.lq + 0.5 * outputs["expert"]
        if "prior-expert" in candidates:
            outputs["prior-expert"] = 0.5 * outputs["prior"] + 0.5 * outputs["expert"]
        confidence = float(routed.confidence[0])
        samples += [(name, cell, candidate, psnr_change(outputs[candidate], pair, before, max_psnr), pair.name,
                     confidence) for candidate in candidates]
    return samples, chains


def psnr_change(restored: torch.Tensor, pair, before: torch.Tensor, max_psnr: float) -> float:
    """PSNR of ``restored`` against ``pair``'s clean photo, capped at ``max_psnr``, less ``before``
    (the input's, capped the same)."""
    return float(psnr(restored.clamp(0, 1).cpu(), pair.gt).clamp(max=max_psnr) - before)


def forced_split_cell(table: dict, name: str, candidate: str) -> dict:
    """``table`` with every split bin of class ``name`` (each severity) holding ``candidate``
    alone, sure to be chosen there (:func:`~uir.lora.strategies.gain_choice`)."""
    bins = {gain_bin(True, severity, split=True): {candidate: [1.0, 0.0, 2]} for severity in (None, *SEVERITIES)}
    return {**table, name: {**table.get(name, {}), **bins}}


@torch.no_grad()
def measured_split_gains(pipe, chains, table: dict, max_psnr: float) -> list[tuple[str, str, str, float, str, float]]:
    """The samples of the split cells (module docstring), as :func:`measured_gains`'s, of every
    photo in ``chains`` whose call the pipeline splits: each candidate of the first class forced
    in turn, the whole chain run by the pipeline with ``table`` (the one fitted on single types)
    as the call's table; the router is not changed. A photo the pipeline does not split (no
    second step) gives none."""
    experts, mixtures, samples = set(pipe.expert_list.names), split_chains(pipe), []
    for pair in tqdm(chains, desc="split chains"):
        name, before, measured = mixtures[pair.name], psnr(pair.lq, pair.gt).clamp(max=max_psnr), []
        cell = gain_bin(True, measured_severities([name], pair.lq)[0] if split_by_severity(table, name) else None,
                        split=True)
        for candidate in candidates_of(name, experts):
            out = pipe(pair.lq, output_type="pt", expected_gains=forced_split_cell(table, name, candidate))
            if out.then is None or out.then[0] is None or out.degradations[0] != name:
                break  # not split: the chain's cells do not hold it
            measured.append((name, cell, candidate, psnr_change(out.images, pair, before, max_psnr), pair.name,
                             float(out.confidence[0])))
        else:
            samples += measured
    return samples


def main(argv=None):
    args = parse_args(argv)
    from uir.pipelines.loading import load_pipeline

    pipe = load_pipeline(args.model)
    if pipe.router is None:
        raise UsageError(f"{args.model} has no router to fit a table for")
    pipe.set_progress_bar_config(disable=True)
    files = readable_photos(training_photos(args.train_data_dir))
    samples, chains = measured_gains(pipe, files, args.seed, args.repeats, args.max_psnr, args.split_cells)
    if chains:  # the second steps read the table of the single types
        samples += measured_split_gains(pipe, chains, expected_gain_table(samples), args.max_psnr)
    table = expected_gain_table(samples)
    pipe.router.register_to_config(expected_gains=table)
    out = Path(args.output_dir)
    save_pretrained_staged(pipe, out / "pipeline")
    record = {"model": args.model, "photos": len(files), "repeats": args.repeats, "seed": args.seed,
              "max_psnr": args.max_psnr, "split_cells": args.split_cells,
              "clean_class": CLEAN in pipe.router.vocabulary, "table": table,
              "samples": [list(sample) for sample in samples]}
    save_json(record, out / "expected_gains.json")
    print(f"expected-gain table from {len(samples)} measurements on {len(files)} photos: {out / 'pipeline'}")


if __name__ == "__main__":
    sys.exit(run_script(main))
