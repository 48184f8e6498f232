"""Package attributes imported on first use, so that the light entry points (``import uir``,
``uir --help``, ``uir info``) do not pay for the heavy imports they never touch."""

from __future__ import annotations

import importlib
import importlib.util


def lazy_attributes(package: str, names: dict[str, str], submodules: bool = False):
    """A module-level ``__getattr__`` for ``package``.

    Args:
        package: the package's ``__name__``.
        names: ``{attribute: module that defines it}``, absolute or relative to ``package``.
        submodules: also import and return any other name that is a submodule of ``package``.
    """

    def __getattr__(name):
        if name in names:
            return getattr(importlib.import_module(names[name], package), name)
        if submodules and importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


__all__ = ["lazy_attributes"]
