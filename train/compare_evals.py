#!/usr/bin/env python
"""Decide a candidate against a baseline by the rule of docs/default-model.md, from ``uir eval`` runs.

Each run is a ``uir eval -o DIR`` folder (its ``pairs.csv``: one row per photo and degradation),
one per evaluation seed, the baseline's and the candidate's in the same seed order and on the same
pairs. The rule, fixed before any candidate is run: over the seeds, the candidate's **mean gain
over the input** (the degradations' rows, ``clean`` rows left out: the 10-type mean of that page's
tables; ``uir eval``'s own mean row counts clean photos too) must be higher, and the **images it makes worse** (every row, ``clean`` included) must be no more.
Differences below 0.5 dB are reported as mean ± standard deviation over the seeds (below that, one
seed cannot tell them apart). Per type, the paired change of the mean PSNR, averaged over seeds.

    python train/compare_evals.py --baseline runs/ship0 runs/ship1 runs/ship2 \\
        --candidate runs/new0 runs/new1 runs/new2
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

from uir.boundary import OneLineParser, UsageError, run_script
from uir.degradations import CLEAN


def read_pairs(folder: str) -> dict[tuple[str, str], dict]:
    """``{(photo, degradation): {"psnr_out", "gain", "worse"}}`` from a ``uir eval`` folder's pairs.csv."""
    path = Path(folder) / "pairs.csv"
    if not path.is_file():
        raise UsageError(f"{folder} holds no pairs.csv (a `uir eval -o {folder}` run writes one)")
    with path.open(newline="") as handle:
        try:
            return {(row["photo"], row["degradation"]): {"psnr_out": float(row["psnr_out"]), "gain": float(row["gain"]),
                                                         "worse": row["worse"] == "True"}
                    for row in csv.DictReader(handle)}
        except (KeyError, ValueError) as error:
            raise UsageError(f"{path} is not a `uir eval` pairs.csv ({type(error).__name__}: {error})") from None


def compare_seed(baseline: dict, candidate: dict) -> dict:
    """One seed's numbers: both mean gains (``clean`` rows left out), both counts of images made
    worse, and each type's paired change of mean PSNR."""
    if baseline.keys() != candidate.keys():
        raise UsageError(f"the runs are not on the same pairs ({len(baseline.keys() ^ candidate.keys())} differ): "
                         "give the same --data, --degradations and --seed to both")
    degraded = [key for key in baseline if key[1] != CLEAN]
    if not degraded:
        raise UsageError("the runs hold no degraded rows to compare")
    types = sorted({key[1] for key in baseline})
    return {"baseline": statistics.fmean(baseline[k]["gain"] for k in degraded),
            "candidate": statistics.fmean(candidate[k]["gain"] for k in degraded),
            "baseline_worse": sum(row["worse"] for row in baseline.values()),
            "candidate_worse": sum(row["worse"] for row in candidate.values()),
            "rows": len(baseline),
            "types": {t: statistics.fmean(candidate[k]["psnr_out"] - baseline[k]["psnr_out"] for k in baseline if k[1] == t)
                      for t in types}}


def decide(seeds: list[dict]) -> dict:
    """The rule over the seeds: ``ship`` when the mean gain is higher and no more images are made
    worse; ``failing`` names the halves of the rule that fail."""
    changes = [seed["candidate"] - seed["baseline"] for seed in seeds]
    worse = (sum(s["baseline_worse"] for s in seeds), sum(s["candidate_worse"] for s in seeds))
    change = statistics.fmean(changes)
    failing = [half for half, holds in (("the mean gain is not higher", change > 0),
                                        ("more images are made worse", worse[1] <= worse[0])) if not holds]
    return {"change": change, "sd": statistics.stdev(changes) if len(changes) > 1 else float("nan"),
            "worse": worse, "rows": sum(s["rows"] for s in seeds), "failing": failing, "ship": not failing}


def report(seeds: list[dict], verdict: dict) -> str:
    lines = ["| seed | mean gain, baseline → candidate | change | images worse |", "| --- | --- | --- | --- |"]
    for i, s in enumerate(seeds):
        lines.append(f"| {i} | {s['baseline']:+.3f} → {s['candidate']:+.3f} | {s['candidate'] - s['baseline']:+.3f} | "
                     f"{s['baseline_worse']} → {s['candidate_worse']} of {s['rows']} |")
    lines += ["", "| type | PSNR change, mean over seeds |", "| --- | --- |"]
    for name in seeds[0]["types"]:
        lines.append(f"| {name} | {statistics.fmean(s['types'][name] for s in seeds):+.3f} |")
    worse = verdict["worse"]
    lines += ["", f"paired change {verdict['change']:+.3f} ± {verdict['sd']:.3f} dB over {len(seeds)} seeds"
                  f"{' (below 0.5 dB)' if abs(verdict['change']) < 0.5 else ''}; images worse {worse[0]} → {worse[1]} "
                  f"of {verdict['rows']}",
              "verdict: ship" if verdict["ship"] else f"verdict: not ship ({' and '.join(verdict['failing'])})"]
    return "\n".join(lines)


def main(argv=None):
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", nargs="+", required=True, help="uir eval folders, one per seed")
    parser.add_argument("--candidate", nargs="+", required=True, help="uir eval folders, the same seeds in the same order")
    args = parser.parse_args(argv)
    if len(args.baseline) != len(args.candidate):
        raise UsageError(f"{len(args.baseline)} baseline runs against {len(args.candidate)} candidate runs: give one "
                         "of each per seed")
    seeds = [compare_seed(read_pairs(b), read_pairs(c)) for b, c in zip(args.baseline, args.candidate)]
    print(report(seeds, decide(seeds)))


if __name__ == "__main__":
    sys.exit(run_script(main))
