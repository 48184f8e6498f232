#!/usr/bin/env bash
# How uir/assets/default (the embedded model of `uir restore`) is made, on the training split of
# shared/photos less its set-aside photos (UIR_TRAIN_PHOTOS below), in three parts:
#   1. side by side (independent): the mix-trained base, a NAFNet of width 32
#      (train/configs/nafnet-w32.json), and the router: its image tower and text tower trained
#      from scratch (train/configs/tiny-clip.json) on a global view plus a 3x3 grid of
#      native-resolution crops, with the "clean" class, then temperature-calibrated on fresh
#      degradations of the training photos; below confidence 0.7 the input comes back
#      unchanged (the `identity` low-confidence policy, docs/default-model.md); after the drop
#      detector (below) its two views are weighed per class, and last an expected-gain table
#      fitted on the training photos decides per image instead of the threshold;
#   2. one LoRA expert per DA-CLIP type on the frozen base. The JPEG and noise experts refine
#      their classical prior's output (--prior_input: the bilateral filter, DCT shrinkage;
#      docs/default-model.md, "Prior-guided experts"), and the snow, rain, haze and shadow experts
#      ask the pipeline to keep their output within the veil their input can hold (--veil_bound;
#      uir.classical.VEIL_BOUNDS; a shadow's is a veil towards black). The shipped JPEG and noise experts were trained that way
#      after the others, on CPU (train/recipes/prior_input.sh, 800 steps of batch 8), and the
#      shipped bounds were switched on without retraining; this recipe does both in its one run;
#   3. base + experts + router assembled into RUNS_DIR/default, a pipeline folder.
# The step counts are those the shipped weights were trained for (gpu_default.sh fitted them to
# its time budgets on one H200: about 7 minutes there; on 2 CPU cores, an estimate from timed
# steps (the base about 10 s a step at batch 32): about a day). Every run
# resumes from its latest checkpoint when the same line is run again.
# The shipped weights came from this recipe when nafnet-w32.json still had pixel-shuffle upsampling,
# then train/convert_upsampling.py (2026-12-04: bilinear upsamplers, no periodic grid); the config
# now trains bilinear upsampling from the start.
# Score it: uir eval --model RUNS_DIR/default --data ../shared/photos --held-out -o out
#
# Usage: bash train/recipes/default_model.sh [RUNS_DIR]
#   UIR_TRAIN_PHOTOS: a folder of training photos (default: RUNS_DIR/photos/train, the training
#     split of UIR_PHOTOS (../shared/photos) less every fifth photo, set aside in
#     RUNS_DIR/photos/validation by train/split_photos.py: the shipped weights saw those photos,
#     which biased every choice made on them towards what was trained)
#   BASE_STEPS, ROUTER_STEPS, EXPERT_STEPS, DROP_STEPS, DROP_HARD_STEPS: optimizer steps of each part
#   BASE_SECONDS, ROUTER_SECONDS, EXPERT_SECONDS, DROP_SECONDS, DROP_HARD_SECONDS: time budgets instead (--max_train_seconds)
#   ROUTER_CONFIG: the router's CLIP config (default train/configs/tiny-clip.json, the ViT;
#     train/configs/tiny-clip-convnet.json is the ConvNet of router_towers.sh)
#   WORKERS: data-loader workers per run; EXTRA: options added to every run
#   PROBE_SECONDS: time the base with each synthesis path first (below)
#   PARTS: "all" (default), or "router": the router, its drop detector with the hard negatives and
#     its view weights only, into RUNS_DIR/router-views/router (gpu_router.sh: the router is what
#     a lent GPU's minutes buy most; no base, experts, blend or table)
#   (a quick dry run: EXTRA="--train_batch_size 2 --resolution 96" BASE_STEPS=5 ...)
set -euo pipefail
RUNS=${1:-runs/default}
WORKERS=${WORKERS:-1}
budget() {  # --max_train_steps N, plus --max_train_seconds S when a budget is set
  echo "--max_train_steps $1${2:+ --max_train_seconds $2}"
}
COMMON=(--repeats 8 --validation_steps 0 --num_validation_images 0 --checkpointing_steps 250
        --checkpoints_total_limit 1 --resume_from_checkpoint latest --dataloader_num_workers "$WORKERS")
if [ -z "${UIR_TRAIN_PHOTOS:-}" ]; then  # the set-aside photos stay unseen, for fair choices
  python train/split_photos.py --data "${UIR_PHOTOS:-../shared/photos}" --output_dir "$RUNS/photos"
  UIR_TRAIN_PHOTOS=$RUNS/photos/train
fi
COMMON+=(--train_data_dir "$UIR_TRAIN_PHOTOS")
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
COMMON+=("${EXTRA_ARGS[@]}")
mkdir -p "$RUNS"
PARTS=${PARTS:-all}
case "$PARTS" in all|router) ;; *) echo "PARTS must be all or router, not $PARTS" >&2; exit 2 ;; esac
LAUNCH="accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no"
BASE=(train/train_restorer.py --config train/configs/nafnet-w32.json --degradations all --resolution 128
      --train_batch_size 32 --learning_rate 1e-3 --lr_warmup_steps 200)
