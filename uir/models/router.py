"""The degradation-aware router of UIR-LoRA (sec. 3.3, eq. 3-4).

A CLIP image encoder, optionally with a DA-CLIP controller, maps an image to a degradation
vector ``d``; the CLIP text encoder maps each vocabulary entry ("noisy", "hazy", ...) to a row
of the degradation bank ``B``. Then::

    s_o = softmax(logit_scale * norm(d) @ norm(B)^T)          (eq. 3)

The router returns ``s_o``, the top name and the confidence; Top-K (eq. 4) and the other ways
of choosing expert weights live in :mod:`uir.lora.strategies`.

**Controller (DA-CLIP).** A copy of the vision transformer whose block outputs pass through
zero-initialised linear layers. Its pooled output is ``d``. Its hidden states are added to the
frozen CLIP vision tower's blocks in reverse order (block ``i`` receives the controller's
block ``n-1-i``), which gives the content embedding. Without a controller, ``d`` is the CLIP
image embedding.

**Crop correction** (paper Table 4, our rule). Resizing to CLIP's input size hides
fine-grained degradations such as blur, noise, JPEG blocks and raindrops. With
``crop_correction``, the router also encodes ``crop_grid x crop_grid`` crops of the original at
CLIP's input size, without resizing, placed evenly from corner to corner (one crop: the
centre). The degradation vector is::

    d = norm( norm(d_global) + mean_i norm(d_crop_i) )

so the global view and the native-resolution crops count equally, whatever their number.
Images smaller than the input size on a side skip the crops.

**View weights** (our rule). The two views do not see every class equally well: snowflakes and
noise live in native pixels, while at 96 px a black butterfly's white spots look like snow. Since
``norm(d) @ norm(B)^T = (d_global + d_crops) @ norm(B)^T / |d_global + d_crops|``, eq. 3's
logit of class ``k`` is a sum over the views, and ``view_weights`` weighs each view per class::

    logit_k = logit_scale * (w_global,k d_global + w_crops,k d_crops) @ norm(B_k) / |d_global + d_crops|

All weights 1 is eq. 3 as trained. :func:`calibrate_views` fits them (positive) on degraded
training photos by the NLL of the routed ``s_o``: temperature scaling is its special case with
every weight ``1 / T``, so it calibrates as that does, and may also move each class's evidence
towards the view that shows it.

**Confidence.** ``max s_o`` is the router's confidence; :func:`calibrate_temperature` fits
``logit_scale`` so that it is calibrated (temperature scaling). Below ``min_confidence`` the
input matches no known degradation well: the pipeline then applies ``low_confidence`` (see
:func:`uir.lora.strategies.router_weights`) and callers should warn.

**Traces.** Two types leave exact evidence that no appearance can fake, and the router can be
told to trust it over eq. 3 (``s_o`` one-hot, confidence 1):
``jpeg_max_quality`` calls an image ``jpeg-compressed`` when its 8x8 DCT coefficients still sit
on the comb of a JPEG quantisation at that libjpeg quality or below
(:mod:`uir.degradations.jpeg_trace`); ``call_missing_pixels`` calls it ``uncompleted`` when it
has missing pixels, regions of one exact value in every channel
(:func:`uir.degradations.masks.missing_mask`). Images without a trace (a resized or filtered
JPEG, a photo saved at a higher quality, holes of no single value) are routed by eq. 3 alone.
Raindrops leave no exact trace, but a router may hold a learned one: a ``drop_detector``
(:class:`~uir.networks.drops.DropDetector`) that maps where drops hide the scene, and the router
calls ``raindrop`` an image with at least ``drop_share`` of its pixels surely under drops. Cast
shadows likewise: a ``shadow_detector`` (:class:`~uir.networks.shadows.ShadowDetector`) maps the
light a shadow blocks, and the router calls ``shadowed`` an image with at least ``shadow_share``
of its pixels surely shadowed. An image gets one trace: exact ones first, then drops, then shadows.

**Clean.** A vocabulary may hold :data:`~uir.degradations.CLEAN`, the undegraded class. It has
no expert: its weight keeps the input unchanged (the identity expert of the mixture).

**Prior correction** (logit adjustment). A router trained with the classes at prior ``p_train``
routes images met at prior ``p_run`` with ``softmax(logits + log p_run - log p_train)``, the
``logit_bias`` of its config (:func:`prior_correction`). Training with clean twins
(``train_router.py --clean_twins W``) shows the router a clean image for every degraded one:
without the correction it calls clean what it is unsure of, and its calibrated confidence
falls on every other class.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..degradations import CLEAN, DEFAULT_VOCABULARY
from ..degradations.jpeg_trace import JPEG_CLASS
from ..degradations.masks import MISSING_CLASS
from ..degradations.photometric import SHADOW_CLASS
from ..degradations.weather import RAINDROP_CLASS
from ..files import load_safetensors
from ..lora.strategies import check_expected_gain_table, check_low_confidence
from ..networks.drops import check_drop_share
from ..networks.shadows import check_shadow_share
from ..networks.router import DETECTORS, OPENAI_MEAN, OPENAI_STD, RouterInference, RouterOutput, check_view_weights


def vision_forward(visual, image, control=None, taps=None):
    """Run an open_clip ``VisionTransformer`` block by block.

    ``control``: per-block tensors added after block ``i`` in reverse order (DA-CLIP).
    ``taps``: per-block modules applied to each block's output, collected and returned.
    Returns ``(pooled embedding, tapped hiddens)``; with neither, this equals ``visual(image)``.
    """
    x = visual._embeds(image)
    transformer = visual.transformer
    if not transformer.batch_first:
        x = x.transpose(0, 1)
    hiddens = []
    blocks = transformer.resblocks
    for i, block in enumerate(blocks):
        x = block(x, attn_mask=None)
        if taps is not None:
            hiddens.append(taps[i](x))
        if control is not None:
            x = x + control[len(blocks) - 1 - i]
    if not transformer.batch_first:
        x = x.transpose(0, 1)
    pooled, _ = visual._pool(x)
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    return pooled, hiddens


def is_transformer_tower(visual: nn.Module) -> bool:
    """Whether an open_clip vision tower is a ``VisionTransformer`` (blocks DA-CLIP's controller
    can inject into), not a ConvNet such as ``ModifiedResNet``."""
    return hasattr(visual, "transformer")


class DegradationController(nn.Module):
    """DA-CLIP's controller: a trainable copy of the vision tower plus zero linears per block.

    DA-CLIP defines the injection for a vision transformer's blocks only. A ConvNet tower
    (open_clip's ``ModifiedResNet``, a ``vision_cfg`` whose ``layers`` is a list) gets the
    trainable copy without zero linears: it gives ``d``, and the content embedding stays CLIP's."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = copy.deepcopy(visual)
        blocks = visual.transformer.resblocks if is_transformer_tower(visual) else []
        self.zero_linears = nn.ModuleList(nn.Linear(visual.transformer.width, visual.transformer.width)
                                          for _ in blocks)
        for layer in self.zero_linears:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, image):
        """``(degradation vector d, hidden states to inject)``."""
        if not self.zero_linears:
            return self.visual(image), []
        return vision_forward(self.visual, image, taps=self.zero_linears)


