#!/usr/bin/env bash
# Issue proof: a `noisy` expert trained on a tiny, randomly initialised SD-turbo-shaped base,
# offline, on the training split of shared/photos; scored on the held-out split.
# Usage: bash train/recipes/tiny_noisy_expert.sh [RUNS_DIR]   (about 15 minutes on 2 CPU cores)
set -euo pipefail
RUNS=${1:-runs/tiny-noisy}
PHOTOS=${UIR_PHOTOS:-../shared/photos}
mkdir -p "$RUNS"
python -m uir.testing sd-turbo "$RUNS/tiny-sd-turbo"
# stage 1: skip connections (+ a merged VAE LoRA) on every type of DEFAULT_VOCABULARY
accelerate launch --num_processes 1 --cpu train/train_vae_skips.py \
  --pretrained_model_name_or_path "$RUNS/tiny-sd-turbo" --train_vae_lora --degradations all \
  --resolution 64 --train_batch_size 8 --max_train_steps 400 --learning_rate 1e-3 \
  --checkpointing_steps 200 --validation_steps 0 --num_validation_images 0 --output_dir "$RUNS/skips"
# stage 2: the noisy expert (sigma 50/255, the benchmark protocol)
accelerate launch --num_processes 1 --cpu train/train_uir_lora.py \
  --pretrained_model_name_or_path "$RUNS/tiny-sd-turbo" --vae "$RUNS/skips/vae" --degradations noisy \
  --severity default --resolution 64 --train_batch_size 8 --max_train_steps 600 --learning_rate 1e-3 \
  --checkpointing_steps 200 --validation_steps 0 --num_validation_images 0 --output_dir "$RUNS/experts"
# held-out PSNR: the base with trained skips alone, then with the expert
uir eval --model "$RUNS/tiny-sd-turbo" --vae "$RUNS/skips/vae" --data "$PHOTOS" --held-out \
  --degradations noisy -o "$RUNS/eval-base"
uir eval --model "$RUNS/tiny-sd-turbo" --vae "$RUNS/skips/vae" --experts "$RUNS/experts/experts/noisy" \
  --oracle --data "$PHOTOS" --held-out --degradations noisy -o "$RUNS/eval-expert"
