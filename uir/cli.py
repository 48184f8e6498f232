"""The ``uir`` command line.

Exit codes: 0 success; 1 some inputs could not be processed (each reported in one line, the
others still written); 2 bad usage (unknown degradation, bad parameter, missing input).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import warnings
from pathlib import Path

from .boundary import (EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, OneLineParser, UsageError, debugging, guarded, positive_int,
                       whole_number)


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


def _output_path(src: Path, out: Path, into_folder: bool) -> Path:
    return out / (src.stem + ".png") if into_folder or out.is_dir() else out


def plan_outputs(inputs: list[Path], output: str, hint: str, overwrite: bool = False,
                 skip_existing: bool = False) -> list[Path]:
    """One output path per input, checked before any work; a :class:`UsageError` when there are
    no inputs, when several inputs would write one file (``x.jpg`` and ``x.png`` both give
    ``x.png``), or, unless ``overwrite``, when an output is one of the inputs or (unless
    ``skip_existing``) exists already. Stale temporary files of an earlier, killed run are
    removed from the output folders."""
    from .files import remove_stale_temporaries
    from .images import ImageError, output_format

    if not inputs:
        raise UsageError(f"no input images (give {hint})")
    out = Path(output)
    many = len(inputs) > 1
    if many and out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; several inputs need an output folder")
    targets = [_output_path(path, out, many or output.endswith(("/", os.sep))) for path in inputs]
    for folder in {t.parent for t in targets}:
        blocking = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if blocking is not None and not blocking.is_dir():
            raise UsageError(f"cannot write into {folder}: {blocking} is a file")
    try:
        for target in targets:
            output_format(target)
    except ImageError as error:
        raise UsageError(str(error)) from None
    try:
        resolved_inputs = {path.resolve() for path in inputs}
        resolved = [target.resolve() for target in targets]
    except (RuntimeError, OSError) as error:  # a symlink loop
        raise UsageError(f"cannot resolve a path: {error}") from None
    sources: dict[Path, list[Path]] = {}
    for path, target in zip(inputs, resolved):
        sources.setdefault(target, []).append(path)
    collisions = {target: paths for target, paths in sources.items() if len(paths) > 1}
    if collisions:
        target, paths = next(iter(collisions.items()))
        raise UsageError(f"{len(collisions)} output(s) would be written by several inputs, e.g. {target} by "
                         f"{', '.join(map(str, paths))}; restore them into separate folders")
    if not overwrite:
        clash = [t for t, r in zip(targets, resolved) if r in resolved_inputs]
        if clash:
            raise UsageError(f"the output {clash[0]} is one of the inputs; choose another output or pass --overwrite")
        existing = [t for t in targets if t.exists()]
        if existing and not skip_existing:
            raise UsageError(f"{len(existing)} output(s) exist already, e.g. {existing[0]}; pass --overwrite to "
                             "replace them or --skip-existing to keep them")
    for folder in {t.parent for t in targets}:
        remove_stale_temporaries(folder)
    return targets


def cmd_degrade(args) -> int:
    import torch

    from . import degradations, sample_image_path
    from .images import ImageError, image_bit_depth, list_images, load_image, save_image

    names = [n.strip() for n in args.type.split(",") if n.strip()]
    if not names:
        raise UsageError("--type needs a degradation name (see uir degradations)")
    params = _parse_params(args.param)
    if params and len(names) > 1:
        raise UsageError("--param applies to a single --type; use one degradation at a time")
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
            image = load_image(path)
            generator = torch.Generator().manual_seed(args.seed + index)
            kwargs = {"severity": args.severity, "return_params": True}
            if len(names) == 1:
                degraded, used = degradations.apply(names[0], image, generator=generator, **kwargs, **params)
            else:
                degraded, used = degradations.apply(names, image, generator=generator, **kwargs)
            save_image(degraded, target, overwrite=args.overwrite, bit_depth=image_bit_depth(path))
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


def _parse_weights(spec: str | None, names: str | None) -> dict | None:
    """``--weights noisy=0.7,hazy=0.3`` or ``--degradation noisy,hazy`` (equal weights) to a dict."""
    if spec and names:
        raise UsageError("give --weights or --degradation, not both")
    from .lora.strategies import check_manual_weights

    if names:
        chosen = [n.strip() for n in names.split(",") if n.strip()]
        _refuse_repeats("--degradation", chosen)
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
    _refuse_repeats("--weights", [key for key, _ in weights])
    try:
        check_manual_weights([value for _, value in weights])
    except ValueError as error:
        raise UsageError(f"--weights: {error}") from None
    return dict(weights)


def _refuse_repeats(option: str, names: list) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"{option} names {', '.join(repeated)} more than once")


def _load_for_cli(args, state=None):
    """The pipeline the model options name, on ``--device`` (on the process's own device under
    ``accelerate launch``: ``state``). A saved ``RestorerPipeline`` folder, such as the embedded
    default, with no ``--experts``, ``--router`` or ``--vae`` to add, runs in the diffusers-free
    runtime (:mod:`uir.pipelines.runtime`: same outputs, a third of the start-up)."""
    from .lora import ExpertError
    from .pipelines.loading import load_pipeline, model_path
    from .pipelines.runtime import RuntimeRestorerPipeline, runtime_loadable

    experts = [e for e in (args.experts or "").split(",") if e]
    device = str(state.device) if state is not None else check_device(args.device)
    folder = model_path(args.model)
    try:
        if not experts and args.router is None and args.vae is None and runtime_loadable(folder):
            return RuntimeRestorerPipeline.from_folder(folder).to(device)
        return load_pipeline(args.model, experts=experts, router=args.router, device=device, vae=args.vae,
                             allow_pickle=args.allow_pickle)
    except ExpertError as error:
        raise UsageError(f"cannot use expert: {error}") from None
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot load model {args.model or 'default'!r}: {error}") from None
    except (TypeError, KeyError, IndexError, AttributeError) as error:  # a config that does not fit its class
        raise UsageError(f"cannot load model {args.model or 'default'!r}: its files do not describe a model uir "
                         f"can build ({type(error).__name__}: {error})") from None


def say(line: str, error: bool = False) -> None:
    """Print one line above any progress bar (on stderr with ``error``), never through it."""
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr if error else sys.stdout)


def report_skip(path, reason) -> None:
    """``uir: skipped PATH: REASON`` on stderr, naming the path once (most reasons name it)."""
    reason = str(reason)
    say(f"uir: skipped {reason}" if str(path) in reason else f"uir: skipped {path}: {reason}", error=True)


def check_device(name: str) -> str:
    """``name`` if torch can run there, else a :class:`UsageError` listing the devices here."""
    import torch

    here = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        here.append("mps")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    usable = device is not None and (
        device.type == "cpu" or (device.type == "mps" and "mps" in here)
        or (device.type == "cuda" and (device.index or 0) < torch.cuda.device_count()))
    if not usable:
        raise UsageError(f"--device {name}: not available here; devices: {', '.join(here)}")
    return name


def output_folder(path) -> Path:
    """``path`` as a folder to write into, made now: a :class:`UsageError` before any work when it
    is a file, lies under one, or cannot be written."""
    folder = Path(path)
    blocking = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise UsageError(f"-o {path}: {blocking} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"-o {path}: cannot create the folder ({error.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"-o {path}: the folder is not writable")
    return folder


def _readable(paths, failed: list, progress=None):
    """``(path, image)`` for each readable input, read when needed (one batch in memory at a
    time); each unreadable one is reported in one line, appended to ``failed`` and counted on
    ``progress``."""
    from .images import ImageError, load_image

    for path in paths:
        try:
            yield path, load_image(path)
        except ImageError as error:
            report_skip(path, error)
            failed.append(path)
            if progress is not None:
                progress.update(1)


def _distributed_state():
    """accelerate's ``PartialState`` under ``accelerate launch`` with several processes, once
    every process has reached this point; ``None`` in a plain run."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))  # as Accelerator() reads it
    state.wait_for_everyone()  # every process has listed its inputs before any writes
    return state


