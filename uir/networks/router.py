"""Routing at inference: eq. 3 and crop correction, importable without diffusers or open_clip.

:class:`RouterInference` holds the inference math of :mod:`uir.models.router` (whose docstring states
the equations): the normalised pixels, the native-resolution crops, the aggregated degradation
vector ``d``, the logits ``logit_scale * d @ B^T`` and ``s_o = softmax`` with its top name and
confidence. Two routers share it:

* :class:`uir.models.router.DegradationRouter`: the diffusers component, with open_clip's CLIP, the
  text tower and training;
* :class:`RuntimeRouter`: a saved router's vision tower and bank alone
  (:func:`~uir.networks.clip_vision.vision_tower`), for the diffusers-free runtime
  (:mod:`uir.pipelines.runtime`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from ..degradations.families import CLEAN
from ..degradations.jpeg_trace import JPEG_CLASS, jpeg_quality
from ..degradations.masks import MISSING_CLASS, finds_missing_pixels
from ..degradations.photometric import SHADOW_CLASS
from ..degradations.weather import RAINDROP_CLASS
from ..files import load_safetensors
from . import load_weights
from .clip_vision import supported_vision_config, vision_tower
from .drops import DropDetector
from .shadows import ShadowDetector

#: the detectors a router may hold, by attribute: a saved router's config gives each one's
#: arguments as ``<attribute>_config``, and its weights sit under ``<attribute>.``
DETECTORS = {"drop_detector": DropDetector, "shadow_detector": ShadowDetector}

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class RouterOutput:
    """``probabilities`` s_o (B,T) over the vocabulary, the top ``names`` per image,
    ``confidence`` = max s_o (B,), ``known`` = confidence >= min_confidence (B,)."""

    probabilities: torch.Tensor
    names: list
    confidence: torch.Tensor
    known: torch.Tensor

    @classmethod
    def read(cls, probabilities: torch.Tensor, vocabulary: list[str], min_confidence: float) -> "RouterOutput":
        """The output that ``probabilities`` (B,T) over ``vocabulary`` say: each image's likeliest
        class, its probability, and whether that reaches ``min_confidence``."""
        confidence, best = probabilities.max(-1)
        return cls(probabilities, [vocabulary[i] for i in best.tolist()], confidence, confidence >= min_confidence)


def check_view_weights(view_weights: dict | None, vocabulary) -> None:
    """A one-line ``ValueError`` unless ``view_weights`` is ``None`` or maps classes of
    ``vocabulary`` to two positive finite weights (global view, crops)."""
    for name, weights in (view_weights or {}).items():
        if name not in vocabulary:
            raise ValueError(f"view_weights names {name!r}, which the vocabulary {list(vocabulary)} lacks")
        if not isinstance(weights, (list, tuple)) or len(weights) != 2 or not all(
                isinstance(w, (int, float)) and 0 < w < math.inf for w in weights):
            raise ValueError(f"view_weights[{name!r}] must be two positive numbers (global view, crops), got {weights}")


class RouterInference:
    """Eq. 3 with crop correction, for a module with ``config`` (``vocabulary``, ``image_mean``,
    ``image_std``, ``crop_correction``, ``crop_grid``, ``min_confidence``, optionally
    ``jpeg_max_quality``, ``call_missing_pixels``, ``logit_bias``, ``view_weights``, ``drop_share`` and
    ``shadow_share``), ``logit_scale``, ``degradation_bank``, ``drop_detector`` and ``shadow_detector``
    (each or None), ``input_size`` and ``degradation_vector(images at input_size)``."""

    @property
    def vocabulary(self) -> list[str]:
        return list(self.config.vocabulary)

    def _normalise(self, image: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] as CLIP's input: in the bank's dtype, standardised per channel."""
        image = image.to(self.degradation_bank.dtype)
        mean = torch.tensor(self.config.image_mean, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.config.image_std, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
        return (image - mean) / std

    def crops(self, images: torch.Tensor) -> torch.Tensor:
        """The native-resolution crops of crop correction, (B*n, 3, s, s) image-major, or an
        empty batch when crop correction is off or the image is smaller than ``s``."""
        size, grid = self.input_size, self.config.crop_grid
        h, w = images.shape[-2:]
        if not self.config.crop_correction or h < size or w < size:
            return images[:0, :, :size, :size]
        tops = [(h - size) // 2] if grid == 1 else torch.linspace(0, h - size, grid).round().long().tolist()
        lefts = [(w - size) // 2] if grid == 1 else torch.linspace(0, w - size, grid).round().long().tolist()
        views = [images[..., t : t + size, l : l + size] for t in tops for l in lefts]
        return torch.stack(views, dim=1).flatten(0, 1)

    def view_vectors(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop correction's two views, unit degradation vectors (B, z) each: the resized image's
        ``d_global``, and the mean of the native crops' (``d_global`` again when there are none)."""
        size = self.input_size
        # in float32: bicubic resizing has no bfloat16 kernel on CPU
        resized = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=False,
                                antialias=True).clamp(0, 1)
        d = self.degradation_vector(resized)
        crops = self.crops(images)
        if not crops.shape[0]:
            return d, d
        return d, self.degradation_vector(crops).view(images.shape[0], -1, d.shape[-1]).mean(1)

    def view_similarities(self, images: torch.Tensor, bank: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 2, T): each view's similarity to each bank row, ``d_view @ norm(B)^T / |d_global +
        d_crops|``, so that the two rows sum to eq. 3's ``norm(d) @ norm(B)^T``."""
        bank = (self.degradation_bank if bank is None else bank).float()
        views = torch.stack(self.view_vectors(images), dim=1)
        return views @ bank.T / views.sum(1, keepdim=True).norm(dim=-1, keepdim=True)

    def view_weight_matrix(self) -> torch.Tensor:
        """(2, T): the config's ``view_weights`` by class, the global view's row first (1 for a class
        it leaves out, and everywhere without it: eq. 3 as trained)."""
        weights = getattr(self.config, "view_weights", None) or {}
        return torch.tensor([list(weights.get(name, (1.0, 1.0))) for name in self.vocabulary]).T

    def logits_from_similarities(self, similarities: torch.Tensor) -> torch.Tensor:
        """Eq. 3's logits (B, T) from :meth:`view_similarities`: ``logit_scale`` times their sum over
        the views, each view weighted per class by :meth:`view_weight_matrix`."""
        weights = self.view_weight_matrix().to(similarities)
        return self.logit_scale.exp().to(similarities) * (weights * similarities).sum(1)

    def logits(self, images: torch.Tensor, bank: torch.Tensor | None = None) -> torch.Tensor:
        """``logit_scale * norm(d) @ norm(B)^T`` (B,T) for RGB images in [0, 1], any size, with the
        views weighted per class when the config has ``view_weights``: the argument of eq. 3's
        softmax, and what ``train/train_router.py`` trains on (there with
        ``bank=self.text_bank()`` when the text tower trains too)."""
        return self.logits_from_similarities(self.view_similarities(images, bank))

    def logit_bias_vector(self) -> torch.Tensor:
        """(T,): the config's ``logit_bias`` by class (0 for a class it leaves out), added to eq. 3's
        logits when routing: the prior correction of :func:`~uir.models.router.prior_correction`."""
        bias = getattr(self.config, "logit_bias", None) or {}
        return torch.tensor([float(bias.get(name, 0.0)) for name in self.vocabulary])

    def jpeg_qualities(self, images: torch.Tensor) -> torch.Tensor | None:
        """(B,): the libjpeg quality of each image's JPEG trace
        (:func:`~uir.degradations.jpeg_trace.jpeg_quality`), NaN where it has none, at any quality;
        ``None`` for a router whose config reads no JPEG trace."""
        if getattr(self.config, "jpeg_max_quality", None) is None:
            return None
        return jpeg_quality(images.float())

    def jpeg_trace_qualities(self, images: torch.Tensor, qualities: torch.Tensor | None = None) -> torch.Tensor | None:
        """(B,): :meth:`jpeg_qualities`, NaN also where the trace's quality is above the config's
        ``jpeg_max_quality``; ``None`` for a router whose config reads no JPEG trace. An image is
        called JPEG where it is not NaN (:meth:`exact_traces`). ``qualities``: the
        :meth:`jpeg_qualities` of ``images`` where the caller read them already."""
        qualities = self.jpeg_qualities(images) if qualities is None else qualities
        if qualities is None:
            return None
        return qualities.masked_fill(qualities > self.config.jpeg_max_quality, math.nan)

    def exact_traces(self, images: torch.Tensor, found: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """``{class: (B,) bool}``: the images that carry the exact trace of a class, for the traces
        the config asks for: a JPEG at ``jpeg_max_quality`` or below
        (:func:`~uir.degradations.jpeg_trace.jpeg_quality`) and missing pixels
        (``call_missing_pixels``, :func:`~uir.degradations.masks.missing_mask`, covering at least
        :data:`~uir.degradations.masks.MIN_MISSING_SHARE` of the image), in that order; and last, where
        the vocabulary holds ``clean``, an image of one colour (:func:`one_colour`: a black frame,
        a blank page), which holds nothing to restore.

        ``found`` holds what the caller already knows of ``images`` before it changed them, by
        class: the pipeline finds missing pixels and fills them before routing, so the filled
        images it routes carry no such trace. A class in ``found`` is not searched again; one the
        config does not ask for is ignored."""
        searches, found = {}, found or {}
        if getattr(self.config, "jpeg_max_quality", None) is not None:
            searches[JPEG_CLASS] = lambda: ~self.jpeg_trace_qualities(images).isnan()
        if getattr(self.config, "call_missing_pixels", False):
            searches[MISSING_CLASS] = lambda: finds_missing_pixels(images.float())
        if CLEAN in self.vocabulary:
            searches[CLEAN] = lambda: one_colour(images)
        return {name: (found[name] if name in found else search()).bool().cpu() for name, search in searches.items()}

    def find_with(self, detector, share: float, images: torch.Tensor, known: dict[str, torch.Tensor] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(the detector's map (B,1,H,W), whether each image holds its type (B,) bool)``: the
        images where at least ``share`` of the pixels are sure (the ``coverage`` of a
        :class:`~uir.networks.drops.DropDetector` or :class:`~uir.networks.shadows.ShadowDetector`).
        An image with a trace already found (``known``: exact traces, :meth:`exact_traces`, or an
        earlier detector's) holds none: exact evidence outranks a learned map (a JPEG's blocks drew
        the drop detector's false drops), and an image gets one trace. The detector does not run
        on such an image; its map there is 0."""
        skip = torch.zeros(len(images), dtype=torch.bool)
        for traced in (known or {}).values():
            skip |= traced.bool().cpu()
        if not bool(skip.any()):  # the whole batch, without a copy of it
            found_map, sure = detector.coverage(images.float())
            return found_map, (sure >= share).cpu()
        found_map = torch.zeros(len(images), 1, *images.shape[-2:], device=images.device)
        found = torch.zeros(len(images), dtype=torch.bool)
        todo = (~skip).nonzero().flatten()
        if len(todo):
            rows_map, sure = detector.coverage(images[todo.to(images.device)].float())
            found_map.index_copy_(0, todo.to(images.device), rows_map.to(found_map))
            found[todo] = (sure >= share).cpu()
        return found_map, found

    def find_drops(self, images: torch.Tensor, known: dict[str, torch.Tensor] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(the drops' alpha, whether each image has drops)``: :meth:`find_with` the
        ``drop_detector`` and ``drop_share``. Only for a router with a drop detector."""
        return self.find_with(self.drop_detector, self.config.drop_share, images, known)

    def find_shadows(self, images: torch.Tensor, known: dict[str, torch.Tensor] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(the shadows' attenuation, whether each image has a cast shadow)``: :meth:`find_with`
        the ``shadow_detector`` and ``shadow_share``. Only for a router with a shadow detector."""
        return self.find_with(self.shadow_detector, self.config.shadow_share, images, known)

    def detectors(self) -> list[tuple[str, object]]:
        """``[(class, find)]`` for the detectors the router holds, in the order they are searched:
        raindrops (:meth:`find_drops`), then cast shadows (:meth:`find_shadows`)."""
        held = ((RAINDROP_CLASS, "drop_detector", self.find_drops), (SHADOW_CLASS, "shadow_detector", self.find_shadows))
        return [(name, find) for name, attribute, find in held if getattr(self, attribute, None) is not None]

    def traces(self, images: torch.Tensor, found: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """``{class: (B,) bool}``: the images that carry the trace of a class: the exact ones
        (:meth:`exact_traces`) and those of the detectors the router holds (:meth:`detectors`; or
        ``found``'s), each image one at most. Exact traces win where an image carries several:
        missing pixels, then an image of one colour, last."""
        found = found or {}
        traces = self.exact_traces(images, found)
        for name, find in self.detectors():
            traces = {name: found[name].bool().cpu() if name in found else find(images, traces)[1], **traces}
        return traces

    def forward(self, images: torch.Tensor, found: dict[str, torch.Tensor] | None = None) -> RouterOutput:
        """Route a batch of RGB images in [0, 1], (B,3,H,W), any size: eq. 3's ``s_o``, the top
        degradation per image and its confidence (with the config's ``logit_bias``, if any, added to
        the logits). An image with a trace (:meth:`traces`) gets
        ``s_o`` one-hot on the trace's class instead; a trace's absence changes nothing.

        Args:
            images: (B,3,H,W) RGB in [0, 1].
            found: traces the caller already found, ``{class: (B,) bool}`` (:meth:`traces`).

        Returns:
            :class:`RouterOutput`.
        """
        logits = self.logits(images)
        probabilities = (logits + self.logit_bias_vector().to(logits)).softmax(-1)
        for name, traced in self.traces(images, found).items():  # exact evidence outranks the learned call
            call = F.one_hot(torch.tensor(self.vocabulary.index(name)), probabilities.shape[-1])
            probabilities = torch.where(traced.to(probabilities.device)[:, None], call.to(probabilities), probabilities)
        return RouterOutput.read(probabilities, self.vocabulary, self.config.min_confidence)


def one_colour(images: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the ``images`` (B,C,H,W) whose every pixel holds one colour."""
    return (images == images[..., :1, :1]).flatten(1).all(1)


class RuntimeRouter(RouterInference, nn.Module):
    """A saved :class:`~uir.models.router.DegradationRouter` for inference only: its vision tower (the
    DA-CLIP controller's when it has one: that tower gives ``d``), ``logit_scale`` and bank.
    It routes exactly as the saved router; it cannot train or grow its vocabulary."""

    def __init__(self, config: dict):
        super().__init__()
        clip = config["clip_config"]
        check_view_weights(config.get("view_weights"), config["vocabulary"])
        self.config = SimpleNamespace(**config)
        self.tower = vision_tower(clip["vision_cfg"], clip["embed_dim"], quick_gelu=config.get("quick_gelu", False))
        self.logit_scale = nn.Parameter(torch.zeros(()), requires_grad=False)
        self.register_buffer("degradation_bank", torch.zeros(len(config["vocabulary"]), clip["embed_dim"]))
        for attribute, detector in DETECTORS.items():
            arguments = config.get(f"{attribute}_config")
            setattr(self, attribute, detector(**arguments) if arguments is not None else None)

    @staticmethod
    def supports(config: dict) -> bool:
        """Whether a saved router's ``config.json`` describes a tower :func:`vision_tower` builds."""
        vision_cfg = config.get("clip_config", {}).get("vision_cfg")
        return vision_cfg is not None and supported_vision_config(vision_cfg)

    @classmethod
    def from_config(cls, config: dict, weights) -> "RuntimeRouter":
        """A saved router from its ``config.json`` contents and its safetensors ``weights`` file."""
        config = {k: v for k, v in config.items() if not k.startswith("_")}
        router = cls(config)
        state = load_safetensors(weights)
        tower = "controller.visual." if config.get("use_controller", True) else "clip.visual."
        load_weights(router.tower, {k.removeprefix(tower): v for k, v in state.items() if k.startswith(tower)}, weights)
        for attribute in DETECTORS:
            detector = getattr(router, attribute)
            if detector is not None:
                load_weights(detector, {k.removeprefix(f"{attribute}."): v for k, v in state.items()
                                        if k.startswith(f"{attribute}.")}, weights)
        router.logit_scale.data = state["logit_scale"].clone()
        router.degradation_bank = state["degradation_bank"].clone()
        return router.eval()  # a ConvNet tower's BatchNorm uses its saved statistics

    @property
    def input_size(self) -> int:
        return self.tower.image_size

    @property
    def device(self) -> torch.device:
        return self.degradation_bank.device

    @property
    def dtype(self) -> torch.dtype:
        return self.degradation_bank.dtype

    def degradation_vector(self, image: torch.Tensor) -> torch.Tensor:
        """Unit degradation vectors ``d`` (B, z) of images in [0, 1] at the tower's input size."""
        return F.normalize(self.tower(self._normalise(image)).float(), dim=-1)


__all__ = ["DETECTORS", "OPENAI_MEAN", "OPENAI_STD", "RouterInference", "RouterOutput", "RuntimeRouter", "check_view_weights",
           "one_colour"]
