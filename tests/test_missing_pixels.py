"""Finding and filling missing pixels (``uir.degradations.masks``): the mask of what
``uncompleted`` removed, and the harmonic fill against a direct sparse solve of Laplace's
equation (scipy)."""

import math

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import torch

import uir.degradations as D
import uir.degradations.masks as masks
from uir import sample_image_path
from uir.degradations.masks import MIN_MISSING_SHARE, harmonic_fill, missing_mask
from uir.images import load_image
from uir.metrics import psnr

from .conftest import seeded


def _laplace_oracle(image: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """The discrete harmonic fill: each missing pixel the mean of its 4 neighbours (mirrored at
    the border, as the replicate padding), observed pixels fixed; one sparse solve per channel."""
    h, w = missing.shape
    index = -np.ones((h, w), dtype=int)
    index[missing] = np.arange(missing.sum())
    out = image.copy()
    for c in range(image.shape[0]):
        rhs = np.zeros(missing.sum())
        rows, cols, vals = [], [], []
        for k, (i, j) in enumerate(zip(*np.nonzero(missing))):
            rows.append(k), cols.append(k), vals.append(1.0)
            for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                ni, nj = min(max(i + di, 0), h - 1), min(max(j + dj, 0), w - 1)
                if missing[ni, nj]:
                    rows.append(k), cols.append(index[ni, nj]), vals.append(-0.25)
                else:
                    rhs[k] += 0.25 * image[c, ni, nj]
        system = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(len(rhs), len(rhs)))
        out[c][missing] = scipy.sparse.linalg.spsolve(system, rhs)
    return out


def test_harmonic_fill_solves_laplaces_equation():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 40, 48, generator=generator)
    image = torch.nn.functional.avg_pool2d(image, 5, 1, 2)  # some structure to continue
    holes = torch.zeros(1, 1, 40, 48)
    holes[..., 5:20, 10:14] = 1
    holes[..., 25:28, 3:45] = 1
    holes[..., 0:6, 40:48] = 1  # touching the border
    filled = harmonic_fill(image, holes, iterations=400)
    expected = _laplace_oracle(image[0].numpy().astype(np.float64), holes[0, 0].numpy() > 0)
    assert torch.equal(filled[holes.expand_as(image) == 0], image[holes.expand_as(image) == 0])  # observed kept
    assert np.abs(filled[0].numpy() - expected).max() < 2e-3


def test_harmonic_fill_is_within_a_hundredth_of_the_solve_at_the_default_iterations(sample):
    """The coarse-to-fine start leaves little for the 100 Jacobi sweeps of each level to do."""
    image = sample[None][..., :96, :128]
    holes = D.masks.free_form_mask(image, seeded(3), strokes=6, width=0.08)
    assert float(holes.mean()) > 0.05
    expected = _laplace_oracle(image[0].numpy().astype(np.float64), holes[0, 0].numpy() > 0)
    assert np.abs(harmonic_fill(image, holes)[0].numpy() - expected).max() < 0.01


@pytest.mark.parametrize("fill", [0.0, 1.0, 0.37])
def test_missing_mask_finds_what_uncompleted_removed(sample, fill):
    lq = D.apply("uncompleted", sample, generator=seeded(1), fill=fill, strokes=4, width=0.06)[None]
    truth = (lq == fill).all(1, keepdim=True) & (sample[None] != fill).any(1, keepdim=True)
    found = missing_mask(lq)
    assert found.sum() > 0 and bool((found.bool() | ~truth).all())  # every removed pixel is found
    assert float((found.bool() & ~(lq == fill).all(1, keepdim=True)).sum()) == 0  # and only exact ones


def test_missing_mask_leaves_clipped_but_intact_photos_alone(sample):
    dark = D.apply("low-light", sample, generator=seeded(0), severity="severe")[None]
    blown = (sample[None] * 1.8).clamp(0, 1)  # a clipped white sky
    crushed = (sample[None] * 1.6 - 0.6).clamp(0, 1)  # clipped blacks
    for image in (sample[None], dark, blown, crushed):
        assert float(missing_mask(image).sum()) == 0


