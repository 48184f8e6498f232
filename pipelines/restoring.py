"""The restoring call of uir's pipelines, in plain torch: what a diffusers pipeline and the
diffusers-free runtime share.

:class:`MixtureRestoration` holds everything between an input image and its restored output:
routing (eq. 3-4, :func:`route`), the clean class and classical priors (:func:`mix_outputs`), per-image expert weights
on the adapted components (eq. 5, :meth:`~MixtureRestoration.mixture_scope`), tiling, batching
and the output types; and the checks that install experts on a base. A subclass implements
``restore_tensor`` (:class:`RestorerRestoration`: a regression restorer) and provides
``router``, ``experts`` (an :class:`~uir.lora.ExpertList`), ``device`` and the adapted
components as attributes. :class:`~uir.pipelines.base.ExpertMixturePipeline` adds diffusers'
loading and saving to it; :mod:`uir.pipelines.runtime` runs it without diffusers.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, fields, replace
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from uir.classical import CLIPPED_MEANS, PRIORS, VEIL_BOUNDS, jpeg_chroma, measured_severities
from uir.degradations.jpeg_trace import JPEG_CLASS
from uir.degradations.masks import MISSING_CLASS, harmonic_fill, holds_missing_pixels, missing_mask
from uir.degradations.photometric import SHADOW_CLASS
from uir.degradations.weather import RAINDROP_CLASS
from uir.files import check_weights
from uir.images import to_pil, to_tensor
from uir.lora import (FINGERPRINT_KEY, ExpertError, ExpertList, LoRAExpert, base_fingerprint, fingerprints_match,
                      install_experts, mixture_layers, short_fingerprint)
from uir.lora.mixture import mixture_weights
from uir.lora.strategies import DEFAULT_TOP_K, check_expected_gain_table, expert_weights, split_by_severity
from uir.networks.nafnet import channels_last_input
from uir.networks.router import RouterOutput
from uir.networks.shadows import SURE_ATTENUATION, lift_shadows
from uir.tiling import restore_tiled


def postprocess(images: torch.Tensor, output_type: str):
    """(B,3,H,W) in [0, 1] to ``pil`` (list), ``np`` (B,H,W,3 float32) or ``pt``."""
    if output_type == "pt":
        return images
    if output_type == "np":
        return images.permute(0, 2, 3, 1).float().cpu().numpy().astype(np.float32)
    if output_type == "pil":
        return to_pil(images)
    raise ValueError(f"unknown output_type {output_type!r}; valid choices: pil, np, pt")


#: the least share of each class of a split call (:func:`split_readings`). On noisy training photos
#: the default's router gave low light at most 0.037 (2028 draws, three severities), on dark and noisy
#: ones at least 0.064 at the default severity (docs/default-model.md)
SPLIT_SHARE = 0.05


def split_readings(routed: RouterOutput, vocabulary: list[str], pairs, min_confidence: float
                   ) -> tuple[RouterOutput, RouterOutput | None, list[int]]:
    """``(the first reading, the second reading of the rows split, those rows)`` of the router's
    output ``routed`` over ``vocabulary``, for ``pairs`` of classes ``(undone first, undone
    second)``. An image's call is split where its two likeliest classes are such a pair, in
    either order, together at least ``min_confidence`` and each at least :data:`SPLIT_SHARE`: the
    router learned one degradation at a time, and on a photo that suffers both it shares eq. 3's
    ``s_o`` between them. The first reading gives the first class both shares (the call of what
    is undone first); the second is ``s_o`` with the first class taken out and the rest
    renormalised, the call the restored image is restored by. An image not split keeps its
    reading, as the router gave it, in the first."""
    probabilities, rows, undone = routed.probabilities, [], []
    pairs = [(vocabulary.index(a), vocabulary.index(b)) for a, b in pairs if a in vocabulary and b in vocabulary]
    if not pairs or probabilities.shape[-1] < 2:
        return routed, None, rows
    for row, best in enumerate(probabilities.topk(2, dim=-1).indices.tolist()):
        for a, b in pairs:
            shares = probabilities[row, [a, b]].float()
            if set(best) == {a, b} and float(shares.sum()) >= min_confidence and float(shares.min()) >= SPLIT_SHARE:
                rows.append(row)
                undone.append((a, b))
                break
    if not rows:
        return routed, None, rows
    first, second = probabilities.clone(), probabilities[rows].float().clone()
    names, confidence, known = list(routed.names), routed.confidence.clone(), routed.known.clone()
    for j, (row, (a, b)) in enumerate(zip(rows, undone)):
        first[row, a], first[row, b] = first[row, a] + first[row, b], 0.0
        names[row], confidence[row], known[row] = vocabulary[a], first[row, a], True
        second[j, a] = 0.0
    second /= second.sum(-1, keepdim=True)
    return (RouterOutput(first, names, confidence, known), RouterOutput.read(second, vocabulary, min_confidence), rows)


def route(pipe, images: torch.Tensor, weights, top_k: int, strategy: str, generator, found: dict | None = None,
          measured: dict | None = None, reading: RouterOutput | None = None, pairs=(),
          expected_gains: dict | None = None):
    """``(expert weights (B,K), clean weight (B,), prior weight (B,), the router's output, the
    split calls)`` for a batch; the output is ``None`` when the router is not asked
    (:func:`uir.lora.strategies.expert_weights`). ``found``: traces found before ``images`` were
    changed (the router's :meth:`~uir.networks.router.RouterInference.traces`); ``measured``:
    severity measures already taken of every image, by class
    (:func:`uir.classical.measured_severities`); ``reading``: the router's output for these
    images, read before (the second reading of a split call), which the router is not asked
    again for; ``pairs``: the pairs of classes whose calls are split (:func:`split_readings`;
    an expected-gain table decides their first step in its split bin,
    :data:`uir.lora.strategies.SPLIT_BIN`); ``expected_gains``: a table that decides instead of
    the router's own (None: the router's). The split calls are ``(their second reading, their
    rows)``, or ``None``: none split."""
    router, routed, options, split = pipe.router, None, {}, None
    if router is not None:
        options = {"vocabulary": router.vocabulary, "low_confidence": router.config.low_confidence,
                   "expected_gains": expected_gains if expected_gains is not None
                   else getattr(router.config, "expected_gains", None)}
        if strategy == "router" and weights is None:
            routed = reading if reading is not None else router(images.to(device=router.device, dtype=router.dtype),
                                                                found=found)
            if reading is None and pairs:
                routed, second, rows = split_readings(routed, router.vocabulary, pairs, router.config.min_confidence)
                split = (second, rows) if rows else None
            options.update(probabilities=routed.probabilities, known=routed.known)
            table = options["expected_gains"]
            if table is not None:  # the severity each call shows, where the table was fitted by it
                options["severities"] = measured_severities(
                    [name if split_by_severity(table, name) else None for name in routed.names], images, measured)
                options["split_rows"] = split[1] if split is not None else ()
    chosen, clean, prior = expert_weights(strategy, pipe.expert_list.names, images.shape[0], weights=weights,
                                          top_k=top_k, generator=generator, **options)
    return chosen, clean, prior, routed, split


def prior_outputs(images: torch.Tensor, names: list, rows, computed: dict) -> torch.Tensor:
    """``images`` with each of ``rows`` replaced by its classical prior's output
    (:data:`uir.classical.PRIORS` of ``names[row]``); the other rows unchanged. ``computed`` keeps
    each output by ``(row, name)``, so one call's images never run the same prior twice. A
    single image whose row is replaced comes back as ``computed``'s own tensor, not a copy (a
    12 Mpx image is 144 MB a copy): callers read it and never write to it."""
    for row in rows:
        key = (row, names[row])
        if key not in computed:
            computed[key] = PRIORS[names[row]].restore(images[row : row + 1].float())[0].to(images)
    if images.shape[0] == 1 and rows:
        return computed[(0, names[0])][None]
    out = images.clone()
    for row in rows:
        out[row] = computed[(row, names[row])]
    return out


def network_inputs(experts: list[LoRAExpert], images: torch.Tensor, weights: torch.Tensor,
                   computed: dict) -> torch.Tensor:
    """What the network restores of each image: its classical prior's output where the image's
    leading expert (largest weight) was trained on that output (:attr:`LoRAExpert.prior_input`,
    ``train_uir_lora.py --prior_input``); the image itself elsewhere. ``computed``: as in :func:`prior_outputs`."""
    lead, rows = led_by(experts, weights, lambda expert: expert.prior_input)
    return prior_outputs(images, [experts[k].degradation for k in lead], rows, computed) if rows else images


def led_by(experts: list[LoRAExpert], weights: torch.Tensor, asks: Callable[[LoRAExpert], bool]):
    """``(leading expert index per image, the images whose leading expert asks)``: the leader is
    the largest weight, and it leads only with a weight above 0."""
    lead = weights.argmax(1).tolist() if experts else []
    return lead, [row for row, k in enumerate(lead) if asks(experts[k]) and weights[row, k] > 0]


def veil_bounded(experts: list[LoRAExpert], images: torch.Tensor, weights: torch.Tensor,
                 restored: torch.Tensor) -> torch.Tensor:
    """``restored`` with its class's veil bound (:data:`uir.classical.VEIL_BOUNDS`) applied to each
    image whose leading expert asks for it (:attr:`LoRAExpert.veil_bound`), against its input in ``images``."""
    lead, rows = led_by(experts, weights, lambda expert: expert.veil_bound)
    out = restored.clone() if rows else restored
    for row in rows:
        bound = VEIL_BOUNDS[experts[lead[row]].degradation]
        out[row] = bound(images[row : row + 1].to(out), restored[row : row + 1])[0]
    return out


def restored_after(names: tuple[str, ...], output: "RestorationOutput") -> list[int]:
    """The rows of the images that the router's call in ``output`` named one of ``names`` for and
    that were restored, not kept as they were (their input's share below 1)."""
    if not names or output.degradations is None:
        return []
    return [row for row, name in enumerate(output.degradations)
            if name in names and float(output.clean_weight[row]) < 1]


def gives_a_share(expert: LoRAExpert) -> bool:
    """Whether the pipeline gives part of the expert's output away: to its prior or to the input."""
    return expert.prior_blend > 0 or expert.input_blend > 0


def blended(experts: list[LoRAExpert], images: torch.Tensor, weights: torch.Tensor, restored: torch.Tensor,
            computed: dict) -> torch.Tensor:
    """``restored`` with each image whose leading expert gives a share of its output away
    (:attr:`LoRAExpert.prior_blend` to its type's classical prior, :attr:`LoRAExpert.input_blend`
    back to the input in ``images``) replaced by :meth:`LoRAExpert.blend`. ``computed``: as in
    :func:`prior_outputs`."""
    lead, rows = led_by(experts, weights, gives_a_share)
    if not rows:
        return restored
    to_prior = [row for row in rows if experts[lead[row]].prior_blend > 0]
    priors = (prior_outputs(images, [experts[k].degradation for k in lead], to_prior, computed).to(restored)
              if to_prior else None)
    out = restored.clone()
    for row in rows:
        out[row] = experts[lead[row]].blend(restored[row], priors[row] if row in to_prior else None,
                                            images[row].to(restored))
    return out


def given_shares(experts: list[LoRAExpert], weights: torch.Tensor, clean: torch.Tensor, prior: torch.Tensor):
    """``(weights, clean, prior)`` as :func:`blended` returns them: where the leading expert gives
    ``b`` of its output to its prior and then ``a`` to the input (:meth:`LoRAExpert.blend`), the
    network's shares are scaled by ``(1 - a)(1 - b)``, the prior's becomes ``(1 - a)(p + b (1 - p))``
    and the input's ``(1 - a)(1 - b) c + a``. The veil bounds are not shares and are left out."""
    lead, rows = led_by(experts, weights, gives_a_share)
    if not rows:
        return weights, clean, prior
    weights, clean, prior = weights.clone(), clean.clone(), prior.clone()
    for row in rows:
        b, a = experts[lead[row]].prior_blend, experts[lead[row]].input_blend
        weights[row] *= (1 - a) * (1 - b)
        clean[row] = (1 - a) * (1 - b) * clean[row] + a
        prior[row] = (1 - a) * (prior[row] + b * (1 - prior[row]))
    return weights, clean, prior


def mix_outputs(restore: Callable, x: torch.Tensor, inputs: torch.Tensor, weights: torch.Tensor, clean: torch.Tensor,
                prior: torch.Tensor, prior_images: torch.Tensor | None) -> torch.Tensor:
    """The output-space mixture of :mod:`uir.lora.strategies` per image:
    ``c x + p P(x) + (1 - c - p) restore(inputs, weights / (1 - c - p))``, with ``c`` the clean
    class's (the identity expert's) weight and ``p`` that of the classical prior, whose outputs
    ``prior_images`` holds; ``inputs`` is what the network restores (:func:`network_inputs`: ``x``
    itself unless a prior-guided expert leads). Images whose network share is 0 are not restored at all."""
    network = 1 - clean - prior
    if not bool((network < 1).any()):
        return restore(inputs, weights)
    todo = (network > 0).nonzero().flatten().tolist()
    out = torch.zeros_like(x) if len(todo) < len(x) else None
    if todo:  # the network's share first, into its own output: no image-sized copy beside it
        share = network[todo].clamp(min=1e-12)
        restored = restore(inputs if out is None else inputs[todo], weights[todo] / share[:, None].to(weights))
        restored = restored.to(x).mul_(share.to(x)[:, None, None, None])
        out = restored if out is None else out.index_copy_(0, torch.tensor(todo, device=x.device), restored)
    out.addcmul_(clean.to(x)[:, None, None, None], x)
    if prior_images is not None:
        out.addcmul_(prior.to(x)[:, None, None, None], prior_images.to(x))
    return out


@dataclass
class RestorationOutput:
    """Restored ``images`` plus, per image, the expert ``weights`` (B,K) over ``expert_names``,
    the ``clean_weight`` (B,) of the input kept unchanged (the router's ``clean`` class), and
    what the router said: the top ``degradations``, their ``confidence`` and whether the
    degradation is ``known`` (confidence >= the router's ``min_confidence``); these three are
    None when no router ran. ``missing`` (B,) is the share of pixels found missing and filled
    (:func:`fill_missing_pixels`; ``None`` when the call does not look for them).
    ``prior_weight`` (B,) is the share of the output given to a classical prior
    (:data:`uir.classical.PRIORS`): the top degradation's, where an expected-gain table gives it
    one, or the leading expert's, where the expert blends with it. The shares are those of the
    output returned: an expert's ``prior_blend`` and ``input_blend`` move its weight to
    ``prior_weight`` and ``clean_weight`` (:func:`given_shares`). ``drops`` (B,) is
    the share of pixels found under raindrops and cleared (:func:`clear_found_drops`; ``None``
    when the call does not look for them), ``shadows`` (B,) the share found surely shadowed in
    the images whose shadow was lifted (:func:`lift_found_shadows`; ``None`` likewise).
    ``chroma_radius`` (B,) is the radius of the guided filter that re-estimated a JPEG's restored
    chroma from its luma (:func:`uir.classical.jpeg_chroma`; 0 where it did not run; ``None`` when
    the call does not look for JPEG traces). ``then`` (a list of B, or ``None`` when no image was
    restored twice) holds, for an image restored for a class of
    :attr:`MixtureRestoration.routes_again_after` and then routed again, or restored for the first
    class of a split call (:attr:`MixtureRestoration.split_calls`) and then for the rest of it,
    that second call's output for it alone (:meth:`row`, ``images`` left out: the image returned
    is the second call's), and ``None`` for the others; the fields above describe the first call."""

    images: object
    weights: torch.Tensor = None
    expert_names: list = None
    clean_weight: torch.Tensor = None
    degradations: list = None
    confidence: torch.Tensor = None
    known: torch.Tensor = None
    missing: torch.Tensor = None
    prior_weight: torch.Tensor = None
    drops: torch.Tensor = None
    shadows: torch.Tensor = None
    chroma_radius: torch.Tensor = None
    then: list = None

    def row(self, i: int) -> "RestorationOutput":
        """The output of image ``i`` alone: every per-image field cut to that one image."""
        cut = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in cut.items():
            if name != "expert_names" and value is not None:
                cut[name] = value[i : i + 1]
        return type(self)(**cut)


def fill_masked(images: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images with the pixels of mask (B,1,H,W) filled, the share of pixels filled (B,))``:
    :func:`~uir.degradations.masks.harmonic_fill`; images with an empty mask come back unchanged."""
    share = mask.flatten(1).mean(1)
    return (harmonic_fill(images, mask) if bool((share > 0).any()) else images), share


def fill_missing_pixels(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images with their missing pixels filled, the share of pixels filled (B,))``: the pixels
    :func:`~uir.degradations.masks.missing_mask` finds, :func:`fill_masked`."""
    return fill_masked(images, missing_mask(images))


def clear_found_drops(router, images: torch.Tensor, exact: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images with their raindrops cleared, the share of pixels cleared (B,))``: in the images
    where the router's drop detector finds drops (:meth:`~uir.networks.router.RouterInference.find_drops`;
    ``exact``: their exact traces), the pixels under them filled (:func:`fill_masked`); the others
    come back unchanged."""
    mask, found = router.find_drops(images.to(router.device), exact)
    return fill_masked(images, mask.to(images) * found.to(images)[:, None, None, None])


def lift_found_shadows(router, images: torch.Tensor, known: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images with their cast shadow lifted, the share of pixels surely shadowed (B,))``: in
    the images where the router's shadow detector finds a shadow
    (:meth:`~uir.networks.router.RouterInference.find_shadows`; ``known``: the traces already
    found), :func:`~uir.networks.shadows.lift_shadows` by its attenuation; the others come back
    unchanged (share 0)."""
    attenuation, found = router.find_shadows(images.to(router.device), known)
    attenuation = attenuation.to(images) * found.to(images)[:, None, None, None]
    return lift_shadows(images, attenuation), (attenuation > SURE_ATTENUATION).flatten(1).to(images).mean(1)


