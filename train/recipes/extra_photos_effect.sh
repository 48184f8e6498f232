#!/usr/bin/env bash
# Issue 28, item 8: do the extra photos help? A small base (lanes.sh's small_base: NAFNet width 16, the 10 DA-CLIP
# types at random severities, 128 px crops, batch 8, STEPS (1000) steps at lr 1e-3, one CPU core
# per run) trained on the training split alone and on the folder extra_photos.sh builds, 3 seeds
# each, scored by `uir eval` on the 16 held-out photos. Ends with each arm's mean +- sd.
# Usage: bash train/recipes/extra_photos_effect.sh [RUNS_DIR]   (needs RUNS_DIR/photos-extra first)
set -euo pipefail
R=${1:-runs}
E="$R/photos-extra-effect"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
[ -d "$R/photos-extra" ] || { echo "extra_photos_effect.sh: run train/recipes/extra_photos.sh $R/photos-extra first" >&2; exit 2; }
# shellcheck source=train/recipes/lanes.sh
. "$(dirname "$0")/lanes.sh"
arm() {  # ARM SEED
  local run="$E/$1-seed$2" data=()
  [ "$1" = extra ] && data=(--train_data_dir "$R/photos-extra")
  small_base "$run" "$2" "${data[@]}"
  held_out_scores "$run" --model "$run/pipeline"
}
lane() {
  for seed in 0 1 2; do
    for a in split extra; do once "$E/$a-seed$seed" arm "$a" "$seed"; done
  done
}
in_lanes "$E" lane
python train/summarize_seeds.py "$E" --arms split extra
