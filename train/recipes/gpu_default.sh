#!/usr/bin/env bash
# Issue 16, step 4: the embedded default (default_model.sh) on one large GPU in about 8 minutes:
# each part under a time budget (--max_train_seconds: a run times its first steps, then fixes its
# length and LR schedule to fit), many data workers. On one H200 this made the shipped weights:
# base 4820 steps (43 ms each), router 1221 (162 ms, bound by its data workers), experts 1858.
# Leave a command that wraps this at least 90 s beyond the sum of the budgets: start-up, the
# router's calibration and the saves come after them (and 2 x (PROBE_SECONDS + 20 s) for the probe).
# Usage: bash train/recipes/gpu_default.sh [RUNS_DIR]
set -euo pipefail
export BASE_STEPS=${BASE_STEPS:-40000} ROUTER_STEPS=${ROUTER_STEPS:-20000} EXPERT_STEPS=${EXPERT_STEPS:-20000}
export BASE_SECONDS=${BASE_SECONDS:-210} ROUTER_SECONDS=${ROUTER_SECONDS:-200} EXPERT_SECONDS=${EXPERT_SECONDS:-110}
export WORKERS=${WORKERS:-6}
RUNS=${1:-runs/gpu-default}
mkdir -p "$RUNS"
# Issue 28, item 5: the base's speed with its degradations drawn by the data-loader workers and
# on the GPU (--synthesis device), PROBE_SECONDS each (about 20 s of start-up on top); every run
# below then draws them on the GPU. Skip with PROBE_SECONDS=0.
if [ "${PROBE_SECONDS:-30}" != 0 ]; then
  for SYNTHESIS in workers device; do
    accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
      train/train_restorer.py --config train/configs/nafnet-w32.json --degradations all --resolution 128 \
      --train_batch_size 32 --max_train_steps 100000 --max_train_seconds "${PROBE_SECONDS:-30}" \
      --synthesis "$SYNTHESIS" --dataloader_num_workers "$WORKERS" --repeats 8 --validation_steps 0 \
      --num_validation_images 0 --checkpointing_steps 0 --output_dir "$RUNS/probe-$SYNTHESIS" 2>&1 \
      | grep -o "at [0-9.]* ms a step" | awk -v s="$SYNTHESIS" '{printf "synthesis %s: %.1f steps/s (%s ms a step)\n", s, 1000 / $2, $2}' \
      | tee -a "$RUNS/synthesis-speed.txt"
  done
fi
export EXTRA="${EXTRA:-} --synthesis device"
exec bash "$(dirname "$0")/default_model.sh" "$RUNS"