def _end_distributed() -> None:
    """Closes the process group :func:`_distributed_state` opened. A gloo group left for the
    interpreter's exit to tear down sometimes aborts the process after its work is done
    ("terminate called without an active exception")."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


def _share(state, items: list) -> list:
    """This process's contiguous share of ``items`` (all of them in a plain run)."""
    if state is None:
        return items
    with state.split_between_processes(items) as share:
        return list(share)


def cmd_restore(args) -> int:
    import time

    import torch
    from tqdm.auto import tqdm

    from .images import ImageError, image_bit_depth, list_images, save_image
    from .pipelines.restoring import shape_batches

    inputs = list_images(args.inputs)
    targets = dict(zip(inputs, plan_outputs(inputs, args.output, "files, folders or globs", args.overwrite,
                                            args.skip_existing)))
    pending = [path for path in inputs if args.overwrite or not targets[path].exists()]
    skipped = len(inputs) - len(pending)
    weights = _parse_weights(args.weights, args.degradation)
    start = time.perf_counter()
    state = _distributed_state()
    mine = _share(state, pending)
    pipe = _load_for_cli(args, state)
    if weights is not None:
        unknown = sorted(set(weights) - set(pipe.expert_list.names))
        if unknown:
            raise UsageError(f"no expert for {', '.join(unknown)}; this model has: {', '.join(pipe.expert_list.names)}")
    if weights is None and pipe.router is None and pipe.expert_list.names:
        raise UsageError("this model has no router: pass --degradation or --weights, or --router")
    loaded = time.perf_counter()
    failed: list = []
    failures, done = 0, 0
    # closed when the block ends, so nothing redraws the bar below a last line (an error, Ctrl-C)
    with tqdm(total=len(mine), desc="restoring", unit="image", disable=len(mine) <= 1) as progress:
        batches = shape_batches(_readable(mine, failed, progress), args.batch_size,
                                shape=lambda item: tuple(item[1].shape))
        for batch in batches:
            progress.update(len(batch))
            x = torch.stack([image for _, image in batch])
            try:
                options = {} if args.top_k is None else {"top_k": args.top_k}
                result = pipe(x, weights=weights, output_type="pt", tile_size=args.tile_size, batch_size=len(batch),
                              **options)
            except (ValueError, RuntimeError) as error:
                failures += len(batch)
                for path, _ in batch:
                    report_skip(path, error)
                continue
            for row, (path, _) in enumerate(batch):
                target = targets[path]
                try:
                    save_image(result.images[row], target, overwrite=args.overwrite, bit_depth=image_bit_depth(path))
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
    """What was done to image ``row`` of a pipeline output, in words: the router's call and its
    confidence (or "not sure" when below the threshold), then the experts that ran with their
    weights, the share of the input kept, or "base model only"."""
    used = ", ".join(f"{n} {w:.2f}" for n, w in zip(result.expert_names, result.weights[row].tolist()) if w > 0)
    kept = float(result.clean_weight[row])
    used = ", ".join(part for part in (used, f"input kept {kept:.2f}" if kept > 0 else "") if part)
    used = f"experts: {used}" if used else "base model only"
    if result.degradations is None:
        return used
    confidence = result.confidence[row].item()
    if not result.known[row]:
        return f"not sure ({confidence:.2f}; likeliest {result.degradations[row]}): {used}"
    return f"detected {result.degradations[row]} (confidence {confidence:.2f}); {used}"


