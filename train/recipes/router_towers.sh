#!/usr/bin/env bash
# Issue 28, item 1: the router's image tower compared by measurement. Two routers identical but
# for the tower, trained side by side from scratch on the default's protocol (10 types + clean,
# random severities, 256 px, the resized view plus a 3x3 grid of native 96 px crops, text tower
# trained too):
#   vit:     train/configs/tiny-clip.json         (the shipped tower: ViT, patch 8, width 128, 4 layers)
#   convnet: train/configs/tiny-clip-convnet.json (open_clip's ModifiedResNet, width 32, one
#            bottleneck per stage; about the ViT's compute per view)
# Early stopping never sees the held-out photos: every fifth training photo (13 of 68) is set
# aside as the validation split, and both towers train on the other 55. The validation accuracy
# (all 11 classes, random severity, whole photos) is logged every VALIDATION_STEPS to
# RUNS_DIR/<tower>/logs/metrics.jsonl; the held-out score comes once, at the end.
# Every run resumes from its latest checkpoint when the same line is run again.
#
# Usage: bash train/recipes/router_towers.sh [RUNS_DIR]
#   STEPS (default 4000), BATCH (16), VALIDATION_STEPS (100), THREADS per run (1)
set -euo pipefail
RUNS=${1:-runs/router-towers}
PHOTOS=${UIR_PHOTOS:-../shared/photos}
python - "$PHOTOS" "$RUNS" <<'PY'
import sys
from uir.data import link_photos, validation_split
train, validation, _ = validation_split(sys.argv[1])
link_photos(train, f"{sys.argv[2]}/train")
link_photos(validation, f"{sys.argv[2]}/validation")
PY
for TOWER in vit convnet; do
  CONFIG=train/configs/tiny-clip.json
  [ "$TOWER" = convnet ] && CONFIG=train/configs/tiny-clip-convnet.json
  OMP_NUM_THREADS=${THREADS:-1} nice -n 10 accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no \
    --dynamo_backend no train/train_router.py --clip_model "$CONFIG" --crop_grid 3 --train_text_tower \
    --min_confidence 0.7 --low_confidence identity --degradations all --resolution 256 \
    --train_batch_size "${BATCH:-16}" --learning_rate 5e-4 --lr_warmup_steps 200 --max_train_steps "${STEPS:-4000}" \
    --train_data_dir "$RUNS/train" --validation_data_dir "$RUNS/validation" --num_validation_images 13 \
    --validation_steps "${VALIDATION_STEPS:-100}" --checkpointing_steps 100 --checkpoints_total_limit 1 \
    --resume_from_checkpoint latest --dataloader_num_workers 1 --repeats 8 --output_dir "$RUNS/$TOWER" \
    >> "$RUNS/$TOWER.log" 2>&1 &
done
wait
for TOWER in vit convnet; do
  uir eval-router "$RUNS/$TOWER/router" --data "$PHOTOS" --held-out -o "$RUNS/$TOWER-held-out"
done