class MixtureRestoration:
    """The call and the expert installation; see the module docstring.

    Subclasses set ``adapted_components`` (names of the components experts adapt) and
    ``size_multiple`` (inputs are reflect-padded to it), and implement ``restore_tensor``.
    """

    adapted_components: tuple[str, ...] = ()
    size_multiple = 8
    #: pixels of reflected border each image (or tile) is restored with and cropped from, so its
    #: edge rows are computed like interior ones (:mod:`uir.tiling`); 0 keeps the method as
    #: published (UIR-LoRA's one step on SD-turbo)
    border_margin = 0
    #: with ``tile_size="auto"``, images with a side above this are restored in equal tiles of at
    #: most this size, so memory stays bounded (the default restorer untiled needed ~9 GB for a
    #: 12 Mpx photo); 512 is the resolution SD-turbo was trained at
    auto_tile_size = 512
    #: look for missing pixels (one exact value in every channel) and fill them harmonically
    #: before anything else; the router does not then restore a filled image (see ``__call__``).
    #: Off here: UIR-LoRA as published leaves inpainting to its expert
    fills_missing_pixels = False
    #: with the router choosing, re-estimate the restored chroma of an image whose JPEG trace it
    #: found from the restored luma (:func:`uir.classical.jpeg_chroma`). Off here: UIR-LoRA as
    #: published leaves JPEG to its expert
    restores_jpeg_chroma = False
    #: with the router choosing, the classes after whose restoration an image is routed again and
    #: restored as that second call says: an image the first call named one of them for (a JPEG
    #: by its trace, which outranks the learned call) and restored. Such a class is the last thing
    #: done to a photo (the file format; the sensor's noise, after what the optics saw), so what
    #: befell the photo before it (low light, haze, rain) is left once it is undone. The second
    #: call is the learned one (eq. 3) alone: the exact traces and the detectors were read on the
    #: image as given (on a restored JPEG the drop detector found drops where there were none:
    #: docs/default-model.md). Empty here: UIR-LoRA as published routes once
    routes_again_after: tuple[str, ...] = ()
    #: with the router choosing, pairs of classes ``(undone first, undone second)`` whose call the
    #: router splits on a photo that suffers both (:func:`split_readings`): such an image is
    #: restored as a call of the first class, then as the router's call with that class taken out
    #: (through the expected-gain table, where the router has one). The second class is read on
    #: the image as given, not on the restored one (routed again, denoised photos were misread:
    #: docs/default-model.md). Where the first class's restoration estimates the mean of clipped
    #: noisy values (:data:`uir.classical.CLIPPED_MEANS`: noise), it is mapped back to the scene's
    #: values before the second: a dark photo's clipped noise only rises, and brightening it
    #: would multiply the gap. Empty here: UIR-LoRA as published mixes the experts of a mixture
    #: in one step (eq. 4-5)
    split_calls: tuple[tuple[str, str], ...] = ()
    output_class = RestorationOutput

    # --- experts -----------------------------------------------------------------------------
    @property
    def expert_list(self) -> ExpertList:
        """The experts: the ``experts`` component, or an empty list where that optional
        component is None."""
        return self.experts if self.experts is not None else ExpertList()

    def _set_up_experts(self) -> None:
        """Called by subclasses once the components are registered: refuse a router of NaN or absurd
        weights, fingerprint the base (before
        any mixture is installed), check the bank's experts against it and install them."""
        self.base_fingerprint = base_fingerprint(self._base_models())
        if self.router is not None:  # a router of NaN weights would call every image "nan" confident
            check_weights(self.router.state_dict(), "router", ValueError)
        for expert in self.expert_list.experts:
            self._check_expert(expert)
        if self.expert_list.experts:
            self._install_experts()

    def rebase_experts(self) -> None:
        """Fingerprint the base again and record it in every expert, so the experts, saved, load
        onto the base as it is now and onto no other. For a base changed outside the layers
        experts adapt (:meth:`uir.models.NAFNet.use_bilinear_upsampling`,
        ``train/convert_upsampling.py``); the caller vouches for that."""
        self.base_fingerprint = base_fingerprint(self._base_models())
        for expert in self.expert_list.experts:
            expert.extra[FINGERPRINT_KEY] = self.base_fingerprint

    def _base_models(self) -> dict:
        return {name: getattr(self, name) for name in self.adapted_components}

    def _check_expert(self, expert: LoRAExpert) -> None:
        """One-line :class:`ExpertError` for an expert that does not belong on this base."""
        unknown = sorted(set(expert.components) - set(self.adapted_components))
        if unknown:
            raise ExpertError(f"expert {expert.degradation!r} adapts {unknown}; this pipeline adapts "
                              f"{list(self.adapted_components)}")
        if expert.prior_input and expert.degradation not in PRIORS:
            raise ExpertError(f"expert {expert.degradation!r} restores a classical prior's output, but uir has no "
                              f"prior for {expert.degradation!r} (it has: {', '.join(sorted(PRIORS))})")
        if expert.prior_blend and (expert.degradation not in PRIORS or not 0 < expert.prior_blend <= 1):
            raise ExpertError(f"expert {expert.degradation!r} gives {expert.prior_blend} of its output to a classical "
                              f"prior; that needs a share in (0, 1] and a type with a prior ({', '.join(sorted(PRIORS))})")
        if expert.input_blend and not 0 < expert.input_blend <= 1:
            raise ExpertError(f"expert {expert.degradation!r} gives {expert.input_blend} of its output back to its input; "
                              "that needs a share in (0, 1]")
        if expert.veil_bound and expert.degradation not in VEIL_BOUNDS:
            raise ExpertError(f"expert {expert.degradation!r} asks for a veil bound, but uir knows no veil for "
                              f"{expert.degradation!r} (it knows: {', '.join(sorted(VEIL_BOUNDS))})")
        theirs = expert.extra.get(FINGERPRINT_KEY)
        if theirs and not fingerprints_match(str(theirs), self.base_fingerprint, self._base_models()):
            raise ExpertError(f"expert {expert.degradation!r} was trained on base {short_fingerprint(str(theirs))} "
                              f"({expert.base_model or '?'}), but this pipeline's base is "
                              f"{short_fingerprint(self.base_fingerprint)} ({self.expert_list.base_model or '?'})")
        if theirs:  # a matching fingerprint of the first form is saved in the current one from now on
            expert.extra[FINGERPRINT_KEY] = self.base_fingerprint
        for name, component in expert.components.items():
            component.check(getattr(self, name), where=f"expert {expert.degradation!r}, {name}: ")

    def _install_experts(self) -> None:
        for name in self.adapted_components:
            install_experts(getattr(self, name), [e.components.get(name) for e in self.expert_list.experts])

    def mixture_scope(self, weights: torch.Tensor) -> ExitStack:
        """Per-image expert weights on every adapted component that holds experts.

        When every image of the batch has the same weights (top-1 routing to one expert, manual
        weights), the layers get that one row: each then merges ``W + sum_k s_k c_k B_k A_k``
        for the call or runs the stacked experts, whichever its cost model finds cheaper at the
        input's size (:class:`uir.lora.LoRAMixtureLayer`); fusing the whole model instead was
        four times slower on SD-turbo (docs/performance.md). All-zero weights (the base alone,
        e.g. the router's low-confidence policy) enter no mixture at all.
        """
        stack = ExitStack()
        if weights is not None and not bool(weights.any()):
            return stack
        if weights is not None and weights.shape[0] > 1 and bool((weights == weights[:1]).all()):
            weights = weights[:1]
        for name in self.adapted_components:
            model = getattr(self, name)
            if mixture_layers(model):
                stack.enter_context(mixture_weights(model, weights))
        return stack

    # --- inference ---------------------------------------------------------------------------
    def restore_tensor(self, x: torch.Tensor, weights: torch.Tensor, generator=None, sample_posterior: bool = False):
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, image, weights=None, top_k: int = DEFAULT_TOP_K, strategy: str = "router",
                 output_type: str = "pil", generator: torch.Generator | None = None, return_dict: bool = True,
                 sample_posterior: bool = False, tile_size: int | str | None = "auto", tile_overlap: int = 32,
                 batch_size: int = 4, fill_missing: bool | None = None, expected_gains: dict | None = None):
        """Restore one image or a batch of same-size images.

        Args:
            image: a PIL image, a numpy array ((H,W,C) or (B,H,W,C); uint8, uint16 or float in
                [0, 1]), a torch tensor ((C,H,W) or (B,C,H,W) in [0, 1]) or a list of these.
            weights: expert weights given by the caller instead of the router: a
                ``{degradation: weight}`` dict, or a (K,)/(B,K) tensor over ``self.expert_list.names``.
            top_k: experts the router keeps per image (eq. 4); :data:`~uir.lora.strategies.DEFAULT_TOP_K`.
            strategy: ``router``, ``manual``, ``average`` or ``random`` (UIR-LoRA Table 3).
            output_type: ``pil`` (list of images), ``np`` ((B,H,W,3) float32) or ``pt`` ((B,3,H,W)).
            generator: the ``random`` strategy's draws, and the VAE posterior sample.
            return_dict: return a :attr:`output_class`; else a tuple of its fields, in order
                (images, weights, expert_names, clean_weight, degradations, confidence, known, missing,
                prior_weight, drops, shadows, chroma_radius, then).
            sample_posterior: sample the VAE latent instead of taking its mode (SD-turbo only).
            tile_size: restore in overlapping, blended tiles of this many pixels (bounded memory);
                ``"auto"``: tiles of at most ``auto_tile_size`` for images with a longer side;
                ``None``: whole images.
            tile_overlap: pixels shared by neighbouring tiles (at most a quarter of a tile).
            batch_size: images restored together.
            fill_missing: fill missing pixels first (default: :attr:`fills_missing_pixels`). With
                the router choosing, a filled image is then kept as it is: the fill is its
                restoration, and no expert runs on it (routed, every expert lowered a filled
                photo's PSNR: docs/default-model.md); but a fill of less than
                :data:`~uir.degradations.masks.MIN_MISSING_SHARE` of the image is not its
                degradation, and the filled image is routed. Manual weights still apply after the fill.
                Then, with the router choosing and holding a drop detector, raindrops are found
                and cleared the same way (:func:`clear_found_drops`), and a cleared image is kept;
                then, with a shadow detector, a cast shadow is found and lifted
                (:func:`lift_found_shadows`), and a lifted image is kept. Last, with the router
                choosing and :attr:`restores_jpeg_chroma`, an image with a JPEG trace that was
                restored (not kept as it was) has its chroma re-estimated from its restored luma;
                an image whose call the router split between a pair of :attr:`split_calls` (the
                default's: noise and low light) is restored for the first class of the pair, then
                for the rest of that call (a first class in :data:`uir.classical.CLIPPED_MEANS`,
                noise, has its output mapped back from the mean of clipped values before); and an
                image the first call restored for a class of :attr:`routes_again_after` (the
                default's: a JPEG) is then routed again by the learned call alone (no trace or
                detector read again) and restored as that call says.
            expected_gains: an expected-gain table that decides this call's routed images instead
                of the router's own (:func:`uir.lora.strategies.expected_gain_table`; checked by
                :func:`~uir.lora.strategies.check_expected_gain_table`); the router is not changed.
                None: the router's table, or its confidence threshold where it has none.

        Returns:
            :attr:`output_class` with the images, the expert weights and the router's verdict.
        """
        images = to_tensor(image)
        if tile_size == "auto":
            tile_size = self.auto_tile_size if max(images.shape[-2:]) > self.auto_tile_size else None
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if expected_gains is not None:
            check_expected_gain_table(expected_gains)
        options = (top_k, strategy, generator, sample_posterior, tile_size, tile_overlap, batch_size, expected_gains)
        output, found, split = self._restore(images, weights, *options, self.fills_missing_pixels if fill_missing
                                             is None else fill_missing)
        second, rows = split or (None, [])
        for row in rows:  # a first step that estimates clipped values' mean, mapped back before the second
            unclip = CLIPPED_MEANS.get(output.degradations[row])
            if unclip is not None:
                first = output.images[row : row + 1]
                output.images[row : row + 1] = unclip(images[row : row + 1].to(first), first)
        del images  # the second calls below hold what they need: the first's output
        if rows:  # the first class of a split call undone, the second (the attribute's comment)
            output = self._then(output, rows, options, found, second)
        rows = [row for row in restored_after(self.routes_again_after, output) if output.then is None
                or output.then[row] is None]
        if rows:  # that class undone, the image is routed again by the learned call (the attribute's comment)
            output = self._then(output, rows, options, found)
        output.images = postprocess(output.images, output_type)
        return output if return_dict else tuple(getattr(output, f.name) for f in fields(output))

    def _then(self, output: RestorationOutput, rows: list[int], options: tuple, found: dict,
              reading: RouterOutput | None = None) -> RestorationOutput:
        """``output`` with the images of ``rows`` restored once more, routed by the learned call
        alone or by ``reading`` (one row each), and that call's output kept for each (``then``).
        ``found``: the first call's traces, not looked for again."""
        known = {name: torch.zeros(len(rows), dtype=torch.bool) for name in found}
        whole = len(rows) == len(output.images)
        again, _, _ = self._restore(output.images if whole else output.images[rows], None, *options, False, known,
                                    reading)
        output.images[rows] = again.images.to(output.images)
        then = list(output.then) if output.then is not None else [None] * len(output.images)
        for j, i in enumerate(rows):
            then[i] = replace(again.row(j), images=None)
        return replace(output, then=then)  # a new output: a diffusers one lists its fields when made

    def _restore(self, images: torch.Tensor, weights, top_k: int, strategy: str, generator, sample_posterior: bool,
                 tile_size: int | None, tile_overlap: int, batch_size: int, expected_gains: dict | None,
                 fill_missing: bool, known: dict[str, torch.Tensor] | None = None, reading: RouterOutput | None = None
                 ) -> tuple[RestorationOutput, dict[str, torch.Tensor], tuple | None]:
        """One routing and restoration of :meth:`__call__` on (B,3,H,W) ``images``: its output, the
        images in [0, 1], the traces found, ``{class: (B,) bool}``, and the split calls
        (:func:`route`). ``known``: traces known before, which neither the router nor its
        detectors look for again (a second call: none of those the first looked for);
        ``reading``: the router's call, read before (a split call's second). Only a first call
        (``known`` None) splits calls (:attr:`split_calls`): a split is read on the image as given."""
        missing = drops = shadows = None
        found = dict(known or {})  # the router sees the filled and cleared images: it is told what was there
        if fill_missing:
            images, missing = fill_missing_pixels(images)
            found[MISSING_CLASS] = holds_missing_pixels(missing)
        routing = weights is None and strategy == "router"
        detectors = dict(self.router.detectors()) if routing and self.router is not None else {}
        qualities, measured = None, {}  # of the JPEG traces, read once for the router, the chroma step and the table
        if routing and self.router is not None:
            if self.restores_jpeg_chroma and JPEG_CLASS not in found:
                read = self.router.jpeg_qualities(images.to(self.router.device))
                if read is not None:
                    qualities = self.router.jpeg_trace_qualities(images, read)
                    found[JPEG_CLASS], measured[JPEG_CLASS] = ~qualities.isnan(), read
            found.update(self.router.exact_traces(images.to(self.router.device), found))
        if RAINDROP_CLASS in detectors and RAINDROP_CLASS not in found:
            images, drops = clear_found_drops(self.router, images, found)
            found[RAINDROP_CLASS] = drops.cpu() > 0
        if SHADOW_CLASS in detectors and SHADOW_CLASS not in found:
            images, shadows = lift_found_shadows(self.router, images, found)
            found[SHADOW_CLASS] = shadows.cpu() > 0
        chosen, clean, prior, routed, split = route(self, images.to(self.device), weights, top_k, strategy, generator,
                                                    found, measured, reading, self.split_calls if known is None else (),
                                                    expected_gains)
        done = [found[name] for name in (MISSING_CLASS, RAINDROP_CLASS, SHADOW_CLASS) if name in found]
        if done and routing:  # the fill, the clearing or the lifting is the restoration: kept as it is
            done = torch.stack(done).any(0).to(clean.device)
            chosen, clean = chosen.masked_fill(done[:, None], 0.0), clean.masked_fill(done, 1.0)
            prior = prior.masked_fill(done, 0.0)
        prior_images, computed = None, {}
        if bool((prior > 0).any()):  # the top class's classical prior, where the rule gave it a share
            prior_images = prior_outputs(images, routed.names, (prior > 0).nonzero().flatten().tolist(), computed)
        inputs = network_inputs(self.expert_list.experts, images, chosen, computed)
        splits = [t.split(batch_size) for t in (images, chosen, clean, prior, inputs)]
        splits.append(prior_images.split(batch_size) if prior_images is not None else [None] * len(splits[0]))
        chunks = list(zip(*splits))
        outputs = []
        for x, rows, kept, share, network_x, classical in self.progress_bar(chunks, desc="restoring",
                                                                             disable=len(chunks) <= 1):
            restore = lambda t, w: restore_tiled(  # noqa: E731
                lambda tile: self.restore_tensor(tile, w, generator, sample_posterior).to(tile.dtype),
                t, tile_size, tile_overlap, multiple=self.size_multiple, margin=self.border_margin)
            outputs.append(mix_outputs(restore, x.to(self.device), network_x.to(self.device), rows, kept, share,
                                       classical))
        restored = veil_bounded(self.expert_list.experts, images, chosen,
                                outputs[0] if len(outputs) == 1 else torch.cat(outputs))
        restored = blended(self.expert_list.experts, images, chosen, restored, computed)
        chroma = None
        if qualities is not None:
            chroma = torch.zeros(len(images), dtype=torch.long)
            rows = (found[JPEG_CLASS] & (clean.cpu() < 1)).nonzero().flatten().tolist()
            if rows:
                restored[rows], radii = jpeg_chroma(images[rows].to(restored), restored[rows], qualities[rows])
                chroma[rows] = torch.tensor(radii)
        chosen, clean, prior = given_shares(self.expert_list.experts, chosen, clean, prior)
        verdict = {} if routed is None else {"degradations": routed.names, "confidence": routed.confidence,
                                             "known": routed.known}
        output = self.output_class(images=restored, weights=chosen, expert_names=self.expert_list.names,
                                   clean_weight=clean, missing=missing, prior_weight=prior, drops=drops, shadows=shadows,
                                   chroma_radius=chroma, **verdict)
        return output, found, split

    # --- progress bar (diffusers' interface, also without diffusers) --------------------------
    def set_progress_bar_config(self, **kwargs) -> None:
        """tqdm options for the call's bar, e.g. ``disable=True``; they override uir's defaults."""
        self._progress_bar_config = kwargs

    def progress_bar(self, iterable=None, total=None, **defaults):
        """A tqdm bar over ``iterable`` with ``defaults`` and the options of
        :meth:`set_progress_bar_config` (which win)."""
        return tqdm(iterable, total=total, **{**defaults, **getattr(self, "_progress_bar_config", {})})


