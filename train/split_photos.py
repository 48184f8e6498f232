#!/usr/bin/env python
"""Link the parts of uir's photo split into folders, for the recipes' ``--train_data_dir`` and ``--data``.

``OUTPUT_DIR/train`` and ``OUTPUT_DIR/validation`` are the training photos with every fifth set
aside (:func:`uir.data.validation_split`): a model trained on ``train`` leaves ``validation``
unseen, so the choices made on it (which router, which expert, which policy) are fair.
``OUTPUT_DIR/held-out`` is the held-out part, for ``uir eval --data``. Each folder holds
symbolic links; links already there are kept, so running it again changes nothing.

    python train/split_photos.py --output_dir runs/split [--data ../shared/photos]
"""

from __future__ import annotations

import sys

from uir.boundary import OneLineParser, run_script
from uir.data import link_photos, validation_split
from uir.data.photos import photo_root

PARTS = ("train", "validation", "held-out")


def parse_args(argv=None):
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="the photo folder to split (default: shared/photos)")
    parser.add_argument("--output_dir", required=True)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    parts = validation_split(photo_root(args.data, "--data"))
    for name, files in zip(PARTS, parts):
        folder = link_photos(files, f"{args.output_dir}/{name}")
        print(f"{name}: {len(files)} photos in {folder}")


if __name__ == "__main__":
    sys.exit(run_script(main))
