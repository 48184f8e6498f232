"""The periodic grid a restorer draws in flat areas (issue 28, item 6), per expert.

    python benchmarks/artefacts.py [--model default] [--size 256]

A flat grey image and a smooth colour ramp are hazed (seed 1) and restored by the base and by
each expert at weight 1. In each output's luminance, minus its 9x9 box blur (the smooth
content), the table gives the high-pass standard deviation and the share of its energy at
periods of 2 and 4 pixels, along rows, columns and diagonals: the grid a stride-2
downsampling and pixel-shuffle upsampling leave. A clean photo's flat region has a share near
0 (the input row). Borders have their own test (``tests/test_tiling.py``).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from uir import degradations
from uir.evaluation import markdown_table


def high_pass(image: torch.Tensor) -> torch.Tensor:
    """The luminance of (3,H,W) minus its 9x9 box blur (edges reflected), in float64."""
    y = image.mean(0).double()[None, None]
    blurred = F.avg_pool2d(F.pad(y, (4, 4, 4, 4), mode="reflect"), 9, stride=1)
    return (y - blurred)[0, 0]


def grid_share(image: torch.Tensor) -> tuple[float, float]:
    """``(share of the high-pass energy at periods 2 and 4 px, high-pass standard deviation)``."""
    detail = high_pass(image)
    power = torch.fft.fft2(detail).abs() ** 2
    h, w = power.shape
    frequencies = {(fy, fx) for fy in (0, h // 4, h // 2, 3 * h // 4) for fx in (0, w // 4, w // 2, 3 * w // 4)}
    frequencies.discard((0, 0))
    periodic = sum(power[fy, fx] for fy, fx in frequencies)
    return float(periodic / power.sum().clamp(min=1e-30)), float(detail.std())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--size", type=int, default=256, help="image side, a multiple of 4")
    args = parser.parse_args(argv)
    from uir.pipelines.loading import load_pipeline

    pipe = load_pipeline(args.model, runtime=True)
    pipe.set_progress_bar_config(disable=True)
    n = args.size
    ramp_y, ramp_x = torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, n), indexing="ij")
    scenes = {"flat": torch.full((1, 3, n, n), 0.55),
              "smooth": torch.stack([0.3 + 0.4 * ramp_x, 0.4 + 0.3 * ramp_y, 0.5 + 0.1 * (ramp_x + ramp_y)])[None]}
    rows = []
    for scene, clean in scenes.items():
        hazy = degradations.apply("hazy", clean, generator=torch.Generator().manual_seed(1))
        runs = {"input (hazy)": hazy, "base": pipe(hazy, weights={}, output_type="pt").images}
        for name in pipe.expert_list.names:
            runs[f"{name} expert"] = pipe(hazy, weights={name: 1.0}, output_type="pt").images
        for label, image in runs.items():
            share, std = grid_share(image[0])
            rows.append({"scene": scene, "output": label, "grid share": share, "high-pass std (x255)": 255 * std})
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
