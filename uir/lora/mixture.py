"""Output-space mixture of LoRA experts with per-sample weights (UIR-LoRA eq. 5).

At every adapted layer::

    x_out = f_0(x) + sum_k s_k f_k(x),      f_k(x) = c_k B_k A_k x

where ``f_0`` is the frozen base layer, ``c_k = alpha_k / r_k`` is expert ``k``'s LoRA scaling
(as in PEFT) and ``s`` are the mixture weights of eq. 4, one row per sample.

PEFT and diffusers cannot do this: ``set_adapters`` weights apply to a whole batch, and
PEFT's mixed batches route each sample to one adapter. Here the ``K`` A-matrices are stacked
into one ``(sum r_k, in)`` matrix and the B-matrices into one ``(out, sum r_k)`` matrix, so a
forward pass is one pair of matmuls (or convolutions) whatever ``K``; the per-sample weights
scale the ``sum r_k`` hidden channels in between. The cost grows with the total rank, not
with the number of experts evaluated per sample.

Where it is cheaper, a layer instead merges each weight row into its own weight,
``W_b = W + sum_k s_bk c_k B_k A_k``, and runs one batched matmul (Linear) or one grouped
convolution (Conv2d) over the batch. With ``P`` output positions per sample, ``k`` kernel taps,
``R = sum r_k`` and ``rows`` distinct weight rows, the extra cost is about
``B P R (in k + out)`` for the stacked form and ``rows out in k R`` for the merged form; with
``path="auto"`` each layer picks the smaller at every call. Both give eq. 5.

For a batch that shares one weight vector, :func:`fused` merges ``sum_k s_k c_k B_k A_k`` into
the base weights and restores the original tensors bitwise afterwards.

Weights reach the layers only through the :func:`mixture_weights` and :func:`fused` context
managers. :func:`mixture_weights` keeps them in a context variable, not on the layers: each
thread (and asyncio task) sees the weights of its own call, so one pipeline serves several
threads at once. :func:`fused` changes the shared base weights and is for one caller at a time.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED = (nn.Linear, nn.Conv2d)
PATHS = ("auto", "stacked", "merged")
#: the mixture weights of the calls under way in this context (thread, asyncio task):
#: ``{id(layer): (weight rows, path)}``, set only by :func:`mixture_weights`
_CALL_WEIGHTS: ContextVar[dict] = ContextVar("uir_mixture_weights", default={})


class WrapsBaseLayer(nn.Module):
    """A layer wrapped by uir exposes the base layer's tensors, as PEFT's layers do: code that
    reads ``layer.weight`` or ``layer.bias`` (diffusers' ``fuse_projections``, dtype probes)
    sees the frozen base. Subclasses implement ``get_base_layer``."""

    def get_base_layer(self) -> nn.Module:
        raise NotImplementedError

    @property
    def weight(self) -> torch.Tensor:
        return self.get_base_layer().weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.get_base_layer().bias


class LoRAMixtureLayer(WrapsBaseLayer):
    """A frozen ``nn.Linear`` or ``nn.Conv2d`` plus ``K`` stacked LoRA experts.

    ``ranks[k]`` is expert ``k``'s rank at this layer (0 when it does not adapt this layer)
    and ``scalings[k]`` its ``alpha / r``. For convolutions, A has the base layer's kernel,
    stride and padding and B is 1x1, as in PEFT.
    """

    def __init__(self, base: nn.Module, ranks: list[int], scalings: list[float]):
        super().__init__()
        if not isinstance(base, SUPPORTED):
            raise TypeError(f"LoRA mixtures adapt nn.Linear and nn.Conv2d, not {type(base).__name__}")
        if isinstance(base, nn.Conv2d) and (base.groups != 1 or base.dilation != (1, 1)):
            raise ValueError("LoRA mixtures support convolutions with groups=1 and dilation=1 only")
        if len(ranks) != len(scalings):
            raise ValueError("ranks and scalings must have one entry per expert")
        self.base = base
        total = sum(ranks)
        factory = dict(device=base.weight.device, dtype=base.weight.dtype)
        if isinstance(base, nn.Linear):
            a_shape, b_shape = (total, base.in_features), (base.out_features, total)
        else:
            a_shape, b_shape = (total, base.in_channels, *base.kernel_size), (base.out_channels, total, 1, 1)
        self.lora_A = nn.Parameter(torch.zeros(a_shape, **factory))
        self.lora_B = nn.Parameter(torch.zeros(b_shape, **factory))
        self.ranks = list(ranks)
        self.register_buffer("scalings", torch.tensor(scalings, dtype=torch.float32), persistent=False)
        self.register_buffer(
            "expert_of_channel", torch.repeat_interleave(torch.arange(len(ranks)), torch.tensor(ranks)), persistent=False
        )
        self._unfused_weight: torch.Tensor | None = None

    @property
    def num_experts(self) -> int:
        return len(self.ranks)

    def get_base_layer(self) -> nn.Module:
        return self.base

    @property
    def weights(self) -> torch.Tensor | None:
        """The (rows, K) mixture weights of the current call, ``None`` outside one."""
        return _CALL_WEIGHTS.get().get(id(self), (None, "auto"))[0]

    @property
    def path(self) -> str:
        """``auto``, ``stacked`` or ``merged``: how the current call computes eq. 5."""
        return _CALL_WEIGHTS.get().get(id(self), (None, "auto"))[1]

    @property
    def active(self) -> bool:
        """Whether the experts act on the output: weights set, or merged into the base weight."""
        return self.weights is not None or self._unfused_weight is not None

    def expert_slice(self, k: int) -> slice:
        start = sum(self.ranks[:k])
        return slice(start, start + self.ranks[k])

    def channel_coefficients(self, weights: torch.Tensor) -> torch.Tensor:
        """``s_k c_k`` for every stacked rank channel: (B, sum r_k) from weights (B, K)."""
        return (weights.to(self.scalings) * self.scalings)[:, self.expert_of_channel]

    def _factors(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``s_bk c_k B_k`` stacked per weight row, (rows, out, sum r_k), and the stacked A as
        (sum r_k, in * taps): their product is each row's ``sum_k s_bk c_k B_k A_k``."""
        coef = self.channel_coefficients(weights).to(self.lora_A)
        scaled_b = self.lora_B.reshape(1, self.lora_B.shape[0], -1) * coef[:, None, :]
        return scaled_b, self.lora_A.reshape(self.lora_A.shape[0], -1)

    def merged_weights(self, weights: torch.Tensor) -> torch.Tensor:
        """``W + sum_k s_bk c_k B_k A_k`` per weight row: (rows, *base weight shape), as one
        batched matmul that accumulates into the base weight."""
        scaled_b, a = self._factors(weights)
        base = self.base.weight.reshape(1, self.base.weight.shape[0], -1).to(a)
        merged = torch.baddbmm(base, scaled_b, a.expand(scaled_b.shape[0], -1, -1))
        return merged.to(self.base.weight).reshape(scaled_b.shape[0], *self.base.weight.shape)

    def extra_macs(self, x: torch.Tensor, rows: int) -> tuple[int, int]:
        """Multiply-adds the experts add to this layer's call on ``x`` with ``rows`` weight rows:
        ``(stacked, merged)`` = ``(B P R (in k + out), rows out in k R)``."""
        weight = self.base.weight
        taps = weight[0].numel() // weight.shape[1]  # kernel taps (1 for Linear)
        fan_in, out, total_rank = weight.shape[1], weight.shape[0], self.lora_A.shape[0]
        if isinstance(self.base, nn.Linear):
            positions = x[0].numel() // fan_in
        else:
            (sh, sw), (ph, pw), (kh, kw) = self.base.stride, self.base.padding, self.base.kernel_size
            positions = ((x.shape[-2] + 2 * ph - kh) // sh + 1) * ((x.shape[-1] + 2 * pw - kw) // sw + 1)
        stacked = x.shape[0] * positions * total_rank * (fan_in * taps + out)
        return stacked, rows * out * fan_in * taps * total_rank

    def _merged_is_cheaper(self, x: torch.Tensor, rows: int) -> bool:
        if self.path != "auto":
            return self.path == "merged"
        stacked, merged = self.extra_macs(x, rows)
        return merged < stacked

    def _stacked(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``base(x) + (s c B) (A x)``: the experts' rank channels ``A x`` for all K at once, then
        each weight row's scaled B (:meth:`_factors`) accumulated into the base output, with no
        separate pass for the scaling. One row serves the whole batch as one GEMM (as a 1x1
        conv for convolutions); per-sample rows are one batched matmul."""
        scaled_b, a = self._factors(weights)
        scaled_b, batch = scaled_b.to(x.dtype), x.shape[0]
        out = self.base(x)
        if isinstance(self.base, nn.Linear):
            hidden = F.linear(x, a.to(x.dtype))
            if scaled_b.shape[0] == 1:
                out.view(-1, out.shape[-1]).addmm_(hidden.reshape(-1, a.shape[0]), scaled_b[0].T)
                return out
            flat = out.view(batch, -1, out.shape[-1])
            return flat.baddbmm_(hidden.reshape(batch, -1, a.shape[0]), scaled_b.transpose(1, 2)).view(out.shape)
        hidden = F.conv2d(x, self.lora_A.to(x.dtype), stride=self.base.stride, padding=self.base.padding)
        if scaled_b.shape[0] == 1:
            return out.add_(F.conv2d(hidden, scaled_b[0][:, :, None, None]))
        scaled_b = scaled_b.expand(batch, -1, -1)
        if out.is_contiguous():  # (B, out, HW) += (B, out, R) @ (B, R, HW)
            out.view(*out.shape[:2], -1).baddbmm_(scaled_b, hidden.reshape(*hidden.shape[:2], -1))
        else:  # channels-last: (B, HW, out) += (B, HW, R) @ (B, R, out)
            out.permute(0, 2, 3, 1).view(batch, -1, out.shape[1]).baddbmm_(
                hidden.permute(0, 2, 3, 1).reshape(batch, -1, hidden.shape[1]), scaled_b.transpose(1, 2))
        return out

    def _merged(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        merged = self.merged_weights(weights).to(x.dtype)
        bias = None if self.base.bias is None else self.base.bias.to(x.dtype)
        rows, batch = merged.shape[0], x.shape[0]
        if isinstance(self.base, nn.Linear):
            if rows == 1:
                return F.linear(x, merged[0], bias)
            flat = x.reshape(batch, -1, x.shape[-1])
            weight_t = merged.transpose(1, 2)
            out = torch.bmm(flat, weight_t) if bias is None else torch.baddbmm(bias, flat, weight_t)
            return out.reshape(*x.shape[:-1], merged.shape[1])
        conv = dict(stride=self.base.stride, padding=self.base.padding)
        if rows == 1:
            return F.conv2d(x, merged[0], bias, **conv)
        if not x.is_contiguous():  # strided (channels-last, a band): one conv per sample keeps the
            # layout; a grouped conv over (1, B*C, H, W) copied x and returned a contiguous map, and
            # was about twice as slow (docs/performance.md)
            return torch.cat([F.conv2d(x[i : i + 1], merged[i], bias, **conv) for i in range(batch)])
        grouped = F.conv2d(x.reshape(1, -1, *x.shape[-2:]), merged.flatten(0, 1),
                           None if bias is None else bias.repeat(batch), groups=batch, **conv)
        return grouped.reshape(batch, -1, *grouped.shape[-2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weights is None or self._unfused_weight is not None or self.lora_A.shape[0] == 0:
            return self.base(x)
        weights = self.weights
        if weights.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"mixture weights are for a batch of {weights.shape[0]}, the layer got {x.shape[0]}")
        if self._merged_is_cheaper(x, weights.shape[0]):
            return self._merged(x, weights)
        return self._stacked(x, weights)

    def fuse(self, weights: torch.Tensor) -> None:
        """Merge one weight vector (K,) into the base weight: in place, one ``addmm_``, when the
        weight is contiguous (a full-size UNet fuses in two thirds of the time of building the
        delta and adding it); else (channels-last convolutions) through :meth:`merged_weights`."""
        if self._unfused_weight is not None:
            raise RuntimeError("layer is already fused; unfuse it first")
        weight = self.base.weight.data
        self._unfused_weight = weight.clone()
        if weight.is_contiguous():
            scaled_b, a = self._factors(weights.reshape(1, -1))
            weight.view(weight.shape[0], -1).addmm_(scaled_b[0].to(weight), a.to(weight))
        else:
            weight.copy_(self.merged_weights(weights.reshape(1, -1))[0])

    def unfuse(self) -> None:
        if self._unfused_weight is not None:
            self.base.weight.data.copy_(self._unfused_weight)
            self._unfused_weight = None


class FusedProjectionMixture(WrapsBaseLayer):
    """A fused projection (diffusers' ``to_qkv`` / ``to_kv`` after ``fuse_qkv_projections``)
    whose parts hold experts: while mixture weights are set it returns the parts' outputs,
    concatenated as the fused layer's are, so the experts still act on q, k and v; otherwise the
    fused layer. The parts stay registered where they are (``to_q`` ...), not here."""

    def __init__(self, fused: nn.Linear, parts: tuple[nn.Module, ...]):
        super().__init__()
        self.fused = fused
        self.parts = parts  # a tuple: not registered twice

    def get_base_layer(self) -> nn.Module:
        return self.fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(isinstance(p, LoRAMixtureLayer) and p.active for p in self.parts):
            return torch.cat([p(x) for p in self.parts], dim=-1)
        return self.fused(x)


#: diffusers' fused attention projections and the layers each concatenates
FUSED_PROJECTIONS = {"to_qkv": ("to_q", "to_k", "to_v"), "to_kv": ("to_k", "to_v")}


def adopt_fused_projections(model: nn.Module) -> None:
    """Wrap each fused attention projection of ``model`` whose parts hold experts in a
    :class:`FusedProjectionMixture` (diffusers builds the fused layer from the base weights
    alone, so without this, experts on q, k and v would silently stop acting). Whichever came
    first, ``fuse_qkv_projections`` or the experts, the result equals the unfused model's."""
    for module in list(model.modules()):
        if not getattr(module, "fused_projections", False):
            continue
        for fused_name, part_names in FUSED_PROJECTIONS.items():
            fused = getattr(module, fused_name, None)
            parts = tuple(getattr(module, name, None) for name in part_names)
            if isinstance(fused, nn.Linear) and any(isinstance(p, LoRAMixtureLayer) for p in parts):
                setattr(module, fused_name, FusedProjectionMixture(fused, parts))


def mixture_layers(model: nn.Module) -> list[LoRAMixtureLayer]:
    return [m for m in model.modules() if isinstance(m, LoRAMixtureLayer)]


def _as_weight_rows(weights, num_experts: int) -> torch.Tensor:
    weights = torch.as_tensor(weights, dtype=torch.float32)
    if weights.dim() == 1:
        weights = weights.unsqueeze(0)
    if weights.dim() != 2 or weights.shape[1] != num_experts:
        raise ValueError(f"mixture weights must have shape (K,) or (B, K) with K={num_experts}, got {tuple(weights.shape)}")
    if not torch.isfinite(weights).all():
        raise ValueError("mixture weights contain NaN or infinite values")
    return weights


def _layers_with_k(model: nn.Module) -> tuple[list[LoRAMixtureLayer], int]:
    layers = mixture_layers(model)
    if not layers:
        raise ValueError("model has no LoRA mixture layers; load experts first")
    return layers, layers[0].num_experts


@contextmanager
def mixture_weights(model: nn.Module, weights, path: str = "auto"):
    """Run ``model`` with per-sample mixture weights (B, K), or one row (K,) for the whole batch.

    ``path`` forces the ``stacked`` or ``merged`` computation; ``auto`` picks per layer.
    """
    if path not in PATHS:
        raise ValueError(f"unknown mixture path {path!r}; valid choices: {', '.join(PATHS)}")
    layers, k = _layers_with_k(model)
    rows = _as_weight_rows(weights, k)
    adopt_fused_projections(model)
    on_device = {}
    call = dict(_CALL_WEIGHTS.get())
    for layer in layers:
        device = layer.lora_A.device
        call[id(layer)] = (on_device.setdefault(device, rows.to(device)), path)
    token = _CALL_WEIGHTS.set(call)
    try:
        yield
    finally:
        _CALL_WEIGHTS.reset(token)


@contextmanager
def fused(model: nn.Module, weights):
    """Merge one weight vector (K,) into the base weights; restore them bitwise on exit."""
    layers, k = _layers_with_k(model)
    rows = _as_weight_rows(weights, k)
    if rows.shape[0] != 1:
        raise ValueError("fused mixtures take one weight vector shared by the batch")
    adopt_fused_projections(model)
    try:
        with torch.no_grad():
            for layer in layers:
                layer.fuse(rows[0].to(layer.lora_A.device))
        yield
    finally:
        for layer in layers:
            layer.unfuse()


def _get_parent(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    parent_path, _, child = path.rpartition(".")
    return (model.get_submodule(parent_path) if parent_path else model), child


def inject_mixture(model: nn.Module, layer_ranks: dict[str, list[int]], layer_scalings: dict[str, list[float]]) -> None:
    """Replace each named Linear/Conv2d in ``model`` by a :class:`LoRAMixtureLayer` (zero experts)."""
    for path, ranks in layer_ranks.items():
        try:
            module = model.get_submodule(path)
        except AttributeError:
            raise ValueError(f"the model has no layer {path!r}; the experts were made for another architecture") from None
        if isinstance(module, LoRAMixtureLayer):
            raise ValueError(f"layer {path!r} already holds a LoRA mixture; remove it first")
        parent, child = _get_parent(model, path)
        setattr(parent, child, LoRAMixtureLayer(module, ranks, layer_scalings[path]))


def remove_mixture(model: nn.Module) -> None:
    """Put the original base layers (and fused projections) back."""
    for name, module in list(model.named_modules()):
        if isinstance(module, WrapsBaseLayer):
            if isinstance(module, LoRAMixtureLayer):
                module.unfuse()
            parent, child = _get_parent(model, name)
            setattr(parent, child, module.get_base_layer())