class RestorerRestoration(MixtureRestoration):
    """:class:`MixtureRestoration` around a regression restorer ``f(x) -> x``, the ``restorer``
    attribute (a module mapping (B,3,H,W) in [0, 1] to the same), whose ``size_multiple``
    (default 8) sets the padding."""

    adapted_components = ("restorer",)
    #: the embedded default drew 1-px lines along its edges without it (docs/default-model.md)
    border_margin = 8
    #: held out, the harmonic fill beat both the inpainting expert and OpenCV's Telea (docs/default-model.md)
    fills_missing_pixels = True
    #: JPEG at quality 10: +0.33 dB on 20 training photos over the default's output (docs/default-model.md)
    restores_jpeg_chroma = True
    #: a JPEG of a dark, hazy, rainy or snowy photo: +1.90 dB at quality 10 and +3.12 at 30 over nine
    #: JPEG mixtures on the set-aside photos, fewer images made worse. Noise is not in it: after
    #: noise the second call made more images worse at mild severity (21 -> 25 of 702 over three
    #: seeds), the rule's bar, though it raised the mean of 18 rows (the types, clean, seven noisy
    #: mixtures) by 0.23 +- 0.05 dB there (docs/default-model.md)
    routes_again_after = ("jpeg-compressed",)
    #: a dark photo's noise: the router, trained on one type at a time, splits its call between noise
    #: and low light; undone in that order, the dark noisy photos of the set-aside folder gained
    #: 2.5-3.8 dB over three seeds at each severity, every other type unchanged (docs/default-model.md)
    split_calls = (("noisy", "low-light"),)
    #: larger than the base class's: a NAFNet block runs its full-resolution maps in cache-sized
    #: bands (:data:`uir.networks.nafnet.BAND_VALUES`), so tiles bound memory, not speed; the
    #: default restores 1024x1024 faster whole than in 512 px tiles (docs/performance.md)
    auto_tile_size = 1024

    @property
    def size_multiple(self) -> int:
        return int(getattr(self.restorer, "size_multiple", 8))

    def restore_tensor(self, x: torch.Tensor, weights: torch.Tensor, generator=None, sample_posterior: bool = False):
        """Restore (B,3,H,W) images in [0, 1] whose sizes are multiples of ``size_multiple``.

        Inference runs channels-last (NHWC), faster for the default (docs/performance.md). The
        weights are converted in place, outside training.
        """
        x = channels_last_input(self.restorer, x)
        with self.mixture_scope(weights):
            restored = self.restorer(x)
        return restored.float().clamp(0, 1).contiguous()


__all__ = ["MixtureRestoration", "RestorationOutput", "RestorerRestoration", "blended", "clear_found_drops", "fill_masked", "lift_found_shadows",
           "fill_missing_pixels", "mix_outputs",
           "network_inputs", "postprocess", "prior_outputs", "route"]
