#!/usr/bin/env bash
# LIRA at small scale on shared/photos: fork (experts) -> join -> pseudo-replay GAN -> growing for
# haze with LIRA and the baselines, then held-out PSNR at three levels for every model.
# Usage: bash train/recipes/lira.sh [RUNS_DIR]
set -euo pipefail
RUNS=${1:-runs/lira}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
LAUNCH="accelerate launch --num_processes 1 --cpu train/train_lira.py"
NET="--channels 16 --num_blocks 4 --resolution 64 --train_batch_size 8 --learning_rate 1e-3 --checkpointing_steps 100 --checkpoints_total_limit 1 --validation_steps 0 --num_validation_images 2"
$LAUNCH experts $NET --max_train_steps 800 --output_dir "$RUNS/experts"
$LAUNCH join $NET --init "$RUNS/experts/model" --max_train_steps 500 --output_dir "$RUNS/join"
$LAUNCH replay-gan $NET --base "$RUNS/join/model" --generator_width 16 --max_train_steps 400 --output_dir "$RUNS/gan"
$LAUNCH grow $NET --base "$RUNS/join/model" --method lira --generator "$RUNS/gan/generator" \
  --warmup_steps 200 --max_train_steps 300 --output_dir "$RUNS/grow-lira"
for method in finetune setting-a ewc lwf; do
  $LAUNCH grow $NET --base "$RUNS/join/model" --method $method --warmup_from "$RUNS/grow-lira/warmup/model" \
    --max_train_steps 300 --output_dir "$RUNS/grow-$method"
done
EVAL="python train/train_lira.py evaluate"
$EVAL --model "$RUNS/join/model" --degradations lira-blended --output "$RUNS/eval-base.json"
for method in lira finetune setting-a ewc lwf; do
  $EVAL --limit 8 --model "$RUNS/grow-$method/model" --task 0 --degradations lira-blended --output "$RUNS/eval-$method-old.json"
  $EVAL --limit 8 --model "$RUNS/grow-$method/model" --task 1 --degradations lira-blended-haze --output "$RUNS/eval-$method-new.json"
done
