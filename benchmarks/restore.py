"""Warm restoration speed of the embedded default against this machine's matmul peak.

    python benchmarks/restore.py [--sizes 256 512 1024 2048] [--repeats 3] [--expert noisy|router]

For each square size, in a fresh process (so its peak memory is its own): the median time of a
warm ``pipe(x, weights={expert: 1})`` call of the pipeline ``uir restore`` runs (``uir.load_pipeline(runtime=True)``) (the default ``tile_size="auto"``), the FLOPs of that
call counted with ``torch.utils.flop_counter`` (convolutions and matmuls; element-wise work is
not counted), the achieved GFLOP/s as a share of the fp32 matmul peak measured in the same run
(2048x2048 ``torch.mm``), and the process's peak resident memory. The last column is the time
relative to the 512 px row. ``--expert router`` times the routed call instead, as ``uir restore``
makes it: the router's traces, its drop detector and eq. 3, then whatever it chose (on the
random test image, the noise expert).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, resource, statistics, sys, time
import torch
from torch.utils.flop_counter import FlopCounterMode
import uir
size, repeats, expert = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
pipe = uir.load_pipeline(runtime=True)  # as `uir restore` runs it
x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
call = lambda: pipe(x, output_type="pt", **({} if expert == "router" else {"weights": {expert: 1.0}}))
call()
times = []
for _ in range(repeats):
    start = time.perf_counter(); call(); times.append(time.perf_counter() - start)
with FlopCounterMode(display=False) as counter:
    call()
print(json.dumps({"seconds": statistics.median(times), "flops": counter.get_total_flops(),
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def matmul_peak(repeats: int = 5) -> float:
    """fp32 GFLOP/s of a 2048x2048 ``torch.mm`` on this machine's threads (best of ``repeats``)."""
    import torch

    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * 2048**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--expert", default="noisy")
    args = parser.parse_args(argv)

    import torch

    from uir.evaluation import markdown_table

    peak = matmul_peak()
    rows = []
    for size in args.sizes:
        done = subprocess.run([sys.executable, "-c", CHILD, str(size), str(args.repeats), args.expert],
                              check=True, capture_output=True, text=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        achieved = result["flops"] / result["seconds"] / 1e9
        rows.append({"size": f"{size}x{size}", "seconds": result["seconds"], "GFLOP": result["flops"] / 1e9,
                     "GFLOP/s": achieved, "share of matmul peak": achieved / peak,
                     "peak MiB": result["peak_mib"]})
    reference = next((r["seconds"] for r in rows if r["size"] == "512x512"), statistics.median(r["seconds"] for r in rows))
    for row in rows:
        row["x 512 time"] = row["seconds"] / reference
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 matmul peak {peak:.0f} GFLOP/s")
    print(markdown_table(rows, digits=3))


if __name__ == "__main__":
    main()
