"""Speed of the classical priors (:data:`uir.classical.PRIORS`), measured in one run.

    python benchmarks/priors.py [--size 512] [--repeats 5]

Each row is the median time of ``--repeats`` warm calls on one noisy ``--size`` x ``--size``
photo-like image, in this process's threads: every class's prior as the pipeline runs it (DCT
shrinkage with a patch at every pixel in its second stage, every second pixel in its first),
then DCT shrinkage with a patch at every pixel in both stages, and every second pixel in both
(the noisy prior until 2026-12-05), and the prior with other bands of patch rows. The last
column is the time relative to the noisy prior as shipped.
"""

from __future__ import annotations

import argparse
from functools import partial


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import torch

    from uir.benchmarking import timed
    from uir.classical import PRIORS, dct_denoise
    from uir.evaluation import markdown_table

    generator = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0.2, 0.8, args.size)
    scene = (ramp[None, :, None] + ramp[None, None, :]).expand(3, -1, -1)[None] / 2
    image = (scene + 0.1 * torch.randn(scene.shape, generator=generator)).clamp(0, 1)
    calls = {f"{name}: {prior.name}": prior.restore for name, prior in PRIORS.items()}
    calls["noisy: DCT shrinkage, a patch at every pixel in both stages"] = dct_denoise
    calls["noisy: DCT shrinkage, a patch every 2nd pixel in both stages"] = partial(dct_denoise, stride=2)
    calls.update({f"noisy: DCT shrinkage, bands of {band} patch rows": partial(PRIORS["noisy"].restore, band=band)
                  for band in (4, 32)})
    rows = [{"prior": label, "seconds": timed(lambda: restore(image), "cpu", args.repeats)[0]}
            for label, restore in calls.items()]
    shipped = next(row["seconds"] for row in rows if row["prior"] == f"noisy: {PRIORS['noisy'].name}")
    for row in rows:
        row["x noisy prior"] = row["seconds"] / shipped
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size}x{args.size}")
    print(markdown_table(rows, digits=3))


if __name__ == "__main__":
    main()
