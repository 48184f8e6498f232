#!/usr/bin/env bash
# Issue 28, item 8: build a training folder with more photos from five Debian wallpaper packages
# (train/extra_photos.py says what is kept; train/recipes/extra_photos.tsv names every file).
# Usage: bash train/recipes/extra_photos.sh [OUTPUT_DIR]   (downloads about 200 MB with apt-get)
set -euo pipefail
OUT=${1:-runs/photos-extra}
PHOTOS=${UIR_PHOTOS:-../shared/photos}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && apt-get download gnome-backgrounds mate-backgrounds plasma-workspace-wallpapers sway-backgrounds \
  ukui-wallpapers)
for deb in "$WORK"/*.deb; do dpkg-deb -x "$deb" "$WORK/root"; done
python train/extra_photos.py --packages_root "$WORK/root/usr/share" --photos "$PHOTOS" --output_dir "$OUT"
