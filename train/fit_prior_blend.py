#!/usr/bin/env python
"""Fit the share of an expert's output that the pipeline gives to its type's classical prior, or
back to its input.

The pipeline returns ``y = (1 - b) f_k(x) + b P(x)`` for an image whose leading expert ``f_k``
has a share ``b`` (``prior_blend`` in its ``uir_expert.json``; :data:`uir.classical.PRIORS`
gives ``P``), then ``(1 - a) y + a x`` with its share ``a`` for the input (``input_blend``;
:meth:`uir.lora.LoRAExpert.blend`). ``--toward prior`` fits ``b``, ``--toward input`` fits ``a``,
the other share kept as the expert has it. Every training photo is degraded by ``--degradation``
at its default severity, once per seed; the expert restores it at weight 1 (its veil bound, if it
has one, applied), and each share of ``--shares`` is scored by the mean PSNR of what the pipeline
would return against the clean photo. The best share is written into the expert if it beats no
share (0) by at least ``--min_gain`` dB, and the pipeline with it is saved to
``OUTPUT_DIR/pipeline``; the scores to ``OUTPUT_DIR/prior_blend.json`` (``input_blend.json``).

    python train/fit_prior_blend.py --model default --degradation hazy --output_dir runs/blend
    python train/fit_prior_blend.py --model default --degradation motion-blurry --toward input --output_dir runs/still
    uir eval --model runs/blend/pipeline --data ../shared/photos --held-out -o out
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from uir.boundary import OneLineParser, UsageError, run_script
from uir.classical import PRIORS
from uir.data.photos import readable_photos, training_photos
from uir.evaluation import degraded_pairs
from uir.files import save_json, save_pretrained_staged
from uir.lora import INPUT_BLEND_KEY, PRIOR_BLEND_KEY, blend_output
from uir.metrics import psnr


def parse_args(argv=None):
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="a saved expert pipeline (default: the embedded one)")
    parser.add_argument("--degradation", required=True,
                        help="the expert's type; with --toward prior it needs a classical prior")
    parser.add_argument("--toward", choices=("prior", "input"), default="prior",
                        help="where the share goes: the type's classical prior (prior_blend, default) or the input "
                             "itself (input_blend)")
    parser.add_argument("--train_data_dir", default=None,
                        help="clean training photos (default: the training split of shared/photos)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated degradation seeds")
    parser.add_argument("--min_gain", type=float, default=0.1,
                        help="dB a share must gain over none to be written (default 0.1)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda where there is one)")
    parser.add_argument("--shares", default="0,0.25,0.5,0.75,1",
                        help="comma-separated shares in [0, 1] to score; 0 (none) is always scored")
    args = parser.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")]
        args.shares = sorted({0.0, *(float(s) for s in args.shares.split(","))})
    except ValueError:
        parser.error(f"--seeds and --shares take comma-separated numbers, got {args.seeds!r} and {args.shares!r}")
    if not all(0 <= share <= 1 for share in args.shares):
        parser.error(f"--shares must lie in [0, 1], got {args.shares}")
    return args


def blend_scores(pipe, expert, key: str, files, seeds, shares) -> dict[float, float]:
    """``{share: mean PSNR of what the pipeline returns with the expert's ``key`` at share}`` over
    the photos and seeds, the expert's other share kept (:func:`uir.lora.blend_output`)."""
    kept = {k: expert.extra.pop(k) for k in (PRIOR_BLEND_KEY, INPUT_BLEND_KEY) if k in expert.extra}
    name = expert.degradation
    totals, count = dict.fromkeys(shares, 0.0), 0
    try:
        for seed in seeds:
            for pair in tqdm(degraded_pairs(files, [name], seed=seed), total=len(files), desc=f"seed {seed}"):
                restored = pipe(pair.lq, weights={name: 1.0}, fill_missing=False, output_type="pt").images.cpu()
                prior = PRIORS[name].restore(pair.lq) if PRIOR_BLEND_KEY in (key, *kept) else None
                for share in shares:
                    given = {**kept, key: share}
                    out = blend_output(restored, prior, pair.lq, given.get(PRIOR_BLEND_KEY, 0.0),
                                       given.get(INPUT_BLEND_KEY, 0.0))
                    totals[share] += float(psnr(out, pair.gt))
                count += 1
    finally:
        expert.extra.update(kept)
    return {share: total / count for share, total in totals.items()}


def main(argv=None):
    args = parse_args(argv)
    from uir.pipelines.loading import load_pipeline

    name = args.degradation
    key = PRIOR_BLEND_KEY if args.toward == "prior" else INPUT_BLEND_KEY
    if args.toward == "prior" and name not in PRIORS:
        raise UsageError(f"{name!r} has no classical prior (uir has: {', '.join(sorted(PRIORS))})")
    pipe = load_pipeline(args.model, device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if name not in pipe.expert_list.names:
        raise UsageError(f"{args.model} has no {name!r} expert (it has: {', '.join(pipe.expert_list.names)})")
    pipe.set_progress_bar_config(disable=True)
    expert = pipe.expert_list.experts[pipe.expert_list.names.index(name)]
    files = readable_photos(training_photos(args.train_data_dir))
    with torch.no_grad():
        scores = blend_scores(pipe, expert, key, files, args.seeds, args.shares)
    best = max(scores, key=scores.get)
    if scores[best] - scores[0.0] < args.min_gain:
        best = 0.0
    expert.extra.pop(key, None)
    if best > 0:
        expert.extra[key] = best
    out = Path(args.output_dir)
    save_pretrained_staged(pipe, out / "pipeline")
    save_json({"model": args.model, "degradation": name, "toward": args.toward, "photos": len(files),
               "seeds": args.seeds, "mean_psnr": {str(share): score for share, score in scores.items()},
               "min_gain": args.min_gain, "share": best},
              out / f"{key}.json")
    print(" ".join(f"{'b' if args.toward == 'prior' else 'a'}={share:g}: {score:.2f} dB" for share, score in scores.items()))
    target = PRIORS[name].name if args.toward == "prior" else "its input"
    print(f"{name}: share {best:g} of the output to {target}: {out / 'pipeline'}")


if __name__ == "__main__":
    run_script(main)
