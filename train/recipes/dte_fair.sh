#!/usr/bin/env bash
# Issue 31, item 2: the diffusion-training-enhanced framework's gains re-measured without the
# confounds of dte.sh, 3 seeds per arm (64 px crops, NAFNet width 16, batch 8, one CPU core per run).
# * Equal total steps. A pre-trained arm is 2500 steps of generative pre-training plus 500 of
#   fine-tuning (plain L1), so training from scratch gets 3000 steps of L1 on the task.
# * Tasks inside and outside the pre-training objective: noise (sigma 25, tested at 25 and 50),
#   haze and motion blur (moderate, tested at moderate and severe), which denoising pre-training
#   does not cover. Arms: scratch (3000 steps), eps pre-training, residual ("sample") pre-training.
# * Unified over the 10 types (first 8 held-out photos), every arm with the same type
#   information (each type at its t_mat from the residual model) and the same 10 MoE adapters:
#     unified-scratch       from scratch, L1, all types at once, 3500 steps (= 2500 + 1000)
#     unified-mix           residual pre-training + 1000 steps on all types at once (L1 + L_reg + 10% generative)
#     unified-tit, -tit-asc residual pre-training + TIT, 100 steps per stage on the new task only
#                           (the authors' code), so every task gets 100 steps in either order
# Needs dte.sh's pre-training and t_mat first (RUNS_DIR/pretrain-{epsilon,sample}, t_mat-*.json).
# LANES lanes (lanes.sh) take the single-task runs seed by seed, then the unified ones arm by arm; it ends
# with the mean +- sd of each arm.
# Usage: bash train/recipes/dte_fair.sh [RUNS_DIR]  (a 500-step run takes about 2 minutes on one
#   core, a 3000-step one about 12, a unified one 5-20)
set -euo pipefail
R=${1:-runs/dte}
F="$R/fair"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
LAUNCH="accelerate launch --num_processes 1 --cpu train/train_dte.py"
C="--checkpointing_steps 250 --checkpoints_total_limit 1 --resume_from_checkpoint latest --validation_steps 0"
TASKS="noisy hazy motion-blurry"
for need in pretrain-epsilon/model pretrain-sample/model t_mat-epsilon.json t_mat-sample.json; do
  [ -e "$R/$need" ] || { echo "dte_fair.sh: $R/$need is missing: run train/recipes/dte.sh's pre-training first" >&2; exit 2; }
done
# shellcheck source=train/recipes/lanes.sh
. "$(dirname "$0")/lanes.sh"
single() {  # TASK ARM SEED
  local out="$F/$1-$2-seed$3" target=$2
  if [ "$2" = scratch ]; then
    target=sample
    $LAUNCH finetune --t_mat "$R/t_mat-$target.json" --method plain --degradations "$1" --max_train_steps 3000 \
      --seed "$3" $C --output_dir "$out"
  else
    $LAUNCH finetune --pretrained "$R/pretrain-$2" --t_mat "$R/t_mat-$target.json" --method plain \
      --degradations "$1" --max_train_steps 500 --seed "$3" $C --output_dir "$out"
  fi
  python train/train_dte.py evaluate --model "$out/model" --t_mat "$R/t_mat-$target.json" --degradations "$1" \
    --severities moderate,severe --output "$out/eval.json"
}
unified() {  # ARM SEED
  local out="$F/unified-$1-seed$2" T="--t_mat $R/t_mat-sample.json --moe_experts 10 --orthogonality none --seed $2"
  local P="--pretrained $R/pretrain-sample"
  case $1 in
    scratch) $LAUNCH unified $T --method mix --lambda_reg 0 --generative_fraction 0 --max_train_steps 3500 $C --output_dir "$out";;
    mix) $LAUNCH unified $T $P --method mix --max_train_steps 1000 $C --output_dir "$out";;
    tit) $LAUNCH unified $T $P --method tit --stage_tasks new --steps_per_stage 100 $C --output_dir "$out";;
    tit-asc) $LAUNCH unified $T $P --method tit --stage_tasks new --ascending --steps_per_stage 100 $C --output_dir "$out";;
  esac
  python train/train_dte.py evaluate --limit 8 --model "$out/model" --t_mat "$R/t_mat-sample.json" --output "$out/eval.json"
}
lane() {  # the runs whose differences are the small ones first: the single tasks' seeds, then
          # the seeds of the unified mix and scratch arms, then those of the TIT orders
  for seed in 0 1 2; do
    for task in $TASKS; do
      for arm in scratch sample epsilon; do once "$F/$task-$arm-seed$seed" single "$task" "$arm" "$seed"; done
    done
  done
  for arm in mix scratch tit tit-asc; do
    for seed in 0 1 2; do once "$F/unified-$arm-seed$seed" unified "$arm" "$seed"; done
  done
}
in_lanes "$F" lane
python train/summarize_seeds.py "$F"
