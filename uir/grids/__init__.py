"""GRIDS: degradation similarity, grouping search and adaptive model selection.

* :mod:`~uir.grids.ggd`: zero-mean GGD fit by moment matching and closed-form KL (eq. 1).
* :mod:`~uir.grids.representations`: deep degradation representations from any feature
  function (an :class:`uir.models.SRResNet` by default), PCA, per-degradation GGDs.
* :mod:`~uir.grids.nss`: hand-made MSCN natural-scene-statistics features, a pluggable
  alternative to the SRResNet.
* :mod:`~uir.grids.similarity`: the similarity matrix S (sec. 4.2) and its heat-map.
* :mod:`~uir.grids.grouping`: the grouping search (Alg. 1, eq. 4-6).
* :mod:`~uir.grids.selection`: model selection and generalization prediction (eq. 7).
"""

from .ggd import fit_ggd, ggd_kl, log10_kl, moment_ratio
from .grouping import GroupingResult, group_search, rank_groups
from .nss import mscn, nss_features
from .representations import PCA, DegradationStatistics, degradation_statistics, patch_vectors, random_patches
from .selection import GroupSelector, SelectionOutput, second_opinion
from .similarity import heatmap, similarity_matrix, symmetric_distance

__all__ = [
    "PCA", "DegradationStatistics", "GroupSelector", "GroupingResult", "SelectionOutput", "degradation_statistics",
    "fit_ggd", "ggd_kl", "group_search", "heatmap", "log10_kl", "moment_ratio", "mscn", "nss_features", "patch_vectors", "random_patches",
    "rank_groups", "second_opinion", "similarity_matrix", "symmetric_distance",
]
