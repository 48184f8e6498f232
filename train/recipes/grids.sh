#!/usr/bin/env bash
# GRIDS on shared/photos: the SRResNet degradation descriptor, the similarity matrix of the 11
# GRIDS degradations and model selection on the held-out photos (salt-pepper, hazy and low-light
# kept unseen), then the grouping search with real grouped training.
# Usage: bash train/recipes/grids.sh [RUNS_DIR]
# Durations on 2 CPU cores: SRResNet ~28 min, similarity + selection ~5 min; the grouping
# search trains one NAFNet per verified group (about 2-3 min each at these settings).
set -euo pipefail
RUNS=${1:-runs/grids}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
accelerate launch --num_processes 1 --cpu train/train_srresnet.py --max_train_steps 1500 \
  --checkpointing_steps 500 --checkpoints_total_limit 1 --output_dir "$RUNS/srresnet"
python train/grids_similarity.py --srresnet "$RUNS/srresnet/srresnet" \
  --degradations gaussian-blur,motion-blur,rl-artifacts,bicubic-sr,ringing,defocus-blur,jpeg,poisson-noise,inpainting,gaussian-noise \
  --unseen salt-pepper,hazy,low-light --output_dir "$RUNS/similarity"
# the README's run used six types, two per family (17 models, 48 min); drop --degradations for all 11
python train/grids_group.py --similarity "$RUNS/similarity/similarity.json" --delta 0.7 \
  --degradations motion-blur,defocus-blur,jpeg,inpainting,gaussian-noise,poisson-noise \
  --max_train_steps 300 --resolution 64 --output_dir "$RUNS/group"
