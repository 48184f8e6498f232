"""Writing files and folders so that nothing is ever half-written or lost.

* :func:`atomic_write`: a file written to a temporary name beside it, then renamed.
* :func:`staged_directory`: a folder built beside its target, then swapped in.
* :func:`save_json`: indented JSON through :func:`atomic_write`.

Both keep the usual permissions (``0o666`` / ``0o777`` less the umask), not the private ones
of ``tempfile``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write) -> Path:
    """Create ``path`` through ``write(binary stream)``: into a temp file beside it, then renamed,
    so readers never see half a file and a failure leaves any old file untouched. The file gets
    the usual permissions (``0o666`` less the umask), not the temp file's private ``0o600``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def staged_directory(target):
    """Yield an empty folder beside ``target`` that replaces ``target`` when the block succeeds
    and is removed when it fails, so a failed save leaves any old folder as it was. The folder
    gets the usual permissions (``0o777`` less the umask), not the temp folder's ``0o700``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())
        yield staging
        backup = target.with_name(f".{target.name}.old")
        if target.exists():
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(target, backup)
        os.replace(staging, target)
        shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_json(value, path) -> Path:
    """Write ``value`` as indented JSON, atomically."""
    return atomic_write(path, lambda stream: stream.write((json.dumps(value, indent=2) + "\n").encode()))


__all__ = ["atomic_write", "save_json", "staged_directory"]
