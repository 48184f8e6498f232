#!/usr/bin/env bash
# Issue proof: a tiny CLIP degradation router trained from scratch (random CLIP, frozen; the
# DA-CLIP controller trained) on the types of DEFAULT_VOCABULARY synthesised on the training photos.
# Usage: bash train/recipes/tiny_router.sh [RUNS_DIR]   (about 35 minutes on 2 CPU cores)
set -euo pipefail
RUNS=${1:-runs/router}
PHOTOS=${UIR_PHOTOS:-../shared/photos}
accelerate launch --num_processes 1 --cpu train/train_router.py --clip_model train/configs/tiny-clip.json \
  --degradations all --resolution 256 --train_batch_size 32 --max_train_steps 1500 --learning_rate 5e-4 \
  --lr_warmup_steps 100 --checkpointing_steps 250 --checkpoints_total_limit 2 --validation_steps 250 \
  --num_validation_images 4 --dataloader_num_workers 1 --output_dir "$RUNS"
uir eval-router "$RUNS/router" --data "$PHOTOS" --held-out --repeats 2
