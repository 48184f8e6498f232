#!/usr/bin/env bash
# Issue 16, step 3 (in progress): a stronger mix-trained base for the embedded default, a NAFNet
# of width 32 (train/configs/nafnet-w32.json, 4x the compute of today's width-16 base), 20000
# steps of batch 8 at 128 px. About 1.5-2 s a step on one CPU thread: run it in the background
# and rerun the same line to continue after any interruption (--resume_from_checkpoint latest).
# Usage: bash train/recipes/base_w32.sh [RUNS_DIR]
set -euo pipefail
RUNS=${1:-runs}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
accelerate launch --num_processes 1 --cpu train/train_restorer.py --config train/configs/nafnet-w32.json \
  --degradations all --resolution 128 --train_batch_size 8 --max_train_steps 20000 --learning_rate 1e-3 \
  --lr_warmup_steps 200 --checkpointing_steps 250 --checkpoints_total_limit 2 --validation_steps 2500 \
  --num_validation_images 4 --output_dir "$RUNS/base-w32" --resume_from_checkpoint latest
