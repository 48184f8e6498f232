"""Deep degradation representations and their GGD statistics (GRIDS sec. 4.2, 5.2).

A *feature function* maps images (B,3,H,W) to features (B,C,h,w) or (B,C); the default is
:meth:`uir.models.SRResNet.degradation_features`, and any other callable can be plugged in.

Each image is *self-augmented* into random patches (sec. 5.2). Every pixel of a patch's
feature map is one C-vector (a sample of the representation); ``pixels_per_patch`` draws a
random subset of them to bound memory. The vectors are centred and projected onto principal
components (:class:`PCA`, a deterministic SVD), and each coordinate is fitted with a
zero-mean GGD (:mod:`uir.grids.ggd`). Choice (the paper does not spell out the sampling):
pixels rather than pooled patch vectors, because pooled vectors form tight clusters away from
zero that a zero-mean GGD cannot describe, while per-pixel responses are centred and
heavy-tailed, the setting GGDs model well; their spread and tail shape differ by degradation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .. import degradations
from .ggd import fit_ggd

FeatureFunction = Callable[[torch.Tensor], torch.Tensor]


def random_patches(image: torch.Tensor, size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random ``size``x``size`` crops of a (C,H,W) image, as (count,C,size,size)."""
    _, height, width = image.shape
    if height < size or width < size:
        raise ValueError(f"image {height}x{width} is smaller than the {size}px patches")
    tops = torch.randint(0, height - size + 1, (count,), generator=generator).tolist()
    lefts = torch.randint(0, width - size + 1, (count,), generator=generator).tolist()
    return torch.stack([image[:, t:t + size, l:l + size] for t, l in zip(tops, lefts)])


@torch.no_grad()
def patch_vectors(features: FeatureFunction, patches: torch.Tensor, batch_size: int = 32,
                  pixels_per_patch: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Representation samples of (N,3,H,W) patches, (M, C) float64.

    A feature map (B,C,h,w) gives one sample per pixel, ``pixels_per_patch`` of them drawn at
    random with ``generator`` (all when ``None``); a feature function that returns (B,C)
    gives one sample per patch.
    """
    samples = []
    for start in range(0, len(patches), batch_size):
        out = features(patches[start:start + batch_size])
        if out.dim() == 4:
            out = out.flatten(2).transpose(1, 2)  # (B, h*w, C)
            if pixels_per_patch is not None and pixels_per_patch < out.shape[1]:
                pick = torch.randint(0, out.shape[1], (out.shape[0], pixels_per_patch), generator=generator)
                out = out.gather(1, pick.unsqueeze(-1).expand(-1, -1, out.shape[-1]))
            out = out.reshape(-1, out.shape[-1])
        samples.append(out.double())
    return torch.cat(samples)


@dataclass
class PCA:
    """``project(x) = (x - mean) @ components.T``; components are unit rows, signs fixed so the
    largest-magnitude loading of each is positive (so the result does not depend on the SVD's
    sign choice)."""

    mean: torch.Tensor
    components: torch.Tensor

    @classmethod
    def fit(cls, vectors: torch.Tensor, n_components: int) -> "PCA":
        if not 1 <= n_components <= min(vectors.shape):
            raise ValueError(f"n_components must be in [1, {min(vectors.shape)}], got {n_components}")
        mean = vectors.mean(0)
        _, _, vh = torch.linalg.svd(vectors - mean, full_matrices=False)
        components = vh[:n_components]
        signs = components.gather(1, components.abs().argmax(1, keepdim=True)).sign()
        return cls(mean, components * signs)

    def project(self, vectors: torch.Tensor) -> torch.Tensor:
        return (vectors.to(self.mean) - self.mean) @ self.components.T


@dataclass
class DegradationStatistics:
    """GGD parameters per degradation, (n, k) each, in the PCA coordinates ``pca``."""

    names: list
    alpha: torch.Tensor
    sigma: torch.Tensor
    pca: PCA


def degraded_patch_vectors(features: FeatureFunction, clean_images: Sequence[torch.Tensor], name: str,
                           generator: torch.Generator, patch_size: int = 64, patches_per_image: int = 8,
                           severity: str | None = "random", pixels_per_patch: int | None = 256) -> torch.Tensor:
    """Degrade each clean (C,H,W) image with ``name`` and return its representation samples (M, C)."""
    patches = [random_patches(degradations.apply(name, image, generator=generator, severity=severity),
                              patch_size, patches_per_image, generator) for image in clean_images]
    return patch_vectors(features, torch.cat(patches), pixels_per_patch=pixels_per_patch, generator=generator)


def degradation_statistics(features: FeatureFunction, clean_images: Sequence[torch.Tensor], names: Sequence[str],
                           n_components: int = 4, patch_size: int = 64, patches_per_image: int = 8,
                           seed: int = 0, severity: str | None = "random",
                           pixels_per_patch: int | None = 256,
                           pca_names: Sequence[str] | None = None) -> DegradationStatistics:
    """Fit a GGD per degradation in ``names`` on patches of the degraded ``clean_images``.

    The PCA is fitted on the samples of ``pca_names`` (default: all of ``names``) together, so
    degradations kept out of it (unseen ones) are only projected; ``seed`` fixes the
    degradation draws, the patch positions and the sampled pixels.
    """
    generator = torch.Generator().manual_seed(seed)
    vectors = [degraded_patch_vectors(features, clean_images, name, generator, patch_size, patches_per_image,
                                      severity, pixels_per_patch) for name in names]
    fit_on = set(names if pca_names is None else pca_names)
    pca = PCA.fit(torch.cat([v for name, v in zip(names, vectors) if name in fit_on]), n_components)
    fits = [fit_ggd(pca.project(v), dim=0) for v in vectors]
    return DegradationStatistics(list(names), torch.stack([a for a, _ in fits]), torch.stack([s for _, s in fits]),
                                 pca)
