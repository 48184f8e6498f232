"""``uir degrade`` and ``uir degradations``: apply and list the registered degradations."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..boundary import EXIT_OK, EXIT_PARTIAL, UsageError
from .common import plan_outputs, report_skip


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


def cmd_degrade(args) -> int:
    import torch

    from .. import degradations, sample_image_path
    from ..images import ImageError, list_images, read_image, save_image

    names = [n.strip() for n in args.degradation.split(",") if n.strip()]
    if not names:
        raise UsageError("--degradation needs a degradation name (see uir degradations)")
    params = _parse_params(args.param)
    if params and len(names) > 1:
        raise UsageError("--param applies to a single --degradation; use one degradation at a time")
    try:
        specs = [degradations.get(name) for name in names]
        params = specs[0].validate(params) if params else params
    except ValueError as error:
        raise UsageError(str(error)) from None
    inputs = list_images(args.inputs) + ([Path(str(sample_image_path()))] if args.sample else [])
    targets = plan_outputs(inputs, args.output, "files, folders or globs, or --sample", args.overwrite)
    failures = 0
    for index, (path, target) in enumerate(zip(inputs, targets)):
        try:
            image, layout = read_image(path)
            generator = torch.Generator().manual_seed(args.seed + index)
            kwargs = {"severity": args.severity, "return_params": True}
            if len(names) == 1:
                degraded, used = degradations.apply(names[0], image, generator=generator, **kwargs, **params)
            else:
                degraded, used = degradations.apply(names, image, generator=generator, **kwargs)
            # the degradations are drawn in colour, so a grey photo's degraded copy stays in colour
            save_image(degraded, target, overwrite=args.overwrite, layout=replace(layout, grey=False))
        except (ImageError, ValueError, FileExistsError) as error:
            failures += 1
            report_skip(path, error)
            continue
        shown = used if isinstance(used, list) else [used]
        detail = "; ".join(
            f"{n}(" + ", ".join(f"{k}={v:.4g}" for k, v in p.items()) + ")" for n, p in zip(names, shown)
        )
        print(f"{path} -> {target}  {detail}")
    return EXIT_PARTIAL if failures else EXIT_OK


def cmd_degradations(args) -> int:
    from .. import degradations

    names = degradations.names(args.family)
    if not names:
        raise UsageError(f"no degradations in family {args.family!r}")
    for name in names:
        print(degradations.get(name).describe())
    return EXIT_OK
