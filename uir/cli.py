"""The ``uir`` command line: the parser, and each command run inside the error boundary.

Exit codes (:mod:`uir.boundary`): 0 success; 1 some inputs or work failed (each reported in one
line, the others still written); 2 bad usage, before any work; 130 interrupted. The commands
themselves live in :mod:`uir.commands`.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import warnings
from pathlib import Path

from .boundary import (EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, OneLineParser, UsageError, debugging, guarded,
                       keep_freed_memory, positive_int, whole_number)
from .commands.degrade import cmd_degradations, cmd_degrade
from .commands.evaluate import cmd_bench, cmd_demo, cmd_eval, cmd_eval_router
from .commands.restore import cmd_restore


def _add_severity_arg(parser) -> None:
    """``--severity`` of the commands that degrade photos to score them (read by
    :func:`uir.commands.common.severity`)."""
    parser.add_argument("--severity", default="default", choices=["default", "mild", "moderate", "severe", "random"],
                        help="default (each type's protocol level), mild, moderate, severe or random")


def _non_negative(value: str) -> int:
    return whole_number(value, 0)


def _bench_size(value: str) -> int:
    return whole_number(value, 16, "a size in pixels")


def _tile_size(value: str):
    """``--tile-size``: ``auto``, ``0`` (never tile: ``None``) or a size in pixels."""
    if value == "auto":
        return value
    size = whole_number(value, 0, "auto, 0 or a number of pixels")
    if 0 < size < 16:
        raise argparse.ArgumentTypeError(f"tiles must be at least 16 pixels (0: never tile), got {size}")
    return size or None


def _add_route_again_arg(parser) -> None:
    parser.add_argument("--route-again", dest="route_again", default=None,
                        help="comma-separated classes after whose restoration an image is routed again, "
                             "e.g. jpeg-compressed,noisy; none: route once (default: the model's; the "
                             "embedded default's is jpeg-compressed)")


def _add_model_args(parser) -> None:
    parser.add_argument("--model", default=None,
                        help="default (the embedded model), a saved pipeline folder or Hub id, or an SD-turbo id "
                             "such as stabilityai/sd-turbo together with --experts")
    parser.add_argument("--experts", default=None, help="comma-separated expert folders or Hub ids to add")
    parser.add_argument("--router", default=None, help="a router folder or Hub id to use")
    parser.add_argument("--vae", default=None, help="a trained skip-VAE folder (for an SD-turbo --model)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")
    parser.add_argument("--allow-pickle", dest="allow_pickle", action="store_true",
                        help="also load model weights from pickle files (.bin), which can run code")


def cmd_info(args) -> int:
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__, sample_image_path
    from .data.photos import PHOTOS_ENV, default_photos_dir

    print(f"uir {__version__}")
    print(f"python {platform.python_version()} ({sys.executable})")
    for package in ("torch", "torchvision", "diffusers", "transformers", "peft", "accelerate", "open_clip_torch", "safetensors"):
        try:
            print(f"{package} {version(package)}")
        except PackageNotFoundError:
            print(f"{package} not installed")
    hub = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    print(f"models: Hugging Face cache {hub} (HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')})")
    if args.torch:  # importing torch takes longer than everything else here together
        import torch

        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
        print(f"device {device} (torch threads: {torch.get_num_threads()})")
        print(f"torch hub checkpoints {Path(torch.hub.get_dir()) / 'checkpoints'}")
    else:
        print("device: see uir info --torch")
    photos = default_photos_dir()
    print(f"photos {photos if photos else f'not found (set {PHOTOS_ENV})'}")
    print(f"sample image {sample_image_path()}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from .degradations import DEFAULT_VOCABULARY, parse_names

    types = len(DEFAULT_VOCABULARY)

    parser = OneLineParser(prog="uir", description="Universal image restoration.",
                                     epilog="Errors are one line; --debug (anywhere) or UIR_DEBUG=1 shows the "
                                            "traceback of an unexpected one.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    degrade = sub.add_parser("degrade", help="apply a named degradation to images",
                             description="Apply one degradation, or a comma-separated chain, to images.")
    degrade.add_argument("inputs", nargs="*", help="image files, folders or globs")
    degrade.add_argument("--sample", action="store_true", help="also degrade the bundled sample photo")
    degrade.add_argument("--degradation", "--type", dest="degradation", required=True, metavar="DEGRADATION",
                         help="degradation name(s), e.g. noisy or hazy,jpeg-compressed (the name `uir restore "
                              "--degradation` and `uir eval --degradations` take; --type is the older spelling)")
    degrade.add_argument("--severity", choices=["mild", "moderate", "severe", "random"], default=None,
                         help="draw parameters from a severity level (default: each type's default)")
    degrade.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="set one parameter")
    degrade.add_argument("--seed", type=int, default=0, help="random seed (input i uses seed + i)")
    degrade.add_argument("-o", "--output", required=True, help="output file, or folder for several inputs")
    degrade.add_argument("--overwrite", action="store_true", help="replace existing outputs, even an input")
    degrade.set_defaults(func=cmd_degrade)

    listing = sub.add_parser("degradations", help="list the registered degradations and their parameters")
    listing.add_argument("--family", default=None, help="only one family: da-clip, grids or lira")
    listing.set_defaults(func=cmd_degradations)

    restore = sub.add_parser("restore", help="restore images (embedded default model unless --model)",
                             description="Restore images. The router picks the experts unless --degradation or "
                                         "--weights says which.")
    restore.add_argument("inputs", nargs="+", help="image files, folders or globs")
    restore.add_argument("-o", "--output", required=True, help="output file, or folder for several inputs")
    restore.add_argument("--overwrite", action="store_true", help="replace existing outputs, even an input")
    restore.add_argument("--skip-existing", dest="skip_existing", action="store_true",
                         help="keep outputs that exist and restore the rest: resumes a stopped run (outputs are "
                              "written atomically, so an existing one is complete)")
    _add_model_args(restore)
    restore.add_argument("--degradation", default=None, help="use these experts with equal weights, e.g. noisy,hazy")
    restore.add_argument("--weights", default=None, help="explicit expert weights, e.g. noisy=0.7,hazy=0.3")
    restore.add_argument("--top-k", dest="top_k", type=positive_int, default=None,
                         help="experts the router keeps per image (default: the pipeline's, "
                              "uir.lora.strategies.DEFAULT_TOP_K)")
    _add_route_again_arg(restore)
    restore.add_argument("--batch-size", dest="batch_size", type=positive_int, default=4)
    restore.add_argument("--tile-size", dest="tile_size", type=_tile_size, default="auto",
                         help="restore in overlapping tiles of at most this many pixels; auto (default): "
                              "the model's tiles (1024 px for the default) for images with a longer side, so memory "
                              "stays bounded; 0: never tile")
    restore.add_argument("--timing", action="store_true", help="print load and restore times")
    restore.set_defaults(func=cmd_restore)

    evaluate = sub.add_parser("eval", help="PSNR/SSIM per degradation on a clean folder or lq/ gt/ pairs")
    _add_model_args(evaluate)
    evaluate.add_argument("--data", required=True, help="clean photos (degraded here), or a folder with lq/ and gt/")
    evaluate.add_argument("--degradations", type=parse_names, default="all",
                          help=f'comma-separated names or "all" (the {types} DA-CLIP types); a mixture joins names '
                               "with + (low-light+noisy)")
    evaluate.add_argument("--top-k", dest="top_k", type=positive_int, default=None,
                          help="experts the router keeps per image (default: the pipeline's)")
    _add_severity_arg(evaluate)
    evaluate.add_argument("--oracle", action="store_true", help="use the true degradation's expert instead of the router")
    _add_route_again_arg(evaluate)
    evaluate.add_argument("--held-out", dest="held_out", action="store_true",
                          help="use only the held-out split of --data (every fifth photo by name)")
    evaluate.add_argument("--limit", type=positive_int, default=None, help="use only the first N photos")
    evaluate.add_argument("--grid-rows", dest="grid_rows", type=_non_negative, default=1,
                          help="grid rows per degradation")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("-o", "--output", default="outputs/eval",
                          help="folder for scores.csv/json, pairs.csv (one row per image) and grid.png")
    evaluate.set_defaults(func=cmd_eval, keeps_freed_memory=True)

    router_eval = sub.add_parser("eval-router", help="a router's top-1 accuracy per degradation on degraded photos")
    router_eval.add_argument("router", help="a router folder or Hub id")
    router_eval.add_argument("--data", required=True, help="clean photos, degraded here")
    router_eval.add_argument("--degradations", type=parse_names, default=None,
                             help=f'comma-separated names or "all" (the {types} DA-CLIP types); default: the '
                                  "router's vocabulary")
    _add_severity_arg(router_eval)
    router_eval.add_argument("--held-out", dest="held_out", action="store_true",
                             help="use only the held-out split of --data (every fifth photo by name)")
    router_eval.add_argument("--limit", type=positive_int, default=None, help="use only the first N photos")
    router_eval.add_argument("--repeats", type=positive_int, default=2, help="independent draws per photo and type")
    router_eval.add_argument("--seed", type=int, default=1)
    router_eval.set_defaults(func=cmd_eval_router)

    bench = sub.add_parser("bench", help="images/s, peak memory and per-stage time of a model")
    _add_model_args(bench)
    bench.add_argument("--size", type=_bench_size, default=512, help="square image size (at least 16)")
    bench.add_argument("--batch", type=positive_int, default=1)
    bench.add_argument("--repeats", type=positive_int, default=3)
    bench.set_defaults(func=cmd_bench)

    demo = sub.add_parser("demo", help=f"degrade the bundled photo {types} ways, restore, write a grid and PSNR table")
    _add_model_args(demo)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("-o", "--output", default="outputs/demo", help="output folder")
    demo.set_defaults(func=cmd_demo)

    info = sub.add_parser("info", help="versions, device and where models and data are looked up")
    info.add_argument("--torch", action="store_true",
                      help="also import torch and report its device, threads and hub folder (about 1.5 s)")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None, owns_process: bool = False) -> int:
    """Run one ``uir`` command inside the error boundary (:mod:`uir.boundary`). ``owns_process``:
    the command is the process's whole work (the ``uir`` entry point, :mod:`uir.__main__`), so a
    command that asks for process-wide settings gets them: ``uir eval`` keeps freed memory for
    reuse (:func:`uir.boundary.keep_freed_memory`). Called from Python, nothing changes
    for the rest of the caller's process."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = debugging(argv)
    parser = build_parser()
    args = parser.parse_args([a for a in argv if a != "--debug"])
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE

    if owns_process and getattr(args, "keeps_freed_memory", False):
        keep_freed_memory()
    if debug:  # also the debug lines, e.g. why a model loads through diffusers
        logging.basicConfig(format="uir: debug: %(message)s")
        logging.getLogger("uir").setLevel(logging.DEBUG)

    def run() -> int:
        with warnings.catch_warnings():  # a warning is one line on stderr, like an error
            warnings.showwarning = lambda message, *rest, **kw: print(f"uir: warning: {message}", file=sys.stderr)
            return args.func(args)

    return guarded(run, "uir", debug)


__all__ = ["EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "UsageError", "build_parser", "main"]
