"""LoRA experts: one folder per degradation, and their installation into a mixture.

An expert folder holds, for each adapted component (``unet``, ``vae``, or a regression
restorer's ``restorer``), a plain PEFT adapter, plus uir's metadata::

    noisy/
      uir_expert.json              {"format": "uir-expert/1", "degradation": "noisy",
                                    "text": "noisy", "base_model": "stabilityai/sd-turbo",
                                    "ranks": {"unet": 8, "vae": 4}, "base_fingerprint": ...}
      unet/adapter_config.json     PEFT LoraConfig, lora_alpha included
      unet/adapter_model.safetensors   PEFT's saved layout: "base_model.model.<layer>.lora_A.weight", ...;
                                       the header's "lora_adapter_metadata" holds the config too
      vae/...

So ``PeftModel.from_pretrained(base, "noisy/unet")`` loads a component as PEFT does any
adapter, and diffusers' ``load_lora_adapter("noisy/unet", prefix="base_model.model",
weight_name="adapter_model.safetensors")`` reads its ``lora_alpha`` from the header (the
header's entries carry the same prefix, which diffusers strips as it strips the keys').
Folders of uir's first layout (keys without the prefix, no header) still load, with a one-line
notice. Only safetensors are read: a pickle (``.bin``, ``.pt``, ``.pth``, ``.ckpt``, ``.pkl``)
is refused. An expert made for another base model is refused by its fingerprint
(:mod:`uir.lora.fingerprint`) and, failing that, by its layer shapes.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..files import load_json_object, load_safetensors, staged_directory
from .mixture import LoRAMixtureLayer, inject_mixture, mixture_layers, remove_mixture

logger = logging.getLogger("uir.lora")

EXPERT_FORMAT = "uir-expert/1"
METADATA_FILE = "uir_expert.json"
EXPERT_CONFIG_FILE = "adapter_config.json"
EXPERT_WEIGHTS_FILE = "adapter_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
#: PEFT's prefix of a model's keys in a saved adapter: ``PeftModel.from_pretrained`` loads only
#: keys that carry it (without it, nothing, with only a warning)
PEFT_KEY_PREFIX = "base_model.model."
#: the safetensors header entry diffusers' ``load_lora_adapter`` builds its ``LoraConfig`` from
#: (without it, it assumes ``lora_alpha = r``: scale 1.0 whatever the expert's alpha)
DIFFUSERS_METADATA_KEY = "lora_adapter_metadata"
#: ``uir_expert.json`` key of an expert trained on its type's classical prior's output
#: (:data:`uir.classical.PRIORS`) instead of on the degraded image; the pipeline gives it that input
PRIOR_INPUT_KEY = "prior_input"
#: ``uir_expert.json`` key of an expert whose output the pipeline keeps within the veil its input
#: can hold (:data:`uir.classical.VEIL_BOUNDS`: snow's veil, haze's airlight)
VEIL_BOUND_KEY = "veil_bound"
#: ``uir_expert.json`` key of the share ``b`` of an expert's output that the pipeline gives to its
#: type's classical prior instead, ``(1 - b) f_k(x) + b P(x)`` (:data:`uir.classical.PRIORS`;
#: fitted on training photos by ``train/fit_prior_blend.py``)
PRIOR_BLEND_KEY = "prior_blend"
#: ``uir_expert.json`` key of the share ``a`` of an expert's output that the pipeline gives back
#: to its input, after any prior blend: ``(1 - a) y + a x`` (fitted on training photos by
#: ``train/fit_prior_blend.py --toward input``; ``a = 1`` leaves the photos the expert leads alone)
INPUT_BLEND_KEY = "input_blend"
_LORA_KEY = re.compile(r"^(?P<layer>.+)\.lora_(?P<kind>[AB])\.weight$")


def blend_output(restored: torch.Tensor, prior: torch.Tensor | None, image: torch.Tensor, prior_share: float = 0.0,
                 input_share: float = 0.0) -> torch.Tensor:
    """An expert's (bounded) output ``restored`` with its shares given away: ``y = (1 - b) restored
    + b prior`` (``b`` = ``prior_share``; ``prior``, the classical prior's output, is needed only
    when ``b > 0``), then ``(1 - a) y + a image`` (``a`` = ``input_share``, ``image`` the input)."""
    out = restored
    if prior_share:
        out = (1 - prior_share) * out + prior_share * prior
    if input_share:
        out = (1 - input_share) * out + input_share * image
    return out


class ExpertError(ValueError):
    """An expert that cannot be used: missing files, wrong format, or another base model."""


@dataclass
class ExpertComponent:
    """One component's LoRA: PEFT state dict (``<layer>.lora_A.weight`` ...) and PEFT config dict."""

    state_dict: dict[str, torch.Tensor] = field(repr=False)
    config: dict = field(repr=False)

    def save(self, folder: Path) -> None:
        """Write ``adapter_model.safetensors`` and ``adapter_config.json`` into ``folder`` in
        PEFT's saved layout, the config also in the header for diffusers (module docstring)."""
        state = {PEFT_KEY_PREFIX + k: v.detach().contiguous().cpu() for k, v in self.state_dict.items()}
        header = {PEFT_KEY_PREFIX + key: value for key, value in self.config.items()}
        save_file(state, folder / EXPERT_WEIGHTS_FILE, metadata={"format": "pt", DIFFUSERS_METADATA_KEY: json.dumps(header)})
        (folder / EXPERT_CONFIG_FILE).write_text(json.dumps(self.config, indent=2, sort_keys=True))

    def layers(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{layer path: (A, B)}``."""
        found: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in self.state_dict.items():
            match = _LORA_KEY.match(key)
            if not match:
                raise ExpertError(f"unexpected key {key!r} in LoRA weights (expected '<layer>.lora_A.weight' / 'lora_B')")
            found.setdefault(match["layer"], {})[match["kind"]] = tensor
        incomplete = [layer for layer, ab in found.items() if len(ab) != 2]
        if incomplete:
            raise ExpertError(f"LoRA weights miss lora_A or lora_B for {incomplete[:3]}")
        return {layer: (ab["A"], ab["B"]) for layer, ab in found.items()}

    def check(self, model: torch.nn.Module, where: str = "") -> None:
        """Refuse a config that does not describe the tensors: a rank other than the tensors', a
        layer outside ``target_modules``, or a target module that exists nowhere in ``model``."""
        targets = self.config.get("target_modules") or []
        names = [name for name, _ in model.named_modules()]

        def suffix_match(path: str, target: str) -> bool:  # PEFT's rule for a list of targets
            return path == target or path.endswith("." + target)

        def targeted(path: str) -> bool:
            if isinstance(targets, str):
                return re.fullmatch(targets, path) is not None
            return any(suffix_match(path, t) for t in targets)

        for layer, (a, _) in self.layers().items():
            rank = self.config.get("rank_pattern", {}).get(layer.rsplit(".", 1)[-1], self.config.get("r"))
            if rank is not None and a.shape[0] != int(rank):
                raise ExpertError(f"{where}{EXPERT_CONFIG_FILE} says rank {rank} but layer {layer} has rank {a.shape[0]}")
            if targets and not targeted(layer):
                raise ExpertError(f"{where}layer {layer} is not among the config's target_modules")
        if not isinstance(targets, str):
            absent = [t for t in targets if not any(suffix_match(n, t) for n in names)]
            if absent:
                raise ExpertError(f"{where}target_modules {absent} exist nowhere in the base model")

    def scaling(self, layer: str, rank: int) -> float:
        """PEFT's scaling ``alpha / r`` (or ``alpha / sqrt(r)`` with rsLoRA), honouring ``alpha_pattern``."""
        alpha = self.config.get("lora_alpha", 8)
        for pattern, value in (self.config.get("alpha_pattern") or {}).items():
            if re.match(rf"(.*\.)?{pattern}$", layer):
                alpha = value
                break
        return alpha / math.sqrt(rank) if self.config.get("use_rslora") else alpha / rank


@dataclass
class LoRAExpert:
    """A degradation expert: its name, vocabulary text, base model and per-component LoRAs.

    The folder format is in the module docstring and ``adapters/README.md``.

    Args:
        degradation: the degradation it restores; also its name in the router's vocabulary.
        components: ``{component name: ExpertComponent}``, e.g. ``unet`` and ``vae``, or ``restorer``.
        base_model: the base it was trained on (a Hub id, or a name of the regression base).
        text: the text the router's text tower encodes for it (default: ``degradation``).
        extra: further metadata kept in ``uir_expert.json``.

    Example::

        expert = LoRAExpert.load("runs/experts/noisy")        # or a Hub id
        pipe.load_expert(expert)
        expert.push_to_hub("you/uir-noisy")
    """

    degradation: str
    components: dict[str, ExpertComponent]
    base_model: str
    text: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def prior_input(self) -> bool:
        """Whether the expert restores its type's classical prior's output (:data:`PRIOR_INPUT_KEY`)."""
        return bool(self.extra.get(PRIOR_INPUT_KEY, False))

    @property
    def veil_bound(self) -> bool:
        """Whether the pipeline caps the veil the expert removes (:data:`VEIL_BOUND_KEY`)."""
        return bool(self.extra.get(VEIL_BOUND_KEY, False))

    @property
    def prior_blend(self) -> float:
        """The share of the expert's output the pipeline gives to its classical prior (:data:`PRIOR_BLEND_KEY`; 0: none)."""
        return self._share(PRIOR_BLEND_KEY)

    @property
    def input_blend(self) -> float:
        """The share of the expert's output the pipeline gives back to its input (:data:`INPUT_BLEND_KEY`; 0: none)."""
        return self._share(INPUT_BLEND_KEY)

    def _share(self, key: str) -> float:
        share = self.extra.get(key, 0.0)
        if isinstance(share, bool) or not isinstance(share, (int, float)):
            raise ExpertError(f"expert {self.degradation!r}: {key} in uir_expert.json must be a number, got {share!r}")
        return float(share)

    def blend(self, restored: torch.Tensor, prior: torch.Tensor | None, image: torch.Tensor) -> torch.Tensor:
        """What the pipeline returns for an image this expert leads: :func:`blend_output` with the
        expert's :attr:`prior_blend` and :attr:`input_blend`."""
        return blend_output(restored, prior, image, self.prior_blend, self.input_blend)

    def metadata(self) -> dict:
        ranks = {name: int(c.config.get("r", 0)) for name, c in self.components.items()}
        return {"format": EXPERT_FORMAT, "degradation": self.degradation, "text": self.text or self.degradation,
                "base_model": self.base_model, "ranks": ranks, **self.extra}

    def save(self, path) -> Path:
        """Write the expert folder atomically (a temporary folder renamed into place)."""
        path = Path(path)
        with staged_directory(path) as staging:
            for name, component in self.components.items():
                (staging / name).mkdir()
                component.save(staging / name)
            (staging / METADATA_FILE).write_text(json.dumps(self.metadata(), indent=2, sort_keys=True))
        return path

    def push_to_hub(self, repo_id: str, token: str | None = None, private: bool | None = None) -> str:
        """Upload the expert folder, with a model card, to the Hugging Face Hub."""
        from ..hub import upload_folder, write_model_card

        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save(Path(tmp) / self.degradation)
            write_model_card(folder, f"LoRA expert: {self.degradation}", self.base_model, [self.degradation],
                             f"A uir LoRA expert that restores *{self.text or self.degradation}* images.")
            return upload_folder(folder, repo_id, token=token, private=private)

    @classmethod
    def load(cls, path_or_repo, **hub_kwargs) -> "LoRAExpert":
        """Load an expert folder, or download one from the Hugging Face Hub by repo id."""
        path = Path(path_or_repo)
        if not path.exists():
            path = _download(str(path_or_repo), **hub_kwargs)
        if not path.is_dir():
            raise ExpertError(f"{path}: an expert is a folder with {METADATA_FILE}")
        pickles = sorted(p.name for p in path.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise ExpertError(f"{path}: refusing pickle files {pickles}; uir loads safetensors only")
        meta_path = path / METADATA_FILE
        if not meta_path.is_file():
            raise ExpertError(f"{path}: missing {METADATA_FILE}; not a uir expert folder")
        meta = load_json_object(meta_path, ExpertError)
        if meta.get("format") != EXPERT_FORMAT:
            raise ExpertError(f"{path}: unsupported expert format {meta.get('format')!r} (expected {EXPERT_FORMAT})")
        missing = [key for key in ("degradation", "ranks") if key not in meta]
        if missing:
            raise ExpertError(f"{meta_path}: missing {', '.join(missing)}")
        if not isinstance(meta["ranks"], dict):
            raise ExpertError(f"{meta_path}: ranks must map each component to its rank, got {meta['ranks']!r}")
        components = {}
        for name in meta["ranks"]:
            weights, config = path / name / EXPERT_WEIGHTS_FILE, path / name / EXPERT_CONFIG_FILE
            for needed in (weights, config):
                if not needed.is_file():
                    raise ExpertError(f"{path}: missing {needed.relative_to(path)}")
            components[name] = ExpertComponent(_read_weights(weights), _read_config(config))
        known = {"format", "degradation", "text", "base_model", "ranks"}
        return cls(meta["degradation"], components, meta.get("base_model", ""), meta.get("text"),
                   {k: v for k, v in meta.items() if k not in known})


class ExpertList:
    """An ordered list of :class:`LoRAExpert` for one base model, one per degradation.

    Saved as ``config.json`` (``base_model`` and the ``names``, in order) plus one expert folder
    per name; :class:`uir.models.experts.ExpertListModel` is this list as a diffusers pipeline component.
    """

    config_name = "config.json"

    def __init__(self, base_model: str = ""):
        super().__init__()
        self.base_model = base_model
        self.experts: list[LoRAExpert] = []

    @property
    def names(self) -> list[str]:
        return [e.degradation for e in self.experts]

    def _names_changed(self) -> None:
        """Called after the list changes (the diffusers bank records the names in its config)."""

    def add(self, expert: LoRAExpert) -> None:
        if expert.degradation in self.names:
            raise ExpertError(f"an expert for {expert.degradation!r} is already loaded")
        if self.base_model and expert.base_model and expert.base_model != self.base_model:
            raise ExpertError(
                f"expert {expert.degradation!r} was made for base model {expert.base_model!r}, not {self.base_model!r}"
            )
        self.experts.append(expert)
        self._names_changed()

    def set_experts(self, experts: list[LoRAExpert]) -> None:
        """Replace the list (already checked experts, e.g. a previous state)."""
        self.experts = list(experts)
        self._names_changed()

    @classmethod
    def from_folder(cls, directory, variant: str | None = None, config: dict | None = None) -> "ExpertList":
        """Read a saved list: ``config.json`` (or its contents, ``config``, when the caller has
        read it) and the expert folders it names (:func:`expert_folder_name`; a folder of the
        first layout, ``<name>/``, is read too)."""
        directory = Path(directory)
        if config is None:
            config_path = directory / cls.config_name
            if not config_path.is_file():
                raise ExpertError(f"{directory}: missing {cls.config_name} of an expert list")
            config = load_json_object(config_path, ExpertError)
        experts = cls(base_model=config.get("base_model", ""))
        for name in config.get("names") or []:
            folder = directory / expert_folder_name(name, variant)
            if variant is None and not folder.is_dir():
                folder = directory / name
            if not folder.is_dir():
                raise ExpertError(f"{directory}: no folder {expert_folder_name(name, variant)} for expert {name!r}")
            experts.add(LoRAExpert.load(folder))
        return experts


def expert_folder_name(name: str, variant: str | None = None) -> str:
    """The folder of expert ``name`` in a saved list: ``noisy.expert``, or ``noisy.fp16.expert``
    for a ``variant``. diffusers reads the text after the first dot of every entry of a component
    folder as a variant name (and fails on an entry with no dot), as in
    ``diffusion_pytorch_model.fp16.safetensors``."""
    return f"{name}.{variant}.expert" if variant else f"{name}.expert"


def _read_config(path: Path) -> dict:
    """A component's ``adapter_config.json``, with the entries uir computes with checked: a rank,
    an alpha, patterns that map names to numbers."""
    config = load_json_object(path, ExpertError)
    number = (int, float)
    for key in ("r", "lora_alpha"):
        if key in config and (isinstance(config[key], bool) or not isinstance(config[key], number)):
            raise ExpertError(f"{path}: {key} must be a number, got {config[key]!r}")
    for key in ("rank_pattern", "alpha_pattern"):
        pattern = config.get(key) or {}
        if not isinstance(pattern, dict) or not all(isinstance(v, number) for v in pattern.values()):
            raise ExpertError(f"{path}: {key} must map layer names to numbers, got {config.get(key)!r}")
    return config


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A component's LoRA weights in uir's key layout (``<layer>.lora_A.weight``), from PEFT's
    saved layout or, with a one-line notice, from uir's first (unprefixed) one."""
    state = load_safetensors(path, ExpertError)
    prefixed = [key.startswith(PEFT_KEY_PREFIX) for key in state]
    if all(prefixed):
        return {key[len(PEFT_KEY_PREFIX):]: tensor for key, tensor in state.items()}
    if any(prefixed):
        raise ExpertError(f"{path}: some keys carry PEFT's {PEFT_KEY_PREFIX!r} prefix and some do not")
    logger.warning("%s: uir's first key layout (no %r prefix), which PEFT and diffusers cannot read; "
                   "LoRAExpert.load(folder).save(new_folder) writes the current one", path, PEFT_KEY_PREFIX)
    return state


def _download(repo_id: str, **hub_kwargs) -> Path:
    from huggingface_hub import snapshot_download

    from ..hub import require_hub

    try:
        require_hub(repo_id, "expert")
    except OSError as error:
        raise ExpertError(f"{repo_id}: not a local folder, and {error}") from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.md"], **hub_kwargs))
    except Exception as error:  # network, auth or unknown repo: one clear line
        raise ExpertError(f"{repo_id}: not a local folder, and the Hub download failed ({type(error).__name__}: {error})") from None


def lora_config(rank: int, alpha: float, target_modules: list[str]) -> dict:
    """A PEFT ``LoraConfig`` dict for a new expert (PEFT's own serialisation)."""
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=sorted(target_modules), init_lora_weights=True)
    # PEFT keeps target_modules as a set; sorted, the saved config is the same in every process
    return json.loads(json.dumps(config.to_dict(), default=sorted))


def install_experts(model: torch.nn.Module, experts: list[ExpertComponent | None]) -> None:
    """Rebuild ``model``'s mixture from one component per expert (``None``: the expert leaves
    this model alone). Removes any previous mixture first."""
    remove_mixture(model)
    per_expert = [c.layers() if c is not None else {} for c in experts]
    paths = sorted({layer for layers in per_expert for layer in layers})
    ranks = {p: [layers[p][0].shape[0] if p in layers else 0 for layers in per_expert] for p in paths}
    scalings = {
        p: [c.scaling(p, layers[p][0].shape[0]) if p in layers else 0.0 for c, layers in zip(experts, per_expert)]
        for p in paths
    }
    for c in experts:
        if c is not None and (c.config.get("use_dora") or c.config.get("lora_bias")):
            raise ExpertError("DoRA and LoRA-bias adapters are not supported by the output-space mixture")
    inject_mixture(model, ranks, scalings)
    with torch.no_grad():
        for path in paths:
            layer: LoRAMixtureLayer = model.get_submodule(path)
            for k, layers in enumerate(per_expert):
                if path not in layers:
                    continue
                a, b = layers[path]
                sl = layer.expert_slice(k)
                if a.shape[1:] != layer.lora_A.shape[1:] or b.shape[0] != layer.lora_B.shape[0] or b.shape[2:] != layer.lora_B.shape[2:]:
                    remove_mixture(model)
                    raise ExpertError(
                        f"layer {path}: expert weights {tuple(a.shape)}/{tuple(b.shape)} do not fit the base layer "
                        f"{tuple(layer.base.weight.shape)}; the expert was made for another base model"
                    )
                layer.lora_A[sl] = a.to(layer.lora_A)
                layer.lora_B[:, sl] = b.to(layer.lora_B)


def extract_expert(model: torch.nn.Module, k: int) -> dict[str, torch.Tensor]:
    """Expert ``k``'s weights from ``model``'s mixture, in PEFT key layout."""
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, LoRAMixtureLayer) and module.ranks[k]:
            sl = module.expert_slice(k)
            state[f"{name}.lora_A.weight"] = module.lora_A[sl].detach().clone()
            state[f"{name}.lora_B.weight"] = module.lora_B[:, sl].detach().clone()
    return state


__all__ = [
    "DIFFUSERS_METADATA_KEY",
    "EXPERT_FORMAT",
    "PEFT_KEY_PREFIX",
    "ExpertComponent",
    "ExpertError",
    "ExpertList",
    "LoRAExpert",
    "expert_folder_name",
    "extract_expert",
    "install_experts",
    "lora_config",
    "mixture_layers",
]
