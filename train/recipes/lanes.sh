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
