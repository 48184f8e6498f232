#!/usr/bin/env python
"""GRIDS grouping search (Alg. 1) verified by real grouped training, at small scale.

    python train/grids_group.py --similarity runs/grids/similarity.json --delta 0.7 \\
        --output_dir runs/grids-group [--max_train_steps 300 --resolution 64]

Every model is a NAFNet trained by ``accelerate launch train/train_restorer.py`` (one
subprocess per model, so ``--num_processes`` scales each training out) and scored by PSNR on
the held-out photos. ``dP(C)`` (eq. 4) compares the group's model with the single-task model of
each member. Scores are cached in ``OUTPUT_DIR/scores.json``, so an interrupted search resumes
without retraining. Writes ``result.json`` (every feasible partition, the verified drops) and a
table of single-task vs grouped vs mix-trained PSNR per degradation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from uir.boundary import run_script
from uir.data import photo_root, split_photos
from uir.degradations import parse_names
from uir.evaluation import evaluate_restoration, markdown_table
from uir.grids import group_search, symmetric_distance
from uir.files import save_json
from uir.pipelines import RestorerPipeline


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--similarity", required=True, help="similarity.json from grids_similarity.py")
    parser.add_argument("--degradations", type=parse_names, default=None, help="a subset of the similarity matrix's names")
    parser.add_argument("--delta", type=float, default=0.7, help="allowed PSNR drop in dB (eq. 5)")
    parser.add_argument("--data", default=None, help="clean photos (default: $UIR_PHOTOS or ../shared/photos)")
    parser.add_argument("--num_processes", type=int, default=1)
    parser.add_argument("--max_train_steps", type=int, default=300)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--train_batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--severity", default="random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", required=True)
    return parser.parse_args(argv)


class GroupTrainer:
    """Trains and scores one model per group of degradations; caches ``{group: {name: psnr}}``."""

    def __init__(self, args, photos: Path):
        self.args, self.photos = args, photos
        self.held_out = split_photos(photos)[1]
        self.output = Path(args.output_dir)
        self.cache_path = self.output / "scores.json"
        self.scores = json.loads(self.cache_path.read_text()) if self.cache_path.is_file() else {}

    def psnr(self, group: tuple) -> dict[str, float]:
        key = ",".join(group)
        if key not in self.scores:
            folder = self.output / "models" / key.replace(",", "+")
            a = self.args
            # two or more CPU processes need accelerate's --multi_gpu launcher (see train/README.md)
            launch = ["--multi_gpu", "--num_processes", str(a.num_processes)] if a.num_processes > 1 else ["--cpu"]
            command = [sys.executable, "-m", "accelerate.commands.launch", *launch,
                       str(Path(__file__).resolve().parent / "train_restorer.py"), "--degradations", key,
                       "--max_train_steps", str(a.max_train_steps), "--resolution", str(a.resolution),
                       "--train_batch_size", str(a.train_batch_size), "--learning_rate", str(a.learning_rate),
                       "--severity", a.severity, "--seed", str(a.seed), "--checkpointing_steps",
                       str(a.max_train_steps), "--checkpoints_total_limit", "1", "--resume_from_checkpoint", "latest",
                       "--validation_steps", "0", "--num_validation_images", "0", "--output_dir", str(folder)]
            # the training split of the same photos the held-out scores come from
            env = {**os.environ, "UIR_PHOTOS": str(self.photos), "ACCELERATE_USE_CPU": "true"}
            subprocess.run(command, check=True, env=env)
            pipe = RestorerPipeline.from_pretrained(folder / "pipeline")
            pipe.set_progress_bar_config(disable=True)
            result = evaluate_restoration(lambda lq, pair: pipe(lq, output_type="pt").images, self.held_out,
                                          list(group), seed=a.seed + 1, severity=a.severity)
            self.scores[key] = result.psnr_out
            save_json(self.scores, self.cache_path)
        return self.scores[key]

    def drop(self, group: tuple) -> float:
        """Eq. 4: the largest PSNR loss of the group's model against each member's single-task model."""
        grouped = self.psnr(group)
        return max(self.psnr((name,))[name] - grouped[name] for name in group)


def main(argv=None):
    args = parse_args(argv)
    similarity = json.loads(Path(args.similarity).read_text())
    all_names = similarity["names"]
    names = args.degradations or all_names
    index = [all_names.index(n) for n in names]
    distance = symmetric_distance(torch.tensor(similarity["log10_kl"], dtype=torch.float64))[index][:, index]
    try:
        root = photo_root(args.data)
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None
    trainer = GroupTrainer(args, root)
    result = group_search(names, distance, trainer.drop, delta=args.delta)
    mixed = trainer.psnr(tuple(sorted(names)))
    chosen = {name: group for group in result.partitions[0] for name in group}
    rows = [{"degradation": n, "single-task": trainer.psnr((n,))[n], "grouped": trainer.psnr(chosen[n])[n],
             "mix-trained (all)": mixed[n], "group": "+".join(chosen[n])} for n in names]
    save_json({"delta": args.delta, "partitions": [[list(g) for g in p] for p in result.partitions],
               "drops": {",".join(g): d for g, d in result.drops.items()}, "max_group_size": result.max_group_size,
               "rows": rows}, Path(args.output_dir) / "result.json")
    print(markdown_table(rows))
    print(f"{len(result.partitions)} feasible partition(s) into {result.num_groups} groups; first: "
          f"{result.partitions[0]}")


if __name__ == "__main__":
    sys.exit(run_script(main))
