"""Folder restoration throughput: one ``uir restore`` process against ``accelerate launch`` with
several processes, on the same folder, in one run.

    python benchmarks/processes.py [--images 16] [--size 512] [--processes 2]

The folder holds ``--images`` copies of the bundled photo resized to ``--size`` px. Each row is
the wall time of the whole command (start-up and model loading included, as a user pays them)
and the images per second over that time. One process uses every thread; with N processes each
gets ``threads / N`` (``OMP_NUM_THREADS``), so on a CPU the rows compare two ways of using the
same cores. On GPUs, launch one process per GPU instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str], env: dict, cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])} ... failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from uir import sample_image_path
    from uir.evaluation import markdown_table
    from uir.images import load_image, save_image

    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        photo = F.interpolate(load_image(sample_image_path())[None], size=(args.size, args.size),
                              mode="bicubic").clamp(0, 1)[0]
        for i in range(args.images):
            save_image(photo, folder / f"{i:04d}.png")
        restore = ["-m", "uir", "restore", str(folder), "--batch-size", "1"]
        single = timed([sys.executable, *restore, "-o", str(Path(tmp) / "one")],
                       {**os.environ, "OMP_NUM_THREADS": str(threads)}, Path(tmp))
        env = {**os.environ, "ACCELERATE_USE_CPU": "true" if not torch.cuda.is_available() else "false",
               "OMP_NUM_THREADS": str(max(1, threads // args.processes))}
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                  str(args.processes), "--main_process_port", "29561"]
        several = timed([*launch, *restore, "-o", str(Path(tmp) / "several")], env, Path(tmp))
    rows = [{"run": f"1 process, {threads} threads", "seconds": single, "images/s": args.images / single,
             "x 1 process": 1.0},
            {"run": f"{args.processes} processes, {max(1, threads // args.processes)} thread(s) each",
             "seconds": several, "images/s": args.images / several, "x 1 process": single / several}]
    print(f"{args.images} images of {args.size}x{args.size}, wall time of the whole command")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
