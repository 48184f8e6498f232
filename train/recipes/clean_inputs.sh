#!/usr/bin/env bash
# Issue 28 ("a restorer that never makes a photo worse"): experts that leave alone what is not
# theirs. Each expert trains on its own degradation only, so an expert the router sends to a
# photo without it restores what is not there: the shipped shadow expert brightens a clean photo
# by 22/255 on average (docs/default-model.md, "Clean inputs"). With --clean_inputs SHARE, that
# share of its training inputs are clean crops, their target themselves.
# TYPE's expert is retrained on the embedded default's base at the shipped experts' budget per
# type (1858 steps of batch 32 at 128 px over 10 types: STEPS 186), arm by arm:
#   cleanNN  --clean_inputs 0.NN      plain  --clean_inputs 0 (the control: retrained, nothing else)
# then, per arm, a copy of the default with that expert (RUNS_DIR/ARM-pipeline), the share of its
# output the shipped expert gives its prior or its input refitted (fit_prior_blend.py, where the
# shipped expert has one) and its expected-gain table refitted, both on the training photos
# (RUNS_DIR/ARM-gains/pipeline, the candidate), each scored on the 13 set-aside photos at seeds
# 0-2 (RUNS_DIR/ARM-seedS), as is the default (RUNS_DIR/default-seedS).
# Usage: TYPE=shadowed ARMS="clean25 plain" bash train/recipes/clean_inputs.sh [RUNS_DIR]
#   SPLIT (runs/split): the photo split, made by train/split_photos.py when missing; THREADS (2)
set -euo pipefail
TYPE=${TYPE:-shadowed}
R=${1:-runs/clean-inputs/$TYPE}
SPLIT=${SPLIT:-runs/split}
ARMS=${ARMS:-clean25 plain}
TYPES=motion-blurry,hazy,jpeg-compressed,low-light,noisy,raindrop,rainy,shadowed,snowy,uncompleted,clean
mkdir -p "$R"
python train/split_photos.py --data "${UIR_PHOTOS:-../shared/photos}" --output_dir "$SPLIT"
shipped_flags() {  # the shipped expert's training flags, and "blend:TOWARD" for each blend its output gets
  python - "$TYPE" <<'PY'
import sys
from uir.pipelines.loading import load_pipeline
expert = next(e for e in load_pipeline("default").experts.experts if e.degradation == sys.argv[1])
flags = [flag for flag, on in (("--prior_input", expert.prior_input), ("--veil_bound", expert.veil_bound)) if on]
blends = [f"blend:{toward}" for toward, share in (("prior", expert.prior_blend), ("input", expert.input_blend)) if share]
print(" ".join(flags + blends))
PY
}
read -r -a SHIPPED <<< "$(shipped_flags)"
FLAGS=() BLENDS=()
for WORD in "${SHIPPED[@]}"; do
  case "$WORD" in blend:*) BLENDS+=("${WORD#blend:}") ;; *) FLAGS+=("$WORD") ;; esac
done
for ARM in $ARMS; do
  case "$ARM" in
    plain) SHARE=0 ;;
    clean[0-9]*) SHARE=0.${ARM#clean} ;;
    *) echo "unknown arm $ARM (cleanNN or plain)" >&2; exit 2 ;;
  esac
  if [ ! -f "$R/$ARM/experts/$TYPE/uir_expert.json" ]; then
    OMP_NUM_THREADS=${THREADS:-2} accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no \
      --dynamo_backend no train/train_uir_lora.py --pretrained_model_name_or_path default --degradations "$TYPE" \
      "${FLAGS[@]}" --clean_inputs "$SHARE" --resolution 128 --train_batch_size 32 --learning_rate 1e-3 \
      --max_train_steps "${STEPS:-186}" --repeats 8 --validation_steps 0 --num_validation_images 0 \
      --checkpointing_steps 50 --checkpoints_total_limit 1 --resume_from_checkpoint latest \
      --dataloader_num_workers 1 --train_data_dir "$SPLIT/train" --output_dir "$R/$ARM" >> "$R/$ARM.log" 2>&1
  fi
  if [ ! -f "$R/$ARM-pipeline/model_index.json" ]; then
    python - "$R/$ARM/experts/$TYPE" "$R/$ARM-pipeline" <<'PY'
import sys
from uir.pipelines.loading import load_pipeline
pipe = load_pipeline("default")
pipe.load_expert(sys.argv[1], replace=True)
pipe.save_pretrained(sys.argv[2])
PY
  fi
  MODEL=$R/$ARM-pipeline
  # fit_prior_blend.py --toward, as the blends of the shipped expert were fitted
  for TOWARD in "${BLENDS[@]}"; do
    [ -f "$R/$ARM-$TOWARD-blend/pipeline/model_index.json" ] || python train/fit_prior_blend.py --model "$MODEL" \
      --degradation "$TYPE" --toward "$TOWARD" --train_data_dir "$SPLIT/train" --output_dir "$R/$ARM-$TOWARD-blend" \
      > "$R/$ARM-$TOWARD-blend.log" 2>&1
    MODEL=$R/$ARM-$TOWARD-blend/pipeline
  done
  [ -f "$R/$ARM-gains/pipeline/model_index.json" ] || python train/fit_expected_gains.py --model "$MODEL" \
    --train_data_dir "$SPLIT/train" --output_dir "$R/$ARM-gains" > "$R/$ARM-gains.log" 2>&1
done
for SEED in 0 1 2; do
  for ARM in default $ARMS; do
    MODEL=$R/$ARM-gains/pipeline
    [ "$ARM" = default ] && MODEL=default
    [ -f "$R/$ARM-seed$SEED/pairs.csv" ] || OMP_NUM_THREADS=${THREADS:-2} uir eval --model "$MODEL" \
      --data "$SPLIT/validation" --degradations "$TYPES" --seed "$SEED" -o "$R/$ARM-seed$SEED" > /dev/null
  done
done
