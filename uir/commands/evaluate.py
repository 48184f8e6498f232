"""``uir eval``, ``uir eval-router``, ``uir bench`` and ``uir demo``: scores, router accuracy,
timings and the demo grid, each skipping what cannot be read with one line."""

from __future__ import annotations

import sys
from pathlib import Path

from ..boundary import EXIT_OK, EXIT_PARTIAL, UsageError
from .common import (check_device, data_folder, distributed_state, load_for_cli, output_folder, parse_route_again,
                     report_skip, selected_photos, set_route_again, severity, share)
from .restore import describe_restoration


def _restore_fn(pipe, oracle: bool, top_k: int | None = None):
    """``(restore(lq, pair), notes())`` for :func:`uir.evaluation.evaluate_restoration`; the
    oracle weighs the parts of a mixed degradation equally. ``notes()`` says what the pipeline
    did with the last image (:func:`restoration_notes`)."""
    from ..degradations import mix_parts

    options = {} if top_k is None else {"top_k": top_k}
    last = {}

    def restore(lq, pair):
        parts = mix_parts(pair.name)
        weights = {part: 1.0 / len(parts) for part in parts} if oracle else None
        output = pipe(lq, weights=weights, output_type="pt", **options)
        last.update(restoration_notes(output))
        return output.images

    return restore, lambda: dict(last)


def restoration_notes(output) -> dict:
    """The columns of ``pairs.csv`` that say what a pipeline did with its one image: the router's
    ``call`` and ``confidence`` (when a router ran) and the ``restoration`` in words
    (:func:`~uir.commands.restore.describe_restoration`)."""
    routed = {} if output.degradations is None else {"call": output.degradations[0],
                                                     "confidence": round(float(output.confidence[0]), 4)}
    return {**routed, "restoration": describe_restoration(output, 0)}


class _Skips(list):
    """The photos or pairs an evaluation left out, each reported as it is skipped."""

    def __call__(self, path, reason) -> None:
        report_skip(path, reason)
        self.append(path)

    def summary(self, scored: int) -> int:
        """Report the count; the exit code: 1 when anything was skipped or nothing scored."""
        if not scored:
            print(f"uir: error: nothing could be scored ({len(self)} skipped)", file=sys.stderr)
            return EXIT_PARTIAL
        if self:
            print(f"uir: {len(self)} skipped; the table scores the rest ({scored} pairs)", file=sys.stderr)
        return EXIT_PARTIAL if self else EXIT_OK


def _paired(data: Path) -> bool:
    """Whether ``data`` holds ``lq/`` and ``gt/`` pairs; they must match (checked before any model loads)."""
    if not ((data / "lq").is_dir() and (data / "gt").is_dir()):
        return False
    from ..data import PairedFolderDataset

    try:
        PairedFolderDataset(data / "lq", data / "gt")
    except ValueError as error:
        raise UsageError(f"--data {data}: {error}") from None
    return True


def cmd_eval(args) -> int:
    from ..evaluation import (RestorationScores, comparison_grid, evaluate_paired, evaluate_restoration,
                             markdown_table, with_mean, write_scores)
    from ..images import save_image

    names = args.degradations
    data = data_folder(args)
    paired = _paired(data)
    if paired and severity(args) is not None:
        raise UsageError(f"--severity degrades clean photos; --data {data} holds lq/ and gt/ pairs")
    photos = [] if paired else selected_photos(args, data)
    if not paired and not photos:
        raise UsageError(f"--data {data}: no photos{' in the held-out split' if args.held_out else ''}")
    route_again = parse_route_again(args.route_again, "--oracle" if args.oracle else None)
    out = output_folder(args.output)
    state = distributed_state()
    pipe = load_for_cli(args, state)
    set_route_again(pipe, route_again)
    skips = _Skips()
    if args.oracle:
        from ..degradations import mix_parts

        missing = sorted({part for name in names for part in mix_parts(name)} - set(pipe.expert_list.names))
        if missing:
            raise UsageError(f"--oracle needs an expert per degradation; missing: {', '.join(missing)}")
    rows = []

    def keep(pair, restored):
        if len([r for r in rows if r[0] == pair.name]) < args.grid_rows:
            rows.append((pair.name, [pair.lq, restored, pair.gt]))

    if paired:
        scores = evaluate_paired(lambda lq: pipe(lq, output_type="pt").images, data,
                                 select=lambda indices: share(state, indices), on_skip=skips)
    else:
        mine = share(state, list(enumerate(photos)))
        restore, notes = _restore_fn(pipe, args.oracle, args.top_k)
        scores = evaluate_restoration(restore, [path for _, path in mine], names,
                                      seed=args.seed, severity=severity(args), on_pair=keep,
                                      first_index=mine[0][0] if mine else 0,
                                      on_skip=skips, notes=notes)
    if state is not None:  # every process's scores and skips, merged, written once
        from accelerate.utils import gather_object

        gathered = gather_object([(scores, list(skips))])
        scores = RestorationScores.merge([part for part, _ in gathered])
        skips[:] = [path for _, paths in gathered for path in paths]
        if not state.is_main_process:
            return EXIT_OK
    code = skips.summary(sum(scores.count.values()))
    if not scores.count:
        return code
    table = with_mean(scores.rows())
    print(markdown_table(table))
    written = write_scores(table, out, scores.pairs)
    if rows:
        written.append(save_image(comparison_grid(rows), out / "grid.png"))
    print("wrote " + ", ".join(str(path) for path in written))
    return code


