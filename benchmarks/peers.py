"""The embedded default against the classical tools a user would otherwise pick, per type.

    pip install opencv-python-headless bm3d          # optional benchmark dependencies
    python benchmarks/peers.py [--data ../shared/photos] [--model default] [--tune-photos 6] [--types hazy,...]

For each DA-CLIP type, on the held-out photos at default severity (the degradations of
``uir eval``, seed 0): the input, uir with its router, uir with the true expert, and each tool.
Every tool's setting is chosen per type on the first ``--tune-photos`` *training* photos
(best mean PSNR over a small grid), never on the held-out ones. BM3D runs on the noise-like
types only (noisy, jpeg-compressed): it takes seconds per photo. A tool that is not installed
is left out and said so. The last lines count the types where uir (router, and true expert)
is at least as good as the best tool.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from functools import partial

import numpy as np
import torch

from uir.classical import GUIDED_EPS, GUIDED_RADIUS
from uir.data import split_photos
from uir.degradations import DEFAULT_VOCABULARY, parse_names
from uir.evaluation import degraded_pairs, markdown_table
from uir.metrics import psnr

NOISE_LIKE = ("noisy", "jpeg-compressed")


# --- the tools: (H,W,3) float32 in [0, 1] -> the same ------------------------------------------
def _u8(x):
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def nl_means(x, h):
    import cv2

    return cv2.fastNlMeansDenoisingColored(_u8(x), None, h, h, 7, 21).astype(np.float32) / 255


def bm3d_denoise(x, sigma):
    import bm3d

    return np.clip(bm3d.bm3d_rgb(x, sigma / 255.0), 0, 1).astype(np.float32)


def dark_channel_dehaze(x, omega, patch=15, t0=0.1, refine_radius=None, refine_eps=GUIDED_EPS):
    """He et al. 2009: dark channel prior, airlight from the brightest 0.1% of the dark channel;
    with ``refine_radius``, the transmission refined by the guided filter (He et al., TPAMI 2013)
    with the grey image as its guide."""
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    dark = cv2.erode(x.min(axis=2), kernel)
    brightest = dark.ravel().argsort()[-max(1, dark.size // 1000):]
    airlight = x.reshape(-1, 3)[brightest].max(axis=0).clip(1e-3)
    transmission = 1 - omega * cv2.erode((x / airlight).min(axis=2), kernel)
    if refine_radius is not None:
        side = (2 * refine_radius + 1,) * 2

        def box(image):
            return cv2.boxFilter(image, -1, side, borderType=cv2.BORDER_REPLICATE)

        guide = x.mean(axis=2)
        mean_guide, mean_t = box(guide), box(transmission)
        a = (box(guide * transmission) - mean_guide * mean_t) / (box(guide * guide) - mean_guide**2 + refine_eps)
        transmission = box(a) * guide + box(mean_t - a * mean_guide)
    return np.clip((x - airlight) / np.maximum(transmission, t0)[..., None] + airlight, 0, 1).astype(np.float32)


def bilateral(x, sigma_color):
    import cv2

    return cv2.bilateralFilter(x, 9, sigma_color / 255.0, 5)


def median(x, size):
    import cv2

    return cv2.medianBlur(_u8(x), size).astype(np.float32) / 255


def auto_gamma(x, target):
    """Brighten so that the mean luminance becomes ``target``."""
    mean = float(x.mean())
    return np.clip(x, 1e-6, 1) ** (math.log(target) / math.log(min(max(mean, 1e-3), 0.999)))


def clahe(x, clip_limit):
    import cv2

    lab = cv2.cvtColor(_u8(x), cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(8, 8)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB).astype(np.float32) / 255


def telea_inpaint(x, radius):
    """OpenCV's Telea inpainting of the black pixels (where every channel is 0)."""
    import cv2

    mask = (x.max(axis=2) == 0).astype(np.uint8)
    return cv2.inpaint(_u8(x), mask, radius, cv2.INPAINT_TELEA).astype(np.float32) / 255


def unsharp_mask(x, amount, sigma=2.0):
    import cv2

    blurred = cv2.GaussianBlur(x, (0, 0), sigma)
    return np.clip(x + amount * (x - blurred), 0, 1).astype(np.float32)