class DegradationRouter(RouterInference, ModelMixin, ConfigMixin):
    """CLIP degradation router; see the module docstring for the equations, and
    :class:`~uir.networks.router.RouterInference` for the inference it shares with the runtime's router.

    Args:
        clip_config: an open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``, ...),
            e.g. ``open_clip.get_model_config("ViT-B-32")``.
        vocabulary: degradation names, one per expert.
        texts: the text encoded for each name (defaults to the name itself, as in DA-CLIP).
        use_controller: add a DA-CLIP controller.
        crop_correction: also score native-resolution crops (Table 4).
        crop_grid: ``crop_grid x crop_grid`` crops (1: the centre crop).
        min_confidence: below this ``max s_o`` an input counts as unknown.
        low_confidence: expert weights for unknown inputs, ``"soft"`` (soft top-K), ``"base"``
            (no expert) or ``"identity"`` (the input unchanged); :func:`uir.lora.strategies.router_weights`.
        expected_gains: an expected-gain table (:func:`uir.lora.strategies.expected_gain_table`,
            fitted by ``train/fit_expected_gains.py``); when set, it decides per image instead
            of ``low_confidence``.
        jpeg_max_quality: call an image ``jpeg-compressed`` when its JPEG trace implies this
            libjpeg quality or less; ``None``: no such call.
        call_missing_pixels: call an image with missing pixels ``uncompleted``.
        logit_bias: ``{class: bias}`` added to eq. 3's logits when routing (after the
            temperature): the prior correction of :func:`prior_correction`; ``None``: none.
        drop_detector_config: the arguments of a :class:`~uir.networks.drops.DropDetector` the
            router holds (``drop_detector``; trained by ``train/train_drop_detector.py``);
            ``None``: none.
        drop_share: with a drop detector, call an image ``raindrop`` when at least this share
            of its pixels is surely under drops (alpha above :data:`~uir.networks.drops.SURE_ALPHA`).
        view_weights: ``{class: [global view, crops]}``, positive weights of each view in the class's
            logit (module docstring; fitted by :func:`calibrate_views`); ``None``: 1 everywhere.
        shadow_detector_config: the arguments of a :class:`~uir.networks.shadows.ShadowDetector`
            the router holds (``shadow_detector``; trained by ``train/train_shadow_detector.py``);
            ``None``: none.
        shadow_share: with a shadow detector, call an image ``shadowed`` when at least this share
            of its pixels is surely shadowed (attenuation above
            :data:`~uir.networks.shadows.SURE_ATTENUATION`).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        clip_config: dict,
        vocabulary: list = DEFAULT_VOCABULARY,
        texts: list | None = None,
        use_controller: bool = True,
        crop_correction: bool = True,
        min_confidence: float = 0.25,
        crop_grid: int = 1,
        low_confidence: str = "soft",
        quick_gelu: bool = False,
        image_mean: tuple = OPENAI_MEAN,
        image_std: tuple = OPENAI_STD,
        expected_gains: dict | None = None,
        jpeg_max_quality: float | None = None,
        call_missing_pixels: bool = False,
        logit_bias: dict | None = None,
        drop_detector_config: dict | None = None,
        drop_share: float = 0.01,
        view_weights: dict | None = None,
        shadow_detector_config: dict | None = None,
        shadow_share: float = 0.05,
    ):
        super().__init__()
        import open_clip

        if crop_grid < 1:
            raise ValueError(f"crop_grid must be >= 1, got {crop_grid}")
        check_low_confidence(low_confidence)
        if expected_gains is not None:
            check_expected_gain_table(expected_gains)
        if jpeg_max_quality is not None and not 1 <= jpeg_max_quality <= 100:
            raise ValueError(f"jpeg_max_quality must be a quality in [1, 100], got {jpeg_max_quality}")
        check_drop_share(drop_share)
        check_shadow_share(shadow_share)
        for option, asked, name in (("jpeg_max_quality", jpeg_max_quality is not None, JPEG_CLASS),
                                    ("call_missing_pixels", call_missing_pixels, MISSING_CLASS),
                                    ("drop_detector_config", drop_detector_config is not None, RAINDROP_CLASS),
                                    ("shadow_detector_config", shadow_detector_config is not None, SHADOW_CLASS)):
            if asked and name not in vocabulary:
                raise ValueError(f"{option} calls images {name!r}, which the vocabulary {list(vocabulary)} lacks")
        unknown = sorted(set(logit_bias or {}) - set(vocabulary))
        if unknown:
            raise ValueError(f"logit_bias names {unknown}, which the vocabulary {list(vocabulary)} lacks")
        if not all(math.isfinite(v) for v in (logit_bias or {}).values()):
            raise ValueError(f"logit_bias must be finite numbers, got {logit_bias}")
        check_view_weights(view_weights, vocabulary)
        if texts is not None and len(texts) != len(vocabulary):
            raise ValueError("texts must have one entry per vocabulary name")
        config = {k: v for k, v in clip_config.items() if k in ("embed_dim", "vision_cfg", "text_cfg", "init_logit_scale")}
        self.clip = open_clip.CLIP(**config, quick_gelu=quick_gelu)
        self.controller = DegradationController(self.clip.visual) if use_controller else None
        self.logit_scale = nn.Parameter(self.clip.logit_scale.detach().clone())
        self.register_buffer("degradation_bank", torch.zeros(len(vocabulary), clip_config["embed_dim"]))
        for attribute, arguments in (("drop_detector", drop_detector_config), ("shadow_detector", shadow_detector_config)):
            setattr(self, attribute, DETECTORS[attribute](**arguments) if arguments is not None else None)
        self.clip.requires_grad_(False)

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_open_clip(cls, model_name: str, pretrained: str | None = None, **kwargs) -> "DegradationRouter":
        """Build from an open_clip model name and pretrained tag or checkpoint path, e.g.
        ``from_open_clip("ViT-B-32", pretrained="laion2b_s34b_b79k")`` (downloads the weights)."""
        import open_clip

        config = open_clip.get_model_config(model_name)
        if config is None:
            raise ValueError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
        quick_gelu = bool(config.get("quick_gelu", False))
        if pretrained and not Path(pretrained).exists():
            from ..hub import require_hub

            tag = open_clip.get_pretrained_cfg(model_name, pretrained)
            if not tag:
                raise ValueError(f"unknown pretrained tag {pretrained!r} for {model_name}; see "
                                 "open_clip.list_pretrained()")
            require_hub(tag.get("hf_hub", "").strip("/") or f"{model_name}/{pretrained}", "open_clip weights")
            quick_gelu = bool(tag.get("quick_gelu", quick_gelu))
        source = open_clip.create_model(model_name, pretrained=pretrained)
        router = cls(clip_config=config, quick_gelu=quick_gelu, **kwargs)
        router.clip.load_state_dict(source.state_dict())
        router.logit_scale.data.copy_(router.clip.logit_scale.data)
        if router.controller is not None:
            router.controller.visual.load_state_dict(router.clip.visual.state_dict())
        router.refresh_bank()
        return router

    @classmethod
    def from_daclip(cls, checkpoint, clip_config: dict, **kwargs) -> "DegradationRouter":
        """Load a DA-CLIP checkpoint (``daclip_ViT-B-32.pt`` layout: ``clip.*``, ``visual_control.*``,
        ``logit_scale``). ``.safetensors`` files are read directly, ``.pt`` files with
        ``torch.load(weights_only=True)``, which executes no code."""
        state = _read_state_dict(Path(checkpoint))
        router = cls(clip_config=clip_config, use_controller=True, **kwargs)
        router.load_state_dict(daclip_to_router_state(state, router.degradation_bank), strict=True)
        router.refresh_bank()
        return router

    # --- vocabulary --------------------------------------------------------------------------
    def _texts(self) -> list[str]:
        return list(self.config.texts) if self.config.texts is not None else self.vocabulary

    def _tokenize(self, texts: list[str]) -> torch.Tensor:
        import open_clip

        context = self.clip.context_length
        return open_clip.tokenizer.SimpleTokenizer(context_length=context)(texts)

    def text_bank(self, texts: list[str] | None = None) -> torch.Tensor:
        """Unit text embeddings of ``texts`` (default: the vocabulary's), with gradients when
        the text tower trains; the degradation bank ``B`` is this, stored."""
        tokens = self._tokenize(self._texts() if texts is None else texts).to(self.degradation_bank.device)
        return F.normalize(self.clip.encode_text(tokens).float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        return self.text_bank(texts)

    def refresh_bank(self) -> None:
        """Recompute the degradation bank ``B`` from the text encoder (saved with the router)."""
        self.degradation_bank = self.encode_texts(self._texts()).to(self.degradation_bank)

    def add_degradation(self, name: str, text: str | None = None) -> None:
        """Grow the vocabulary bank by one entry, without retraining."""
        if name in self.vocabulary:
            raise ValueError(f"degradation {name!r} is already in the vocabulary")
        texts = self._texts() + [text or name]
        self.register_to_config(vocabulary=self.vocabulary + [name],
                                texts=texts if self.config.texts is not None or text else None)
        row = self.encode_texts([text or name]).to(self.degradation_bank)
        self.degradation_bank = torch.cat([self.degradation_bank, row])

    # --- inference ---------------------------------------------------------------------------
    @property
    def input_size(self) -> int:
        size = self.clip.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else size

    def degradation_vector(self, image: torch.Tensor) -> torch.Tensor:
        """Unit degradation vectors ``d`` (B, z) of images in [0, 1] at CLIP's input size."""
        pixels = self._normalise(image)
        if self.controller is not None:
            d, _ = self.controller(pixels)
        else:
            d = self.clip.encode_image(pixels)
        return F.normalize(d.float(), dim=-1)

    def encode_image(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(content embedding, degradation vector)``, as DA-CLIP's ``encode_image(control=True)``."""
        pixels = self._normalise(image)
        if self.controller is None:
            embedding = F.normalize(self.clip.encode_image(pixels).float(), dim=-1)
            return embedding, embedding
        d, hiddens = self.controller(pixels)
        if not hiddens:  # a ConvNet tower: nothing to inject
            content = self.clip.encode_image(pixels)
        else:
            content, _ = vision_forward(self.clip.visual, pixels, control=hiddens)
        return F.normalize(content.float(), dim=-1), F.normalize(d.float(), dim=-1)


#: calibration keeps ``T`` within ``exp(+-3)``: a router at chance level would otherwise be
#: flattened to a uniform ``s_o`` (the NLL optimum), hiding even its ranking's confidence
MAX_LOG_TEMPERATURE = 3.0


def prior_correction(vocabulary: list[str], clean_twins: float | None) -> dict | None:
    """The ``logit_bias`` of a router trained with ``--clean_twins W`` on every class of
    ``vocabulary`` alike, to route images met one class as often as another.

    Each of the ``n`` degraded classes trains with weight 1 and ``clean`` with ``1 + n W`` (its
    own draws and a twin of weight ``W`` for every degraded draw), so
    ``log p_run - log p_train`` is, up to a constant that softmax ignores, ``-log(1 + n W)`` on
    ``clean`` and 0 elsewhere. ``None`` without twins: the classes train alike."""
    if clean_twins is None:
        return None
    degraded = sum(name != CLEAN for name in vocabulary)
    return {CLEAN: -math.log1p(degraded * clean_twins)}


def calibrate_views(router: DegradationRouter, similarities: torch.Tensor, labels: torch.Tensor,
                    steps: int = 500) -> dict:
    """View calibration (module docstring): fit the positive ``view_weights`` minimising the NLL of
    ``softmax(logits + b)`` for ``labels``, the logits of :meth:`~RouterInference.logits_from_similarities`
    on ``similarities`` (N, 2, T) (:meth:`~RouterInference.view_similarities`, on images the router
    did not train on, ideally) and ``b`` the router's ``logit_bias``. Each weight stays within
    ``exp(+-MAX_LOG_TEMPERATURE)``; a class no label names keeps weight 1. Writes them to the
    router's config and returns them."""
    similarities, labels = similarities.detach().float(), labels.to(similarities.device)
    scale, bias = router.logit_scale.exp().detach().to(similarities), router.logit_bias_vector().to(similarities)
    seen = torch.zeros(similarities.shape[-1], dtype=torch.bool, device=similarities.device)
    seen[labels.unique()] = True
    log_weights = torch.zeros(similarities.shape[1:], device=similarities.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_weights], max_iter=steps, line_search_fn="strong_wolfe")

    def weights():
        return torch.where(seen, log_weights.clamp(-MAX_LOG_TEMPERATURE, MAX_LOG_TEMPERATURE), 0.0).exp()

    def closure():
        optimizer.zero_grad()
        with torch.enable_grad():
            loss = F.cross_entropy(scale * (weights() * similarities).sum(1) + bias, labels)
            loss.backward()
        return loss

    optimizer.step(closure)
    fitted = weights().detach().T.tolist()
    view_weights = {name: [round(w, 6) for w in pair] for name, pair in zip(router.vocabulary, fitted)}
    router.register_to_config(view_weights=view_weights)
    return view_weights


def calibrate_temperature(router: DegradationRouter, logits: torch.Tensor, labels: torch.Tensor,
                          steps: int = 200) -> float:
    """Temperature scaling: fit ``T`` minimising the NLL of ``softmax(logits / T + b)`` for
    ``labels``, with ``b`` the router's ``logit_bias``, fold it into ``router.logit_scale`` and
    return ``T``. ``logits`` (eq. 3's, without ``b``) are the router's own on images it did not
    train on, ideally; the ranking of ``logits + b`` (top-1) does not change."""
    logits, labels = logits.detach().float(), labels.to(logits.device)
    bias = router.logit_bias_vector().to(logits)
    log_t = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps)

    def closure():
        optimizer.zero_grad()
        with torch.enable_grad():
            loss = F.cross_entropy(logits / log_t.exp() + bias, labels)
            loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().clamp(-MAX_LOG_TEMPERATURE, MAX_LOG_TEMPERATURE).exp())
    router.logit_scale.data -= torch.log(torch.tensor(temperature, dtype=router.logit_scale.dtype))
    return temperature


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 10) -> float:
    """ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by size."""
    confidence, predicted = probabilities.max(-1)
    correct = (predicted == labels.to(predicted.device)).float()
    edges = torch.linspace(0, 1, bins + 1)
    error = torch.zeros(())
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.float().mean() * (correct[inside].mean() - confidence[inside].mean()).abs()
    return float(error)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    return {k.removeprefix("module."): v for k, v in state.items()}


