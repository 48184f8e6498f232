"""Registry of named degradations and the single entry point :func:`apply`.

A degradation is a pure function ``fn(image, generator, **params) -> image`` on a float
batch ``(B, C, H, W)`` in ``[0, 1]``. All randomness comes from the explicit
``torch.Generator``; nothing reads global RNG state.

Each registered name carries a tuple of :class:`Param` specs. A spec says the valid range,
the default and how the range splits into the severity levels ``mild``, ``moderate`` and
``severe``. Parameters are resolved as follows (see :func:`apply`):

* a value passed by the caller is validated against the range and used as is;
* otherwise ``severity="mild"|"moderate"|"severe"`` draws from that level;
* otherwise ``severity="random"`` draws uniformly from the whole range;
* otherwise (``severity=None``) the spec's default is used, or the whole range is sampled
  when the spec has no default.

One set of parameters is drawn per call and shared by the batch; the random fields
(noise, masks, streaks) differ per sample.

A function may be registered by reference, ``"module:function"`` in this package: it is
imported when first applied, and its documentation is read from the module's source. So the
catalog, the parameter ranges and the docs (``uir degradations``) load without torch.
"""

from __future__ import annotations

import ast
import importlib
import math
from dataclasses import dataclass, field
from functools import partial
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    import torch

SEVERITIES = ("mild", "moderate", "severe")
_SEVERITY_CHOICES = SEVERITIES + ("random",)


@dataclass(frozen=True)
class Param:
    """One numeric parameter of a degradation.

    ``levels`` maps each severity to a fixed value or a ``(low, high)`` sub-range. When it
    is omitted the range is cut into thirds, ordered by ``severe_when``: ``"high"`` means a
    larger value is a stronger degradation (noise sigma), ``"low"`` the opposite (JPEG
    quality), and ``None`` that the parameter has no severity direction (an angle), so every
    level samples the whole range.
    """

    name: str
    low: float
    high: float
    default: float | None = None
    integer: bool = False
    severe_when: str | None = "high"
    levels: dict | None = None
    doc: str = ""

    def level(self, severity: str):
        if self.levels is not None:
            return self.levels[severity]
        if self.severe_when is None:
            return (self.low, self.high)
        third = (self.high - self.low) / 3.0
        edges = [(self.low + i * third, self.low + (i + 1) * third) for i in range(3)]
        if self.severe_when == "low":
            edges = edges[::-1]
        return edges[SEVERITIES.index(severity)]

    def severity_of(self, value: float) -> str | None:
        """The severity whose level (a range's midpoint) lies nearest ``value``, the milder on a
        tie; ``None`` for a parameter without a severity direction or a value that is not a number."""
        if self.severe_when is None or value is None or math.isnan(value):
            return None

        def centre(level):
            return sum(level) / 2 if isinstance(level, tuple) else float(level)

        return min(SEVERITIES, key=lambda severity: abs(centre(self.level(severity)) - value))

    def validate(self, value, degradation: str):
        try:
            number = float(value)  # also a one-element tensor or array
        except (TypeError, ValueError):
            raise ValueError(f"{degradation}: parameter {self.name!r} must be a number, got {value!r}") from None
        if math.isnan(number) or not self.low <= number <= self.high:
            raise ValueError(
                f"{degradation}: parameter {self.name!r}={value!r} is outside its range "
                f"[{self.low:g}, {self.high:g}]"
            )
        if self.integer:
            if number != round(number):
                raise ValueError(f"{degradation}: parameter {self.name!r} must be an integer, got {value!r}")
            return int(round(number))
        return number

    def draw(self, spec, generator: torch.Generator):
        """Return ``spec`` if it is a number, else a uniform draw from the ``(low, high)`` pair."""
        import torch

        if not isinstance(spec, tuple):
            return int(spec) if self.integer else float(spec)
        low, high = spec
        if self.integer:
            low_i, high_i = math.ceil(low), max(math.ceil(low), math.floor(high))
            return int(torch.randint(low_i, high_i + 1, (), generator=generator, device=generator.device).item())
        return low + (high - low) * torch.rand((), generator=generator, device=generator.device).item()

    def describe(self) -> str:
        kind = "int" if self.integer else "float"
        default = "sampled" if self.default is None else f"{self.default:g}"
        def fmt(level):
            return f"{level[0]:.4g} to {level[1]:.4g}" if isinstance(level, tuple) else f"{level:.4g}"

        levels = ", ".join(f"{s} {fmt(self.level(s))}" for s in SEVERITIES)
        return f"{self.name} ({kind}) in [{self.low:g}, {self.high:g}], default {default}; {levels}. {self.doc}".strip()