def test_missing_pixels_are_found_beside_a_clipped_region_more_frequent_than_the_fill(sample):
    """A grey photo with a wide black surround one level above a black fill (a fundus photo
    converted to grey): the surround is the most frequent flat exact value but fails the
    contrast test, so a later candidate, the fill, is found."""
    grey = sample.mean(0, keepdim=True).expand(3, -1, -1).clone()
    grey[:, :, :40] = 1 / 255  # the surround, flat and exact, ramping into the photo
    grey[:, :, 40:48] = torch.linspace(1 / 255, 0.5, 8)
    lq = D.apply("uncompleted", grey, generator=seeded(2), fill=0.0, strokes=4, width=0.06)[None]
    truth = (lq == 0).all(1, keepdim=True) & (grey[None] != 0).any(1, keepdim=True)
    assert float(((lq == 1 / 255).all(1)).sum()) > float(truth.sum())  # the surround outnumbers the strokes
    found = missing_mask(lq)
    assert bool((found.bool() | ~truth).all()) and float((found.bool() & ~(lq == 0).all(1, keepdim=True)).sum()) == 0


@pytest.mark.parametrize("share", [0.02, 0.5])
def test_missing_mask_finds_scattered_missing_pixels(sample, share):
    """Single pixels missing at random seldom form a 3x3 core (none at 2%): the lone ones seed the
    mask. Only pixels of the fill are taken, and the harmonic fill of them is close to the photo."""
    keep = torch.rand(sample.shape[-2:], generator=seeded(4)) >= share
    lq = (sample * keep)[None]
    truth = ~keep & (sample != 0).any(0)
    found = missing_mask(lq)
    assert float((found[0, 0].bool() & truth).sum()) >= 0.95 * float(truth.sum())
    assert float((found[0, 0].bool() & ~(lq[0] == 0).all(0)).sum()) == 0
    assert float(psnr(harmonic_fill(lq, found), sample[None])) > float(psnr(lq, sample[None])) + 10


def test_missing_mask_finds_scattered_pixels_that_hide_dark_content(sample):
    """Once pixels dropped at random are told from the photo's own (by those that stand out), the
    ones that hide a value near the fill's join them though they do not stand out: they have one
    neighbour of their value at most. Here half the photo is dark, and a thin black line drawn
    there (a photo's own) stays but for its ends."""
    photo = sample.clone()
    photo[:, :, :80] *= 0.2
    photo[:, 100, 10:40] = 0.0
    keep = torch.rand(photo.shape[-2:], generator=seeded(4)) >= 0.05
    keep[99:102, 9:41] = True
    lq = (photo * keep)[None]
    truth = ~keep & (photo != 0).any(0)
    hidden = truth & (photo.mean(0) < 0.1)  # they do not stand out
    found = missing_mask(lq)[0, 0].bool()
    assert int(hidden.sum()) > 400 and float((found & truth).sum()) > 0.97 * float(truth.sum())
    assert not bool(found[100, 11:39].any())
    assert float(psnr(harmonic_fill(lq, found), photo[None])) > float(psnr(lq, photo[None])) + 15


def test_missing_mask_does_not_weigh_drops_hidden_in_a_black_sky(photos_dir):
    """On a deep-sky photo most pixels dropped to black land on a sky of near-black pixels, many of
    them black already. Those that do not stand out join the mask, but as no evidence: weighed in
    the border test, the black sky around them would have sunk the whole mask."""
    photo = load_image(photos_dir / "scikit-image__hubble_deep_field.png")
    keep = torch.rand(photo.shape[-2:], generator=seeded(4)) >= 0.05
    lq = (photo * keep)[None]
    visible = ~keep & (photo.mean(0) >= 0.1)  # those that stand out from black
    found = missing_mask(lq)[0, 0].bool()
    assert int(visible.sum()) > 500 and float((found & visible).sum()) > 0.9 * float(visible.sum())
    assert float(psnr(harmonic_fill(lq, found), photo[None])) > float(psnr(lq, photo[None])) + 5


def test_missing_mask_leaves_noise_clipped_at_black_and_white_alone(sample):
    """Strong noise clips pixels to 0 or 1 and they stand out from their neighbours like a
    scattered fill, but only in dark or bright content; a scattered gray fill on the same noisy
    photo is still found. (A black one is not: mixed with the noise's own blacks, it is not on
    any content either.)"""
    noisy = ((sample + 0.25 * torch.randn(sample.shape, generator=seeded(5))).clamp(0, 1) * 255).round() / 255
    assert int((noisy == 0).all(0).sum() + (noisy == 1).all(0).sum()) > 50
    assert float(missing_mask(noisy[None]).sum()) == 0
    keep = torch.rand(sample.shape[-2:], generator=seeded(4)) >= 0.05
    assert float(missing_mask(torch.where(keep, noisy, 0.37)[None]).sum()) > 0.9 * float((~keep).sum())


