#!/usr/bin/env python
"""Give a trained NAFNet pipeline bilinear upsampling, without retraining: the cure for the
periodic 2-4 px grid that pixel-shuffle upsampling draws in flat areas (issue 28, item 6).

    python train/convert_upsampling.py --model default --output_dir runs/default-bilinear

Each decoder's ``pixel-shuffle`` upsampler becomes the ``bilinear`` one whose weights are the
mean over the four pixels of each 2x2 cell (:func:`uir.networks.nafnet.bilinear_from_pixel_shuffle`).
The experts adapt other layers, so they are kept, and they record the converted base's
fingerprint. The router is copied as it is. docs/default-model.md measures the result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uir.boundary import run_script
from uir.files import save_pretrained_staged
from uir.pipelines.loading import load_pipeline


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved RestorerPipeline with a NAFNet restorer, or 'default'")
    parser.add_argument("--output_dir", required=True, help="a new folder for the converted pipeline")
    args = parser.parse_args(argv)
    target = Path(args.output_dir)
    if target.exists():
        raise SystemExit(f"{target} exists; give a new folder")
    pipe = load_pipeline(args.model)
    restorer = getattr(pipe, "restorer", None)
    convert = getattr(restorer, "use_bilinear_upsampling", None)
    if convert is None:
        what = type(pipe).__name__ if restorer is None else f"its restorer is a {type(restorer).__name__}"
        raise SystemExit(f"{args.model}: only a NAFNet restorer can be converted ({what})")
    try:
        convert()
    except ValueError as error:
        raise SystemExit(f"{args.model}: {error}") from None
    pipe.rebase_experts()
    save_pretrained_staged(pipe, target)
    print(f"wrote {target}: bilinear upsampling, experts {', '.join(pipe.expert_list.names) or 'none'}")


if __name__ == "__main__":
    sys.exit(run_script(main))