# Issue 28, item 5: with PROBE_SECONDS set, first the base's speed with its degradations drawn by
# the data-loader workers and on the training device (--synthesis device), PROBE_SECONDS each
# (about 20 s of start-up on top), appended to RUNS_DIR/synthesis-speed.txt
if [ -n "${PROBE_SECONDS:-}" ] && [ "$PARTS" = all ]; then
  for SYNTHESIS in workers device; do
    $LAUNCH "${BASE[@]}" --max_train_steps 1000000 --max_train_seconds "$PROBE_SECONDS" --synthesis "$SYNTHESIS" \
      --dataloader_num_workers "$WORKERS" --repeats 8 --validation_steps 0 --num_validation_images 0 \
      --checkpointing_steps 0 --output_dir "$RUNS/probe-$SYNTHESIS" > "$RUNS/probe-$SYNTHESIS.log" 2>&1
    { grep -o "at [0-9.]* ms a step" "$RUNS/probe-$SYNTHESIS.log" \
      | awk -v s="$SYNTHESIS" '{printf "synthesis %s: %.1f steps/s (%s ms a step)\n", s, 1000 / $2, $2}' \
      || echo "synthesis $SYNTHESIS: no timing in $RUNS/probe-$SYNTHESIS.log"; } | tee -a "$RUNS/synthesis-speed.txt"
  done
fi

$LAUNCH train/train_router.py --clip_model "${ROUTER_CONFIG:-train/configs/tiny-clip.json}" --crop_grid 3 --train_text_tower \
  --min_confidence 0.7 --low_confidence identity --jpeg_max_quality 30 --call_missing_pixels \
  --degradations all --resolution 256 --train_batch_size 64 --learning_rate 5e-4 --lr_warmup_steps 200 \
  $(budget "${ROUTER_STEPS:-1221}" "${ROUTER_SECONDS:-}") "${COMMON[@]}" --output_dir "$RUNS/router" \
  > "$RUNS/router.log" 2>&1 &
ROUTER_PID=$!
if [ "$PARTS" = all ]; then
$LAUNCH "${BASE[@]}" $(budget "${BASE_STEPS:-4820}" "${BASE_SECONDS:-}") "${COMMON[@]}" --output_dir "$RUNS/base" \
  > "$RUNS/base.log" 2>&1
$LAUNCH train/train_uir_lora.py --pretrained_model_name_or_path "$RUNS/base/pipeline" --degradations all \
  --resolution 128 --train_batch_size 32 --learning_rate 1e-3 \
  --prior_input jpeg-compressed,noisy --veil_bound snowy,rainy,hazy,shadowed \
  $(budget "${EXPERT_STEPS:-1858}" "${EXPERT_SECONDS:-}") "${COMMON[@]}" --output_dir "$RUNS/experts" \
  > "$RUNS/experts.log" 2>&1
fi
wait "$ROUTER_PID"
if [ "$PARTS" = all ]; then
python train/assemble_pipeline.py --base "$RUNS/base/pipeline" --experts "$RUNS/experts/experts" \
  --router "$RUNS/router/router" --output_dir "$RUNS/default"
fi
# Raindrops: a drop detector added to a copy of the router, then trained further on the
# negatives that drew its false drops (motion blur, shadows, haze: docs/default-model.md, "Hard
# negatives"), and a second pipeline with it, RUNS_DIR/default-drops, to compare with
# RUNS_DIR/default on the set-aside photos before either is shipped
$LAUNCH train/train_drop_detector.py --router "$RUNS/router/router" --pos_weight 10 --learning_rate 1e-3 \
  --degradations all --resolution 192 --train_batch_size 8 \
  $(budget "${DROP_STEPS:-1600}" "${DROP_SECONDS:-}") "${COMMON[@]}" --output_dir "$RUNS/drops" > "$RUNS/drops.log" 2>&1
$LAUNCH train/train_drop_detector.py --router "$RUNS/drops/router" --init_detector --pos_weight 10 \
  --learning_rate 3e-4 --lr_warmup_steps 50 --degradations raindrop,motion-blurry,shadowed,hazy --seed 2 \
  --resolution 192 --train_batch_size 8 $(budget "${DROP_HARD_STEPS:-1000}" "${DROP_HARD_SECONDS:-}") \
  "${COMMON[@]}" --output_dir "$RUNS/drops-hard" > "$RUNS/drops-hard.log" 2>&1
# The router's two views weighed per class (view_weights: docs/default-model.md, "View weights"),
# fitted on fresh degradations of the training photos that carry no trace; no weight trains
python train/train_router.py --router "$RUNS/drops-hard/router" --calibrate_only --calibration views \
  --calibration_repeats 2 --skip_traced --jpeg_max_quality 30 --call_missing_pixels --degradations all \
  --train_data_dir "$UIR_TRAIN_PHOTOS" --output_dir "$RUNS/router-views" > "$RUNS/router-views.log" 2>&1
[ "$PARTS" = router ] && exit 0
python train/assemble_pipeline.py --base "$RUNS/base/pipeline" --experts "$RUNS/experts/experts" \
  --router "$RUNS/router-views/router" --output_dir "$RUNS/default-drops"
# Haze: the share of the haze expert's output given to the guided dark channel, fitted on the
# training photos (docs/default-model.md, "Haze: the expert averaged with the dark channel"),
# into RUNS_DIR/default-blend/pipeline
python train/fit_prior_blend.py --model "$RUNS/default-drops" --degradation hazy --train_data_dir "$UIR_TRAIN_PHOTOS" \
  --output_dir "$RUNS/default-blend" > "$RUNS/default-blend.log" 2>&1
# The expected-gain table that replaces the confidence threshold (docs/default-model.md,
# "Expected-gain policy"), fitted on the training photos, into RUNS_DIR/default-gains/pipeline,
# the candidate to ship
python train/fit_expected_gains.py --model "$RUNS/default-blend/pipeline" --train_data_dir "$UIR_TRAIN_PHOTOS" \
  --output_dir "$RUNS/default-gains" > "$RUNS/default-gains.log" 2>&1
