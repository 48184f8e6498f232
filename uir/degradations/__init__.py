"""Degradation library: pure, seeded functions on float images in [0, 1].

>>> import torch, uir.degradations as D
>>> g = torch.Generator().manual_seed(0)
>>> y, params = D.apply("noisy", torch.rand(3, 64, 64), generator=g, return_params=True)

See :mod:`uir.degradations.catalog` for every name and :mod:`uir.degradations.operators`
for DL-Net's linear observation operators. The names (:mod:`.families`), the registry and the
catalog with its parameter ranges and docs import without torch (``uir degradations`` answers at
once, docs/performance.md); each function's module is imported when it is first applied.
"""

from .families import (ALL_NAMES, CLEAN, MIX, DEFAULT_VOCABULARY, GRIDS_TYPES, LIRA_FACTORS, LIRA_TYPES, mix_parts,
                       parse_names)

_REGISTRY_NAMES = ("SEVERITIES", "Degradation", "Param", "apply", "get", "names", "register")


def __getattr__(name):
    if name in _REGISTRY_NAMES:
        from . import catalog, registry  # noqa: F401  (importing the catalog registers the families)

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ALL_NAMES", "CLEAN", "MIX", "mix_parts", "DEFAULT_VOCABULARY", "GRIDS_TYPES", "LIRA_FACTORS", "LIRA_TYPES", *_REGISTRY_NAMES, "parse_names"]
