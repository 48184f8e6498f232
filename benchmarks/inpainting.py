"""Missing pixels on the held-out photos: each way uir could fill them, against OpenCV's Telea.

    pip install opencv-python-headless                # for Telea (left out, and said so, without it)
    python benchmarks/inpainting.py [--data ../shared/photos] [--limit N] [--scattered SHARE]

The pairs of ``uir eval --held-out --degradations uncompleted`` (held-out photos, default
severity, seed 0; a run over every type draws other masks, since the draws depend on the list
of types); with ``--scattered``, instead, each held-out photo with that share of its pixels set
to black at random (single pixels, not strokes; seeded by the photo's place). Rows:
the input; the mask found by :func:`uir.degradations.masks.missing_mask` against the true one;
non-learned fills of the found pixels (the harmonic fill the default uses, and DL-Net's
normalised convolution); Telea at radius 3 and 7 on the black pixels; the default as it runs
(``fill_missing`` on) and as it ran before (off: the router and the inpainting expert); and the
fill followed by the pipeline, whole or on the missing pixels alone. Columns: mean PSNR, the
gain over the input, the share of images made worse, and seconds per photo.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> None:
    from uir.boundary import checked_number, pixel_share

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="clean photos (default: $UIR_PHOTOS or ../shared/photos)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N held-out photos")
    parser.add_argument("--scattered", type=checked_number(pixel_share("--scattered")), default=None,
                        help="instead of brush strokes, set this share of each photo's pixels to black at random")
    args = parser.parse_args(argv)

    from uir.data import split_photos
    from uir.data.photos import photo_root
    from uir.degradations.masks import harmonic_fill, missing_mask
    from uir.degradations.operators import MaskOperator, fill_missing
    from uir.evaluation import DegradedPair, degraded_pairs, markdown_table
    from uir.images import load_image
    from uir.metrics import psnr
    from uir.pipelines.loading import load_pipeline

    torch.set_grad_enabled(False)
    pipe = load_pipeline(runtime=True)
    photos = split_photos(photo_root(args.data))[1][: args.limit]
    if args.scattered is None:
        pairs = list(degraded_pairs(photos, ["uncompleted"], 0))
    else:  # pixels missing at random, drawn as DL-Net's interpolation operator draws them
        pairs = []
        for place, path in enumerate(photos):
            gt = load_image(path)[None]
            drop = MaskOperator.bernoulli((1, *gt.shape[-2:]), args.scattered, torch.Generator().manual_seed(place))
            pairs.append(DegradedPair(f"{100 * args.scattered:g}% scattered", 0, str(path), drop.forward(gt), gt))

    def fill_then(restore):
        def run(lq):
            mask = missing_mask(lq)
            return restore(harmonic_fill(lq, mask), mask, lq)
        return run

    methods = {
        "input": lambda lq: lq,
        "harmonic fill (uir default)": lambda lq: harmonic_fill(lq, missing_mask(lq)),
        "normalised convolution (DL-Net's fill)": lambda lq: fill_missing(lq, 1 - missing_mask(lq)),
        "default, fill_missing on": lambda lq: pipe(lq, output_type="pt").images,
        "default, fill_missing off (router + experts)": lambda lq: pipe(lq, output_type="pt", fill_missing=False).images,
        "fill, then the routed pipeline": fill_then(lambda f, m, lq: pipe(f, output_type="pt", fill_missing=False).images),
        "fill, then the routed pipeline on the missing pixels": fill_then(
            lambda f, m, lq: torch.where(m.bool(), pipe(f, output_type="pt", fill_missing=False).images, lq)),
        "fill, then the inpainting expert on the missing pixels": fill_then(lambda f, m, lq: torch.where(
            m.bool(), pipe(f, weights={"uncompleted": 1.0}, output_type="pt", fill_missing=False).images, lq)),
    }
    if importlib.util.find_spec("cv2") is not None:
        from peers import _apply, telea_inpaint

        for radius in (3, 7):
            methods[f"Telea, radius {radius}"] = lambda lq, r=radius: _apply(telea_inpaint, r, lq)
    else:
        print("inpainting: Telea left out (opencv-python-headless is not installed)", file=sys.stderr)

    found = [missing_mask(p.lq).bool() for p in pairs]
    truth = [(p.lq == 0).all(1, keepdim=True) & (p.gt != 0).any(1, keepdim=True) for p in pairs]
    recall = sum(int((f & t).sum()) for f, t in zip(found, truth)) / max(1, sum(int(t.sum()) for t in truth))
    extra = sum(int((f & ~(p.lq == 0).all(1, keepdim=True)).sum()) for f, p in zip(found, pairs))
    print(f"inpainting: {len(pairs)} photos; the found mask holds {100 * recall:.1f}% of the removed pixels "
          f"that differed from black, and {extra} pixels that were not black", file=sys.stderr)
    inputs = [psnr(p.lq, p.gt).item() for p in pairs]
    rows = []
    for name, method in methods.items():
        start = time.perf_counter()
        scores = [psnr(method(p.lq).clamp(0, 1), p.gt).item() for p in pairs]
        seconds = (time.perf_counter() - start) / len(pairs)
        rows.append({"method": name, "PSNR": float(np.mean(scores)), "gain": float(np.mean(scores) - np.mean(inputs)),
                     "worse": f"{100 * np.mean([s < i for s, i in zip(scores, inputs)]):.0f}%", "s / photo": seconds})
        print(f"inpainting: {name} done", file=sys.stderr)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
