#!/usr/bin/env python
"""Mean +- standard deviation over seeds of the recipes' held-out scores.

    python train/summarize_seeds.py runs/dte/fair [--arms noisy-scratch3000 noisy-sample-plain]

Reads ``ROOT/<arm>-seed<k>/eval.json`` (the rows ``train_dte.py evaluate`` or ``uir eval``
writes; the latter have no level) and prints,
per arm, level and degradation, the number of seeds and the held-out PSNR's mean +- standard
deviation (0 for one seed). Where a run scores several degradations at a level and has no
``mean`` row of its own (``train_dte.py evaluate``), each seed's mean over them is added as
one. Arms are listed in the order given, or by name.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

from uir.boundary import run_script

RUN = re.compile(r"(?P<arm>.+)-seed(?P<seed>\d+)$")


def collect(root: Path) -> dict[str, dict[tuple[str, str], list[float]]]:
    """``{arm: {(level, degradation): [PSNR of each finished seed]}}``."""
    scores: dict[str, dict[tuple[str, str], list[float]]] = {}
    for file in sorted(root.glob("*-seed*/eval.json")):
        match = RUN.match(file.parent.name)
        if match is None:
            continue
        rows = scores.setdefault(match["arm"], {})
        levels: dict[str, dict[str, float]] = {}
        for row in json.loads(file.read_text()):
            levels.setdefault(row.get("level", "-"), {})[row["degradation"]] = row["psnr_out"]
        for level, psnr in levels.items():
            if len(psnr) > 1 and "mean" not in psnr:
                psnr["mean"] = statistics.mean(psnr.values())
            for name, value in psnr.items():
                rows.setdefault((level, name), []).append(value)
    return scores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="a folder of ARM-seedK runs")
    parser.add_argument("--arms", nargs="*", default=None, help="only these arms, in this order")
    args = parser.parse_args(argv)
    scores = collect(args.root)
    for arm in args.arms or sorted(scores):
        for (level, name), values in scores.get(arm, {}).items():
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            print(f"{arm:28s} {level:9s} {name:16s} n={len(values)}  {statistics.mean(values):6.2f} +- {spread:.2f}")


if __name__ == "__main__":
    sys.exit(run_script(main))
