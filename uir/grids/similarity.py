"""The degradation similarity matrix S of GRIDS (sec. 4.2) and its heat-map.

``S[i, j] = log10 KL(GGD_i || GGD_j)``: a distance, smaller means more similar. KL is not
symmetric, so neither is S; :func:`symmetric_distance` averages it with its transpose for
grouping. The diagonal is the floor of :func:`uir.grids.ggd.log10_kl` (KL = 0).
"""

from __future__ import annotations

import torch

from .ggd import log10_kl
from .representations import DegradationStatistics


def similarity_matrix(stats: DegradationStatistics) -> torch.Tensor:
    """(n, n) float64: ``log10 KL`` from degradation ``i`` to degradation ``j``."""
    return log10_kl(stats.alpha[:, None], stats.sigma[:, None], stats.alpha[None], stats.sigma[None])


def symmetric_distance(matrix: torch.Tensor) -> torch.Tensor:
    """``(S + S^T) / 2``, the order-free distance used to rank candidate groups."""
    return (matrix + matrix.T) / 2


def _color(t: float) -> tuple[int, int, int]:
    """Dark blue (t=0, similar) through teal to yellow (t=1, distant)."""
    stops = ((0.0, (40, 30, 110)), (0.5, (30, 150, 140)), (1.0, (250, 230, 60)))
    for (t0, c0), (t1, c1) in zip(stops, stops[1:]):
        if t <= t1:
            w = (t - t0) / (t1 - t0)
            return tuple(round(a + (b - a) * w) for a, b in zip(c0, c1))
    return stops[-1][1]


def heatmap(matrix: torch.Tensor, names: list[str], cell: int = 44):
    """A PIL heat-map of ``matrix`` with each value written in its cell; the diagonal is grey
    and the colour scale spans the off-diagonal values."""
    from PIL import Image, ImageDraw

    n = len(names)
    if matrix.shape != (n, n):
        raise ValueError(f"matrix {tuple(matrix.shape)} does not match {n} names")
    off = matrix[~torch.eye(n, dtype=torch.bool)]
    low, high = (off.min().item(), off.max().item()) if n > 1 else (0.0, 1.0)
    label = 110
    image = Image.new("RGB", (label + n * cell, label + n * cell), "white")
    draw = ImageDraw.Draw(image)
    for i, name in enumerate(names):
        draw.text((4, label + i * cell + cell // 2 - 6), name[:17], fill="black")
        column = Image.new("RGB", (label, 14), "white")
        ImageDraw.Draw(column).text((2, 1), name[:17], fill="black")
        rotated = column.rotate(90, expand=True)
        image.paste(rotated, (label + i * cell + cell // 2 - 7, 0))
    for i in range(n):
        for j in range(n):
            box = (label + j * cell, label + i * cell, label + (j + 1) * cell - 1, label + (i + 1) * cell - 1)
            value = matrix[i, j].item()
            fill = (200, 200, 200) if i == j else _color((value - low) / max(high - low, 1e-12))
            draw.rectangle(box, fill=fill)
            if i != j:
                text = "black" if sum(fill) > 380 else "white"
                draw.text((box[0] + 5, box[1] + cell // 2 - 6), f"{value:.2f}", fill=text)
    return image
