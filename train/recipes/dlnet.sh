#!/usr/bin/env bash
# DL-Net at small scale on shared/photos (interpolation, r in [0, 75%]): a context-encoder
# reference trained on every level at once, then the same number of fine-tuning steps for the
# reference alone and for the reference wrapped as a DL-Net (K = 5, gamma = 1e-2 as the paper
# uses for interpolation); held-out PSNR at r = 15 / 45 / 75 %.
# Usage: bash train/recipes/dlnet.sh [RUNS_DIR] [TASK]
set -euo pipefail
RUNS=${1:-runs/dlnet}
TASK=${2:-interpolation}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
LAUNCH="accelerate launch --num_processes 1 --cpu train/train_dlnet.py train --task $TASK --width 32 --checkpointing_steps 250 --checkpoints_total_limit 1"
$LAUNCH --model reference --max_train_steps 1500 --output_dir "$RUNS/reference"
$LAUNCH --model reference --init "$RUNS/reference/model" --learning_rate 2e-4 --max_train_steps 300 --output_dir "$RUNS/reference-ft"
$LAUNCH --model dlnet --init "$RUNS/reference/model" --step_size 1e-2 --learning_rate 2e-4 --max_train_steps 300 --output_dir "$RUNS/dlnet"
for model in reference reference-ft dlnet; do
  python train/train_dlnet.py evaluate --task $TASK --model "$RUNS/$model/model" --output "$RUNS/eval-$model.json"
done
