"""Resumable training checkpoints, without pickles.

A checkpoint holds only the trained parameters, never a frozen base:
``trainable.safetensors``, ``buffers.safetensors`` (the buffers of the modules being trained,
such as batch-norm running statistics, without which a resumed network would evaluate with
fresh statistics), ``optimizer.safetensors`` (AdamW moments and steps),
``rng-<rank>.safetensors`` (each process's random states: torch's on the CPU and every CUDA
device, numpy's and Python's global generators) and ``state.json`` (step, epoch,
LR schedule, optimizer hyper-parameters). It is written to ``checkpoint-N.tmp`` and renamed
into place, so an interrupted save never looks like a checkpoint. ``--resume_from_checkpoint
latest`` restores all of it and skips the batches already seen in the current epoch: on CPU
the resumed run reproduces the uninterrupted one bit for bit.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from uir.files import give_usual_permissions

logger = logging.getLogger("uir.training")

CHECKPOINT_PREFIX = "checkpoint-"
TRAINABLE_FILE, OPTIMIZER_FILE, STATE_FILE = "trainable.safetensors", "optimizer.safetensors", "state.json"
BUFFERS_FILE = "buffers.safetensors"


def trained_buffers(model: nn.Module, trainable: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    """The buffers of ``model``'s modules that own a parameter in ``trainable`` (names as in
    ``model.named_buffers()``): batch-norm statistics of a trained network, nothing of a frozen base."""
    trained = {id(p) for p in trainable.values()}
    found = {}
    for prefix, module in model.named_modules():
        if any(id(p) in trained for p in module.parameters(recurse=False)):
            found.update({f"{prefix}.{name}" if prefix else name: buffer
                          for name, buffer in module.named_buffers(recurse=False)})
    return found


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for flat, value in list(tensors.items()) + list(meta["scalars"].items()):
        index, key = flat.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def checkpoint_dirs(output_dir) -> list[Path]:
    """Finished checkpoints under ``output_dir``, oldest first."""
    found = [p for p in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and p.name[len(CHECKPOINT_PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def save_checkpoint(accelerator, output_dir, step: int, epoch: int, trainable: dict[str, nn.Parameter],
                    optimizer, lr_scheduler, total_limit: int | None = None,
                    buffers: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``checkpoint-<step>`` atomically; prune the oldest beyond ``total_limit``.
    ``buffers``: :func:`trained_buffers` of the model."""
    final = Path(output_dir) / f"{CHECKPOINT_PREFIX}{step}"
    staging = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    save_rng_state(staging / f"rng-{accelerator.process_index}.safetensors")
    if accelerator.is_main_process:
        save_file({name: p.detach().contiguous().cpu() for name, p in trainable.items()}, staging / TRAINABLE_FILE)
        if buffers:
            save_file({name: b.detach().contiguous().cpu() for name, b in buffers.items()}, staging / BUFFERS_FILE)
        tensors, meta = _flatten_optimizer(optimizer.state_dict())
        save_file(tensors, staging / OPTIMIZER_FILE)
        state = {"step": step, "epoch": epoch, "optimizer": meta, "lr_scheduler": lr_scheduler.state_dict(),
                 "num_processes": accelerator.num_processes}
        (staging / STATE_FILE).write_text(json.dumps(state, indent=1, default=_json_default))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        give_usual_permissions(staging)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        existing = checkpoint_dirs(output_dir)
        if total_limit is not None:
            for old in existing[: max(0, len(existing) - total_limit)]:
                shutil.rmtree(old, ignore_errors=True)
        logger.info("saved %s", final)
    accelerator.wait_for_everyone()
    return final


def _json_default(value):
    if isinstance(value, tuple):
        return list(value)
    if torch.is_tensor(value):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} into a checkpoint's state.json")


def resolve_checkpoint(output_dir, which: str | None) -> Path | None:
    """``"latest"`` -> the newest finished checkpoint (or None); a path -> that path. Either is
    checked whole (:func:`check_checkpoint`) before it is used."""
    if not which:
        return None
    if which == "latest":
        found = checkpoint_dirs(output_dir)
        path = found[-1] if found else None
    else:
        path = Path(which)
    if path is not None:
        check_checkpoint(path)
    return path


RESUME_OPTION = "--resume_from_checkpoint"


def _unusable(path, why: str, option: str = RESUME_OPTION):
    from ..boundary import UsageError

    fallback = ", or leave it out to start anew" if option == RESUME_OPTION else ""
    return UsageError(f"{option} {path}: {why}; pass another checkpoint folder{fallback}")


