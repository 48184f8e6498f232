#!/usr/bin/env bash
# Here, before a run on a lent GPU (the device tool): what that machine lacks, into folders git
# ignores, for `run`'s carry. Its image has torch, transformers, peft, accelerate and safetensors
# but not diffusers, open_clip_torch (and its ftfy, wcwidth) or pypng, and it cannot fetch any:
# their wheels, at the versions installed here, go into .whl. The training photos (the split's
# training part, as files: links do not travel) go into .gpu/photos as lossless WebP, the same
# pixels in three quarters of the PNGs' bytes (checked here, photo by photo), so that both with
# the repository (37 MB, most of it the embedded default) stay under the tool's 64 MiB.
# Then: run(command="bash train/recipes/device_run.sh gpu_router.sh", carry=[".whl", ".gpu"], timeout_s=590)
# Usage: bash train/recipes/device_prep.sh
set -euo pipefail
rm -rf .whl .gpu/photos
mkdir -p .whl .gpu/photos
PACKAGES=()
for NAME in diffusers open_clip_torch ftfy wcwidth pypng; do
  PACKAGES+=("$NAME==$(python -c "import importlib.metadata as m; print(m.version('$NAME'))")")
done
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl "${PACKAGES[@]}"
python train/split_photos.py --data "${UIR_PHOTOS:-../shared/photos}" --output_dir .gpu/split
python - <<'PY'
from pathlib import Path
import numpy as np
from PIL import Image
for path in sorted(Path(".gpu/split/train").iterdir()):
    photo = Image.open(path)
    if photo.mode != "RGB":  # a 16-bit or alpha photo: WebP would change it, so it stays as it is
        Path(".gpu/photos", path.name).write_bytes(path.read_bytes())
        continue
    target = Path(".gpu/photos", path.stem + ".webp")
    photo.save(target, lossless=True, method=6)
    assert np.array_equal(np.asarray(Image.open(target).convert("RGB")), np.asarray(photo)), path
PY
rm -rf .gpu/split
du -sh .whl .gpu/photos
