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
# first; a stopped recipe resumes where it was (lanes.sh). It ends with the held-out PSNR's mean
# +- standard deviation over the finished seeds, per arm and level.
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
# shellcheck source=train/recipes/lanes.sh
. "$(dirname "$0")/lanes.sh"
lane() {
  for seed in 0 1 2; do
    for arm in $ORDER; do
      # the detached term has zero gradient and draws nothing: every seed trains exactly like "none"
      [ "$arm" = authors ] && [ "$seed" != 0 ] && continue
      once "$R/orthog/$arm-seed$seed" run "$arm" "$seed"
    done
  done
}
run() {  # ARM SEED
  local out="$R/orthog/$1-seed$2"
  # shellcheck disable=SC2086
  $LAUNCH finetune --pretrained "$R/pretrain-epsilon" --t_mat "$R/t_mat-epsilon.json" --method gef ${ARMS[$1]} \
    --degradations noisy --max_train_steps 500 --seed "$2" --log_term_gradients 25 --checkpointing_steps 100 \
    --resume_from_checkpoint latest --validation_steps 0 --output_dir "$out"
  python train/train_dte.py evaluate --model "$out/model" --t_mat "$R/t_mat-epsilon.json" --degradations noisy \
    --severities moderate,severe --output "$out/eval.json"
}
in_lanes "$R/orthog" lane
# shellcheck disable=SC2086
python train/summarize_seeds.py "$R/orthog" --arms $ORDER
