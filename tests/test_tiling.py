"""Tiled restoration blends neighbouring tiles with linear ramps across their overlap."""

import itertools

import pytest
import torch

from uir.tiling import restore_tiled


@pytest.mark.parametrize("overlap", [8, 16])
def test_the_overlap_ramps_and_does_not_step(overlap):
    """Each tile restores to its own constant (neighbours differ by 1), so the output shows the
    blend itself: from one tile's value to the next it moves over at least ``overlap + 1``
    columns, in steps of at most 1/(overlap + 1) (equal steps where windows overlap by exactly
    ``overlap``; windows of equal size may overlap by more, and blend as smoothly)."""
    values = itertools.count(1)

    def constant_per_tile(tile):
        return torch.full_like(tile, float(next(values)))

    out = restore_tiled(constant_per_tile, torch.zeros(1, 1, 40, 120), tile=64, overlap=overlap)[0, 0]
    row = out[0]
    steps = (row[1:] - row[:-1]).abs()
    moving = steps[steps > 1e-6]
    seams = int(row[-1].item() - row[0].item())  # neighbouring tiles differ by 1
    assert seams >= 1, "several tiles side by side"
    assert len(moving) >= seams * (overlap + 1), "every seam ramps over the whole overlap"
    assert moving.max() <= 1 / (overlap + 1) + 1e-6, f"a step of {moving.max():.3f} at a seam"
    assert torch.equal(out, out[:1].expand_as(out)), "one tile high: every row alike"


@pytest.fixture(scope="module")
def default_runtime():
    from uir.pipelines.loading import load_pipeline

    return load_pipeline(runtime=True)


@pytest.mark.parametrize("image", ["flat", "smooth"])
@pytest.mark.parametrize("expert", [None, "hazy", "low-light", "noisy"])
def test_borders_are_restored_like_the_interior(default_runtime, image, expert):
    """Edge rows and columns differ from their neighbours no more than interior ones do (the
    default used to draw 1-px lines along its borders: 0.17 against 1e-4 inside)."""
    size = 128
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    x = torch.full((1, 3, size, size), 0.5) if image == "flat" else \
        torch.stack([0.3 + 0.4 * xx, 0.2 + 0.5 * yy, 0.5 + 0.2 * xx * yy])[None]
    out = default_runtime(x, weights={expert: 1.0} if expert else {}, output_type="pt").images[0]
    rows = (out[:, 1:] - out[:, :-1]).abs().mean(dim=(0, 2))
    columns = (out[:, :, 1:] - out[:, :, :-1]).abs().mean(dim=(0, 1))
    interior = max(rows[8:-8].max().item(), columns[8:-8].max().item())
    edges = {"top": rows[0], "bottom": rows[-1], "left": columns[0], "right": columns[-1]}
    for side, difference in edges.items():
        assert difference.item() <= interior * 1.25 + 1e-3, (side, difference.item(), interior)