def cmd_eval_router(args) -> int:
    from ..evaluation import markdown_table, router_accuracy, router_confusion
    from ..hub import require_hub
    from ..models.router import DegradationRouter

    data = data_folder(args)
    photos = selected_photos(args, data)
    if not photos:
        raise UsageError(f"--data {data}: no photos{' in the held-out split' if args.held_out else ''}")
    try:
        require_hub(args.router, "router")
        router = DegradationRouter.from_pretrained(args.router)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot load router {args.router!r}: {error}") from None
    names = args.degradations or router.vocabulary
    skips = _Skips()
    confusion = router_confusion(router, photos, names, seed=args.seed, severity=severity(args), repeats=args.repeats,
                                 on_skip=skips)
    code = skips.summary(sum(sum(row.values()) for row in confusion.values()))
    if code and not any(confusion.values()):
        return code
    accuracy = router_accuracy(confusion)
    print(markdown_table([{"degradation": k, "top-1 accuracy": v} for k, v in accuracy.items()]))
    print("\nconfusion (rows: true degradation, columns: router's top-1)\n")
    print(markdown_table([{"true": name, **{p: confusion[name].get(p, 0) for p in router.vocabulary}}
                          for name in names]))
    return code


def cmd_bench(args) -> int:
    from ..benchmarking import benchmark_pipeline

    rows = benchmark_pipeline(lambda: load_for_cli(args), size=args.size, device=check_device(args.device),
                              batch=args.batch, repeats=args.repeats)
    from ..evaluation import markdown_table

    print(markdown_table(rows, digits=3))
    return EXIT_OK


def cmd_demo(args) -> int:
    import torch

    from .. import degradations, sample_image_path
    from ..degradations import DEFAULT_VOCABULARY
    from ..evaluation import comparison_grid, markdown_table
    from ..images import load_image, save_image
    from ..files import atomic_write
    from ..metrics import psnr

    out = output_folder(args.output)
    pipe = load_for_cli(args)
    clean = load_image(sample_image_path())[None]
    rows, table = [], []
    for k, name in enumerate(DEFAULT_VOCABULARY):
        degraded = degradations.apply(name, clean, generator=torch.Generator().manual_seed(args.seed + k))
        result = pipe(degraded, output_type="pt")
        restored = result.images
        done = describe_restoration(result, 0)
        rows.append((f"{name}\n" + done.replace("; ", "\n").replace(": ", ":\n", 1), [degraded, restored, clean]))
        table.append({"degradation": name, "restoration": done, "psnr_in": psnr(degraded, clean).item(),
                      "psnr_out": psnr(restored, clean).item()})
        table[-1]["gain"] = table[-1]["psnr_out"] - table[-1]["psnr_in"]
    save_image(comparison_grid(rows), out / "demo.png")
    text = markdown_table(table)
    atomic_write(out / "demo.md", lambda stream: stream.write((text + "\n").encode()))
    print(text)
    print(f"wrote {out / 'demo.png'} and {out / 'demo.md'}")
    return EXIT_OK
