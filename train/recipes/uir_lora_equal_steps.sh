#!/usr/bin/env bash
# Issue 31, item 6: do UIR-LoRA's experts beat their base at equal total steps? The default's
# experts trained for 3.9 times its base's steps on top of it; here, at small scale (a NAFNet
# of width 16, the 10 DA-CLIP types at random severities, 96 px crops, batch 8, lr 1e-3, one CPU
# core per run), per seed:
#   base       BASE_STEPS (default 600) of mix-training on every type
#   experts    one LoRA expert per type on the frozen base, EXPERT_STEPS (1200) in all, one type per step
#   base-long  BASE_STEPS + EXPERT_STEPS of mix-training: one model, the experts' total steps
# each scored by `uir eval` on the 16 held-out photos at default severity; the experts with the
# true type's expert (--oracle), so routing errors do not enter. SEEDS (default "0 1 2") are
# run one after another, LANES (lanes.sh) side by side; it ends with every arm's mean +- sd.
# Usage: bash train/recipes/uir_lora_equal_steps.sh [RUNS_DIR]
set -euo pipefail
R=${1:-runs/uir-lora-equal}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
B=${BASE_STEPS:-600}
E=${EXPERT_STEPS:-1200}
LAUNCH="accelerate launch --num_processes 1 --cpu"
C=(--resolution 96 --train_batch_size 8 --learning_rate 1e-3 --checkpointing_steps 200 --checkpoints_total_limit 1
   --resume_from_checkpoint latest --validation_steps 0 --num_validation_images 0)
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
C+=("${EXTRA_ARGS[@]}")
# shellcheck source=train/recipes/lanes.sh
. "$(dirname "$0")/lanes.sh"
base() {  # SEED STEPS RUN
  $LAUNCH train/train_restorer.py --degradations all --max_train_steps "$2" --seed "$1" "${C[@]}" --output_dir "$3"
}
arm() {  # ARM SEED
  local run="$R/$1-seed$2"
  case $1 in
    base) base "$2" "$B" "$run"
          held_out_scores "$run" --model "$run/pipeline";;
    experts) [ -f "$R/base-seed$2/eval.json" ] || { echo "the base of seed $2 is not finished" >&2; return 1; }
             $LAUNCH train/train_uir_lora.py --pretrained_model_name_or_path "$R/base-seed$2/pipeline" \
               --degradations all --max_train_steps "$E" --seed "$2" "${C[@]}" --output_dir "$run"
             held_out_scores "$run" --model "$R/base-seed$2/pipeline" --oracle \
               --experts "$(find "$run/experts" -mindepth 1 -maxdepth 1 -type d | sort | paste -sd,)";;
    base-long) base "$2" "$((B + E))" "$run"
               held_out_scores "$run" --model "$run/pipeline";;
  esac
}
lane() {
  for seed in ${SEEDS:-0 1 2}; do
    for a in base base-long experts; do once "$R/$a-seed$seed" arm "$a" "$seed"; done
  done
}
in_lanes "$R" lane
python train/summarize_seeds.py "$R" --arms base experts base-long
