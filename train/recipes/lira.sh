#!/usr/bin/env bash
# LIRA at small scale on shared/photos, 3 seeds, each with its own base and replay generator:
# fork (experts) -> join -> pseudo-replay GAN, the generator's quality against the real old
# distortion (replay-quality), then growing for haze with the old parameters unslowed (rho = 1,
# where forgetting can show) by four methods sharing one warm-up per seed:
#   finetune   new data only
#   lira       + pseudo-replay (eq. 18: generated old inputs G(y2), labelled by the frozen base)
#   lwf        + distillation on the new inputs (labelled by the frozen base)
#   lira-lwf   + both, to separate replay from distillation
# and held-out PSNR (16 photos, three levels) on the old task (lira-blended) and the new one,
# in RUNS_DIR/scores; it ends with each arm's mean +- sd over the finished seeds.
# LANES lanes (lanes.sh) take one seed each; a stopped recipe resumes where it was.
# Usage: bash train/recipes/lira.sh [RUNS_DIR]   (about 1 hour per seed on one CPU core)
set -euo pipefail
RUNS=${1:-runs/lira}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
LAUNCH="accelerate launch --num_processes 1 --cpu train/train_lira.py"
NET="--channels 16 --num_blocks 4 --resolution 64 --train_batch_size 8 --learning_rate 1e-3 --checkpointing_steps 100 --checkpoints_total_limit 1 --validation_steps 0 --num_validation_images 2 --resume_from_checkpoint latest"
EVAL="python train/train_lira.py evaluate"
# shellcheck source=train/recipes/lanes.sh
. "$(dirname "$0")/lanes.sh"
seed_run() {  # SEED: everything of one seed, into RUNS/sSEED; eval.json marks it finished
  local S="$RUNS/s$1" N="$NET --seed $1"
  $LAUNCH experts $N --max_train_steps 800 --output_dir "$S/experts"
  $LAUNCH join $N --init "$S/experts/model" --max_train_steps 500 --output_dir "$S/join"
  $LAUNCH replay-gan $N --base "$S/join/model" --generator_width 16 --max_train_steps 400 --output_dir "$S/gan"
  python train/train_lira.py replay-quality --generator "$S/gan/generator" --base "$S/join/model" --seed "$1" \
    --output "$S/gan/replay-quality.json"
  local O="$RUNS/scores"  # ARM-seedK/eval.json, as summarize_seeds.py reads them
  mkdir -p "$O/base-seed$1"
  $EVAL --model "$S/join/model" --degradations lira-blended --output "$O/base-seed$1/eval.json"
  local B="--base $S/join/model --max_train_steps 300 --rho 1" G="--generator $S/gan/generator"
  $LAUNCH grow $N $B --method lira $G --warmup_steps 200 --output_dir "$S/lira"
  local W="--warmup_from $S/lira/warmup/model"
  $LAUNCH grow $N $B --method lwf $W --output_dir "$S/lwf"
  $LAUNCH grow $N $B --method lira-lwf $G $W --output_dir "$S/lira-lwf"
  $LAUNCH grow $N $B --method finetune $W --output_dir "$S/finetune"
  for method in finetune lira lwf lira-lwf; do
    mkdir -p "$O/$method-old-seed$1" "$O/$method-new-seed$1"
    $EVAL --model "$S/$method/model" --task 0 --degradations lira-blended --output "$O/$method-old-seed$1/eval.json"
    $EVAL --model "$S/$method/model" --task 1 --degradations lira-blended-haze --output "$O/$method-new-seed$1/eval.json"
  done
  touch "$S/eval.json"  # this seed is finished
}
lane() {
  for seed in 0 1 2; do once "$RUNS/s$seed" seed_run "$seed"; done
}
mkdir -p "$RUNS"
in_lanes "$RUNS" lane
python train/summarize_seeds.py "$RUNS/scores" --arms base finetune-old lira-old lwf-old lira-lwf-old \
  finetune-new lira-new lwf-new lira-lwf-new