def check_checkpoint(path, option: str = RESUME_OPTION) -> Path:
    """``path``, or a one-line usage error naming ``option`` unless it holds a whole checkpoint:
    ``state.json`` that parses, the trained parameters and the optimizer in readable
    safetensors files."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_dir():
        raise _unusable(path, "no such folder", option)
    for name in (STATE_FILE, TRAINABLE_FILE, OPTIMIZER_FILE):
        if not (path / name).is_file():
            raise _unusable(path, f"it has no {name} (not a whole uir checkpoint)", option)
    try:
        state = json.loads((path / STATE_FILE).read_text())
        if not isinstance(state, dict) or "step" not in state or "optimizer" not in state:
            raise ValueError("no step or optimizer record")
    except ValueError as error:
        raise _unusable(path, f"{STATE_FILE} is damaged ({error})", option) from None
    for name in (TRAINABLE_FILE, OPTIMIZER_FILE):
        try:
            with safe_open(path / name, "pt") as handle:
                handle.keys()
        except Exception as error:
            raise _unusable(path, f"{name} is damaged ({' '.join(str(error).split())})", option) from None
    return path


def load_checkpoint(accelerator, path, trainable: dict[str, nn.Parameter], optimizer, lr_scheduler,
                    buffers: dict[str, torch.Tensor] | None = None) -> dict:
    """Restore parameters, ``buffers``, optimizer, LR schedule and this process's RNG; return ``state.json``."""
    path = Path(path)
    state = json.loads((path / STATE_FILE).read_text())
    weights = load_file(path / TRAINABLE_FILE)
    missing, extra = sorted(set(trainable) - set(weights)), sorted(set(weights) - set(trainable))
    if missing or extra:
        raise _unusable(path, f"it was made by another setup (another architecture, or other --degradations): "
                              f"{len(missing)} of this run's trained parameters are missing, e.g. "
                              f"{(missing or extra)[0]}, and {len(extra)} are not this run's")
    shapes = [n for n, p in trainable.items() if tuple(p.shape) != tuple(weights[n].shape)]
    if shapes:
        raise _unusable(path, f"it was made for another architecture: {shapes[0]} has shape "
                              f"{tuple(weights[shapes[0]].shape)}, this run's {tuple(trainable[shapes[0]].shape)}")
    with torch.no_grad():
        for name, param in trainable.items():
            param.copy_(weights[name])
        saved = load_file(path / BUFFERS_FILE) if (path / BUFFERS_FILE).is_file() else {}
        for name, buffer in (buffers or {}).items():
            if name in saved:
                buffer.copy_(saved[name])
    optimizer_state = _unflatten_optimizer(load_file(path / OPTIMIZER_FILE), state["optimizer"])
    optimizer.load_state_dict(optimizer_state)
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    rng = path / f"rng-{accelerator.process_index}.safetensors"
    if rng.is_file():
        load_rng_state(rng)
    return state


def save_rng_state(path) -> None:
    """Write every random state a training step may draw from: torch's (``state``: the CPU's;
    ``cuda<i>``: each CUDA device's), numpy's global generator (``numpy`` and its scalars in the
    header) and Python's ``random`` (``python``, likewise)."""
    version, words, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    tensors = {"state": torch.get_rng_state(), "python": torch.tensor(words, dtype=torch.int64),
               "numpy": torch.from_numpy(keys.astype(np.int64))}
    if torch.cuda.is_available():
        tensors.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    header = {"python": json.dumps([version, gauss]), "numpy": json.dumps([kind, int(position), int(has_gauss),
                                                                          float(cached)])}
    save_file(tensors, path, metadata=header)


def load_rng_state(path) -> None:
    """Restore what :func:`save_rng_state` wrote (a file of the first form holds torch's CPU
    state only)."""
    from safetensors import safe_open

    tensors = load_file(path)
    with safe_open(path, "pt") as handle:
        header = handle.metadata() or {}
    torch.set_rng_state(tensors["state"])
    cuda = [tensors[f"cuda{i}"] for i in range(len(tensors)) if f"cuda{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    if "python" in tensors and "python" in header:
        version, gauss = json.loads(header["python"])
        random.setstate((version, tuple(tensors["python"].tolist()), gauss))
    if "numpy" in tensors and "numpy" in header:
        kind, position, has_gauss, cached = json.loads(header["numpy"])
        np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), position, has_gauss, cached))


__all__ = ["BUFFERS_FILE", "CHECKPOINT_PREFIX", "OPTIMIZER_FILE", "STATE_FILE", "TRAINABLE_FILE", "check_checkpoint",
           "checkpoint_dirs",
           "load_checkpoint", "load_rng_state", "resolve_checkpoint", "save_checkpoint", "save_rng_state",
           "trained_buffers"]