@dataclass(frozen=True)
class Degradation:
    """A registered degradation: its function, parameter specs and documentation.

    ``function`` is a callable or a ``"module:function"`` reference into this package, called
    with the fixed keyword arguments ``fixed`` on top of the drawn parameters. A ``framed``
    degradation sizes and counts what it draws relative to the whole photo (raindrops: a radius
    that is a fraction of the photo's shorter side, a number of drops per photo); its function
    takes ``frame``, the photo's (H, W), so that a crop is degraded as its part of that photo
    (:func:`apply`)."""

    name: str
    function: Callable | str
    params: tuple[Param, ...]
    family: str
    doc: str = ""
    fixed: dict = field(default_factory=dict)
    framed: bool = False
    param_index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "param_index", {p.name: p for p in self.params})

    @property
    def fn(self) -> Callable:
        """The function to call, ``fn(image, generator, **params)`` (imported on first use)."""
        function = self.function
        if isinstance(function, str):
            module, _, attribute = function.partition(":")
            function = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
        return partial(function, **self.fixed) if self.fixed else function

    def validate(self, given: dict) -> dict:
        """Check caller-given parameters (names, ranges, integrality); return them normalised."""
        unknown = sorted(set(given) - set(self.param_index))
        if unknown:
            valid = ", ".join(self.param_index) or "none"
            raise ValueError(f"{self.name}: unknown parameter(s) {', '.join(unknown)}; valid parameters: {valid}")
        return {k: self.param_index[k].validate(v, self.name) for k, v in given.items()}

    def resolve(self, given: dict, severity: str | None, generator: torch.Generator) -> dict:
        given = self.validate(given)
        resolved = {}
        for p in self.params:
            if p.name in given:
                resolved[p.name] = given[p.name]
            elif severity in SEVERITIES:
                resolved[p.name] = p.draw(p.level(severity), generator)
            elif severity is None and p.default is not None:
                resolved[p.name] = p.draw(p.default, generator)
            else:
                resolved[p.name] = p.draw((p.low, p.high), generator)
        return resolved

    def describe(self) -> str:
        lines = [f"{self.name} [{self.family}]: {self.doc}"]
        lines += [f"  - {p.describe()}" for p in self.params]
        return "\n".join(lines)


_REGISTRY: dict[str, Degradation] = {}


def plain_text(docstring: str) -> str:
    """A docstring paragraph as one line of plain text: reST roles (``:func:`x```) and inline
    literals (double backquotes) lose their markup, whitespace runs become one space."""
    import re

    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", docstring)
    return " ".join(text.replace("``", "").split())


def _docstring(function: Callable | str) -> str:
    """The docstring of a callable, or of a ``"module:function"`` reference read from the
    module's source (without importing it)."""
    if not isinstance(function, str):
        return function.__doc__ or ""
    module, _, attribute = function.partition(":")
    tree = ast.parse(Path(find_spec(f"{__package__}.{module}").origin).read_text(encoding="utf-8"))
    found = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == attribute]
    if not found:
        raise ValueError(f"degradation function {function!r} not found")
    return ast.get_docstring(found[0]) or ""


def register(name: str, fn: Callable | str, params: Sequence[Param] = (), family: str = "", doc: str | None = None,
             fixed: dict | None = None, framed: bool = False):
    """Register ``fn`` (a callable or a ``"module:function"`` reference) under ``name``, with
    keyword arguments ``fixed`` always passed; ``framed``: see :class:`Degradation`. One function
    may be registered under several names."""
    if name in _REGISTRY:
        raise ValueError(f"degradation {name!r} is already registered")
    text = doc if doc is not None else _docstring(fn).strip().split("\n\n")[0]
    _REGISTRY[name] = Degradation(name, fn, tuple(params), family, plain_text(text), dict(fixed or {}), framed)
    return fn


