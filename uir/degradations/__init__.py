"""Degradation library: pure, seeded functions on float images in [0, 1].

>>> import torch, uir.degradations as D
>>> g = torch.Generator().manual_seed(0)
>>> y, params = D.apply("noisy", torch.rand(3, 64, 64), generator=g, return_params=True)

See :mod:`uir.degradations.catalog` for every name and :mod:`uir.degradations.operators`
for DL-Net's linear observation operators.
"""

from . import catalog as _catalog  # noqa: F401  (registers the families)
from .catalog import DA_CLIP_TYPES, GRIDS_TYPES, LIRA_FACTORS, LIRA_TYPES, parse_names
from .registry import SEVERITIES, Degradation, Param, apply, get, names, register

__all__ = [
    "DA_CLIP_TYPES",
    "GRIDS_TYPES",
    "LIRA_FACTORS",
    "LIRA_TYPES",
    "SEVERITIES",
    "Degradation",
    "Param",
    "apply",
    "get",
    "names",
    "parse_names",
    "register",
]
