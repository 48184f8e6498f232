"""``uir restore``: files, folders and globs restored in batches, each written atomically, the
router's verdict in one line per image."""

from __future__ import annotations

import sys
from typing import Callable, Iterable, Iterator

from ..boundary import EXIT_OK, EXIT_PARTIAL, UsageError
from .common import (distributed_state, load_for_cli, parse_route_again, plan_outputs, refuse_repeats,
                     refuse_unknown_experts, report_skip, say, set_route_again, share)


def shape_batches(items: Iterable, batch_size: int, shape: Callable) -> Iterator[list]:
    """``uir restore``'s batching of a stream of images of any sizes: consecutive ``items`` of the
    same ``shape``, at most ``batch_size`` per batch. The pipeline is called once per batch (its
    own ``batch_size`` then only chunks one shape)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch: list = []
    for item in items:
        if batch and (len(batch) == batch_size or shape(batch[0]) != shape(item)):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def _parse_weights(spec: str | None, names: str | None) -> dict | None:
    """``--weights noisy=0.7,hazy=0.3`` or ``--degradation noisy,hazy`` (equal weights) to a dict."""
    if spec and names:
        raise UsageError("give --weights or --degradation, not both")
    from ..lora.strategies import check_manual_weights

    if names:
        chosen = [n.strip() for n in names.split(",") if n.strip()]
        refuse_repeats("--degradation", chosen)
        return {n: 1.0 / len(chosen) for n in chosen}
    if not spec:
        return None
    pairs = [item.partition("=") for item in spec.split(",")]
    try:
        weights = [(key.strip(), float(value)) for key, sep, value in pairs if sep]
    except ValueError:
        weights = []
    if len(weights) != len(pairs):
        raise UsageError(f"--weights expects NAME=NUMBER pairs, got {spec!r}")
    refuse_repeats("--weights", [key for key, _ in weights])
    try:
        check_manual_weights([value for _, value in weights])
    except ValueError as error:
        raise UsageError(f"--weights: {error}") from None
    return dict(weights)


def _readable(paths, failed: list, progress=None):
    """``(path, image, layout)`` for each readable input (:func:`uir.images.read_image`), read
    when needed (one batch in memory at a time); each unreadable one is reported in one line,
    appended to ``failed`` and counted on ``progress``."""
    from ..images import ImageError, read_image

    for path in paths:
        try:
            yield path, *read_image(path)
        except ImageError as error:
            report_skip(path, error)
            failed.append(path)
            if progress is not None:
                progress.update(1)


def cmd_restore(args) -> int:
    import time

    import torch
    from tqdm.auto import tqdm

    from ..images import ImageError, list_images, save_image

    inputs = list_images(args.inputs)
    targets = dict(zip(inputs, plan_outputs(inputs, args.output, "files, folders or globs", args.overwrite,
                                            args.skip_existing)))
    pending = [path for path in inputs if args.overwrite or not targets[path].exists()]
    skipped = len(inputs) - len(pending)
    weights = _parse_weights(args.weights, args.degradation)
    route_again = parse_route_again(args.route_again, "--weights or --degradation" if weights is not None else None)
    start = time.perf_counter()
    state = distributed_state()
    mine = share(state, pending)
    pipe = load_for_cli(args, state)
    if weights is not None:
        refuse_unknown_experts(pipe, weights)
    if weights is None and pipe.router is None and pipe.expert_list.names:
        raise UsageError("this model has no router: pass --degradation or --weights, or --router")
    set_route_again(pipe, route_again)
    loaded = time.perf_counter()
    failed: list = []
    failures, done = 0, 0
    # closed when the block ends, so nothing redraws the bar below a last line (an error, Ctrl-C)
    with tqdm(total=len(mine), desc="restoring", unit="image", disable=len(mine) <= 1) as progress:
        batches = shape_batches(_readable(mine, failed, progress), args.batch_size,
                                shape=lambda item: tuple(item[1].shape))
        for batch in batches:
            progress.update(len(batch))
            x = torch.stack([image for _, image, _ in batch])
            try:
                options = {} if args.top_k is None else {"top_k": args.top_k}
                result = pipe(x, weights=weights, output_type="pt", tile_size=args.tile_size, batch_size=len(batch),
                              **options)
            except (ValueError, RuntimeError) as error:
                failures += len(batch)
                for path, _, _ in batch:
                    report_skip(path, error)
                continue
            for row, (path, _, layout) in enumerate(batch):
                target = targets[path]
                try:
                    save_image(result.images[row], target, overwrite=args.overwrite, layout=layout)
                except FileExistsError:
                    failures += 1
                    say(f"uir: {target} appeared while restoring (another process?); kept it, pass --overwrite to "
                        "replace", error=True)
                    continue
                except (ImageError, OSError) as error:
                    failures += 1
                    say(f"uir: could not write {target}: {error}", error=True)
                    continue
                done += 1
                say(f"{path} -> {target}  {describe_restoration(result, row)}")
                if result.known is not None and not result.known[row]:
                    say(f"uir: warning: {path}: low confidence {result.confidence[row].item():.2f}; the "
                        "degradation may be one this model does not know", error=True)
    failures += len(failed)
    seconds = time.perf_counter() - loaded
    if state is not None:  # one summary, from the main process, over every process's counts
        from accelerate.utils import gather_object

        counts = gather_object([(done, failures, seconds)])
        done, failures, seconds = sum(c[0] for c in counts), sum(c[1] for c in counts), max(c[2] for c in counts)
    if len(inputs) > 1 and (state is None or state.is_main_process):
        processes = f" on {state.num_processes} processes" if state is not None else ""
        print(f"uir: restored {done}, skipped {skipped} existing, {failures} failed{processes}; "
              f"{done / max(seconds, 1e-9):.2f} images/s", file=sys.stderr)
    if args.timing:
        print(f"timing: load {loaded - start:.2f} s, restore {seconds:.2f} s for {done} image(s)", file=sys.stderr)
    return EXIT_PARTIAL if failures else EXIT_OK


def describe_restoration(result, row: int) -> str:
    """What was done to image ``row`` of a pipeline output, in words: missing pixels filled,
    raindrops cleared or a shadow lifted (that alone where it was the restoration), the router's
    call and its confidence (or "not sure" when below the threshold), then the experts that ran
    with their weights, a classical prior's share and the share of the input kept, "base model
    only", or "input returned unchanged"; a JPEG's chroma re-estimated from its luma; and, where
    the restored image was routed again and changed (``result.then``), "then" and that call's own."""
    from ..classical import PRIORS
    from ..degradations.masks import MISSING_CLASS
    from ..degradations.photometric import SHADOW_CLASS
    from ..degradations.weather import RAINDROP_CLASS

    experts = ", ".join(f"{n} {w:.2f}" for n, w in zip(result.expert_names, result.weights[row].tolist()) if w > 0)
    kept = float(result.clean_weight[row])
    prior = 0.0 if result.prior_weight is None else float(result.prior_weight[row])
    classical = ""
    if prior > 0:  # the top class's prior (an expected-gain table), else the leading expert's own (its blend)
        top = result.degradations[row] if result.degradations is not None else None
        classical = PRIORS[top if top in PRIORS else result.expert_names[int(result.weights[row].argmax())]].name
    extras = ([f"{classical} {prior:.2f}"] if prior > 0 else []) + ([f"input kept {kept:.2f}"] if kept > 0 else [])
    if kept >= 1:
        used = "input returned unchanged"
    elif prior >= 1:
        used = f"{classical} only"
    else:
        used = ", ".join([f"experts: {experts}" if experts else "base model only", *extras])
    radius = 0 if result.chroma_radius is None else int(result.chroma_radius[row])
    if radius:
        used += f"; JPEG chroma re-estimated from the luma (radius {radius} px)"
    shares = ((MISSING_CLASS, "filled", result.missing, "missing pixels"),
              (RAINDROP_CLASS, "cleared raindrops from", result.drops, "of the pixels"),
              (SHADOW_CLASS, "lifted a shadow over", result.shadows, "of the pixels"))
    steps = [(name, f"{verb} {percent(float(share[row]))} {what}") for name, verb, share, what in shares
             if share is not None and float(share[row]) > 0]
    done = [text for _, text in steps]
    if result.degradations is not None and result.degradations[row] in {name for name, _ in steps}:
        return "; ".join(done)  # the step was the image's restoration, kept as it is
    said = used
    if result.degradations is not None:  # routed (after a fill too small to be the image's degradation, too)
        confidence = result.confidence[row].item()
        said = (f"detected {result.degradations[row]} (confidence {confidence:.2f}); {used}" if result.known[row]
                else f"not sure ({confidence:.2f}; likeliest {result.degradations[row]}): {used}")
    then = None if result.then is None else result.then[row]
    if then is not None and float(then.clean_weight[0]) < 1:  # the second call changed the image
        said += f"; then {describe_restoration(then, 0)}"
    return "; ".join([*done, said])


def percent(share: float) -> str:
    """``share`` (a fraction) in percent: one decimal, or two significant digits below 0.1%."""
    value = 100 * share
    return f"{value:.1f}%" if value >= 0.1 else f"{value:.2g}%"