#: tool -> (function, settings grid, package it needs, types it runs on (None: all))
TOOLS = {
    "NL-means": (nl_means, (5, 10, 15, 25), "cv2", None),
    "BM3D": (bm3d_denoise, (15, 30, 50), "bm3d", NOISE_LIKE),
    "dark-channel": (dark_channel_dehaze, (0.7, 0.85, 0.95), "cv2", None),
    "dark-channel+GF": (partial(dark_channel_dehaze, refine_radius=GUIDED_RADIUS), (0.7, 0.85, 0.95), "cv2", None),
    "bilateral": (bilateral, (25, 50, 100), "cv2", None),
    "median": (median, (3, 5), "cv2", None),
    "auto-gamma": (auto_gamma, (0.35, 0.45), None, None),
    "CLAHE": (clahe, (1.5, 3.0), "cv2", None),
    "Telea": (telea_inpaint, (3, 7), "cv2", None),
    "unsharp": (unsharp_mask, (0.5, 1.0, 2.0), "cv2", None),
}


def available_tools() -> dict:
    import importlib.util

    tools = {}
    for name, (fn, grid, package, types) in TOOLS.items():
        if package is None or importlib.util.find_spec(package) is not None:
            tools[name] = (fn, grid, types)
        else:
            print(f"peers: {name} left out ({package} is not installed)", file=sys.stderr)
    return tools


def _apply(fn, setting, lq: torch.Tensor) -> torch.Tensor:
    image = lq[0].permute(1, 2, 0).numpy().astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(fn(image, setting))).permute(2, 0, 1)[None].float()


def _pairs(files, names, seed, kept):
    """The degraded pairs of each of the ``kept`` types, drawn once (so every method sees the
    same inputs) with every one of ``names`` (a type's draws depend on its place there)."""
    grouped = {name: [] for name in names if name in kept}
    for pair in degraded_pairs(files, names, seed):
        if pair.name in grouped:
            grouped[pair.name].append(pair)
    return grouped


def tune(tools, pairs) -> dict:
    """(tool, type) -> the setting with the best mean PSNR on the training pairs."""
    chosen = {}
    for tool, (fn, grid, types) in tools.items():
        for name, group in pairs.items():
            if types is None or name in types:
                scores = {s: np.mean([psnr(_apply(fn, s, p.lq), p.gt).item() for p in group]) for s in grid}
                chosen[tool, name] = max(scores, key=scores.get)
    return chosen


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="clean photos (default: $UIR_PHOTOS or ../shared/photos)")
    parser.add_argument("--model", default="default", help="a uir pipeline (default: the embedded one)")
    parser.add_argument("--tune-photos", type=int, default=6, help="training photos the tools are tuned on")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N held-out photos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--types", type=parse_names, default=list(DEFAULT_VOCABULARY),
                        help="comma-separated types to tune and score (default: all ten); each keeps the "
                             "degradations it draws in the full run, so its row matches the full table")
    args = parser.parse_args(argv)
    if not set(args.types) <= set(DEFAULT_VOCABULARY):
        parser.error(f"--types: only the ten DA-CLIP types, not {sorted(set(args.types) - set(DEFAULT_VOCABULARY))}")

    from uir.data.photos import photo_root
    from uir.pipelines.loading import load_pipeline

    train, held_out = split_photos(photo_root(args.data))
    names = list(DEFAULT_VOCABULARY)
    tools = available_tools()
    start = time.perf_counter()
    chosen = tune(tools, _pairs(train[: args.tune_photos], names, args.seed + 1, args.types))
    print(f"peers: tuned {len(chosen)} tool settings on {args.tune_photos} training photos in "
          f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    pipe = load_pipeline(args.model)
    rows = []
    for name, group in _pairs(held_out[: args.limit], names, args.seed, args.types).items():
        def mean_psnr(restore):
            return float(np.mean([psnr(restore(p).clamp(0, 1), p.gt).item() for p in group]))

        row = {"type": name, "input": mean_psnr(lambda p: p.lq),
               "uir router": mean_psnr(lambda p: pipe(p.lq, output_type="pt").images),
               "uir true expert": mean_psnr(lambda p: pipe(p.lq, weights={name: 1.0}, output_type="pt").images)}
        for tool, (fn, _, _) in tools.items():
            if (tool, name) in chosen:
                row[tool] = mean_psnr(lambda p: _apply(fn, chosen[tool, name], p.lq))
        best = max((t for t in tools if t in row and math.isfinite(row[t])), key=lambda t: row[t])
        row.update({"best tool": f"{best} ({chosen[best, name]})", "best tool psnr": row[best]})
        rows.append(row)
        print(f"peers: {name} done", file=sys.stderr)
    columns = ["type", "input", "uir router", "uir true expert", "best tool", "best tool psnr", *tools]
    print(markdown_table([{c: row.get(c, float("nan")) for c in columns} for row in rows]))
    for method in ("uir router", "uir true expert"):
        wins = sum(row[method] >= row["best tool psnr"] for row in rows)
        print(f"\n{method} at least as good as the best tool on {wins} of {len(rows)} types")


if __name__ == "__main__":
    main()
