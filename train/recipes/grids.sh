#!/usr/bin/env bash
# GRIDS on shared/photos: the SRResNet degradation descriptor, the similarity matrix of the 11
# GRIDS degradations and model selection on the held-out photos (salt-pepper, hazy and low-light
# kept unseen), then the grouping search with real grouped training.
# Usage: [GROUP_TYPES=a,b,...] bash train/recipes/grids.sh [RUNS_DIR]   (a stopped run resumes)
# Durations on 2 CPU cores: SRResNet ~28 min, similarity + selection ~5 min; the grouping
# search trains one NAFNet per verified group (about 2-3 min each at these settings).
set -euo pipefail
RUNS=${1:-runs/grids}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
accelerate launch --num_processes 1 --cpu train/train_srresnet.py --max_train_steps 1500 \
  --checkpointing_steps 250 --checkpoints_total_limit 1 --resume_from_checkpoint latest --output_dir "$RUNS/srresnet"
python train/grids_similarity.py --srresnet "$RUNS/srresnet/srresnet" \
  --degradations gaussian-blur,motion-blur,rl-artifacts,bicubic-sr,ringing,defocus-blur,jpeg,poisson-noise,inpainting,gaussian-noise \
  --unseen salt-pepper,hazy,low-light --output_dir "$RUNS/similarity"
# the hand-made MSCN representation (README's MSCN rows; no SRResNet needed)
python train/grids_similarity.py --features nss \
  --degradations gaussian-blur,motion-blur,rl-artifacts,bicubic-sr,ringing,defocus-blur,jpeg,poisson-noise,inpainting,gaussian-noise \
  --unseen salt-pepper,hazy,low-light --output_dir "$RUNS/similarity-nss"
python train/grids_similarity.py --features nss \
  --degradations gaussian-blur,motion-blur,rl-artifacts,bicubic-sr,ringing,defocus-blur,jpeg,inpainting \
  --unseen gaussian-noise,poisson-noise,salt-pepper --output_dir "$RUNS/similarity-nss-noise-out"
# all 11 types: 93 models of about 2 minutes each on one core (the README's table); the
# smaller six-type run (17 models) is
#   GROUP_TYPES=motion-blur,defocus-blur,jpeg,inpainting,gaussian-noise,poisson-noise
# the search ranks candidates by a matrix over all 11 types (PCA fitted on all of them)
python train/grids_similarity.py --srresnet "$RUNS/srresnet/srresnet" --calibration_images 0 \
  --output_dir "$RUNS/similarity-all"
python train/grids_group.py --similarity "$RUNS/similarity-all/similarity.json" --delta 0.7 \
  ${GROUP_TYPES:+--degradations "$GROUP_TYPES"} \
  --max_train_steps 300 --resolution 64 --output_dir "$RUNS/group"
