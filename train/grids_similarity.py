#!/usr/bin/env python
"""GRIDS degradation similarity (sec. 4.2) and adaptive model selection (sec. 5.2, eq. 7).

    python train/grids_similarity.py --srresnet runs/srresnet/srresnet --output_dir runs/grids \\
        [--groups runs/grids-group/result.json] [--unseen gaussian-blur] [--features nss]

1. Fits a GGD per degradation to SRResNet trunk features (or, with ``--features nss``, the
   MSCN statistics of :mod:`uir.grids.nss`) of degraded *training* photos and
   writes the similarity matrix S (``similarity.json``, heat-map ``similarity.png``).
2. Builds a :class:`uir.grids.GroupSelector` for the partition in ``--groups`` (a JSON list of
   lists, or the ``result.json`` of ``grids_group.py``; default: each degradation alone) and saves it
   to ``OUTPUT_DIR/selector``. ``--unseen`` degradations are in S but left out of all groups
   and of the PCA fit.
3. Calibrates the selector per group on ``--calibration_images`` degraded training photos
   (``GroupSelector.calibrate``).
4. On the *held-out* photos, raw and calibrated: how often the selected group holds the true
   degradation, the mean predicted-generalization score of in-group versus unseen
   degradations, and ``ood_auc``, how often an unseen input scores above an in-group one
   (``selection.json``, printed as tables).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from uir.boundary import run_script
from uir.data import photo_root, split_photos
from uir.degradations import GRIDS_TYPES, parse_names
from uir.evaluation import degraded_pairs, markdown_table
from uir.grids import GroupSelector, degradation_statistics, heatmap, nss_features, similarity_matrix
from uir.images import load_image, save_image
from uir.files import save_json
from uir.models import SRResNet
from uir.files import save_pretrained_staged


def read_groups(spec: str | None, names: list[str]) -> list[list[str]]:
    if spec is None:
        return [[name] for name in names]
    value = json.loads(Path(spec).read_text())
    return value["partitions"][0] if isinstance(value, dict) else value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", choices=["srresnet", "nss"], default="srresnet",
                        help="the representation: SRResNet trunk features (needs --srresnet) or the "
                             "hand-made MSCN statistics of uir.grids.nss")
    parser.add_argument("--srresnet", default=None, help="a saved SRResNet folder (train_srresnet.py)")
    parser.add_argument("--data", default=None, help="clean photos, split into training/held-out by name")
    parser.add_argument("--degradations", type=parse_names, default=",".join(GRIDS_TYPES))
    parser.add_argument("--groups", default=None)
    parser.add_argument("--unseen", type=parse_names, default=[], help="comma-separated degradations kept out of all groups")
    parser.add_argument("--n_components", type=int, default=4)
    parser.add_argument("--patch_size", type=int, default=64)
    parser.add_argument("--patches_per_image", type=int, default=8)
    parser.add_argument("--pixels_per_patch", type=int, default=256)
    parser.add_argument("--severity", default="random")
    parser.add_argument("--repeats", type=int, default=2, help="held-out draws per photo and degradation")
    parser.add_argument("--threshold_quantile", type=float, default=0.95,
                        help="out-of-distribution threshold: this quantile of the in-group held-out scores")
    parser.add_argument("--calibration_images", type=int, default=24,
                        help="training photos per degradation for the per-group score calibration (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)
    if args.features == "srresnet" and args.srresnet is None:
        parser.error("--features srresnet needs --srresnet")
    return args


def main(argv=None):
    args = parse_args(argv)
    output = Path(args.output_dir)
    try:
        root = photo_root(args.data)
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None
    train_files, held_out = split_photos(root)
    names, unseen = args.degradations, args.unseen
    features = (SRResNet.from_pretrained(args.srresnet).eval().degradation_features if args.features == "srresnet"
                else nss_features)

    with torch.no_grad():
        stats = degradation_statistics(features, [load_image(f) for f in train_files], names + unseen,
                                       n_components=args.n_components, patch_size=args.patch_size,
                                       patches_per_image=args.patches_per_image, seed=args.seed,
                                       severity=args.severity, pixels_per_patch=args.pixels_per_patch,
                                       pca_names=names)
    matrix = similarity_matrix(stats)
    save_json({"names": stats.names, "log10_kl": matrix.tolist(), "alpha": stats.alpha.tolist(),
               "sigma": stats.sigma.tolist()}, output / "similarity.json")
    save_image(heatmap(matrix, stats.names), output / "similarity.png")
    print(markdown_table([{"degradation": f"{i + 1} {a}", **{str(j + 1): matrix[i, j].item()
                                                            for j in range(len(stats.names))}}
                          for i, a in enumerate(stats.names)]))

    groups = read_groups(args.groups, names)
    selector = GroupSelector.from_statistics(stats, groups=groups, patch_size=args.patch_size,
                                             patches_per_image=2 * args.patches_per_image, seed=args.seed)
    if args.calibration_images:
        calibration = {name: [pair.lq[0] for pair in degraded_pairs(train_files[: args.calibration_images], [name],
                                                                    seed=args.seed + 2, severity=args.severity)]
                       for name in names}
        selector.calibrate(calibration, features)
    raw = {}  # name -> list of (m,) raw divergences of the held-out pairs
    for pair in degraded_pairs(held_out, names + unseen, seed=args.seed + 1, severity=args.severity,
                               repeats=args.repeats):
        raw.setdefault(pair.name, []).append(selector.raw_divergence(pair.lq[0], features)[0])
    variants = {"raw": lambda d: d}
    if args.calibration_images:
        variants["calibrated"] = selector.standardize
    summary, rows = {"features": args.features, "groups": groups}, {n: {"degradation": n, "in a group": n in names} for n in names + unseen}
    for variant, transform in variants.items():
        hits, scores = {}, {}
        for name, divergences in raw.items():
            for divergence in divergences:
                score, group = transform(divergence).min(0)
                hits.setdefault(name, []).append(int(name in groups[int(group)]))
                scores.setdefault(name, []).append(score.item())
        in_group = sorted(s for n in names for s in scores[n])
        threshold = in_group[min(len(in_group) - 1, int(args.threshold_quantile * len(in_group)))]
        for n in names + unseen:
            rows[n][f"{variant}: selected group holds it"] = sum(hits[n]) / len(hits[n]) if n in names else float("nan")
            rows[n][f"{variant}: mean score"] = sum(scores[n]) / len(scores[n])
            rows[n][f"{variant}: flagged"] = sum(s > threshold for s in scores[n]) / len(scores[n])
        result = {"threshold": threshold, "mean_score_in_group": sum(in_group) / len(in_group),
                  "selection_accuracy": sum(sum(hits[n]) for n in names) / sum(len(hits[n]) for n in names)}
        if unseen:
            outside = [s for n in unseen for s in scores[n]]
            result["mean_score_unseen"] = sum(outside) / len(outside)
            # how often an unseen input scores above an in-group one (0.5: no separation)
            result["ood_auc"] = sum((u > i) + 0.5 * (u == i) for u in outside for i in in_group) / (len(outside) * len(in_group))
        summary[variant] = result
        if variant == list(variants)[-1]:
            selector.register_to_config(threshold=threshold)
    save_pretrained_staged(selector, output / "selector")
    summary["rows"] = list(rows.values())
    save_json(summary, output / "selection.json")
    print(markdown_table(summary["rows"]))
    print({k: v for k, v in summary.items() if k not in ("rows", "groups")})


if __name__ == "__main__":
    sys.exit(run_script(main))
