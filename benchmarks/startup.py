"""Cold-process cost of ``uir``: where the seconds of one ``uir restore`` go, against a bare
``import torch`` measured in the same run.

    python benchmarks/startup.py [--size 512] [--repeats 3]

Every row is a fresh Python process (the median of ``--repeats``), so imports are paid each
time as a user pays them:

* ``import torch``: the floor any torch program pays;
* imports after torch, each in a fresh process: what restoring itself needs (numpy, PIL, png,
  safetensors), and what the diffusers-free runtime (:mod:`uir.pipelines.runtime`) spares the
  CLI: open_clip (the router's CLIP), diffusers, and diffusers' ``DiffusionPipeline``, which a
  Python user's ``uir.load_pipeline()`` imports (without ``runtime=True``);
* ``uir --help``, ``uir degradations`` and ``uir info``: the parser, the catalog and its docs,
  versions and folders (no torch);
* ``uir restore``: one ``--size`` x ``--size`` PNG restored with the embedded default, end to end;
* the stages of that restore, timed inside one process with the calls the CLI makes: imports
  (torch, image files, the loader), load, route (the router alone), restore, save.

The ratio column is seconds / the ``import torch`` row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
from uir.images import load_image, save_image
from uir.pipelines.loading import load_pipeline
t1 = time.perf_counter()
pipe = load_pipeline(runtime=True)
t2 = time.perf_counter()
x = load_image(sys.argv[1])[None]
with torch.inference_mode():
    pipe.router(x)
t3 = time.perf_counter()
out = pipe(x, output_type="pt")
t4 = time.perf_counter()
save_image(out.images[0], sys.argv[2])
t5 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "route": t3 - t2, "restore (incl. routing)": t4 - t3,
                  "save": t5 - t4}))
"""


def wall(command: list[str], repeats: int) -> float:
    """Median wall seconds of ``command`` as a fresh process."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F

    from uir import sample_image_path
    from uir.evaluation import markdown_table
    from uir.images import load_image, save_image

    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.png"
        image = load_image(sample_image_path())[None]
        save_image(F.interpolate(image, size=(args.size, args.size), mode="bicubic").clamp(0, 1)[0], photo)
        uir = [sys.executable, "-m", "uir"]
        floor = wall([sys.executable, "-c", "import torch"], args.repeats)
        rows = [("import torch", floor)]
        rows += [(f"import torch; {line}", wall([sys.executable, "-c", f"import torch; {line}"], args.repeats))
                 for line in ("import numpy, PIL.Image, png, safetensors.torch", "import open_clip",
                                   "import diffusers", "from diffusers import DiffusionPipeline")]
        rows += [("uir --help", wall(uir + ["--help"], args.repeats)),
                 ("uir degradations", wall(uir + ["degradations"], args.repeats)),
                 ("uir info", wall(uir + ["info"], args.repeats)),
                (f"uir restore, {args.size}x{args.size}",
                 wall(uir + ["restore", str(photo), "-o", str(Path(tmp) / "out.png"), "--overwrite"], args.repeats))]
        stages = []
        for _ in range(args.repeats):
            done = subprocess.run([sys.executable, "-c", STAGES, str(photo), str(Path(tmp) / "staged.png")],
                                  check=True, capture_output=True, text=True)
            stages.append(json.loads(done.stdout.strip().splitlines()[-1]))
        rows += [(f"  stage: {name}", statistics.median(s[name] for s in stages)) for name in stages[0]]
    table = [{"step": name, "seconds": seconds, "x import torch": seconds / floor} for name, seconds in rows]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} fresh processes")
    print(markdown_table(table))


if __name__ == "__main__":
    main()
