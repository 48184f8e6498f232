#!/usr/bin/env bash
# Issue 31, item 1: the readings of GEF's L_orthog (eq. 6-9) on one protocol, dte.sh's single
# task (noise sigma 25, eps pre-training, 500 steps of batch 8 at 64 px, tested at sigma 25 and
# the shifted 50), 3 seeds each, every run logging each loss term's gradient norm every 25
# steps (grad_norm/* in RUN/logs/metrics.jsonl):
#   none           generative 10% + L_reg, no L_orthog (dte.sh's "reggen")
#   authors        the authors' public code: 1 - cos of the two batch gradients, no d term,
#                  detached (logged, trains nothing)
#   eq8-1, eq8-0.1, eq8-0.01   eq. 8 as printed, at weights 1, 0.1 and 0.01
#   orthogonal     |s| + |d| at weight 1
# Needs dte.sh's pre-training and t_mat first (RUNS_DIR/pretrain-epsilon, t_mat-epsilon.json).
# LANES runs (one CPU core each) take the 16 (arm, seed) runs (authors: seed 0 only) in seed order, every arm's seed 0
# first; a stopped recipe resumes where it was. It ends with one line per arm whose three
# seeds are done: mean +- standard deviation of the held-out PSNR at each level.
# Usage: bash train/recipes/dte_orthogonality.sh [RUNS_DIR]   (LANES=2 by default; an
#   L_orthog run takes about 10 minutes on one core of this project's CPU, the others 2)
set -euo pipefail
R=${1:-runs/dte}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
LAUNCH="accelerate launch --num_processes 1 --cpu train/train_dte.py"
declare -A ARMS=(
  [none]="--orthogonality none"
  [authors]="--orthogonality authors --detach_orthogonality"
  [eq8-1]="--orthogonality eq8"
  [eq8-0.1]="--orthogonality eq8 --orthogonality_weight 0.1"
  [eq8-0.01]="--orthogonality eq8 --orthogonality_weight 0.01"
  [orthogonal]="--orthogonality orthogonal"
)
ORDER="none authors eq8-1 eq8-0.1 eq8-0.01 orthogonal"
mkdir -p "$R/orthog"
lane() {
  for seed in 0 1 2; do
    for arm in $ORDER; do
      out="$R/orthog/$arm-seed$seed"
      [ -f "$out/eval.json" ] && continue
      # the detached term has zero gradient and draws nothing: every seed trains exactly like "none"
      [ "$arm" = authors ] && [ "$seed" != 0 ] && continue
      mkdir "$out.lane" 2>/dev/null || continue  # another lane has it (remove *.lane to rerun a killed run)
      # shellcheck disable=SC2086
      $LAUNCH finetune --pretrained "$R/pretrain-epsilon" --t_mat "$R/t_mat-epsilon.json" --method gef ${ARMS[$arm]} \
        --degradations noisy --max_train_steps 500 --seed "$seed" --log_term_gradients 25 --checkpointing_steps 100 \
        --resume_from_checkpoint latest --validation_steps 0 --output_dir "$out" > "$out.log" 2>&1
      python train/train_dte.py evaluate --model "$out/model" --t_mat "$R/t_mat-epsilon.json" --degradations noisy \
        --severities moderate,severe --output "$out/eval.json" >> "$out.log" 2>&1
      rmdir "$out.lane"
    done
  done
}
rmdir "$R"/orthog/*.lane 2>/dev/null || true  # claims of a stopped recipe: those runs resume
for _ in $(seq "${LANES:-2}"); do lane & done
wait
python - "$R/orthog" <<'PY'
import json, statistics, sys
from pathlib import Path
root = Path(sys.argv[1])
for arm in ("none", "authors", "eq8-1", "eq8-0.1", "eq8-0.01", "orthogonal"):
    levels, files = {}, [root / f"{arm}-seed{seed}" / "eval.json" for seed in range(1 if arm == "authors" else 3)]
    if not all(f.is_file() for f in files):
        continue
    for f in files:
        for row in json.loads(f.read_text()):
            if row["degradation"] != "mean":
                levels.setdefault(row["level"], []).append(row["psnr_out"])
    print(arm, "  ".join(f"{level} {statistics.mean(v):.2f} +- {statistics.stdev(v) if len(v) > 1 else 0:.2f}"
                         for level, v in levels.items()))
PY
