"""LIRA: the lifelong fork-join restorer (sec. 3, Fig. 1-2, supplementary Tables 5-6).

One :class:`LIRANetwork` holds every task it has learnt. Task 0 is the *base network*:

* a feature extractor ``E`` (three 3x3 convs, the last two strided) giving the global
  features ``h`` (1/2 scale) and ``g`` (1/4 scale);
* the *amalgamator*: ``N`` experts of ``M`` :class:`SKDuRB` blocks (eq. 1), a gate layer
  :class:`Gate` on every second block's two outputs (eq. 2-3), and an :class:`ExpertAttention`
  on ``g`` whose per-level weights over the experts sum to 1 (eq. 4-5);
* two :class:`BiSGU` over the ``M/2`` aggregated levels (eq. 6-7), a strided conv bringing
  the fine stream to the coarse one, a merging conv and a PixelShuffle decoder ``D``; the
  output is ``D(...) + x`` (eq. 8).

:meth:`LIRANetwork.grow` adds a task (sec. 3.2): a new extractor, expert, gates, attention over
two branches, Bi-SGUs and decoder. Everything of the previous amalgamator except its Bi-SGUs
becomes the *old expert* (eq. 10-13), shared by the old and the new task; the old task keeps
its own head (``theta_P1``), the new task gets a new one (``theta_P2``, eq. 14).
:meth:`LIRANetwork.parameter_groups` splits the parameters into ``old`` (``theta_S`` and
``theta_P1``) and ``new`` for the lowered learning rate of sec. 4.2.

Our reading where the paper leaves a choice open, documented on each class: the SK-DuRB's
internal wiring, the gate's sigmoid, the attention's pooled FC, the two convs of an SGU and the
last conv that maps the decoder's 32 channels to RGB.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation)


class SelectiveKernel(nn.Module):
    """SK unit: a 3x3 and a dilated 3x3 (5x5 field) branch, fused per channel by a softmax over
    the branches computed from their pooled sum, so the block picks its receptive field."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.branches = nn.ModuleList([conv3x3(channels, channels), conv3x3(channels, channels, dilation=2)])
        self.squeeze = nn.Linear(channels, hidden)
        self.select = nn.Linear(hidden, 2 * channels)

    def forward(self, x):
        small, large = (F.relu(branch(x)) for branch in self.branches)
        pooled = (small + large).mean(dim=(2, 3))
        weights = self.select(F.relu(self.squeeze(pooled))).view(x.shape[0], 2, x.shape[1], 1, 1).softmax(dim=1)
        return weights[:, 0] * small + weights[:, 1] * large


