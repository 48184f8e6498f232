#!/usr/bin/env python
"""Put a trained base, its experts and a router together into one saved pipeline folder.

    python train/assemble_pipeline.py --base runs/base/pipeline --experts runs/experts/experts \\
        --router runs/router/router --output_dir uir/assets/default

``--base`` is a saved ``RestorerPipeline`` (``train_restorer.py``) or an SD-turbo id or folder;
``--experts`` a folder of expert folders (``train_uir_lora.py``). The result loads with
``DiffusionPipeline.from_pretrained(OUTPUT_DIR, trust_remote_code=True)``.
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
    parser.add_argument("--base", required=True)
    parser.add_argument("--experts", required=True, help="a folder holding one folder per expert")
    parser.add_argument("--router", default=None)
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)
    experts = sorted(p for p in Path(args.experts).iterdir() if (p / "uir_expert.json").is_file())
    if not experts:
        raise SystemExit(f"no expert folders in {args.experts}")
    pipe = load_pipeline(args.base, experts=experts, router=args.router)
    target = Path(args.output_dir)
    save_pretrained_staged(pipe, target)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    print(f"wrote {target} ({size / 2**20:.1f} MiB): experts {', '.join(pipe.expert_list.names)}")


if __name__ == "__main__":
    sys.exit(run_script(main))
