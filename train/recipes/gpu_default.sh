#!/usr/bin/env bash
# Issue 16, step 4: the embedded default at scale on one large GPU, in about 8 minutes.
#
# The same three parts as default_model.sh, larger and trained far longer, each under a time
# budget (--max_train_seconds: a run times its first steps, then fixes its length and LR
# schedule to fit):
#   1. side by side (independent): the mix-trained base, a NAFNet of width 32
#      (train/configs/nafnet-w32.json), and the router: its image tower and text tower trained
#      from scratch on a global view plus a 3x3 grid of native-resolution crops, with the
#      "clean" class, then temperature-calibrated on fresh degradations of the training photos;
#   2. one LoRA expert per DA-CLIP type on the frozen base;
#   3. base + experts + router assembled into RUNS_DIR/default (a pipeline folder).
# Score it on the held-out photos with `uir eval --model RUNS_DIR/default --held-out`.
#
# Usage: bash train/recipes/gpu_default.sh [RUNS_DIR]
#   UIR_TRAIN_PHOTOS: a folder of training photos (default: the training split of shared/photos)
#   BASE_SECONDS, ROUTER_SECONDS, EXPERT_SECONDS, WORKERS: the budgets (s) and data workers per run
#   EXTRA: options added to every run (a CPU dry run: EXTRA="--train_batch_size 2 --resolution 96")
set -euo pipefail
RUNS=${1:-runs/gpu-default}
BASE_SECONDS=${BASE_SECONDS:-210}
ROUTER_SECONDS=${ROUTER_SECONDS:-200}
EXPERT_SECONDS=${EXPERT_SECONDS:-110}
WORKERS=${WORKERS:-6}
DATA=(--repeats 8 --validation_steps 0 --num_validation_images 0 --checkpointing_steps 1000
      --checkpoints_total_limit 1 --resume_from_checkpoint latest)
if [ -n "${UIR_TRAIN_PHOTOS:-}" ]; then DATA+=(--train_data_dir "$UIR_TRAIN_PHOTOS"); fi
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
DATA+=("${EXTRA_ARGS[@]}")
mkdir -p "$RUNS"
LAUNCH="accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no"

$LAUNCH train/train_router.py --clip_model train/configs/tiny-clip.json --crop_grid 3 --train_text_tower \
  --degradations all --resolution 256 --train_batch_size 64 --max_train_steps 20000 --learning_rate 5e-4 \
  --lr_warmup_steps 200 --max_train_seconds "$ROUTER_SECONDS" --dataloader_num_workers "$WORKERS" \
  "${DATA[@]}" --output_dir "$RUNS/router" > "$RUNS/router.log" 2>&1 &
ROUTER_PID=$!
$LAUNCH train/train_restorer.py --config train/configs/nafnet-w32.json --degradations all --resolution 128 \
  --train_batch_size 32 --max_train_steps 40000 --learning_rate 1e-3 --lr_warmup_steps 200 \
  --max_train_seconds "$BASE_SECONDS" --dataloader_num_workers "$WORKERS" "${DATA[@]}" \
  --output_dir "$RUNS/base" > "$RUNS/base.log" 2>&1
$LAUNCH train/train_uir_lora.py --pretrained_model_name_or_path "$RUNS/base/pipeline" --degradations all \
  --resolution 128 --train_batch_size 32 --max_train_steps 20000 --learning_rate 1e-3 \
  --max_train_seconds "$EXPERT_SECONDS" --dataloader_num_workers "$WORKERS" "${DATA[@]}" \
  --output_dir "$RUNS/experts" > "$RUNS/experts.log" 2>&1
wait "$ROUTER_PID"
python train/assemble_pipeline.py --base "$RUNS/base/pipeline" --experts "$RUNS/experts/experts" \
  --router "$RUNS/router/router" --output_dir "$RUNS/default"
