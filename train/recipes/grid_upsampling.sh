#!/usr/bin/env bash
# Issue 28, item 6: does the periodic grid come from NAFNet's PixelShuffle upsampling? Two small
# bases identical but for the decoders' upsampling (uir.networks.nafnet.UPSAMPLINGS), trained on
# the training photos as lanes.sh's small_base (NAFNet width 16, the 10 DA-CLIP types at
# random severities, 128 px crops, batch 8, STEPS (1000) at lr 1e-3, one CPU core per run):
#   pixel-shuffle  the published NAFNet's (and the embedded default's)
#   bilinear       a 1x1 conv, then bilinear interpolation (train/configs/nafnet-small-bilinear.json)
# Each run gets benchmarks/artefacts.py's grid table (RUN/artefacts.md) and `uir eval` on the
# 16 held-out photos. SEEDS (default "0 1 2") in LANES lanes (lanes.sh); ends with each arm's
# mean +- sd.
# Usage: bash train/recipes/grid_upsampling.sh [RUNS_DIR]
set -euo pipefail
R=${1:-runs/grid-upsampling}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# shellcheck source=train/recipes/lanes.sh
. "$(dirname "$0")/lanes.sh"
arm() {  # UPSAMPLING SEED
  local run="$R/$1-seed$2" config=()
  [ "$1" = bilinear ] && config=(--config train/configs/nafnet-small-bilinear.json)
  small_base "$run" "$2" "${config[@]}"
  python benchmarks/artefacts.py --model "$run/pipeline" > "$run/artefacts.md"
  held_out_scores "$run" --model "$run/pipeline"
}
lane() {
  for seed in ${SEEDS:-0 1 2}; do
    for a in pixel-shuffle bilinear; do once "$R/$a-seed$seed" arm "$a" "$seed"; done
  done
}
in_lanes "$R" lane
python train/summarize_seeds.py "$R" --arms pixel-shuffle bilinear
