"""Writing files and folders so that nothing is ever half-written or lost.

* :func:`atomic_write`: a file written to a temporary name beside it, then renamed (or, with
  ``overwrite=False``, linked into place only if the name is still free).
* :func:`staged_directory`: a folder built beside its target, then swapped in.
* :func:`save_pretrained_staged`: a model's ``save_pretrained`` through :func:`staged_directory`.
* :func:`save_json`: indented JSON through :func:`atomic_write`; :func:`load_json_object` reads
  one back with a one-line error, :func:`load_safetensors` a weights file.
* :func:`remove_stale_temporaries`: what a killed process left of the two above.

Temporaries are named ``.<name>.<host>-<pid>.<random>`` + :data:`PARTIAL_SUFFIX`, so uir only
ever removes its own, and only those whose process is gone.

Both keep the usual permissions (``0o666`` / ``0o777`` less the umask), not the private ones
of ``tempfile``; so do the files written into a staged folder (:func:`give_usual_permissions`:
safetensors 0.8 writes every file ``0o600``, which another user, or a container's, cannot read).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

#: the suffix of uir's temporary files and folders
PARTIAL_SUFFIX = ".uir-partial"
#: a temporary whose owner cannot be checked (another host's, or of the first naming, without
#: the owner) is left alone until it is this old: it may belong to a running process
STALE_AFTER_S = 3600.0
_OWNER = re.compile(r"\.(?P<host>[^./]+)-(?P<pid>\d+)\.[^.]+" + re.escape(PARTIAL_SUFFIX) + "$")


def _host() -> str:
    """This machine's name with only its letters and digits (so it holds no dot or dash)."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname()) or "host"


def _owner_tag() -> str:
    """``<host>-<pid>``: who writes a temporary."""
    return f"{_host()}-{os.getpid()}"


def _owner_alive(path: Path) -> bool | None:
    """Whether the process that named temporary ``path`` still runs; ``None`` when this cannot
    be told (another host, or a name without the owner)."""
    match = _OWNER.search(path.name)
    if not match or match["host"] != _host():
        return None
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def file_in_the_way(path) -> Path | None:
    """The file that stops ``path`` from being (or being made) a folder: ``path`` itself or its
    nearest existing ancestor, when that is not a folder; ``None`` when nothing is in the way."""
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    return existing if existing is not None and not existing.is_dir() else None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write, overwrite: bool = True) -> Path:
    """Create ``path`` through ``write(binary stream)``: into a temp file beside it, then renamed,
    so readers never see half a file and a failure leaves any old file untouched. The file gets
    the usual permissions (``0o666`` less the umask), not the temp file's private ``0o600``.

    With ``overwrite=False`` the file is linked into place only if ``path`` does not exist at
    that moment (atomic, so two processes cannot both win); else ``FileExistsError``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_owner_tag()}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.chmod(tmp, 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
            os.unlink(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporaries(folder, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove uir's temporary files and folders in ``folder`` that a killed process left: those
    whose owner process on this host is gone, whatever their age, and those whose owner cannot
    be checked once untouched for ``older_than_s``. Return what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    cutoff = time.time() - older_than_s
    removed = []
    for path in folder.glob(f".*{PARTIAL_SUFFIX}"):
        try:
            alive = _owner_alive(path)
            if alive is False or (alive is None and path.lstat().st_mtime < cutoff):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                removed.append(path)
        except FileNotFoundError:  # another process cleaned it first
            continue
    return removed


def give_usual_permissions(folder) -> None:
    """Give every file under ``folder`` the permissions a plain ``open`` would (``0o666`` less the
    umask). For folders uir has just written: safetensors' ``save_file`` (0.8) creates its files
    ``0o600`` through a temp file of its own, whatever the umask."""
    mode = 0o666 & ~_umask()
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)


@contextmanager
def staged_directory(target):
    """Yield an empty folder beside ``target`` that replaces ``target`` when the block succeeds
    and is removed when it fails, so a failed save leaves any old folder as it was. The folder
    gets the usual permissions (``0o777`` less the umask), not the temp folder's ``0o700``, and
    the files written into it theirs (:func:`give_usual_permissions`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.{_owner_tag()}.", suffix=PARTIAL_SUFFIX,
                                    dir=target.parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())
        yield staging
        give_usual_permissions(staging)
        backup = target.with_name(f".{target.name}.old{PARTIAL_SUFFIX}")
        if target.exists():
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(target, backup)
        os.replace(staging, target)
        shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_pretrained_staged(model, target, **kwargs) -> Path:
    """``model.save_pretrained`` (any diffusers / transformers object) into a staged folder that
    replaces ``target`` only when the save finished: a killed training never leaves a half-written
    folder that looks loadable."""
    with staged_directory(target) as staging:
        model.save_pretrained(staging, **kwargs)
    return Path(target)


def load_json_object(path, error: type[Exception] = ValueError) -> dict:
    """The JSON object in ``path``; ``error`` with one line when the file is not valid JSON or
    holds something else (a list, a number)."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as reason:
        raise error(f"{path} is not valid JSON ({reason})") from None
    if not isinstance(value, dict):
        raise error(f"{path} must hold a JSON object, not {type(value).__name__}")
    return value


#: no weight of a network uir loads comes near this; a larger one (1e38) marks a damaged file
ABSURD_WEIGHT = 1e6


def check_weights(state: dict, source, error: type[Exception] = OSError) -> dict:
    """``state`` (name -> tensor), unless a floating tensor holds NaN, an infinity or a value
    beyond +-:data:`ABSURD_WEIGHT`: then ``error`` with one line naming ``source`` and the tensor
    (such weights restore every image to black or NaN without any other sign)."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and tensor.numel() and not bool(tensor.abs().max() <= ABSURD_WEIGHT):
            raise error(f"{source}: tensor {name} holds NaN, infinite or absurd values (beyond {ABSURD_WEIGHT:g})")
    return state


def load_safetensors(path, error: type[Exception] = OSError) -> dict:
    """The tensors in a safetensors file; ``error`` with one line when it is missing, damaged
    (safetensors raises its own ``SafetensorError``, which callers would not expect) or holds
    non-finite or absurd weights (:func:`check_weights`)."""
    from safetensors.torch import load_file

    try:
        state = load_file(path)
    except Exception as reason:
        raise error(f"{path}: unreadable safetensors file ({reason})") from None
    return check_weights(state, path, error)


def save_json(value, path) -> Path:
    """Write ``value`` as indented JSON, atomically."""
    return atomic_write(path, lambda stream: stream.write((json.dumps(value, indent=2) + "\n").encode()))


__all__ = ["ABSURD_WEIGHT", "PARTIAL_SUFFIX", "check_weights", "file_in_the_way", "give_usual_permissions", "STALE_AFTER_S", "atomic_write", "load_json_object", "remove_stale_temporaries", "save_json",
           "save_pretrained_staged", "staged_directory"]