def _restore_fn(pipe, oracle: bool, top_k: int | None = None):
    """``restore(lq, pair)`` for :func:`uir.evaluation.evaluate_restoration`; the oracle weighs
    the parts of a mixed degradation equally."""
    from .degradations import mix_parts

    options = {} if top_k is None else {"top_k": top_k}

    def restore(lq, pair):
        parts = mix_parts(pair.name)
        weights = {part: 1.0 / len(parts) for part in parts} if oracle else None
        return pipe(lq, weights=weights, output_type="pt", **options).images

    return restore


def _data_folder(args) -> Path:
    data = Path(args.data)
    if not data.is_dir():
        raise UsageError(f"--data {data} is not a folder")
    return data


def _photos(args, data: Path) -> list[Path]:
    """The photos of ``data`` that ``--held-out`` and ``--limit`` select."""
    from .data import photo_files, split_photos

    return (split_photos(data)[1] if args.held_out else photo_files(data))[: args.limit]


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
    from .data import PairedFolderDataset

    try:
        PairedFolderDataset(data / "lq", data / "gt")
    except ValueError as error:
        raise UsageError(f"--data {data}: {error}") from None
    return True


def cmd_eval(args) -> int:
    from .evaluation import (RestorationScores, comparison_grid, evaluate_paired, evaluate_restoration,
                             markdown_table, with_mean, write_scores)
    from .images import save_image

    names = args.degradations
    data = _data_folder(args)
    paired = _paired(data)
    photos = [] if paired else _photos(args, data)
    if not paired and not photos:
        raise UsageError(f"--data {data}: no photos{' in the held-out split' if args.held_out else ''}")
    out = output_folder(args.output)
    state = _distributed_state()
    pipe = _load_for_cli(args, state)
    skips = _Skips()
    if args.oracle:
        from .degradations import mix_parts

        missing = sorted({part for name in names for part in mix_parts(name)} - set(pipe.expert_list.names))
        if missing:
            raise UsageError(f"--oracle needs an expert per degradation; missing: {', '.join(missing)}")
    rows = []

    def keep(pair, restored):
        if len([r for r in rows if r[0] == pair.name]) < args.grid_rows:
            rows.append((pair.name, [pair.lq, restored, pair.gt]))

    if paired:
        scores = evaluate_paired(lambda lq: pipe(lq, output_type="pt").images, data,
                                 select=lambda indices: _share(state, indices), on_skip=skips)
    else:
        mine = _share(state, list(enumerate(photos)))
        scores = evaluate_restoration(_restore_fn(pipe, args.oracle, args.top_k), [path for _, path in mine], names,
                                      seed=args.seed, on_pair=keep, first_index=mine[0][0] if mine else 0,
                                      on_skip=skips)
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
    written = write_scores(table, out)
    if rows:
        written.append(save_image(comparison_grid(rows), out / "grid.png"))
    print("wrote " + ", ".join(str(path) for path in written))
    return code