def test_missing_mask_tells_gray_pixels_dropped_at_random_from_clipped_noise():
    """In a gray photo noise clips every channel at once, as a fill writes them, but only in dark
    or bright content, and a mid value stands out only where the content is near it; pixels
    dropped at random sit on any content. The bundled photo (full size: a crop is too small to
    tell), made gray under strong noise, is left alone; gray pixels dropped at random on it and
    on the clean gray photo are found where they differ from what they hide, and only those."""
    clean = load_image(sample_image_path()).mean(0, keepdim=True).expand(3, -1, -1)
    noise = 0.25 * torch.randn(clean.shape[-2:], generator=seeded(5))
    gray = ((clean + noise).clamp(0, 1) * 255).round() / 255
    assert int((gray == 0).all(0).sum()) > 500 and int((gray == 1).all(0).sum()) > 50
    assert float(missing_mask(gray[None]).sum()) == 0
    keep = torch.rand(clean.shape[-2:], generator=seeded(4)) >= 0.02
    for image, gain in ((clean, 10), (gray, 0.2)):
        lq = torch.where(keep, image, 0.37)[None]
        found = missing_mask(lq)[0, 0].bool()
        visible = ~keep & ((image[0] - 0.37).abs() >= 0.1)
        assert float((found & visible).sum()) > 0.9 * float(visible.sum()) and bool((lq[0, :, found] == 0.37).all())
        assert float(psnr(harmonic_fill(lq, found), image[None])) > float(psnr(lq, image[None])) + gain


def test_missing_mask_leaves_a_gray_photo_under_rain_alone(photos_dir):
    """A gray photo's flat patches of one value are content: they seed a mask only for the values
    flat patches are most often of, not for the values of pixels that stand out, the candidates
    for scattered pixels in a gray photo (under heavy rain, a streak's brightest value)."""
    clean = load_image(photos_dir / "plasma__Grey.png")
    for seed in range(4):
        rainy = (D.apply("rainy", clean, generator=seeded(seed), severity="severe") * 255).round() / 255
        assert float(missing_mask(rainy[None]).sum()) == 0


def test_missing_mask_leaves_a_jpegs_flat_blocks_alone(photos_dir):
    """At quality 10, blocks of a gray-ish backdrop keep only their DC coefficient and decode to
    one flat gray level: 29 such blocks of one level join into a solid region ringed by contrast,
    as a fill is, but made of whole blocks of the JPEG's grid. Black strokes drawn on the same
    JPEG cut across its blocks and are found, as is a hole from a corner of the grid that ends
    within its blocks. A crop of the JPEG, whose grid lies at another phase, is left alone too."""
    from uir.degradations.filters import jpeg

    photo = load_image(photos_dir / "scikit-image__motorcycle_left.png")
    compressed = jpeg(photo[None], 10)
    assert float(missing_mask(compressed).sum()) == 0
    assert float(missing_mask(compressed[..., 3:, 5:]).sum()) == 0  # cropped: the grid at another phase
    strokes = D.apply("uncompleted", compressed, generator=seeded(1), fill=0.0)
    truth = (strokes != compressed).any(1)[0]
    found = missing_mask(strokes)[0, 0].bool()
    assert int(truth.sum()) > 1000 and bool(found[truth].all()) and bool((strokes[0, :, found] == 0).all())
    holed = compressed.clone()
    holed[..., 200:230, 304:340] = 0.0  # from a corner of the grid, but not whole blocks
    assert bool(missing_mask(holed)[0, 0, 200:230, 304:340].all())


def test_missing_mask_finds_a_hole_on_the_8x8_grid_of_a_photo_that_was_never_a_jpeg(sample):
    """A rectangular hole whose edges fall on multiples of 8 is whole blocks of a grid, but with no JPEG
    trace in the photo it is a hole."""
    lq = sample.clone()
    lq[:, 32:64, 48:96] = 0.0
    found = missing_mask(lq[None])[0, 0].bool()
    assert bool(found[32:64, 48:96].all()) and int(found.sum()) <= 32 * 48 + int((sample == 0).all(0).sum())


