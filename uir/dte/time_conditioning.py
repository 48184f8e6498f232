"""Time conditioning for any restorer: ``r_theta(x, t)`` (diffusion-training-enhanced IR, sec. 3).

The framework trains one network both as a diffusion noise predictor ``r_theta(x_t, t)``
(generative pre-training, eq. 11) and as a restorer ``r_theta(y, t_mat)`` conditioned on the
matched timestep of the input's degradation (Alg. 2). :class:`TimeConditionedRestorer` adds
that ``t`` to a backbone that has none: a sinusoidal timestep embedding and an MLP (diffusers'
``Timesteps`` + ``TimestepEmbedding``) give every conditioned block a per-channel scale and
shift, applied to the block's output as ``h * (1 + scale(t)) + shift(t)``.

* The modulation layers start at zero, so wrapping a trained restorer leaves its output
  unchanged until the modulation is trained.
* The conditioned blocks are module names (``blocks=``); by default the backbone's
  ``time_condition_blocks`` (NAFNet: every NAFBlock). Their channel counts come from one probe
  forward at construction, so any backbone whose blocks return a (B,C,H,W) tensor (or a tuple
  whose first element is one, which is the element modulated) can be wrapped.
* :meth:`add_moe_adapters` puts the MoE adapters with time-based prompts
  (:class:`~uir.dte.moe.TimePromptMoE`) after the same blocks.
* The conditioning is applied by forward hooks registered for the duration of one forward
  call and removed after it; the layers keep no state between calls.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from ..backbones import require
from ..models.wrapping import import_model_class, wrap_model
from .diffusion import check_settings
from .moe import TimePromptMoE


def _first_tensor(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output, value):
    return (value,) + tuple(output[1:]) if isinstance(output, tuple) else value


class TimeConditionedRestorer(ModelMixin, ConfigMixin):
    """A backbone restorer with a timestep input; see the module docstring.

    Args:
        backbone_class, backbone_config: the backbone to build (use :meth:`wrap` for an instance).
        blocks: names of the conditioned modules (``None``: the backbone's ``time_condition_blocks``).
        num_timesteps: ``T`` (50); valid timesteps are ``0..T``.
        noise_model, prediction_type: the diffusion the network is trained for, and so how its
            output reads as an image (:class:`~uir.dte.DiffusionProcess`; ``"sample"``: the
            output is the image, as for any plain restorer).
        embedding_dim: width of the timestep embedding.
        probe_size: side of the probe input that measures block channels (``None``: 4 x the
            backbone's ``size_multiple``, or 32).
        moe_experts, moe_hidden: MoE adapters after every block (0: none; see :meth:`add_moe_adapters`).
    """

    @register_to_config
    def __init__(self, backbone_class: str = "uir.models.nafnet.NAFNet", backbone_config: dict | None = None,
                 blocks: list | None = None, num_timesteps: int = 50, embedding_dim: int = 64,
                 probe_size: int | None = None, moe_experts: int = 0, moe_hidden: int = 8,
                 noise_model: str = "ddpm", prediction_type: str = "sample"):
        super().__init__()
        check_settings(noise_model, prediction_type)
        self.backbone = import_model_class(backbone_class)(**(backbone_config or {}))
        blocks = list(blocks) if blocks is not None else list(require(self.backbone, "time_condition_blocks"))
        modules = dict(self.backbone.named_modules())
        unknown = [name for name in blocks if name not in modules]
        if unknown:
            raise ValueError(f"the backbone has no modules {unknown}")
        self.block_names = blocks
        self.register_to_config(blocks=blocks)
        self.time_proj = Timesteps(embedding_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(embedding_dim, embedding_dim)
        self.block_channels = self._probe_channels(probe_size)
        self.modulations = nn.ModuleList(nn.Linear(embedding_dim, 2 * c) for c in self.block_channels)
        for layer in self.modulations:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.moe = nn.ModuleList(TimePromptMoE(c, embedding_dim, moe_experts, moe_hidden) for c in self.block_channels) \
            if moe_experts else None

    @classmethod
    def wrap(cls, backbone: ModelMixin, **kwargs) -> "TimeConditionedRestorer":
        """Time-condition ``backbone`` (its class, config and weights)."""
        return wrap_model(cls, backbone, "backbone", **kwargs)

    @property
    def size_multiple(self) -> int:
        return getattr(self.backbone, "size_multiple", 1)

    def _probe_channels(self, probe_size: int | None) -> list[int]:
        size = probe_size or 4 * getattr(self.backbone, "size_multiple", 8)
        in_channels = getattr(self.backbone.config, "in_channels", 3)
        modules = dict(self.backbone.named_modules())
        channels = {}

        def record(name, output):
            channels.setdefault(name, _first_tensor(output).shape[1])

        handles = [modules[name].register_forward_hook(lambda m, i, out, name=name: record(name, out))
                   for name in self.block_names]
        try:
            with torch.no_grad():
                # on the parameters' device: "meta" while from_pretrained builds the model
                device = next(self.backbone.parameters()).device
                self.backbone(torch.zeros(1, in_channels, size, size, device=device))
        finally:
            for handle in handles:
                handle.remove()
        missing = [name for name in self.block_names if name not in channels]
        if missing:
            raise ValueError(f"blocks {missing} did not run on a probe input; pick modules the forward uses")
        return [channels[name] for name in self.block_names]

    def add_moe_adapters(self, num_experts: int = 10, hidden: int = 8) -> None:
        """Add MoE adapters with time-based prompts after every conditioned block. Their output
        scale starts at zero, so the network's output is unchanged until they are trained."""
        if self.moe is not None:
            raise ValueError("this model already has MoE adapters")
        if num_experts < 1:
            raise ValueError(f"num_experts must be positive, got {num_experts}")
        self.moe = nn.ModuleList(TimePromptMoE(c, self.config.embedding_dim, num_experts, hidden)
                                 for c in self.block_channels).to(self.device, self.dtype)
        self.register_to_config(moe_experts=num_experts, moe_hidden=hidden)

    def embed(self, timestep, batch: int) -> torch.Tensor:
        """The (B, embedding_dim) embedding of ``timestep`` (an int or a (B,) tensor in ``0..T``)."""
        t = torch.as_tensor(timestep, device=self.device)
        t = t.expand(batch) if t.dim() == 0 else t
        if t.shape != (batch,):
            raise ValueError(f"timestep must be a scalar or have shape ({batch},), got {tuple(t.shape)}")
        # values cannot be inspected inside torch.func transforms (per-sample gradients); the
        # batched forward that precedes them has checked the same timesteps
        if not torch._C._functorch.is_functorch_wrapped_tensor(t):
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise ValueError("timestep contains NaN or infinity")
            if (t < 0).any() or (t > self.config.num_timesteps).any():
                raise ValueError(f"timesteps must lie in 0..{self.config.num_timesteps}, got {t.tolist()}")
        return self.time_embedding(self.time_proj(t).to(self.dtype))

    @contextmanager
    def _conditioned(self, embedding: torch.Tensor):
        modules = dict(self.backbone.named_modules())
        handles = []
        for k, name in enumerate(self.block_names):
            def hook(module, inputs, output, k=k):
                h = _first_tensor(output)
                scale, shift = self.modulations[k](embedding)[:, :, None, None].chunk(2, dim=1)
                h = h * (1 + scale) + shift
                if self.moe is not None:
                    h = self.moe[k](h, embedding)
                return _replace_first(output, h)

            handles.append(modules[name].register_forward_hook(hook))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def forward(self, x: torch.Tensor, timestep, **backbone_kwargs) -> torch.Tensor:
        """``r_theta(x, t)``; ``backbone_kwargs`` go to the backbone (e.g. LIRA's ``task``)."""
        with self._conditioned(self.embed(timestep, x.shape[0])):
            return self.backbone(x, **backbone_kwargs)

    def depth_layers(self) -> list[list[str]]:
        """Parameter names grouped by layer, shallow to deep: the backbone's leaf modules in the
        order a forward runs them, each conditioned block's modulation (and adapter) right after
        the block, and the shared timestep embedding with the first layer."""
        order, handles = [], []
        modules = dict(self.backbone.named_modules())
        for name, module in modules.items():
            if any(True for _ in module.parameters(recurse=False)) or name in self.block_names:
                handles.append(module.register_forward_hook(lambda m, i, o, name=name: order.append(name)))
        size = self.config.probe_size or 4 * getattr(self.backbone, "size_multiple", 8)
        try:
            with torch.no_grad():
                self(torch.zeros(1, getattr(self.backbone.config, "in_channels", 3), size, size, device=self.device,
                                 dtype=self.dtype), 0)
        finally:
            for handle in handles:
                handle.remove()
        layers, seen = [], set()
        for name in order:
            if name in seen:
                continue
            seen.add(name)
            params = [f"backbone.{name}.{p}" for p, _ in modules[name].named_parameters(recurse=False)]
            if name in self.block_names:
                k = self.block_names.index(name)
                params += [f"modulations.{k}.{p}" for p, _ in self.modulations[k].named_parameters()]
                params += [f"moe.{k}.{p}" for p, _ in self.moe[k].named_parameters()] if self.moe is not None else []
            if params:
                layers.append(params)
        layers[0] = [f"time_embedding.{p}" for p, _ in self.time_embedding.named_parameters()] + layers[0]
        named = dict(self.named_parameters())
        missed = set(named) - {p for layer in layers for p in layer}
        if missed:
            raise ValueError(f"parameters outside the forward's layers: {sorted(missed)[:3]}")
        return layers


__all__ = ["TimeConditionedRestorer"]