def cmd_eval_router(args) -> int:
    from .evaluation import markdown_table, router_accuracy, router_confusion
    from .hub import require_hub
    from .router import DegradationRouter

    data = _data_folder(args)
    photos = _photos(args, data)
    if not photos:
        raise UsageError(f"--data {data}: no photos{' in the held-out split' if args.held_out else ''}")
    try:
        require_hub(args.router, "router")
        router = DegradationRouter.from_pretrained(args.router)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot load router {args.router!r}: {error}") from None
    names = args.degradations or router.vocabulary
    severity = None if args.severity == "default" else args.severity
    skips = _Skips()
    confusion = router_confusion(router, photos, names, seed=args.seed, severity=severity, repeats=args.repeats,
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
    from .benchmarking import benchmark_pipeline

    rows = benchmark_pipeline(lambda: _load_for_cli(args), size=args.size, device=check_device(args.device),
                              batch=args.batch, repeats=args.repeats)
    from .evaluation import markdown_table

    print(markdown_table(rows, digits=3))
    return EXIT_OK


def cmd_demo(args) -> int:
    import torch

    from . import degradations, sample_image_path
    from .degradations import DA_CLIP_TYPES
    from .evaluation import comparison_grid, markdown_table
    from .images import load_image, save_image
    from .files import atomic_write
    from .metrics import psnr

    out = output_folder(args.output)
    pipe = _load_for_cli(args)
    clean = load_image(sample_image_path())[None]
    rows, table = [], []
    for k, name in enumerate(DA_CLIP_TYPES):
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
    from .degradations import parse_names

    parser = OneLineParser(prog="uir", description="Universal image restoration.",
                                     epilog="Errors are one line; --debug (anywhere) or UIR_DEBUG=1 shows the "
                                            "traceback of an unexpected one.")
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
                          help='comma-separated names or "all" (the 10 DA-CLIP types); a mixture joins names '
                               "with + (low-light+noisy)")
    evaluate.add_argument("--top-k", dest="top_k", type=positive_int, default=None,
                          help="experts the router keeps per image (default: the pipeline's)")
    evaluate.add_argument("--oracle", action="store_true", help="use the true degradation's expert instead of the router")
    evaluate.add_argument("--held-out", dest="held_out", action="store_true",
                          help="use only the held-out split of --data (every fifth photo by name)")
    evaluate.add_argument("--limit", type=positive_int, default=None, help="use only the first N photos")
    evaluate.add_argument("--grid-rows", dest="grid_rows", type=_non_negative, default=1,
                          help="grid rows per degradation")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("-o", "--output", default="outputs/eval", help="folder for scores.csv/json and grid.png")
    evaluate.set_defaults(func=cmd_eval)

    router_eval = sub.add_parser("eval-router", help="a router's top-1 accuracy per degradation on degraded photos")
    router_eval.add_argument("router", help="a router folder or Hub id")
    router_eval.add_argument("--data", required=True, help="clean photos, degraded here")
    router_eval.add_argument("--degradations", type=parse_names, default=None,
                             help='comma-separated names or "all" (the 10 DA-CLIP types); default: the '
                                  "router's vocabulary")
    router_eval.add_argument("--severity", default="default", choices=["default", "mild", "moderate", "severe", "random"],
                             help="default (each type's protocol level), mild, moderate, severe or random")
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

    demo = sub.add_parser("demo", help="degrade the bundled photo 10 ways, restore, write a grid and PSNR table")
    _add_model_args(demo)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("-o", "--output", default="outputs/demo", help="output folder")
    demo.set_defaults(func=cmd_demo)

    info = sub.add_parser("info", help="versions, device and where models and data are looked up")
    info.add_argument("--torch", action="store_true",
                      help="also import torch and report its device, threads and hub folder (about 1.5 s)")
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
    """Run one ``uir`` command inside the error boundary (:mod:`uir.boundary`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = debugging(argv)
    parser = build_parser()
    args = parser.parse_args([a for a in argv if a != "--debug"])
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE

    def run() -> int:
        with warnings.catch_warnings():  # a warning is one line on stderr, like an error
            warnings.showwarning = lambda message, *rest, **kw: print(f"uir: warning: {message}", file=sys.stderr)
            return args.func(args)

    try:
        return guarded(run, "uir", debug)
    finally:
        _end_distributed()


if __name__ == "__main__":
    sys.exit(main())