def get(name: str) -> Degradation:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown degradation {name!r}; valid choices: {', '.join(sorted(_REGISTRY))}") from None


def names(family: str | None = None) -> list[str]:
    """Registered names, in registration order, optionally of one family."""
    return [n for n, d in _REGISTRY.items() if family is None or d.family == family]


def check_image(image) -> torch.Tensor:
    """Validate a float image in [0, 1] of shape (C,H,W) or (B,C,H,W); return it as a batch."""
    import torch

    if not isinstance(image, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor image, got {type(image).__name__}")
    if image.dim() not in (3, 4):
        raise ValueError(f"expected an image of shape (C,H,W) or (B,C,H,W), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"expected a float image in [0, 1], got dtype {image.dtype}")
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    if batch.shape[1] not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got {batch.shape[1]}")
    if min(batch.shape[-2:]) < 8:
        raise ValueError(f"image is {batch.shape[-1]}x{batch.shape[-2]}; degradations need at least 8x8 pixels")
    if not torch.isfinite(batch).all():
        raise ValueError("image contains NaN or infinite values")
    if batch.numel() and (batch.min() < -1e-6 or batch.max() > 1 + 1e-6):
        raise ValueError(f"image values must lie in [0, 1], got [{batch.min().item():.3g}, {batch.max().item():.3g}]")
    return batch


def apply(
    name_or_list,
    image: torch.Tensor,
    *,
    generator: torch.Generator,
    severity: str | None = None,
    return_params: bool = False,
    frame: tuple[int, int] | None = None,
    **params,
):
    """Apply one degradation or a composed list, left to right.

    Args:
        name_or_list: a registered name, or a list of names applied in order.
        image: float tensor in [0, 1], ``(C,H,W)`` or ``(B,C,H,W)``.
        generator: the only source of randomness.
        severity: ``None``, ``"mild"``, ``"moderate"``, ``"severe"`` or ``"random"``.
        return_params: also return the parameters used (a dict, or a list of dicts for a list).
        frame: the (H, W) of the photo ``image`` was cropped from. A ``framed`` degradation
            (:class:`Degradation`) then draws what it would draw on the whole photo, as seen
            through the crop: training crops get raindrops of the size a photo gets. ``None``
            (or the image's own size): the image is the whole photo.
        **params: for one name, its parameters; for a list, ``name={...}`` per degradation.

    Returns:
        The degraded image with the input's shape and dtype, and optionally the parameters.
    """
    import torch

    if not isinstance(generator, torch.Generator):
        raise ValueError("apply() needs an explicit torch.Generator, e.g. generator=torch.Generator().manual_seed(0)")
    if severity is not None and severity not in _SEVERITY_CHOICES:
        raise ValueError(f"unknown severity {severity!r}; valid choices: {', '.join(_SEVERITY_CHOICES)}")
    single = isinstance(name_or_list, str)
    chain = [name_or_list] if single else list(name_or_list)
    if not chain:
        raise ValueError("apply() needs at least one degradation name")
    specs = [get(n) for n in chain]
    if single:
        per_step = [params]
    else:
        unknown = sorted(set(params) - set(chain))
        if unknown:
            raise ValueError(f"parameters for a list go by degradation name; {', '.join(unknown)} not in {chain}")
        per_step = [dict(params.get(n, {})) for n in chain]

    batch = check_image(image)
    if frame is not None and (len(frame) != 2 or any(f < n for f, n in zip(frame, batch.shape[-2:]))):
        raise ValueError(f"frame {tuple(frame)} must be the (H, W) of a photo that holds the image, "
                         f"{tuple(batch.shape[-2:])}")
    used = []
    out = batch
    for spec, given in zip(specs, per_step):
        resolved = spec.resolve(given, severity, generator)
        cropped = spec.framed and frame is not None and tuple(frame) != tuple(out.shape[-2:])
        out = spec.fn(out, generator, **resolved, **({"frame": tuple(frame)} if cropped else {})).clamp(0.0, 1.0)
        used.append(resolved)
    out = out.to(image.dtype)
    if image.dim() == 3:
        out = out.squeeze(0)
    if return_params:
        return out, (used[0] if single else used)
    return out
