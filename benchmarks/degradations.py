"""Time every registered degradation on one image and print a table.

    python benchmarks/degradations.py [--size 512] [--batch 1] [--repeats 3]

Times are the median of ``--repeats`` runs on this machine's CPU (or the GPU with
``--device cuda``); compare rows with each other, not across machines.
"""

import argparse
import statistics
import time

import torch

import uir.degradations as D


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    image = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(args.device)
    rows = []
    for name in D.names():
        times = []
        for repeat in range(args.repeats):
            generator = torch.Generator(device=args.device).manual_seed(repeat)
            start = time.perf_counter()
            D.apply(name, image, generator=generator, severity="moderate")
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        rows.append((name, D.get(name).family, statistics.median(times) * 1000))
    print(f"| degradation | family | ms per call ({args.batch}x3x{args.size}x{args.size}, {args.device}) |")
    print("| --- | --- | ---: |")
    for name, family, ms in rows:
        print(f"| {name} | {family} | {ms:.1f} |")


if __name__ == "__main__":
    main()
