#!/usr/bin/env bash
# The diffusion-training-enhanced framework at small scale on shared/photos (64 px crops, a
# NAFNet of width 16 with a timestep input): generative pre-training, t_mat for the 10 DA-CLIP
# types, single-task fine-tuning on noise sigma 25 (plain vs GEF vs no pre-training; tested at
# sigma 25 and 50), and unified training over the 10 types (mix-training vs TIT + MoE).
# Usage: bash train/recipes/dte.sh [RUNS_DIR]
# Durations on one CPU core: pre-training ~16 min, match ~1 min, plain fine-tuning ~3 min,
# GEF ~17 min, unified ~6 + ~10 min, evaluations a few minutes each.
set -euo pipefail
RUNS=${1:-runs/dte}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
T="$RUNS/t_mat.json"
LAUNCH="accelerate launch --num_processes 1 --cpu train/train_dte.py"
C="--checkpointing_steps 250 --resume_from_checkpoint latest --validation_steps 0"
$LAUNCH pretrain --max_train_steps 2500 --checkpointing_steps 500 --output_dir "$RUNS/pretrain"
python train/train_dte.py match --pretrained "$RUNS/pretrain" --num_images 16 --output "$T"
$LAUNCH finetune --pretrained "$RUNS/pretrain" --t_mat "$T" --method plain --max_train_steps 500 --output_dir "$RUNS/ft-plain" $C
$LAUNCH finetune --pretrained "$RUNS/pretrain" --t_mat "$T" --method gef --max_train_steps 500 --output_dir "$RUNS/ft-gef" $C
$LAUNCH finetune --t_mat "$T" --method plain --max_train_steps 500 --output_dir "$RUNS/ft-scratch" $C
for model in ft-plain ft-gef ft-scratch; do
  python train/train_dte.py evaluate --model "$RUNS/$model/model" --t_mat "$T" --degradations noisy \
    --severities moderate,severe --output "$RUNS/eval-$model.json"
done
# the 250-step ablation (first 8 held-out photos): the 500-step runs at their step-250 checkpoints,
# and 250-step runs that drop L_orthog, then also the generative samples, or use the orthogonal form
for model in ft-plain ft-gef; do
  python train/train_dte.py evaluate --model "$RUNS/pretrain/model" --checkpoint "$RUNS/$model/checkpoint-250" \
    --t_mat "$T" --degradations noisy --severities moderate,severe --limit 8 --output "$RUNS/eval-$model-250.json"
done
AB="finetune --pretrained $RUNS/pretrain --t_mat $T --method gef --max_train_steps 250"
$LAUNCH $AB --orthogonality none --output_dir "$RUNS/ab-no-orthog" $C
$LAUNCH $AB --orthogonality none --generative_fraction 0 --output_dir "$RUNS/ab-reg-only" $C
$LAUNCH $AB --orthogonality orthogonal --output_dir "$RUNS/ab-orthogonal" $C
for model in ab-no-orthog ab-reg-only ab-orthogonal; do
  python train/train_dte.py evaluate --model "$RUNS/$model/model" --t_mat "$T" --degradations noisy \
    --severities moderate,severe --limit 8 --output "$RUNS/eval-$model.json"
done
$LAUNCH unified --t_mat none --method mix --moe_experts 0 --lambda_reg 0 --generative_fraction 0 \
  --orthogonality none --max_train_steps 1000 --output_dir "$RUNS/mix" $C
$LAUNCH unified --pretrained "$RUNS/pretrain" --t_mat "$T" --method tit --moe_experts 10 --orthogonality none \
  --steps_per_stage 100 --output_dir "$RUNS/tit" $C
$LAUNCH unified --pretrained "$RUNS/pretrain" --t_mat "$T" --method mix --moe_experts 10 --orthogonality none \
  --max_train_steps 1000 --output_dir "$RUNS/mix-pre" $C
python train/train_dte.py evaluate --model "$RUNS/mix-pre/model" --t_mat "$T" --limit 8 --output "$RUNS/eval-mix-pre.json"
python train/train_dte.py evaluate --model "$RUNS/mix/model" --t_mat none --limit 8 --output "$RUNS/eval-mix.json"
python train/train_dte.py evaluate --model "$RUNS/tit/model" --t_mat "$T" --limit 8 --output "$RUNS/eval-tit.json"
