"""GRIDS adaptive model selection and generalization prediction (sec. 5.2, eq. 7).

For an input image, self-augmented patches give its GGD, ``GGD(d)``. Each group ``C`` of the
partition has the average GGD of its members, ``GGD(C) = mean_i GGD(d_i)`` (parameters
averaged). The selected group is::

    C* = argmin_C KL(GGD(C) || GGD(d))                                  (eq. 7)

and ``log10 KL(GGD(C*) || GGD(d))`` is the predicted-generalization score: small means the
input looks like the training degradations of ``C*``. Above ``threshold`` the input is flagged
out of distribution, without running any restorer. :func:`second_opinion` checks a router's
choice against the selected group.

**Per-group calibration** (our addition; eq. 7 has none). The divergence of an image of a
group's own degradations to that group has a scale that differs from group to group (on
photos, blur groups sit about one decade above noise groups), so one threshold cannot serve
all groups. :meth:`GroupSelector.calibrate` records, per group, the mean and standard
deviation of that in-group divergence on images of its members; from then on every
divergence is standardised, ``z_C = (log10 KL_C - mean_C) / std_C``, before the argmin and
the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from .ggd import fit_ggd, log10_kl
from .representations import PCA, DegradationStatistics, FeatureFunction, patch_vectors, random_patches


@dataclass
class SelectionOutput(BaseOutput):
    """Per image: ``group`` index into ``selector.config.groups``, ``group_names`` (its members),
    ``divergence`` (B, m) log10 KL to every group (standardised per group once calibrated),
    ``score`` = the selected group's divergence, ``out_of_distribution`` = score > threshold
    (all False without a threshold)."""

    group: torch.Tensor
    group_names: list
    divergence: torch.Tensor
    score: torch.Tensor
    out_of_distribution: torch.Tensor


class GroupSelector(ModelMixin, ConfigMixin):
    """Picks the group (and so the grouped model) for each input; see the module docstring.

    Args:
        names: the degradations whose statistics are stored.
        groups: the partition, a list of lists of names (default: each degradation alone).
        feature_dim: length of a patch vector (channels of the feature function).
        n_components: PCA components.
        threshold: score above which an input is out of distribution (``None``: never).
        patch_size, patches_per_image, seed: the self-augmentation of an input.
    """

    @register_to_config
    def __init__(self, names: list, groups: list | None = None, feature_dim: int = 64, n_components: int = 4,
                 threshold: float | None = None, patch_size: int = 64, patches_per_image: int = 16, seed: int = 0):
        super().__init__()
        groups = [[name] for name in names] if groups is None else [list(g) for g in groups]
        members = [name for group in groups for name in group]
        if sorted(members) != sorted(set(members)) or not set(members) <= set(names):
            raise ValueError(f"groups {groups} must be disjoint and drawn from {names}")
        self.register_to_config(groups=groups)
        self.register_buffer("pca_mean", torch.zeros(feature_dim, dtype=torch.float64))
        self.register_buffer("pca_components", torch.zeros(n_components, feature_dim, dtype=torch.float64))
        self.register_buffer("alpha", torch.ones(len(names), n_components, dtype=torch.float64))
        self.register_buffer("sigma", torch.ones(len(names), n_components, dtype=torch.float64))
        # per-group standardisation of the divergence (identity until calibrate())
        self.register_buffer("score_mean", torch.zeros(len(groups), dtype=torch.float64))
        self.register_buffer("score_std", torch.ones(len(groups), dtype=torch.float64))

    @classmethod
    def from_statistics(cls, stats: DegradationStatistics, groups: list | None = None, **kwargs) -> "GroupSelector":
        selector = cls(names=list(stats.names), groups=groups, feature_dim=stats.pca.mean.numel(),
                       n_components=stats.pca.components.shape[0], **kwargs)
        for name, value in (("pca_mean", stats.pca.mean), ("pca_components", stats.pca.components),
                            ("alpha", stats.alpha), ("sigma", stats.sigma)):
            getattr(selector, name).copy_(value)
        return selector

    def group_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``GGD(C)`` of every group: member parameters averaged, (m, k) each."""
        index = {name: i for i, name in enumerate(self.config.names)}
        rows = [[index[name] for name in group] for group in self.config.groups]
        return (torch.stack([self.alpha[r].mean(0) for r in rows]),
                torch.stack([self.sigma[r].mean(0) for r in rows]))

    def image_parameters(self, features: FeatureFunction, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``GGD(d)`` of one (C,H,W) image from its self-augmented patches, (k,) each."""
        generator = torch.Generator().manual_seed(self.config.seed)
        patches = random_patches(image, self.config.patch_size, self.config.patches_per_image, generator)
        pca = PCA(self.pca_mean, self.pca_components)
        return fit_ggd(pca.project(patch_vectors(features, patches)), dim=0)

    @torch.no_grad()
    def raw_divergence(self, images: torch.Tensor, features: FeatureFunction) -> torch.Tensor:
        """(B, m) ``log10 KL(GGD(C) || GGD(image))`` for every group, before any calibration."""
        batch = images.unsqueeze(0) if images.dim() == 3 else images
        if not torch.isfinite(batch).all():
            raise ValueError("images contain NaN or infinity")
        group_alpha, group_sigma = self.group_parameters()
        divergences = []
        for image in batch:
            alpha, sigma = self.image_parameters(features, image)
            divergences.append(log10_kl(group_alpha, group_sigma, alpha, sigma))
        return torch.stack(divergences)

    def standardize(self, divergence: torch.Tensor) -> torch.Tensor:
        """Per-group standardisation of raw divergences (the identity before :meth:`calibrate`)."""
        return (divergence - self.score_mean) / self.score_std

    @torch.no_grad()
    def calibrate(self, images_by_name: dict, features: FeatureFunction) -> None:
        """Record each group's in-group divergence mean and std from ``{name: [images]}`` of its
        members (e.g. degraded training photos). Groups without images stay uncalibrated."""
        for g, group in enumerate(self.config.groups):
            own = [image for name in group for image in images_by_name.get(name, [])]
            if len(own) < 2:
                continue
            values = torch.cat([self.raw_divergence(image, features)[:, g] for image in own])
            self.score_mean[g] = values.mean()
            self.score_std[g] = values.std().clamp(min=1e-6)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, features: FeatureFunction) -> SelectionOutput:
        """``images`` (B,C,H,W) or (C,H,W) in [0, 1]; ``features`` the function the statistics were
        made with (e.g. ``srresnet.degradation_features``)."""
        divergence = self.standardize(self.raw_divergence(images, features))
        score, group = divergence.min(1)
        threshold = self.config.threshold
        flagged = score > threshold if threshold is not None else torch.zeros_like(score, dtype=torch.bool)
        return SelectionOutput(group, [self.config.groups[g] for g in group.tolist()], divergence, score, flagged)


def second_opinion(router_names: list[str], selection: SelectionOutput) -> list[bool]:
    """Per image: does the router's top degradation lie in the group GRIDS selected?"""
    if len(router_names) != len(selection.group_names):
        raise ValueError(f"{len(router_names)} router names for {len(selection.group_names)} selections")
    return [name in group for name, group in zip(router_names, selection.group_names)]
