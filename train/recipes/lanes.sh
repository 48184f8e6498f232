# Sourced by the recipes that run many small trainings side by side, one CPU core each.
# A lane walks the recipe's run list in order and claims each run it starts (RUN.lane), so
# LANES lanes share the list without running anything twice; a stopped recipe resumes where
# it was: finished runs (RUN/eval.json) are skipped, claimed ones resume from their checkpoint.

# once RUN COMMAND...: COMMAND (its output in RUN.log) unless RUN is finished or claimed
once() {
  local run=$1
  shift
  [ -f "$run/eval.json" ] && return 0
  mkdir -p "$(dirname "$run")"
  mkdir "$run.lane" 2>/dev/null || return 0
  "$@" > "$run.log" 2>&1
  rmdir "$run.lane"
}

# in_lanes ROOT FUNCTION: drops the claims a stopped recipe left under ROOT, then runs FUNCTION
# in LANES (default 2) background lanes and waits for them
in_lanes() {
  rmdir "$1"/*.lane 2>/dev/null || true
  for _ in $(seq "${LANES:-2}"); do "$2" & done
  wait
}

# held_out_scores RUN UIR-EVAL-OPTIONS...: `uir eval` on the held-out split of UIR_PHOTOS (default
# ../shared/photos; LIMIT photos when set) into RUN/scores, and its rows as RUN/eval.json, the
# file that marks RUN finished and that train/summarize_seeds.py reads
held_out_scores() {
  local run=$1
  shift
  uir eval "$@" --data "${UIR_PHOTOS:-../shared/photos}" --held-out ${LIMIT:+--limit "$LIMIT"} -o "$run/scores"
  cp "$run/scores/scores.json" "$run/eval.json"
}

# small_base RUN SEED TRAIN_RESTORER-OPTIONS...: the small base two recipes compare variants of
# (NAFNet width 16 unless a --config says otherwise, the 10 DA-CLIP types at random
# severities, 128 px crops, batch 8, STEPS (default 1000) steps at lr 1e-3), into RUN/pipeline
small_base() {
  local run=$1 seed=$2
  shift 2
  accelerate launch --num_processes 1 --cpu train/train_restorer.py --degradations all --resolution 128 \
    --train_batch_size 8 --learning_rate 1e-3 --max_train_steps "${STEPS:-1000}" --seed "$seed" "$@" \
    --checkpointing_steps 250 --checkpoints_total_limit 1 --resume_from_checkpoint latest --validation_steps 0 \
    --num_validation_images 0 --output_dir "$run"
}
