"""What the ``uir`` commands share: loading the model as ``uir restore`` runs it, checking
devices and output places before any work, one-line messages above the progress bar, and the
work split of ``accelerate launch``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..boundary import UsageError
from ..files import file_in_the_way, remove_stale_temporaries

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
    blocking = file_in_the_way(folder)
    if blocking is not None:
        raise UsageError(f"-o {path}: {blocking} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"-o {path}: cannot create the folder ({error.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"-o {path}: the folder is not writable")
    return folder


def _output_path(src: Path, out: Path, into_folder: bool) -> Path:
    return out / (src.stem + ".png") if into_folder or out.is_dir() else out


def plan_outputs(inputs: list[Path], output: str, hint: str, overwrite: bool = False,
                 skip_existing: bool = False) -> list[Path]:
    """One output path per input, checked before any work; a :class:`UsageError` when there are
    no inputs, when several inputs would write one file (``x.jpg`` and ``x.png`` both give
    ``x.png``), or, unless ``overwrite``, when an output is one of the inputs or (unless
    ``skip_existing``) exists already. Stale temporary files of an earlier, killed run are
    removed from the output folders."""
    from ..images import ImageError, output_format

    if not inputs:
        raise UsageError(f"no input images (give {hint})")
    out = Path(output)
    many = len(inputs) > 1
    if many and out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; several inputs need an output folder")
    targets = [_output_path(path, out, many or output.endswith(("/", os.sep))) for path in inputs]
    for folder in {t.parent for t in targets}:
        blocking = file_in_the_way(folder)
        if blocking is not None:
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


def load_for_cli(args, state=None):
    """The pipeline the model options name, on ``--device`` (on the process's own device under
    ``accelerate launch``: ``state``), loaded as every ``uir`` command loads it:
    :func:`~uir.pipelines.loading.load_pipeline` with ``runtime=True``."""
    from ..lora import ExpertError
    from ..pipelines.loading import load_pipeline

    experts = [e for e in (args.experts or "").split(",") if e]
    device = str(state.device) if state is not None else check_device(args.device)
    try:
        return load_pipeline(args.model, experts=experts, router=args.router, device=device, vae=args.vae,
                             allow_pickle=args.allow_pickle, runtime=True)
    except ExpertError as error:
        raise UsageError(f"cannot use expert: {error}") from None
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot load model {args.model or 'default'!r}: {error}") from None
    except (TypeError, KeyError, IndexError, AttributeError) as error:  # a config that does not fit its class
        raise UsageError(f"cannot load model {args.model or 'default'!r}: its files do not describe a model uir "
                         f"can build ({type(error).__name__}: {error})") from None


def distributed_state():
    """accelerate's ``PartialState`` under ``accelerate launch`` with several processes, once
    every process has reached this point; ``None`` in a plain run."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))  # as Accelerator() reads it
    state.wait_for_everyone()  # every process has listed its inputs before any writes
    return state


def share(state, items: list) -> list:
    """This process's contiguous share of ``items`` (all of them in a plain run)."""
    if state is None:
        return items
    with state.split_between_processes(items) as share:
        return list(share)


def refuse_repeats(option: str, names: list) -> None:
    """A usage error naming what ``option`` lists more than once."""
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"{option} names {', '.join(repeated)} more than once")


def parse_route_again(spec: str | None, manual: str | None) -> tuple[str, ...] | None:
    """``--route-again jpeg-compressed,noisy`` (or ``none``) as the classes of
    :attr:`~uir.pipelines.restoring.MixtureRestoration.routes_again_after`; ``None``: the model's.
    ``manual``: the option that takes the choice from the router, if one was given."""
    if spec is None:
        return None
    if manual:
        raise UsageError(f"--route-again needs the router choosing: not with {manual}")
    chosen = [] if spec.strip() == "none" else [n.strip() for n in spec.split(",") if n.strip()]
    refuse_repeats("--route-again", chosen)
    return tuple(chosen)


def refuse_unknown_experts(pipe, names, prefix: str = "") -> None:
    """A usage error, after ``prefix``, naming what of ``names`` has no expert in ``pipe`` and what it has."""
    unknown = sorted(set(names) - set(pipe.expert_list.names))
    if unknown:
        raise UsageError(f"{prefix}no expert for {', '.join(unknown)}; this model has: "
                         f"{', '.join(pipe.expert_list.names)}")


def set_route_again(pipe, classes: tuple[str, ...] | None) -> None:
    """Give ``pipe`` the classes of :func:`parse_route_again`, each one of its experts' (``None``: keep its own)."""
    if classes is None:
        return
    refuse_unknown_experts(pipe, classes, "--route-again: ")
    pipe.routes_again_after = classes


def data_folder(args) -> Path:
    data = Path(args.data)
    if not data.is_dir():
        raise UsageError(f"--data {data} is not a folder")
    return data


def severity(args) -> str | None:
    """``--severity`` as :func:`uir.evaluation.degraded_pairs` takes it (``None``: each type's default)."""
    return None if args.severity == "default" else args.severity


def selected_photos(args, data: Path) -> list[Path]:
    """The photos of ``data`` that ``--held-out`` and ``--limit`` select."""
    from ..data import photo_files, split_photos

    return (split_photos(data)[1] if args.held_out else photo_files(data))[: args.limit]
