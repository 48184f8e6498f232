#!/usr/bin/env python
"""GRIDS grouping search (Alg. 1) verified by real grouped training, at small scale.

    python train/grids_group.py --similarity runs/grids/similarity.json --delta 0.7 \\
        --output_dir runs/grids-group [--max_train_steps 300 --resolution 64]

Every model is a NAFNet trained by ``accelerate launch train/train_restorer.py`` (one
subprocess per model, so ``--num_processes`` scales each training out) on the training photos
less a validation split (every fifth, :func:`uir.data.validation_split`). ``dP(C)`` (eq. 4)
compares, on the validation photos, the group's model with the single-task model of each
member; the held-out photos score only the models of the partition the search returns, so
they report a choice they took no part in. Scores are cached in ``OUTPUT_DIR/scores.json``, so
an interrupted search resumes without retraining. Writes ``result.json`` (every feasible
partition, the verified drops) and a table of single-task vs grouped vs mix-trained held-out
PSNR per degradation.
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
from uir.data import link_photos, photo_root, validation_split
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
    """Trains one model per group of degradations and scores it on a split of the photos
    (``validation`` or ``held-out``); caches ``{split: {group: {name: psnr}}}``."""

    def __init__(self, args, photos: Path):
        self.args = args
        self.output = Path(args.output_dir)
        train, validation, held_out = validation_split(photos)
        self.train_dir = link_photos(train, self.output / "photos" / "train")
        self.splits = {"validation": validation, "held-out": held_out}
        self.cache_path = self.output / "scores.json"
        self.scores = json.loads(self.cache_path.read_text()) if self.cache_path.is_file() else {}

    def model(self, group: tuple) -> Path:
        """The group's trained pipeline folder (trained here unless it is already there)."""
        key = ",".join(group)
        folder = self.output / "models" / key.replace(",", "+")
        if not (folder / "pipeline" / "model_index.json").is_file():
            a = self.args
            # two or more CPU processes need accelerate's --multi_gpu launcher (see train/README.md)
            launch = ["--multi_gpu", "--num_processes", str(a.num_processes)] if a.num_processes > 1 else ["--cpu"]
            command = [sys.executable, "-m", "accelerate.commands.launch", *launch,
                       str(Path(__file__).resolve().parent / "train_restorer.py"), "--degradations", key,
                       "--max_train_steps", str(a.max_train_steps), "--resolution", str(a.resolution),
                       "--train_batch_size", str(a.train_batch_size), "--learning_rate", str(a.learning_rate),
                       "--severity", a.severity, "--seed", str(a.seed), "--checkpointing_steps",
                       str(a.max_train_steps), "--checkpoints_total_limit", "1", "--resume_from_checkpoint", "latest",
                       "--validation_steps", "0", "--num_validation_images", "0", "--train_data_dir",
                       str(self.train_dir), "--output_dir", str(folder)]
            subprocess.run(command, check=True, env={**os.environ, "ACCELERATE_USE_CPU": "true"})
        return folder / "pipeline"

    def psnr(self, group: tuple, split: str = "validation") -> dict[str, float]:
        key, scores = ",".join(group), self.scores.setdefault(split, {})
        if key not in scores:
            pipe = RestorerPipeline.from_pretrained(self.model(group))
            pipe.set_progress_bar_config(disable=True)
            result = evaluate_restoration(lambda lq, pair: pipe(lq, output_type="pt").images, self.splits[split],
                                          list(group), seed=self.args.seed + 1, severity=self.args.severity)
            scores[key] = result.psnr_out
            save_json(self.scores, self.cache_path)
        return scores[key]

    def drop(self, group: tuple) -> float:
        """Eq. 4 on the validation photos: the largest PSNR loss of the group's model against each
        member's single-task model."""
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
    mixed = trainer.psnr(tuple(sorted(names)), "held-out")
    chosen = {name: group for group in result.partitions[0] for name in group}
    rows = [{"degradation": n, "single-task": trainer.psnr((n,), "held-out")[n],
             "grouped": trainer.psnr(chosen[n], "held-out")[n], "mix-trained (all)": mixed[n],
             "group": "+".join(chosen[n])} for n in names]
    save_json({"delta": args.delta, "partitions": [[list(g) for g in p] for p in result.partitions],
               "drops": {",".join(g): d for g, d in result.drops.items()}, "max_group_size": result.max_group_size,
               "rows": rows}, Path(args.output_dir) / "result.json")
    print(markdown_table(rows))
    print(f"{len(result.partitions)} feasible partition(s) into {result.num_groups} groups; first: "
          f"{result.partitions[0]}")


if __name__ == "__main__":
    sys.exit(run_script(main))
