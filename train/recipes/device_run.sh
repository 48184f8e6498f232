#!/usr/bin/env bash
# On a lent GPU, as the device tool's command (after device_prep.sh here): install the wheels of
# .whl and uir itself (not editable: an editable install once left uir.pipelines unimportable
# there), check the imports from outside the checkout, run RECIPE on the photos of .gpu/photos into
# runs/device, and put in $OUT what comes back: the files RECIPE_OUTPUTS names (paths under
# runs/device; a file over the tool's 16 MiB goes in 15 MiB parts: `cat NAME.part-* > NAME` here)
# and the last lines of every log, in logs.txt.
# Usage: bash train/recipes/device_run.sh RECIPE   (e.g. gpu_router.sh)
set -euo pipefail
RECIPE=${1:?usage: device_run.sh RECIPE}
OUT=${OUT:-runs/device-out}
RUNS=runs/device
mkdir -p "$OUT" "$RUNS"
if ! command -v python >/dev/null; then  # the recipes call python; the image has python3
  mkdir -p /tmp/uir-bin && ln -sf "$(command -v python3)" /tmp/uir-bin/python && export PATH=/tmp/uir-bin:$PATH
fi
python -m pip install -q --no-index --no-deps .whl/*.whl
python -m pip install -q --no-index --no-deps --no-build-isolation .
(cd /tmp && python -c "import uir.pipelines, diffusers, open_clip, png, torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'on no GPU')") \
  | tee "$OUT/logs.txt"
status=0
UIR_TRAIN_PHOTOS=.gpu/photos bash "train/recipes/$RECIPE" "$RUNS" || status=$?
case "$RECIPE" in
  gpu_router.sh) OUTPUTS=(router-views/router/config.json router-views/router/diffusion_pytorch_model.safetensors) ;;
  *) OUTPUTS=() ;;
esac
for LOG in "$RUNS"/*.log "$RUNS"/*.txt; do
  [ -f "$LOG" ] && { echo "== $LOG"; tail -n 5 "$LOG" | tr '\r' '\n' | tail -n 5; } >> "$OUT/logs.txt"
done
for FILE in "${OUTPUTS[@]}"; do
  [ -f "$RUNS/$FILE" ] || { echo "missing $RUNS/$FILE" | tee -a "$OUT/logs.txt"; continue; }
  NAME=$(basename "$FILE")
  if [ "$(stat -c %s "$RUNS/$FILE")" -gt $((16 * 1024 * 1024)) ]; then
    split -b 15M -d "$RUNS/$FILE" "$OUT/$NAME.part-"
  else
    cp "$RUNS/$FILE" "$OUT/$NAME"
  fi
done
echo "recipe exit $status" | tee -a "$OUT/logs.txt"
exit "$status"
