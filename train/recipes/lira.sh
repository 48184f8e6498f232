#!/usr/bin/env bash
# LIRA at small scale on shared/photos: fork (experts) -> join -> pseudo-replay GAN, then growing
# for haze with and without pseudo-replay at two learning-rate factors rho for the old
# parameters (0.1, and 1 where nothing slows them), and plain fine-tuning, each with two seeds;
# held-out PSNR (16 photos, three levels) on the old task (lira-blended) and the new one.
# Usage: bash train/recipes/lira.sh [RUNS_DIR]   (about 1.5 hours on one CPU core)
set -euo pipefail
RUNS=${1:-runs/lira}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
LAUNCH="accelerate launch --num_processes 1 --cpu train/train_lira.py"
NET="--channels 16 --num_blocks 4 --resolution 64 --train_batch_size 8 --learning_rate 1e-3 --checkpointing_steps 100 --checkpoints_total_limit 1 --validation_steps 0 --num_validation_images 2 --resume_from_checkpoint latest"
$LAUNCH experts $NET --max_train_steps 800 --output_dir "$RUNS/experts"
$LAUNCH join $NET --init "$RUNS/experts/model" --max_train_steps 500 --output_dir "$RUNS/join"
$LAUNCH replay-gan $NET --base "$RUNS/join/model" --generator_width 16 --max_train_steps 400 --output_dir "$RUNS/gan"
EVAL="python train/train_lira.py evaluate"
$EVAL --model "$RUNS/join/model" --degradations lira-blended --output "$RUNS/eval-base.json"
for seed in 0 1; do
  S="$RUNS/s$seed"; B="--seed $seed --base $RUNS/join/model --max_train_steps 300"; G="--generator $RUNS/gan/generator"
  $LAUNCH grow $NET $B --method lira --rho 0.1 $G --warmup_steps 200 --output_dir "$S/lira-rho0.1"
  W="--warmup_from $S/lira-rho0.1/warmup/model"   # one warm-up per seed, shared by the four methods
  $LAUNCH grow $NET $B --method setting-a --rho 0.1 $W --output_dir "$S/setting-a-rho0.1"
  $LAUNCH grow $NET $B --method lira --rho 1 $G $W --output_dir "$S/lira-rho1"
  $LAUNCH grow $NET $B --method finetune $W --output_dir "$S/finetune"
  for method in lira-rho0.1 setting-a-rho0.1 lira-rho1 finetune; do
    $EVAL --model "$S/$method/model" --task 0 --degradations lira-blended --output "$S/$method/eval-old.json"
    $EVAL --model "$S/$method/model" --task 1 --degradations lira-blended-haze --output "$S/$method/eval-new.json"
  done
done