def daclip_to_router_state(state: dict, bank: torch.Tensor) -> dict[str, torch.Tensor]:
    """Map DA-CLIP keys to ours: ``clip.*`` stays, ``visual.*`` (an alias of ``clip.visual``)
    is dropped, ``visual_control.transformer.transformer.*`` -> ``controller.visual.transformer.*``,
    ``visual_control.transformer.zero_modules.*`` -> ``controller.zero_linears.*``, other
    ``visual_control.*`` -> ``controller.visual.*``, ``logit_scale`` stays."""
    out = {"degradation_bank": bank}
    for key, value in state.items():
        if key.startswith("clip.") or key == "logit_scale":
            out[key] = value
        elif key.startswith("visual_control.transformer.transformer."):
            out["controller.visual.transformer." + key.removeprefix("visual_control.transformer.transformer.")] = value
        elif key.startswith("visual_control.transformer.zero_modules."):
            out["controller.zero_linears." + key.removeprefix("visual_control.transformer.zero_modules.")] = value
        elif key.startswith("visual_control."):
            out["controller.visual." + key.removeprefix("visual_control.")] = value
        elif not key.startswith("visual."):
            raise ValueError(f"unexpected key {key!r} in a DA-CLIP checkpoint")
    return out


__all__ = ["MAX_LOG_TEMPERATURE", "OPENAI_MEAN", "OPENAI_STD", "DegradationController", "DegradationRouter",
           "RouterOutput", "calibrate_temperature", "calibrate_views", "check_view_weights", "daclip_to_router_state", "expected_calibration_error",
           "prior_correction", "vision_forward"]
