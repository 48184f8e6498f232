#!/usr/bin/env bash
# DL-Net at small scale on shared/photos, the paper's three tasks (sec. 4). For each task a
# reference is trained on every level at once, then the same number of fine-tuning steps go to
# the reference alone and to the reference wrapped as a DL-Net (K = 5); held-out PSNR at the
# paper's test levels, beside the non-learned row (normalised convolution; bicubic for SISR).
# * interpolation (r in [0, 75%], gamma = 1e-2 as the paper uses): the paper's context encoder,
#   also wrapped as the authors' code runs it (--variant authors);
# * inpainting (square holes s in 1..30, centred +-10 px), gamma = 1e-3;
# * sisr x3 (Gaussian blur u in [0, 3], luma), a small VDSR, gamma = 1e-3.
# Usage: bash train/recipes/dlnet.sh [RUNS_DIR]   (about an hour on one CPU core)
set -euo pipefail
RUNS=${1:-runs/dlnet}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TRAIN="accelerate launch --num_processes 1 --cpu train/train_dlnet.py train --checkpointing_steps 250 --checkpoints_total_limit 1 --resume_from_checkpoint latest"
EVAL="python train/train_dlnet.py evaluate"
# task, reference options, gamma, name
run() {
  local task=$1 ref=$2 gamma=$3 name=$4 dir="$RUNS/$4"
  $TRAIN --task $task $ref --model reference --max_train_steps 1500 --output_dir "$dir/reference"
  $TRAIN --task $task --model reference --init "$dir/reference/model" --learning_rate 2e-4 --max_train_steps 300 --output_dir "$dir/reference-ft"
  $TRAIN --task $task --model dlnet --init "$dir/reference/model" --step_size $gamma --learning_rate 2e-4 --max_train_steps 300 --output_dir "$dir/dlnet"
  for model in reference reference-ft dlnet; do
    $EVAL --task $task --model "$dir/$model/model" --output "$dir/eval-$model.json"
  done
  $EVAL --task $task --model fill --output "$dir/eval-fill.json"
}
run interpolation "--reference context-encoder --width 32" 1e-2 interpolation
$TRAIN --task interpolation --model dlnet --variant authors --init "$RUNS/interpolation/reference/model" --step_size 1e-2 \
  --learning_rate 2e-4 --max_train_steps 300 --output_dir "$RUNS/interpolation/dlnet-authors"
$EVAL --task interpolation --model "$RUNS/interpolation/dlnet-authors/model" --output "$RUNS/interpolation/eval-dlnet-authors.json"
run inpainting "--reference context-encoder --width 32" 1e-3 inpainting
run sisr "--reference vdsr --width 32 --depth 10" 1e-3 sisr