def test_missing_mask_finds_black_pixels_dropped_on_a_white_backdrop(photos_dir):
    """A product shot on white: the pixels around a dropped one are mostly of two near-white
    values, so the neighbourhood means the content test compares come in a few values each, which
    float rounding must not split between the two samples; and the backdrop, a flat exact value
    more frequent than the fill, must not be taken for it."""
    photo = load_image(photos_dir / "opencv-doc__smarties.png")
    keep = torch.rand(photo.shape[-2:], generator=seeded(0)) >= 0.05
    lq = (photo * keep)[None]
    found = missing_mask(lq)[0, 0].bool()
    assert float((found & ~keep).sum()) > 0.95 * float((~keep).sum()) and int((found & keep).sum()) == 0
    assert float(psnr(harmonic_fill(lq, found), photo[None])) > float(psnr(lq, photo[None])) + 30


def test_missing_mask_finds_black_strokes_across_a_white_backdrop_not_the_backdrop(photos_dir):
    """A product shot on a clipped white backdrop, crossed by a thin black stroke: the backdrop,
    flat and more frequent, borders the stroke sharply, but the stroke's region may not carry it
    through the border test; without it its border ramps into the objects, so the stroke is
    found."""
    photo = load_image(photos_dir / "opencv-doc__smarties.png")
    assert float(missing_mask(photo[None]).sum()) == 0
    lq = D.apply("uncompleted", photo, generator=seeded(3), strokes=1, width=0.02, fill=0.0)[None]
    truth = (lq[0] != photo).any(0)
    assert torch.equal(missing_mask(lq)[0, 0].bool(), truth) and int(truth.sum()) > 500


