#!/usr/bin/env bash
# How uir/assets/default (the embedded model of `uir restore`) is made, offline, on the training
# split of shared/photos: a mix-trained NAFNet base, one LoRA expert per DA-CLIP type on it,
# and the tiny router of tiny_router.sh. Scored on the held-out split.
# Usage: bash train/recipes/default_model.sh ROUTER_DIR [RUNS_DIR]
set -euo pipefail
ROUTER=$1
RUNS=${2:-runs/default}
PHOTOS=${UIR_PHOTOS:-../shared/photos}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# 1. the base, mix-trained on all ten types (also the no-experts baseline)
accelerate launch --num_processes 1 --cpu train/train_restorer.py --degradations all --resolution 96 \
  --train_batch_size 8 --max_train_steps 1500 --learning_rate 1e-3 --lr_warmup_steps 50 \
  --checkpointing_steps 250 --checkpoints_total_limit 1 --validation_steps 500 --num_validation_images 2 \
  --output_dir "$RUNS/base"
# 2. one expert per type on the frozen base (single-type batches)
accelerate launch --num_processes 1 --cpu train/train_uir_lora.py \
  --pretrained_model_name_or_path "$RUNS/base/pipeline" --degradations all --resolution 96 \
  --train_batch_size 8 --max_train_steps 3000 --learning_rate 1e-3 --checkpointing_steps 250 \
  --checkpoints_total_limit 1 --validation_steps 0 --num_validation_images 0 --output_dir "$RUNS/experts"
# 3. assemble base + experts + router into the shipped folder
python train/assemble_pipeline.py --base "$RUNS/base/pipeline" --experts "$RUNS/experts/experts" \
  --router "$ROUTER" --output_dir uir/assets/default
# 4. held-out scores: the default (router), the default with the true expert, the mix-trained base
uir eval --model default --data "$PHOTOS" --held-out -o "$RUNS/eval-default"
uir eval --model default --oracle --data "$PHOTOS" --held-out -o "$RUNS/eval-oracle"
uir eval --model "$RUNS/base/pipeline" --data "$PHOTOS" --held-out -o "$RUNS/eval-base"
