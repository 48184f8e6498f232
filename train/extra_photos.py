#!/usr/bin/env python
"""A training folder with more photos: the project's training split plus full-resolution
photographs from five Debian wallpaper packages (issue 28, item 8).

    python train/extra_photos.py --packages_root EXTRACTED/usr/share --photos ../shared/photos \\
        --output_dir runs/photos-extra

``train/recipes/extra_photos.tsv`` names every image file of gnome-backgrounds,
mate-backgrounds, plasma-workspace-wallpapers, sway-backgrounds and ukui-wallpapers and what it
is (``photo``, ``art`` or ``thumbnail``), judged by eye. Only photos are kept. Most of them are
already in ``--photos``, resized to 640 px; their originals add the same scenes at full
resolution, except for those whose resized copy is held out, which are left out so that no
held-out scene is trained on. The output folder holds links to the training split of
``--photos``, the kept originals (``<package>__<name>.full.<ext>``) and ``SOURCES.tsv``, which
says where each file came from and why any listed photo was left out.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from uir.boundary import run_script
from uir.data import link_photos, split_photos
from uir.files import atomic_write

LIST = Path(__file__).resolve().parent / "recipes" / "extra_photos.tsv"


def scene(package: str, path_in_package: str) -> tuple[str, str]:
    """``(package, name)`` of a wallpaper, the same for every size of it (Plasma keeps sizes in a
    folder named after the wallpaper; the others name the file after it)."""
    parts = Path(path_in_package).parts
    return package.split("=")[0], parts[1] if parts[0] == "wallpapers" else Path(path_in_package).stem


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream, delimiter="\t"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages_root", required=True, type=Path,
                        help="the extracted packages' usr/share folder (dpkg-deb -x of each .deb into one folder)")
    parser.add_argument("--photos", required=True, type=Path, help="the project's photos (with MANIFEST.tsv)")
    parser.add_argument("--output_dir", required=True, type=Path)
    args = parser.parse_args(argv)
    train, held_out = split_photos(args.photos)
    shared = {scene(row["package"], row["path_in_package"]): row["file"]
              for row in read_tsv(args.photos / "MANIFEST.tsv")}
    held_out_names = {path.name for path in held_out}
    link_photos(train, args.output_dir)
    sources = [{"file": path.name, "source": f"{args.photos.name}/{path.name} (training split)"} for path in train]
    for row in read_tsv(LIST):
        if row["kind"] != "photo":
            continue
        key = scene(row["package"], row["path_in_package"])
        original = args.packages_root / row["path_in_package"]
        if not original.is_file():
            raise SystemExit(f"{original} is missing: extract {row['package']} into {args.packages_root.parents[1]}")
        copy = shared.get(key)
        if copy in held_out_names:
            sources.append({"file": "", "source": f"{row['package']}: {row['path_in_package']} left out: "
                                                  f"{copy} is held out"})
            continue
        name = f"{key[0]}__{key[1]}.full{original.suffix.lower()}"
        target = args.output_dir / name
        if not target.exists():
            atomic_write(target, lambda stream: stream.write(original.read_bytes()))
        sources.append({"file": name, "source": f"{row['package']}: {row['path_in_package']} ({row['size']})"
                                                + (f", the original of {copy}" if copy else ", new")})
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=["file", "source"], delimiter="\t")
    writer.writeheader()
    writer.writerows(sources)
    atomic_write(args.output_dir / "SOURCES.tsv", lambda stream: stream.write(table.getvalue().encode()))
    kept = sum(1 for s in sources if s["file"].count(".full."))
    print(f"{args.output_dir}: {len(train)} training photos and {kept} full-resolution originals "
          f"({sum(1 for s in sources if not s['file'])} left out: held out)")


if __name__ == "__main__":
    sys.exit(run_script(main))
