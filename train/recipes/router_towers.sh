#!/usr/bin/env bash
# Issue 28, item 1: the router's image tower compared by measurement. Two routers identical but
# for the tower, trained side by side from scratch on the default's protocol (10 types + clean,
# random severities, 256 px, the resized view plus a 3x3 grid of native 96 px crops, text tower
# trained too):
#   vit:     train/configs/tiny-clip.json         (the shipped tower: ViT, patch 8, width 128, 4 layers)
#   convnet: train/configs/tiny-clip-convnet.json (open_clip's ModifiedResNet, width 32, one
#            bottleneck per stage; about the ViT's compute per view)
#   convnet16: train/configs/tiny-clip-convnet16.json (the same at width 16: 1.3 M parameters per
#            tower against the ViT's 0.9 M and the width-32 ConvNet's 5.2 M; a default with it
#            fits issue 28's 40 MB, one with the width-32 ConvNet does not)
# Early stopping never sees the held-out photos: every fifth training photo (13 of 68) is set
# aside as the validation split, and both towers train on the other 55. The validation accuracy
# (all 11 classes, random severity, whole photos) is logged every VALIDATION_STEPS to
# RUNS_DIR/<tower>/logs/metrics.jsonl; the held-out score comes once, at the end.
# Every run resumes from its latest checkpoint when the same line is run again.
# A third arm, convnet-effect, is the ConvNet labelled by effect (--clean_above_psnr 35: a draw
# still at 35 dB or more from its clean crop, the default's bar for clean photos, is labelled
# clean); TOWERS="convnet convnet-effect" compares it with the ConvNet labelled by type.
# A fourth, convnet-traced, reads the default's traces (a JPEG at quality 30 or below, missing
# pixels) and trains eq. 3 only on the draws without one (--skip_traced): the traces decide those.
#
# Usage: bash train/recipes/router_towers.sh [RUNS_DIR]
#   TOWERS (default "vit convnet"), STEPS (4000), BATCH (16), VALIDATION_STEPS (100), THREADS per run (1)
#   SNAPSHOT=1: train nothing; instead turn each tower's latest checkpoint into a router (the
#     same script resumed at the checkpoint's own step, so it takes no step; no calibration,
#     which leaves every top-1 as it is) in RUNS_DIR/snapshots/<tower>-<step>/router, and write
#     its confusion matrix on the set-aside photos to RUNS_DIR/snapshots/<tower>-<step>/validation.md
#     (the same draws as the training's validation, so its overall top-1 is the logged one).
#     It can run while the towers train.
set -euo pipefail
RUNS=${1:-runs/router-towers}
PHOTOS=${UIR_PHOTOS:-../shared/photos}
python train/split_photos.py --data "$PHOTOS" --output_dir "$RUNS"
TOWERS=${TOWERS:-vit convnet}
router_args() {  # TOWER: the flags every arm trains with, and every snapshot resumes with
  local config=train/configs/tiny-clip.json labels=""
  case "$1" in convnet16*) config=train/configs/tiny-clip-convnet16.json ;; convnet*) config=train/configs/tiny-clip-convnet.json ;; esac
  case "$1" in
    *-effect) labels="--clean_above_psnr 35" ;;
    *-traced) labels="--jpeg_max_quality 30 --call_missing_pixels --skip_traced" ;;
  esac
  echo --clip_model "$config" $labels --crop_grid 3 --train_text_tower --min_confidence 0.7 --low_confidence identity \
    --degradations all --resolution 256 --train_batch_size "${BATCH:-16}" --learning_rate 5e-4 --lr_warmup_steps 200 \
    --train_data_dir "$RUNS/train" --dataloader_num_workers 1 --repeats 8 --resume_from_checkpoint latest
}
LAUNCH="accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no"
if [ -n "${SNAPSHOT:-}" ]; then
  for TOWER in $TOWERS; do
    CHECKPOINT=$(python -c 'import sys; from uir.training.checkpoints import resolve_checkpoint
print(resolve_checkpoint(sys.argv[1], "latest") or sys.exit(f"no finished checkpoint in {sys.argv[1]}"))' "$RUNS/$TOWER")
    STEP=${CHECKPOINT##*-}
    SNAP="$RUNS/snapshots/$TOWER-$STEP"
    if [ ! -f "$SNAP/router/config.json" ]; then
      mkdir -p "$SNAP" && rm -rf "$SNAP/checkpoint-$STEP" && cp -r "$CHECKPOINT" "$SNAP/"
      OMP_NUM_THREADS=${THREADS:-1} $LAUNCH train/train_router.py $(router_args "$TOWER") --max_train_steps "$STEP" \
        --calibration_repeats 0 --validation_steps 0 --num_validation_images 0 --checkpointing_steps 0 \
        --output_dir "$SNAP" > "$SNAP/snapshot.log" 2>&1
    fi
    uir eval-router "$SNAP/router" --data "$RUNS/validation" --severity random --repeats 1 --seed 0 > "$SNAP/validation.md"
  done
  exit 0
fi
for TOWER in $TOWERS; do
  OMP_NUM_THREADS=${THREADS:-1} nice -n 10 $LAUNCH train/train_router.py $(router_args "$TOWER") \
    --validation_data_dir "$RUNS/validation" --num_validation_images 13 --max_train_steps "${STEPS:-4000}" \
    --validation_steps "${VALIDATION_STEPS:-100}" --checkpointing_steps 100 --checkpoints_total_limit 1 \
    --output_dir "$RUNS/$TOWER" >> "$RUNS/$TOWER.log" 2>&1 &
done
wait
for TOWER in $TOWERS; do
  uir eval-router "$RUNS/$TOWER/router" --data "$PHOTOS" --held-out > "$RUNS/$TOWER-held-out.md"
done
