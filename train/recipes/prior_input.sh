#!/usr/bin/env bash
# Issue 28, item 4: does a physics-guided input let an expert beat its classical tool? Two experts
# of one TYPE (hazy: the dark-channel prior; jpeg-compressed: the bilateral filter; noisy: DCT
# shrinkage) on the embedded default's base, identical but for their input:
#   plain  the degraded image (as the shipped experts)
#   prior  the classical prior's output (train_uir_lora.py --prior_input; uir.classical.PRIORS)
#   rankN  the degraded image, at LoRA rank N instead of 8 (--restorer_rank N); for a TYPE
#          without a prior (motion-blurry) the arms are plain ones, and the tool rows are skipped
# rank 8, 128 px crops, batch 8, STEPS (400) at lr 1e-3, one CPU core each, on the 55 photos of
# the router-towers split (every fifth training photo set aside: SPLIT/validation).
# Each is scored with the true expert (--oracle) on the 13 set-aside photos and on the 16
# held-out ones, as is the shipped expert; then on the held-out ones with the router on (all
# types: the router decides which images the expert sees). The classical tool (PRIORS[TYPE])
# is scored on the same TYPE-alone pairs (RUNS_DIR/tool.txt), alone and followed by the shipped
# base without experts; on the all-types pairs its row is benchmarks/peers.py's.
# The prior sees the whole training crop; at RESOLUTION 256 and BATCH 2 (the same pixels a step)
# the dark channel sees the context it sees on a 256 px evaluation image, which a 128 px crop lacks.
# Usage: TYPE=hazy bash train/recipes/prior_input.sh [RUNS_DIR]
#   ARMS (default "plain prior"), RESOLUTION (128), BATCH (8), STEPS (400)
#   SPLIT (runs/router-towers): the photo split, linked there by train/split_photos.py when
#   missing (as router_towers.sh does; the default's noise and JPEG experts used that split of
#   today's 65 training photos, 52 + 13)
set -euo pipefail
TYPE=${TYPE:-hazy}
R=${1:-runs/prior-input/$TYPE}
SPLIT=${SPLIT:-runs/router-towers}
PHOTOS=${UIR_PHOTOS:-../shared/photos}
mkdir -p "$R"
python train/split_photos.py --data "$PHOTOS" --output_dir "$SPLIT"
ARMS=${ARMS:-plain prior}
for ARM in $ARMS; do
  case "$ARM" in
    plain) FLAG=() ;;
    prior) FLAG=(--prior_input) ;;
    rank[0-9]*) FLAG=(--restorer_rank "${ARM#rank}") ;;
    *) echo "unknown arm $ARM (plain, prior or rankN)" >&2; exit 2 ;;
  esac
  [ -f "$R/$ARM/experts/$TYPE/uir_expert.json" ] && continue
  OMP_NUM_THREADS=1 accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
    train/train_uir_lora.py --pretrained_model_name_or_path default --degradations "$TYPE" --resolution "${RESOLUTION:-128}" \
    --train_batch_size "${BATCH:-8}" --learning_rate 1e-3 --max_train_steps "${STEPS:-400}" --seed 0 \
    --train_data_dir "$SPLIT/train" --repeats 8 --validation_steps 0 --num_validation_images 0 \
    --checkpointing_steps 100 --checkpoints_total_limit 1 --resume_from_checkpoint latest \
    --dataloader_num_workers 1 "${FLAG[@]}" --output_dir "$R/$ARM" >> "$R/$ARM.log" 2>&1 &
done
wait
for SET in validation held-out; do
  DATA=(--data "$SPLIT/validation")
  [ "$SET" = held-out ] && DATA=(--data "$PHOTOS" --held-out)
  uir eval --model default --oracle "${DATA[@]}" --degradations "$TYPE" -o "$R/shipped-$SET-oracle"
  for ARM in $ARMS; do
    uir eval --model default --experts "$R/$ARM/experts/$TYPE" --oracle "${DATA[@]}" --degradations "$TYPE" \
      -o "$R/$ARM-$SET-oracle"
  done
done
for ARM in $ARMS; do
  uir eval --model default --experts "$R/$ARM/experts/$TYPE" --data "$PHOTOS" --held-out -o "$R/$ARM-held-out"
done
python - "$TYPE" "$SPLIT/validation" "$PHOTOS" <<'PY' | tee "$R/tool.txt"
import sys
import torch
from uir.classical import PRIORS
from uir.data import photo_files, split_photos
from uir.evaluation import evaluate_restoration
from uir.pipelines.loading import load_pipeline
name, validation, photos = sys.argv[1:]
if name not in PRIORS:
    print(f"{name}: no classical prior (uir.classical.PRIORS), no tool rows")
    sys.exit(0)
prior = PRIORS[name]
pipe = load_pipeline("default")
pipe.set_progress_bar_config(disable=True)
no_expert = torch.zeros(1, len(pipe.expert_list.names))
def base_on_prior(lq, pair):
    return pipe(prior.restore(lq), weights=no_expert, output_type="pt").images
for label, files in (("set-aside", photo_files(validation)), ("held out", split_photos(photos)[1])):
    scores = evaluate_restoration(lambda lq, pair: prior.restore(lq), files, [name])
    base = evaluate_restoration(base_on_prior, files, [name])
    print(f"{name}, {label}: input {scores.psnr_in[name]:.2f}, {prior.name} {scores.psnr_out[name]:.2f}, "
          f"the shipped base alone on its output {base.psnr_out[name]:.2f}")
PY
