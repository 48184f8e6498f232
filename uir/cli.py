"""The ``uir`` command line.

Exit codes: 0 success; 1 some inputs could not be processed (each reported in one line, the
others still written); 2 bad usage (unknown degradation, bad parameter, missing input).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command-line usage; reported in one line with exit code 2."""


def _parse_params(items: list[str]) -> dict:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            params[key] = float(value)
        except ValueError:
            raise UsageError(f"--param {key}: {value!r} is not a number") from None
    return params


def _output_path(src: Path, out: Path, many: bool, suffix: str | None) -> Path:
    if many or out.is_dir() or str(out).endswith(os.sep):
        return out / (src.stem + (suffix or ".png"))
    return out


def cmd_degrade(args) -> int:
    import torch

    from . import degradations, sample_image_path
    from .images import ImageError, list_images, load_image, save_image

    names = [n.strip() for n in args.type.split(",") if n.strip()]
    params = _parse_params(args.param)
    if params and len(names) > 1:
        raise UsageError("--param applies to a single --type; use one degradation at a time")
    try:
        specs = [degradations.get(name) for name in names]
        params = specs[0].validate(params) if params else params
    except ValueError as error:
        raise UsageError(str(error)) from None
    inputs = list_images(args.inputs) + ([Path(str(sample_image_path()))] if args.sample else [])
    if not inputs:
        raise UsageError("no input images (give files, folders or globs, or --sample)")
    out = Path(args.output)
    many = len(inputs) > 1
    if many and out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; several inputs need an output folder")
    failures = 0
    for index, path in enumerate(inputs):
        try:
            image = load_image(path)
            generator = torch.Generator().manual_seed(args.seed + index)
            kwargs = {"severity": args.severity, "return_params": True}
            if len(names) == 1:
                degraded, used = degradations.apply(names[0], image, generator=generator, **kwargs, **params)
            else:
                degraded, used = degradations.apply(names, image, generator=generator, **kwargs)
            target = _output_path(path, out, many, None)
            save_image(degraded, target)
        except (ImageError, ValueError) as error:
            failures += 1
            print(f"uir: skipped {path}: {error}", file=sys.stderr)
            continue
        shown = used if isinstance(used, list) else [used]
        detail = "; ".join(
            f"{n}(" + ", ".join(f"{k}={v:.4g}" for k, v in p.items()) + ")" for n, p in zip(names, shown)
        )
        print(f"{path} -> {target}  {detail}")
    return EXIT_PARTIAL if failures else EXIT_OK


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
    import torch

    device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    print(f"device {device} (torch threads: {torch.get_num_threads()})")
    hub = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    print(f"models: Hugging Face cache {hub} (HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')})")
    print(f"torch hub checkpoints {Path(torch.hub.get_dir()) / 'checkpoints'}")
    photos = default_photos_dir()
    print(f"photos {photos if photos else f'not found (set {PHOTOS_ENV})'}")
    print(f"sample image {sample_image_path()}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uir", description="Universal image restoration.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    degrade = sub.add_parser("degrade", help="apply a named degradation to images",
                             description="Apply one degradation, or a comma-separated chain, to images.")
    degrade.add_argument("inputs", nargs="*", help="image files, folders or globs")
    degrade.add_argument("--sample", action="store_true", help="also degrade the bundled sample photo")
    degrade.add_argument("--type", required=True, help="degradation name(s), e.g. noisy or hazy,jpeg-compressed")
    degrade.add_argument("--severity", choices=["mild", "moderate", "severe", "random"], default=None,
                         help="draw parameters from a severity level (default: each type's default)")
    degrade.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="set one parameter")
    degrade.add_argument("--seed", type=int, default=0, help="random seed (input i uses seed + i)")
    degrade.add_argument("-o", "--output", required=True, help="output file, or folder for several inputs")
    degrade.set_defaults(func=cmd_degrade)

    listing = sub.add_parser("degradations", help="list the registered degradations and their parameters")
    listing.add_argument("--family", default=None, help="only one family: da-clip, grids or lira")
    listing.set_defaults(func=cmd_degradations)

    info = sub.add_parser("info", help="versions, device and where models and data are looked up")
    info.set_defaults(func=cmd_info)
    return parser


def cmd_degradations(args) -> int:
    from . import degradations

    names = degradations.names(args.family)
    if not names:
        raise UsageError(f"no degradations in family {args.family!r}")
    for name in names:
        print(degradations.get(name).describe())
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except UsageError as error:
        print(f"uir: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("uir: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a command that stopped reading, e.g. head
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
