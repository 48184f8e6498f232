#!/usr/bin/env bash
# The diffusion-training-enhanced framework at small scale on shared/photos (64 px crops, a
# NAFNet of width 16 with a timestep input), for both pre-training targets: the paper's eps
# prediction (read out as x0-hat) and the authors' residual denoiser ("sample").
# * pre-training (2500 steps) and t_mat for the 10 DA-CLIP types, per target;
# * single task, noise sigma 25 (tested at 25 and at the shifted 50): from scratch, and per
#   target plain L1, + generative 10% + L_reg, full GEF, the authors' iteration schedule, and
#   (eps) L_reg alone; haze (tested at moderate and the shifted severe): scratch and plain L1;
# * unified over the 10 types: mix-training from scratch, and per target TIT (descending and
#   ascending t_mat) and the same adapters and losses without TIT.
# Usage: bash train/recipes/dte.sh [RUNS_DIR]   (several hours on one CPU core; parts resume)
set -euo pipefail
R=${1:-runs/dte}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
LAUNCH="accelerate launch --num_processes 1 --cpu train/train_dte.py"
C="--checkpointing_steps 250 --resume_from_checkpoint latest --validation_steps 0"
for target in epsilon sample; do
  $LAUNCH pretrain --prediction_type $target --max_train_steps 2500 --checkpointing_steps 500 \
    --resume_from_checkpoint latest --output_dir "$R/pretrain-$target"
  python train/train_dte.py match --pretrained "$R/pretrain-$target" --num_images 16 --output "$R/t_mat-$target.json"
done
single() {  # task target config
  local task=$1 target=$2 cfg=$3 out="$R/$1-$2-$3" args
  case $cfg in
    plain) args="--method plain";;
    reg) args="--method gef --generative_fraction 0 --orthogonality none";;
    reggen) args="--method gef --orthogonality none";;
    reggen-iter) args="--method gef --orthogonality none --generative_schedule iterations";;
    gef) args="--method gef";;
  esac
  if [ "$cfg" = scratch ]; then
    out="$R/$task-scratch"
    $LAUNCH finetune --t_mat "$R/t_mat-$target.json" --method plain --degradations $task --max_train_steps 500 $C --output_dir "$out"
  else
    $LAUNCH finetune --pretrained "$R/pretrain-$target" --t_mat "$R/t_mat-$target.json" $args --degradations $task \
      --max_train_steps 500 $C --output_dir "$out"
  fi
  python train/train_dte.py evaluate --model "$out/model" --t_mat "$R/t_mat-$target.json" --degradations $task \
    --severities moderate,severe --output "$out/eval.json"
}
single noisy epsilon scratch
for cfg in plain reggen gef reggen-iter reg; do single noisy epsilon $cfg; done
for cfg in plain reggen gef reggen-iter; do single noisy sample $cfg; done
single hazy epsilon scratch; single hazy epsilon plain; single hazy sample plain
E="python train/train_dte.py evaluate --limit 8"
$LAUNCH unified --t_mat none --method mix --moe_experts 0 --lambda_reg 0 --generative_fraction 0 --orthogonality none \
  --max_train_steps 1000 --output_dir "$R/unified-mix" $C
$E --model "$R/unified-mix/model" --t_mat none --output "$R/unified-mix/eval.json"
for target in epsilon sample; do
  U="--pretrained $R/pretrain-$target --t_mat $R/t_mat-$target.json --moe_experts 10 --orthogonality none $C"
  $LAUNCH unified $U --method tit --steps_per_stage 100 --output_dir "$R/unified-$target-tit"
  $LAUNCH unified $U --method tit --ascending --steps_per_stage 100 --output_dir "$R/unified-$target-tit-asc"
  $LAUNCH unified $U --method mix --max_train_steps 1000 --output_dir "$R/unified-$target-mix-pre"
  for m in tit tit-asc mix-pre; do
    $E --model "$R/unified-$target-$m/model" --t_mat "$R/t_mat-$target.json" --output "$R/unified-$target-$m/eval.json"
  done
done