def test_missing_mask_leaves_an_indexed_colour_photo_alone(photos_dir):
    """A photo saved with a palette (PIL's web palette, dithered, as a GIF may hold it) has black
    regions of one exact value that step sharply to the palette's next colours: without the
    indexed-colour rule 15% of the astronaut was "missing" and filled. Its continuous-tone
    original, with strokes, is still searched."""
    from PIL import Image

    photo = load_image(photos_dir / "scikit-image__astronaut.png")
    array = (photo.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    indexed = np.asarray(Image.fromarray(array).convert("P").convert("RGB"), dtype=np.float32) / 255
    indexed = torch.from_numpy(indexed.copy()).permute(2, 0, 1)[None]
    assert len(np.unique(np.asarray(indexed[0]).reshape(3, -1), axis=1).T) <= masks.INDEXED_COLOURS
    assert float(missing_mask(indexed).sum()) == 0
    strokes = D.apply("uncompleted", photo, generator=seeded(0), fill=0.0)[None]
    assert float(missing_mask(strokes).mean()) > MIN_MISSING_SHARE


def test_indexed_counts_the_whole_image_when_its_sample_shows_few_colours():
    """Every 4th pixel of a 512x512 image is what the first count sees; colours elsewhere must
    still make it a photo."""
    image = torch.zeros(3, 512, 512)
    image.view(3, -1)[:, 1::4] = torch.rand(3, 512 * 512 // 4, generator=seeded(0))
    assert masks._indexed(image) is False
    image.view(3, -1)[:, 1::4] = 0.5
    assert masks._indexed(image) is True


def test_missing_mask_leaves_a_frame_alone_and_searches_inside_it(sample):
    """Black bars above and below a photo (a letterbox) and a white canvas around it are whole
    rows and columns of one value with a sharp border: without the frame rule they were filled
    (27% of a letterboxed photo, 39% of a padded one). Inside the frame the search is the one
    the photo alone gets: its strokes are found as they are without the bars."""
    letterboxed = sample.clone()
    letterboxed[:, :16], letterboxed[:, -16:] = 0.0, 0.0
    canvas = torch.nn.functional.pad(sample, (12, 12, 20, 20), value=1.0)
    pillarboxed = letterboxed.clone()
    pillarboxed[:, :, :10] = 0.5
    for framed in (letterboxed, canvas, pillarboxed):
        assert float(missing_mask(framed[None]).sum()) == 0
    strokes = letterboxed.clone()
    strokes[:, 16:-16] = D.apply("uncompleted", sample[:, 16:-16], generator=seeded(4), fill=0.0)
    found, alone = missing_mask(strokes[None])[0, 0], missing_mask(strokes[None, :, 16:-16])[0, 0]
    truth = (strokes != letterboxed).any(0)
    assert torch.equal(found[16:-16], alone) and float(found.sum()) == float(alone.sum())
    assert float(found[truth].mean()) > 0.95 and float(found[~truth].sum()) == 0


def test_missing_mask_leaves_the_gutters_of_a_collage_alone(sample):
    """Photos side by side or in a grid, with a gutter of one value between them: each gutter is
    a whole row or column of one value with a sharp border, as a fill is, and without the gutter
    rule it was filled (the two photos smeared into it). Strokes of the gutter's value in one of
    the photos get exactly the mask that photo alone gets."""
    left, right = sample[:, :, :76], sample[:, :, 84:].flip(-1)
    for value in (0.0, 1.0):
        gutter = torch.full((3, sample.shape[1], 8), value)
        pair = torch.cat([left, gutter, right], -1)
        grid = torch.cat([pair, torch.full((3, 6, pair.shape[-1]), value), pair.flip(-2)], -2)
        for collage in (pair, grid):
            assert float(missing_mask(collage[None]).sum()) == 0
    holed = D.apply("uncompleted", left, generator=seeded(4), fill=1.0)
    alone = missing_mask(holed[None])[0, 0]
    found = missing_mask(torch.cat([holed, torch.ones(3, sample.shape[1], 8), right], -1)[None])[0, 0]
    assert float(alone.sum()) > 0.8 * float((holed != left).any(0).sum())
    assert torch.equal(found[:, :76], alone) and float(found[:, 76:].sum()) == 0


def test_missing_mask_searches_a_photo_blown_up_by_nearest_neighbour_at_its_own_size(photos_dir):
    """A photo shrunk and blown up again by nearest neighbour is made of 4x4 blocks of one colour
    with sharp steps between them; without the rule astronaut's gray blocks were found (0.4%).
    Searched at its own size, nothing is; strokes drawn on the small photo are found there and
    blown up with it, and strokes drawn on the blown-up photo, which break its blocks, are found
    as on any photo."""
    small = torch.nn.functional.avg_pool2d(load_image(photos_dir / "scikit-image__astronaut.png")[None], 4)[0]
    small = (small * 255).round() / 255
    blow = lambda t: t.repeat_interleave(4, -2).repeat_interleave(4, -1)  # noqa: E731
    assert float(missing_mask(blow(small)[None]).sum()) == 0
    holed = D.apply("uncompleted", small, generator=seeded(4), fill=1.0)
    found = missing_mask(blow(holed)[None])[0, 0]
    assert float(found.sum()) > 0 and torch.equal(found, blow(missing_mask(holed[None])[0, 0]))
    later = D.apply("uncompleted", blow(small), generator=seeded(4), fill=1.0)
    truth = (later != blow(small)).any(0)
    assert float(missing_mask(later[None])[0, 0][truth].mean()) > 0.95


def test_missing_mask_leaves_four_corners_cut_alike_alone(sample):
    """A photo whose four corners are rounded off to one colour (a screenshot, a card) holds four
    staircases of one value with a sharp border: without the corner rule they were filled (0.5-1.1%
    of a photo). A hole inside is still found, and the corners stay out of its mask even when they
    hold its value; one corner cut alone is no such shape, and is found as before."""
    from PIL import Image, ImageDraw

    height, width = sample.shape[-2:]
    inside = Image.new("L", (width, height), 0)
    ImageDraw.Draw(inside).rounded_rectangle((0, 0, width - 1, height - 1), radius=14, fill=255)
    inside = torch.from_numpy(np.asarray(inside, dtype=np.float32) / 255)
    corners = inside == 0
    for colour in (0.0, 1.0):
        rounded = torch.where(corners, torch.tensor(colour), sample)
        assert int(corners.sum()) > 100 and float(missing_mask(rounded[None]).sum()) == 0
    holed = torch.where(corners, torch.tensor(0.0), sample)
    holed[:, 50:70, 60:100] = 0.0
    found = missing_mask(holed[None])[0, 0].bool()
    assert bool(found[50:70, 60:100].all()) and int(found[corners].sum()) == 0
    one = torch.where(corners & (torch.arange(height)[:, None] < height // 2) & (torch.arange(width) < width // 2),
                      torch.tensor(0.0), sample)
    assert float(missing_mask(one[None]).sum()) > 0


def _drawn_text(image: torch.Tensor, text: str, size: int, ink: float, at: tuple, outline: float | None = None,
                sharp: bool = False):
    """``image`` (3,H,W) with ``text`` drawn on it in bold, anti-aliased as a rasteriser does: each
    pixel covered by the glyphs in the share of its area they cover (drawn 4x larger and
    averaged), in ``ink``, with an ``outline`` 2 px wide around them if given. ``sharp``: each pixel
    wholly ink or not, as a binarised scan is."""
    from PIL import Image, ImageDraw, ImageFont

    def coverage(stroke: int) -> torch.Tensor:
        canvas = Image.new("L", (image.shape[-1] * 4, image.shape[-2] * 4), 0)
        ImageDraw.Draw(canvas).text((at[0] * 4, at[1] * 4), text, fill=255, font=ImageFont.load_default(size=size * 4),
                                    stroke_width=(stroke + 1) * 4, stroke_fill=255)
        alpha = torch.nn.functional.avg_pool2d(torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255)[None], 4)
        return (alpha >= 0.5).to(alpha) if sharp else alpha

    drawn = image
    for alpha, value in ((coverage(2), outline), (coverage(0), ink)) if outline is not None else ((coverage(0), ink),):
        drawn = alpha * value + (1 - alpha) * drawn
    return (drawn * 255).round() / 255


def test_missing_mask_leaves_text_drawn_on_a_photo_alone(sample):
    """A caption in black or white, or white with a black outline, is drawn anti-aliased: its
    glyphs hold one exact value with a sharp border, but the pixels at their edge are blends of
    the ink and the photo. Without the test of that blend (``HARD_EDGE``) the glyphs were filled.
    A black square beside a white caption is still found, and alone."""
    for ink, outline in ((0.0, None), (1.0, None), (1.0, 0.0)):
        captioned = _drawn_text(sample, "Summer 2019", 22, ink, (6, 86), outline)
        assert int((captioned == ink).all(0).sum()) > 300
        assert float(missing_mask(captioned[None]).sum()) == 0
    holed = _drawn_text(sample, "Summer 2019", 22, 1.0, (6, 86))
    holed[:, 20:40, 100:130] = 0.0
    found = missing_mask(holed[None])[0, 0].bool()
    assert bool(found[20:40, 100:130].all()) and int(found.sum()) == 20 * 30


def test_missing_mask_leaves_a_page_of_text_alone():
    """Text on white paper. Anti-aliased, the text is drawn (the test above). Binarised, each
    pixel wholly ink or paper, the text's edges are as sharp as a fill's, but the paper, one value
    with a sharp border over most of the page, is the ground it is printed on
    (``BACKGROUND_SHARE``), and a region bordered by that ground is printed on it. Without those
    rules the paper, then the text, were filled."""
    for sharp in (False, True):
        page = torch.ones(3, 160, 192)
        for row in range(5):
            page = _drawn_text(page, "missing pixels", 16, 0.0, (8, 6 + 30 * row), sharp=sharp)
        assert float(page.mean()) < 0.9 and float(missing_mask(page[None]).sum()) == 0


def test_missing_mask_judges_no_fewer_lone_pixels_than_its_tests_can_tell():
    """On a 64x64 JPEG of noise, mostly gray after its chroma is quantised, 15-20 pixels of a
    value stand out apart on any content: too few to tell from a fill, so nothing is found."""
    from uir.degradations.filters import jpeg

    lq = jpeg(torch.rand(1, 3, 64, 64, generator=seeded(4)), 10)
    assert float(missing_mask(lq).sum()) == 0


def test_ks_distance_is_scipys_two_sample_statistic_and_ignores_float_rounding():
    """The content test's distance against ``scipy.stats.ks_2samp``, for continuous values and for
    few values with ties; values that differ only by float rounding count as one."""
    import scipy.stats

    from uir.degradations.masks import _ks_distance

    rng = np.random.default_rng(0)
    for a, b in ((rng.normal(size=500), rng.normal(0.1, 1.0, size=3000)),
                 (rng.integers(0, 10, 500) / 10, rng.integers(0, 12, 3000) / 10)):
        assert _ks_distance(torch.tensor(a), torch.tensor(b)) == pytest.approx(scipy.stats.ks_2samp(a, b).statistic, abs=1e-6)
    levels = torch.tensor([0.25, 0.5, 0.75]).repeat(100)
    assert _ks_distance(levels, levels + 1e-7 * torch.randn(300, generator=seeded(0))) < 1e-6


def test_missing_mask_finds_a_black_fill_scattered_over_a_clipped_white_sky(sample):
    """The sky alone is left alone. Black pixels scattered over it leave holes in its mask whose
    edges would pass the contrast test, but another value's lone pixels are no border: the fill
    is found, and no white pixel."""
    sky = sample.clone()
    sky[:, :40] = 1.0
    sky[:, 40:48] = torch.lerp(torch.ones(3, 8, sky.shape[-1]), sample[:, 40:48], torch.linspace(0, 1, 8)[:, None])
    assert float(missing_mask(sky[None]).sum()) == 0
    keep = torch.rand(sample.shape[-2:], generator=seeded(4)) >= 0.1
    lq = (sky * keep)[None]
    found = missing_mask(lq)[0, 0].bool()
    assert float(found.sum()) > 0.95 * float((~keep).sum()) and bool((lq[0, :, found] == 0).all())


def test_missing_mask_leaves_streaks_of_one_value_alone(sample):
    """Rain streaks drawn in one exact gray stand out from their neighbours like a scattered
    fill, but they come in runs: most of their pixels have a neighbour of their value, where
    pixels dropped at random at that density seldom do."""
    streaked = sample.clone()
    place = torch.randint(0, 150, (2, 40), generator=seeded(9))
    for row, col in place.T.tolist():
        for step in range(8):  # a diagonal streak, 1 px wide, no 3x3 core
            streaked[:, min(row + step, 127), min(col + step // 2, 159)] = 0.75
    assert float(((streaked == 0.75).all(0)).float().mean()) > 0.01
    assert float(missing_mask(streaked[None]).sum()) == 0
    keep = torch.rand(sample.shape[-2:], generator=seeded(4)) >= 0.015  # as many, at random
    assert float(missing_mask(torch.where(keep, sample, 0.75)[None]).sum()) > 0.9 * float((~keep).sum())


def test_missing_mask_keeps_true_black_pixels_beside_a_black_fill(sample):
    """Lone pixels join a fill only when there are at least ``min_lone`` of the image of them: 400
    black pixels at random (2% of the image: a sparse scattered fill) stay under a ``min_lone`` of
    3% and join at 0.1%. And only when they sit on any content: 300 true black pixels in the
    darker half of the photo's content stay. (Those a stroke's growth reaches join either way.)"""
    def black_pixels(count, where):
        photo = sample.clone()
        dark = where.nonzero()[:, 0]
        dark = dark[torch.randperm(len(dark), generator=seeded(6))[:count]]
        photo.view(3, -1)[:, dark] = 0.0
        lq = D.apply("uncompleted", photo, generator=seeded(1), fill=0.0, strokes=4, width=0.06)[None]
        strokes = (lq[0] == 0).all(0) & (photo != 0).any(0)
        return lq, strokes, dark

    lq, strokes, dark = black_pixels(400, torch.ones(sample[0].numel(), dtype=torch.bool))
    found = missing_mask(lq, min_lone=0.03)[0, 0].bool()
    assert bool(found[strokes].all()) and int(found.flatten()[dark].sum()) <= 0.2 * len(dark)
    assert int(missing_mask(lq, min_lone=1e-3)[0, 0].bool().flatten()[dark].sum()) >= 0.9 * len(dark)

    local = torch.nn.functional.avg_pool2d(sample.mean(0, keepdim=True)[None], 3, 1, 1).flatten()
    lq, strokes, dark = black_pixels(300, local <= local.median())
    found = missing_mask(lq)[0, 0].bool()
    assert bool(found[strokes].all()) and int(found.flatten()[dark].sum()) <= 30


@pytest.fixture(scope="module")
def default_runtime():
    from uir.pipelines.loading import load_pipeline

    return load_pipeline(runtime=True)


def test_the_default_fills_missing_pixels_and_runs_no_expert_on_them(sample, default_runtime):
    lq = D.apply("uncompleted", sample, generator=seeded(2))[None]
    out = default_runtime(lq, output_type="pt")
    assert torch.equal(out.images, harmonic_fill(lq, missing_mask(lq)))
    assert float(out.missing[0]) == pytest.approx(float(missing_mask(lq).mean()))
    assert float(out.clean_weight[0]) == 1 and not bool(out.weights.any())
    # the router sees the filled image, but is told what the pipeline found (and searches no more)
    assert out.degradations == ["uncompleted"] and float(out.confidence[0]) == 1.0
    unfilled = default_runtime(lq, output_type="pt", fill_missing=False)
    assert unfilled.missing is None and not torch.equal(unfilled.images, out.images)
    manual = default_runtime(lq, weights={"noisy": 1.0}, output_type="pt")  # the caller's experts still run
    filled = harmonic_fill(lq, missing_mask(lq))
    assert torch.equal(manual.images, default_runtime(filled, weights={"noisy": 1.0}, output_type="pt",
                                                      fill_missing=False).images)


def test_the_default_fills_scattered_missing_pixels(sample, default_runtime):
    keep = torch.rand(sample.shape[-2:], generator=seeded(8)) >= 0.05
    lq = (sample * keep)[None]
    out = default_runtime(lq, output_type="pt")
    assert out.degradations == ["uncompleted"] and float(out.missing[0]) > 0.045
    assert float(psnr(out.images, sample[None])) > float(psnr(lq, sample[None])) + 10


def test_a_fill_too_small_to_be_the_degradation_leaves_the_image_to_the_router(sample, default_runtime):
    """A few pixels of one value in rain (the false finds of severe rain and snow) are filled, then
    the image is routed as the filled one is; a hole of MIN_MISSING_SHARE or more is the image's
    degradation, and the fill is kept."""
    rainy = D.apply("rainy", sample, generator=seeded(0))[None]
    side = math.isqrt(math.ceil(MIN_MISSING_SHARE * sample[0].numel()))  # the least square called
    for size, called in ((side - 1, False), (side + 1, True)):
        lq = rainy.clone()
        lq[..., 60:60 + size, 80:80 + size] = 0
        mask = missing_mask(lq)
        assert int(mask.sum()) == size * size
        out = default_runtime(lq, output_type="pt")
        assert float(out.missing[0]) == pytest.approx(size * size / sample[0].numel())
        assert (out.degradations == ["uncompleted"]) is called
        assert (default_runtime(lq, output_type="pt", fill_missing=False).degradations == ["uncompleted"]) is called
        if not called:
            routed = default_runtime(harmonic_fill(lq, mask), output_type="pt")
            assert out.degradations == routed.degradations and float(out.clean_weight[0]) < 1
            assert torch.equal(out.images, routed.images)


def test_missing_pixels_are_searched_once_per_call(sample, default_runtime, monkeypatch):
    """The pipeline's search before the fill is the router's trace too: one search per call,
    with the router's own search only when the pipeline does not fill."""
    import uir.pipelines.restoring

    calls = []
    counted = lambda images: calls.append(images.shape[0]) or missing_mask(images)  # noqa: E731
    monkeypatch.setattr(uir.pipelines.restoring, "missing_mask", counted)
    monkeypatch.setattr(masks, "missing_mask", counted)  # the router's search, finds_missing_pixels
    lq = D.apply("uncompleted", sample, generator=seeded(2))[None]
    assert default_runtime(lq, output_type="pt").degradations == ["uncompleted"] and calls == [1]
    assert default_runtime(lq, output_type="pt", fill_missing=False).degradations == ["uncompleted"]
    assert calls == [1, 1]


def test_photos_without_missing_pixels_are_restored_as_before(sample, default_runtime):
    for image in (sample[None], D.apply("noisy", sample, generator=seeded(0))[None]):
        out = default_runtime(image, output_type="pt")
        assert float(out.missing[0]) == 0
        assert torch.equal(out.images, default_runtime(image, output_type="pt", fill_missing=False).images)


def test_uir_lora_keeps_inpainting_to_its_expert_as_published(tmp_path):
    from uir.pipelines import UIRLoRAPipeline
    from uir.testing import save_tiny_sd_turbo

    pipe = UIRLoRAPipeline.from_sd_turbo(save_tiny_sd_turbo(tmp_path))
    lq = D.apply("uncompleted", torch.rand(3, 32, 32), generator=seeded(0), strokes=8, width=0.08)[None]
    assert float(missing_mask(lq).sum()) > 0
    assert pipe(lq, output_type="pt").missing is None


def test_uir_restore_says_it_filled_missing_pixels(tmp_path, sample, capsys):
    from uir.cli import main
    from uir.images import save_image

    save_image(D.apply("uncompleted", sample, generator=seeded(2)), tmp_path / "holes.png")
    assert main(["restore", str(tmp_path / "holes.png"), "-o", str(tmp_path / "out.png")]) == 0
    assert "% missing pixels" in capsys.readouterr().out