class SKDuRB(nn.Module):
    """Selective-kernel dual residual block on a pair of streams ``(u, p)`` at 1/2 and 1/4 scale.

    Two paired residual connections (the DuRB idea): ``u' = u + conv(ReLU(conv(u)))`` at the fine
    scale, then ``p' = p + conv(SK(strided conv(u')))``, with the SK unit in the place of
    DuRB-M's SE-ResNet module. Returns ``(u', p')`` (the paper's ``res`` and ``out``).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.fine = nn.Sequential(conv3x3(channels, channels), nn.ReLU(), conv3x3(channels, channels))
        self.down = conv3x3(channels, channels, stride=2)
        self.select = SelectiveKernel(channels)
        self.coarse = conv3x3(channels, channels)

    def forward(self, u, p):
        u = u + self.fine(u)
        return u, p + self.coarse(self.select(F.relu(self.down(u))))


class ExpertBranch(nn.Module):
    """``M`` SK-DuRBs (eq. 1); returns the outputs of every second block: ``s`` and ``q``."""

    def __init__(self, channels: int, num_blocks: int):
        super().__init__()
        self.blocks = nn.ModuleList(SKDuRB(channels) for _ in range(num_blocks))

    def forward(self, h, g):
        s, q = [], []
        u, p = h, g
        for j, block in enumerate(self.blocks, start=1):
            u, p = block(u, p)
            if j % 2 == 0:
                s.append(u)
                q.append(p)
        return s, q


class Gate(nn.Module):
    """``G(global, x, f) . f`` (eq. 2-3): a 3x3 conv on ``[x, global, f]`` (3 + 2C channels, the
    image area-averaged to the feature's size) and a sigmoid give a per-pixel, per-channel gate."""

    def __init__(self, channels: int, in_channels: int = 3):
        super().__init__()
        self.conv = conv3x3(in_channels + 2 * channels, channels)

    def forward(self, global_feature, x, feature):
        image = F.adaptive_avg_pool2d(x, feature.shape[-2:])
        return torch.sigmoid(self.conv(torch.cat([image, global_feature, feature], dim=1))) * feature


class ExpertAttention(nn.Module):
    """The mixing weights ``a``, ``b`` of eq. 4-5 (or ``c``, ``d`` of eq. 10-11): an FC on the
    globally pooled ``g``, softmax over the branches, so each level's weights sum to 1."""

    def __init__(self, channels: int, branches: int, levels: int):
        super().__init__()
        self.branches, self.levels = branches, levels
        self.fc = nn.Linear(channels, 2 * branches * levels)

    def forward(self, g):
        logits = self.fc(g.mean(dim=(2, 3))).view(g.shape[0], 2, self.branches, self.levels)
        weights = logits.softmax(dim=2)
        return weights[:, 0], weights[:, 1]  # (B, branches, levels) each


def gate_branches(res_gates, out_gates, x, h, g, branches) -> tuple[list, list]:
    """Eq. 2-3 / 12-13 for every branch ``(s, q)``: gate its fine levels with ``h`` and its coarse
    levels with ``g``; returns ``(res, out)``, each ``[branch][level]``."""
    res = [[gate(h, x, f) for gate, f in zip(gates, s)] for gates, (s, _) in zip(res_gates, branches)]
    out = [[gate(g, x, f) for gate, f in zip(gates, q)] for gates, (_, q) in zip(out_gates, branches)]
    return res, out


def mix_levels(gated: list[list[torch.Tensor]], weights: torch.Tensor) -> list[torch.Tensor]:
    """``sum_i w[:, i, j] * gated[i][j]`` for every level ``j`` (eq. 4-5, 10-11)."""
    return [sum(weights[:, i, j, None, None, None] * gated[i][j] for i in range(len(gated)))
            for j in range(len(gated[0]))]


class BaseAmalgamator(nn.Module):
    """``N`` experts, their gates and the attention over them: ``(x, h, g) -> (V, F)`` (eq. 1-5).

    ``expert=i`` uses expert ``i`` alone (weight 1): the fork stage trains experts this way.
    """

    def __init__(self, channels: int, num_experts: int, num_blocks: int, in_channels: int = 3):
        super().__init__()
        levels = num_blocks // 2
        self.experts = nn.ModuleList(ExpertBranch(channels, num_blocks) for _ in range(num_experts))
        self.res_gates = nn.ModuleList(nn.ModuleList(Gate(channels, in_channels) for _ in range(levels))
                                       for _ in range(num_experts))
        self.out_gates = nn.ModuleList(nn.ModuleList(Gate(channels, in_channels) for _ in range(levels))
                                       for _ in range(num_experts))
        self.attention = ExpertAttention(channels, num_experts, levels)

    def forward(self, x, h, g, expert: int | None = None):
        chosen = range(len(self.experts)) if expert is None else [expert]
        res, out = gate_branches([self.res_gates[i] for i in chosen], [self.out_gates[i] for i in chosen],
                                 x, h, g, [self.experts[i](h, g) for i in chosen])
        if expert is not None:
            return res[0], out[0]
        a, b = self.attention(g)
        return mix_levels(res, a), mix_levels(out, b)


class GrownAmalgamator(nn.Module):
    """The expanded network's amalgamator (eq. 9-13): the previous amalgamator as the *old
    expert*, a new expert branch, gates on both and an attention over the two branches."""

    def __init__(self, old: nn.Module, channels: int, num_blocks: int, in_channels: int = 3):
        super().__init__()
        levels = num_blocks // 2
        self.old = old
        self.new = ExpertBranch(channels, num_blocks)
        self.res_gates = nn.ModuleList(nn.ModuleList(Gate(channels, in_channels) for _ in range(levels))
                                       for _ in range(2))
        self.out_gates = nn.ModuleList(nn.ModuleList(Gate(channels, in_channels) for _ in range(levels))
                                       for _ in range(2))
        self.attention = ExpertAttention(channels, 2, levels)

    def forward(self, x, h, g, expert: int | None = None):
        if expert is not None:
            raise ValueError("expert= selects a base expert; a grown task always mixes its two branches")
        res, out = gate_branches(self.res_gates, self.out_gates, x, h, g, [self.old(x, h, g), self.new(h, g)])
        c, d = self.attention(g)
        return mix_levels(res, c), mix_levels(out, d)


class SGU(nn.Module):
    """``SGU(fa, fb) = sigmoid(conv(fa)) * fa + sigmoid(conv'(fa)) * fb`` (eq. 6), the active
    input ``fa`` gating both terms through two convs."""

    def __init__(self, channels: int):
        super().__init__()
        self.gate_active = conv3x3(channels, channels)
        self.gate_passive = conv3x3(channels, channels)

    def forward(self, active, passive):
        return torch.sigmoid(self.gate_active(active)) * active + torch.sigmoid(self.gate_passive(active)) * passive


class BiSGU(nn.Module):
    """Eq. 7: ``conv([SGU(v_L, SGU(v_{L-1}, ...)), SGU(v_1, SGU(v_2, ...))])`` over ``L`` levels."""

    def __init__(self, channels: int, levels: int):
        super().__init__()
        self.forward_units = nn.ModuleList(SGU(channels) for _ in range(levels - 1))
        self.backward_units = nn.ModuleList(SGU(channels) for _ in range(levels - 1))
        self.fuse = conv3x3(2 * channels, channels)

    def forward(self, levels: list[torch.Tensor]):
        ahead, behind = levels[0], levels[-1]
        for unit, feature in zip(self.forward_units, levels[1:]):
            ahead = unit(feature, ahead)
        for unit, feature in zip(self.backward_units, reversed(levels[:-1])):
            behind = unit(feature, behind)
        return self.fuse(torch.cat([ahead, behind], dim=1))


class TaskHead(nn.Module):
    """A task's own parts: extractor ``E``, the two Bi-SGUs, ``conv-4``/``conv-5`` and decoder ``D``."""

    def __init__(self, channels: int, num_blocks: int, in_channels: int = 3, full_resolution_skip: bool = True):
        super().__init__()
        levels = num_blocks // 2
        self.full_resolution_skip = full_resolution_skip
        self.extract_full = conv3x3(in_channels, channels)
        self.extract_h = conv3x3(channels, channels, stride=2)
        self.extract_g = conv3x3(channels, channels, stride=2)
        self.res_sgu = BiSGU(channels, levels)
        self.out_sgu = BiSGU(channels, levels)
        self.res_down = conv3x3(channels, channels, stride=2)
        self.merge = conv3x3(2 * channels, channels)
        self.decoder = nn.Sequential(*(nn.Sequential(conv3x3(channels, 4 * channels), nn.PixelShuffle(2),
                                                     nn.LeakyReLU(0.2)) for _ in range(2)))
        self.to_image = conv3x3(channels, in_channels)

    def extract(self, x):
        """``(full, h, g)``: the full-resolution feature (conv-1) and the two global features."""
        full = F.leaky_relu(self.extract_full(x), 0.2)
        h = F.leaky_relu(self.extract_h(full), 0.2)
        return full, h, F.leaky_relu(self.extract_g(h), 0.2)

    def reconstruct(self, x, full, v, f):
        """Eq. 8 / eq. 14: ``D(conv([Bi-SGU(V) downsampled, Bi-SGU(F)])) + x``; with the
        full-resolution skip, ``full`` is added to the decoder's last feature map."""
        res = F.leaky_relu(self.res_down(self.res_sgu(v)), 0.2)
        merged = F.leaky_relu(self.merge(torch.cat([res, self.out_sgu(f)], dim=1)), 0.2)
        decoded = self.decoder(merged)
        return x + self.to_image(decoded + full if self.full_resolution_skip else decoded)


def _init_conv(module: nn.Module) -> None:
    """He initialisation of the convs. The network has no normalisation layers, and with
    PyTorch's default init the signal shrank through the gates and SGUs until the residual
    (eq. 8) stayed at zero in our runs; leaky activations in the heads keep it from dying."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
        nn.init.zeros_(module.bias)


class LIRANetwork(ModelMixin, ConfigMixin):
    """LIRA's incremental restorer; (B,3,H,W) in [0, 1] with H, W multiples of 4.

    Args:
        channels: feature width (32 in the paper).
        num_experts: ``N``, experts of the base network (3).
        num_blocks: ``M``, SK-DuRBs per expert (6); even, the gates read every second block.
        num_tasks: 1 for the base network; :meth:`grow` adds one per new distortion.
        full_resolution_skip: add the extractor's full-resolution feature to the decoder output
            (our addition). Table 5's decoder sees only the 1/4-scale features; at our small
            widths and step counts that network could not carry per-pixel detail through them
            and learnt to output its input (a zero residual). ``False`` gives Table 5 exactly.
    """

    size_multiple = 4

    @property
    def time_condition_blocks(self) -> list[str]:
        """DTE: the newest task's feature extractors and merge (where the timestep enters)."""
        newest = self.config.num_tasks - 1
        return [f"heads.{newest}.{name}" for name in ("extract_h", "extract_g", "merge")]

    @register_to_config
    def __init__(self, in_channels: int = 3, channels: int = 32, num_experts: int = 3, num_blocks: int = 6,
                 num_tasks: int = 1, full_resolution_skip: bool = True):
        super().__init__()
        if num_blocks < 2 or num_blocks % 2:
            raise ValueError(f"num_blocks (M) must be a positive even number, got {num_blocks}")
        if num_experts < 1 or num_tasks < 1:
            raise ValueError("num_experts and num_tasks must be at least 1")
        self.heads = nn.ModuleList(TaskHead(channels, num_blocks, in_channels, full_resolution_skip)
                                   for _ in range(num_tasks))
        amalgamator = BaseAmalgamator(channels, num_experts, num_blocks, in_channels)
        for _ in range(num_tasks - 1):
            amalgamator = GrownAmalgamator(amalgamator, channels, num_blocks, in_channels)
        self.amalgamator = amalgamator
        self.apply(_init_conv)
        for head in self.heads:  # after _init_conv: every head starts as the identity
            nn.init.zeros_(head.to_image.weight)
            nn.init.zeros_(head.to_image.bias)

    def amalgamator_of(self, task: int) -> nn.Module:
        """The amalgamator task ``task`` uses (the old experts nested inside later ones)."""
        module = self.amalgamator
        for _ in range(self.config.num_tasks - 1 - task):
            module = module.old
        return module

    def _task(self, task: int | None) -> int:
        task = self.config.num_tasks - 1 if task is None else task
        if not 0 <= task < self.config.num_tasks:
            raise ValueError(f"task must be in [0, {self.config.num_tasks - 1}], got {task}")
        return task

    def forward(self, x: torch.Tensor, task: int | None = None, expert: int | None = None) -> torch.Tensor:
        """Restore ``x`` for ``task`` (default: the newest); ``expert=i`` runs base expert ``i``
        alone (fork stage, task 0 only)."""
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected (B,{self.config.in_channels},H,W), got {tuple(x.shape)}")
        if x.shape[-2] % self.size_multiple or x.shape[-1] % self.size_multiple:
            raise ValueError(f"LIRA input {x.shape[-2]}x{x.shape[-1]} is not a multiple of {self.size_multiple}; "
                             "pad it first")
        task = self._task(task)
        if expert is not None and not (task == 0 and 0 <= expert < self.config.num_experts):
            raise ValueError(f"expert must be in [0, {self.config.num_experts - 1}] on task 0")
        head = self.heads[task]
        full, h, g = head.extract(x)
        v, f = self.amalgamator_of(task)(x, h, g, expert=expert)
        return head.reconstruct(x, full, v, f)

    def grow(self) -> "LIRANetwork":
        """A network with one more task: this one's weights, plus a new (randomly initialised)
        extractor, expert branch, gates, attention, Bi-SGUs and decoder (sec. 3.2)."""
        grown = LIRANetwork(**{**dict(self.config), "num_tasks": self.config.num_tasks + 1})
        state = {}
        for name, value in self.state_dict().items():
            state["amalgamator.old." + name[len("amalgamator."):] if name.startswith("amalgamator.") else name] = value
        missing, unexpected = grown.load_state_dict(state, strict=False)
        if unexpected or any(not (k.startswith(f"heads.{self.config.num_tasks}.") or
                                  (k.startswith("amalgamator.") and not k.startswith("amalgamator.old.")))
                             for k in missing):
            raise RuntimeError(f"grow() could not map the weights: missing {missing[:3]}, unexpected {unexpected[:3]}")
        return grown.to(self.device)

    def parameter_groups(self) -> dict[str, dict[str, nn.Parameter]]:
        """``{"old": ..., "new": ...}``: the newest task's own parameters (``theta_P2``) versus the
        shared old expert and the older heads (``theta_S``, ``theta_P1``). On the base network
        everything is ``new``."""
        newest = self.config.num_tasks - 1
        groups = {"old": {}, "new": {}}
        for name, param in self.named_parameters():
            old = newest > 0 and (name.startswith("amalgamator.old.") or
                                  (name.startswith("heads.") and int(name.split(".")[1]) < newest))
            groups["old" if old else "new"][name] = param
        return groups


class ResnetGenerator(ModelMixin, ConfigMixin):
    """The pseudo-replay generator ``G`` (sec. 3.3, supplementary Table 7): the CycleGAN
    generator with ``num_res_blocks`` residual blocks (9). Maps clean images in [0, 1] to
    images of the old task's blended distortion in [0, 1]; sizes must be multiples of 4."""

    size_multiple = 4

    @register_to_config
    def __init__(self, in_channels: int = 3, width: int = 64, num_res_blocks: int = 9):
        super().__init__()

        def block(cin, cout, **kwargs):
            return [nn.Conv2d(cin, cout, **kwargs), nn.InstanceNorm2d(cout, affine=True), nn.ReLU()]

        layers = [nn.ReflectionPad2d(3), *block(in_channels, width, kernel_size=7),
                  *block(width, 2 * width, kernel_size=3, stride=2, padding=1),
                  *block(2 * width, 4 * width, kernel_size=3, stride=2, padding=1)]
        self.down = nn.Sequential(*layers)
        self.res_blocks = nn.ModuleList(
            nn.Sequential(nn.ReflectionPad2d(1), *block(4 * width, 4 * width, kernel_size=3), nn.ReflectionPad2d(1),
                          nn.Conv2d(4 * width, 4 * width, 3), nn.InstanceNorm2d(4 * width, affine=True))
            for _ in range(num_res_blocks))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 3, stride=2, padding=1, output_padding=1),
            nn.InstanceNorm2d(2 * width, affine=True), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 3, stride=2, padding=1, output_padding=1),
            nn.InstanceNorm2d(width, affine=True), nn.ReLU(),
            nn.ReflectionPad2d(3), nn.Conv2d(width, in_channels, 7))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        feature = self.down(y)
        for res_block in self.res_blocks:
            feature = feature + res_block(feature)
        return torch.sigmoid(self.up(feature))


class PatchDiscriminator(ModelMixin, ConfigMixin):
    """``D_X1`` (supplementary Table 8): a PatchGAN of strided 4x4 convs with leaky ReLUs, one
    logit per patch."""

    @register_to_config
    def __init__(self, in_channels: int = 3, width: int = 64, num_layers: int = 3):
        super().__init__()
        layers, channels = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)], width
        for i in range(1, num_layers + 1):
            out = width * min(2 ** i, 8)
            layers += [nn.Conv2d(channels, out, 4, stride=2 if i < num_layers else 1, padding=1),
                       nn.InstanceNorm2d(out, affine=True), nn.LeakyReLU(0.2)]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


__all__ = ["BiSGU", "ExpertAttention", "Gate", "LIRANetwork", "PatchDiscriminator", "ResnetGenerator", "SGU",
           "SKDuRB", "SelectiveKernel"]
