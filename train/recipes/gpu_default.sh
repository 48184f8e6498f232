#!/usr/bin/env bash
# Issue 16, step 4: the embedded default (default_model.sh) on one large GPU in about 8 minutes:
# each part under a time budget (--max_train_seconds: a run times its first steps, then fixes its
# length and LR schedule to fit), many data workers. On one H200 this made the shipped weights:
# base 4820 steps (43 ms each), router 1221 (162 ms, bound by its data workers), experts 1858.
# Leave a command that wraps this at least 90 s beyond the sum of the budgets: start-up, the
# router's calibration and the saves come after them.
# Usage: bash train/recipes/gpu_default.sh [RUNS_DIR]
set -euo pipefail
export BASE_STEPS=${BASE_STEPS:-40000} ROUTER_STEPS=${ROUTER_STEPS:-20000} EXPERT_STEPS=${EXPERT_STEPS:-20000}
export BASE_SECONDS=${BASE_SECONDS:-210} ROUTER_SECONDS=${ROUTER_SECONDS:-200} EXPERT_SECONDS=${EXPERT_SECONDS:-110}
export WORKERS=${WORKERS:-6}
exec bash "$(dirname "$0")/default_model.sh" "${1:-runs/gpu-default}"
