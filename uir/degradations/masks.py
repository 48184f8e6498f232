"""Missing pixels: free-form brush-stroke masks for inpainting, and finding and filling such
pixels in a photo (:func:`missing_mask`, :func:`harmonic_fill`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .filters import pixel_grid, rand, segment_distance
from .jpeg_trace import BLOCK, grid_phase, jpeg_quality, luma
from .registry import check_image

#: the vocabulary entry missing pixels are evidence for
MISSING_CLASS = "uncompleted"
#: the fewest lone pixels whose spread and content :func:`missing_mask` judges: fewer cannot
#: tell pixels dropped at random from a photo's own (the content test's bar is 0.125 here)
MIN_LONE_PIXELS = 256
#: the least share of an image's pixels that a find must cover to be the image's degradation
#: (:func:`holds_missing_pixels`): on the 65 training and set-aside photos, uir's strokes leave
#: 0.31% or more at every severity, the false finds in severe rain and snow 0.016% or less
#: (docs/default-model.md)
MIN_MISSING_SHARE = 0.001
#: the least share of a found region in whole blocks of a JPEG trace's grid that makes it the
#: JPEG's flat blocks (:func:`_jpeg_blocks`): 0.97 or more for those at quality 5-10, at most
#: 0.81 for uir's strokes on the grid that suits them best (docs/default-model.md)
MIN_BLOCK_SHARE = 0.9
#: the most colours an indexed-colour image holds, the 256 of a GIF's or an 8-bit PNG's palette
#: and one more for a fill (:func:`_indexed`); uir's colour photos hold 1347 or more, and 638 or
#: more under any of its degradations (docs/default-model.md)
INDEXED_COLOURS = 257
#: how far from 1 the typical ratio of a found region's border to what lies beyond it may be
#: (:func:`_drawn`): a hard edge's border is the photo and reads near 1 (0.90 to 1.03 on uir's
#: strokes), an anti-aliased one is a blend (captions in a bold font: 0.78 at most;
#: docs/default-model.md)
HARD_EDGE = 0.83
#: the least share of the searched image a region grown from flat cores covers to be the ground
#: things are drawn on (a page's paper), not a hole in the photo: uir's strokes cover 30% at most
BACKGROUND_SHARE = 0.5


def holds_missing_pixels(share: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the images whose missing pixels, ``share`` (B,) of their pixels (the mean of
    :func:`missing_mask`), are their degradation: at least :data:`MIN_MISSING_SHARE`. A smaller
    find is filled all the same, but a few dozen pixels of one value in rain or snow say nothing
    of what the rest of the image suffers: such an image is routed like any other."""
    return share >= MIN_MISSING_SHARE


def finds_missing_pixels(images: torch.Tensor) -> torch.Tensor:
    """(B,) bool: whether :func:`missing_mask` finds in each of ``images`` (B,3,H,W) missing
    pixels that are its degradation (:func:`holds_missing_pixels`)."""
    return holds_missing_pixels(missing_mask(images).flatten(1).mean(1))


def free_form_mask(image, generator, strokes, width):
    """Random brush strokes (B,1,H,W), 1 where pixels are missing.

    Each stroke is a polyline of 4-9 vertices from a random start; its heading turns by up to
    +-0.9 rad and each segment is 5-15 % of the longer side. The brush diameter is ``width``
    times the shorter side (60-100 %), with round caps.
    """
    b, _, h, w = image.shape
    y, x = pixel_grid(h, w, image)
    mask = torch.zeros(b, 1, h, w, dtype=torch.bool, device=image.device)
    for i in range(b):
        for _ in range(strokes):
            u = rand((4,), generator, torch.zeros(()).double()).tolist()
            point = (u[0] * (h - 1), u[1] * (w - 1))
            heading = u[2] * 2 * math.pi
            brush = width * min(h, w) * (0.6 + 0.4 * u[3])
            vertices = int(torch.randint(4, 10, (), generator=generator, device=generator.device))
            for _ in range(vertices - 1):
                turn, step = rand((2,), generator, torch.zeros(()).double()).tolist()
                heading += (turn - 0.5) * 1.8
                length = (0.05 + 0.1 * step) * max(h, w)
                nxt = (
                    min(max(point[0] + length * math.sin(heading), 0.0), h - 1.0),
                    min(max(point[1] + length * math.cos(heading), 0.0), w - 1.0),
                )
                mask[i, 0] |= segment_distance(y, x, point, nxt) <= brush / 2
                point = nxt
    return mask.to(image.dtype)


def inpainting(image, generator, strokes, width, fill):
    """Missing regions: ``y = (1 - m) x + m * fill`` with a :func:`free_form_mask` ``m``."""
    mask = free_form_mask(image, generator, strokes, width)
    return image * (1.0 - mask) + fill * mask


def _dilate(mask: torch.Tensor, size: int) -> torch.Tensor:
    return F.max_pool2d(mask, size, stride=1, padding=size // 2)


def _erode(mask: torch.Tensor, size: int) -> torch.Tensor:
    return -F.max_pool2d(-mask, size, stride=1, padding=size // 2)


def missing_mask(image: torch.Tensor, min_contrast: float = 0.1, grow: int = 8, candidates: int = 4,
                 min_lone: float = 1e-3) -> torch.Tensor:
    """The pixels of ``image`` (B,3,H,W) in [0, 1] that look missing, as (B,1,H,W) in {0, 1}.

    Missing pixels (what :func:`inpainting` writes) carry one exact value ``v`` in every channel.
    The candidates for ``v`` are the values of the "flat exact" pixels, those whose 3x3
    neighbourhood holds one value alone in all channels, the most frequent first (at most
    ``candidates``); then, in a colour photo (beside its most frequent gray value, fewer than half
    of its pixels gray), the most frequent values of all gray pixels (as many again, each held by
    at least ``min_lone`` of the image: single pixels form no flat patch). For a
    candidate, those 3x3 cores are the seeds; the mask grows from them, ``grow`` steps of one
    pixel, over pixels equal to it in all channels, so thin parts of a stroke join it and lone
    pixels of that value do not, unless they pass the next test.

    Scattered missing pixels (a random share of single pixels) seldom form a 3x3 core, so lone
    pixels seed the mask too: those of value ``v`` outside the grown mask whose other neighbours
    differ from ``v`` by at least ``min_contrast`` on average (:func:`_ring_mean`). They count
    only when they are at least ``min_lone`` of the image and :data:`MIN_LONE_PIXELS` (a few true
    black pixels beside a black fill stay), and when they lie as pixels dropped at random would:
    apart from each other (:func:`_spread_at_random`; rain streaks and a JPEG's clipped white rims
    come in runs) and on any content (:func:`_blind_to_content`; noise clipped at black or white,
    and a photo's own blacks, lie in dark or bright content). In a gray photo every pixel holds
    one value in all channels, so its further candidates are the most frequent values of the
    pixels that stand out, and they are sought as lone pixels alone: a gray photo's flat patches
    are content. Once lone pixels pass, the pixels of ``v`` that do not stand out (they hide a
    value near it) join the mask too where they have at most one neighbour of ``v``, as most
    pixels dropped at a low share have and a photo's own clipped patches and lines do not; they
    are no evidence, so the border test below does not weigh them.

    Then a contrast test: the pixels bordering the mask (1 px) must differ from the candidate by
    at least ``min_contrast`` on average. Clipped blacks in a dark photo, or a clipped white sky,
    are flat and exact too, but the pixels next to them ramp into their value; missing pixels cut
    through the content, so their neighbours are whatever the photo shows there. Another
    candidate's lone pixels (enough of them and apart, whatever their content) do not count as
    border: a black fill scattered over a clipped white sky leaves holes in the sky's mask, but
    the sky's border still ramps. Nor may another candidate's region carry a candidate through,
    where the border holds more than it: the border must pass with it and without it. A white
    background crossed by black strokes borders them sharply, but its own border ramps into the
    objects on it; a JPEG's flat blocks border each other with a level's step, and fail either
    way. The first candidate that passes is ``v``; a clipped region more frequent than the fill
    (a grey photo's black surround one level above a black fill) fails the test and leaves the
    next its turn.

    Two more tests keep what was drawn on a photo. A region grown from flat cores over at least
    :data:`BACKGROUND_SHARE` of the searched image is the ground things are drawn on (a page's
    paper), not a hole, and a region whose border lies mostly on it is printed on it. And a
    hole's border is the photo, continuous with the photo beyond it, where text and graphics are
    drawn anti-aliased, their edge a blend of the ink and what lies behind: a region whose border
    reads as such a blend (:func:`_drawn`) fails.

    Only what lies inside the image's frame is searched (:func:`_inside_frame`): a letterbox's
    bars or a canvas around a photo are edge rows and columns of one value with a sharp border,
    as a fill is, but no fill covers a whole row or column. Nor are such lines inside it, a
    collage's gutters (:func:`_gutters`), nor four corners rounded off alike to one value
    (:func:`_cut_corners`): they are neither candidates nor any region's border.

    An indexed-colour image (a GIF, an 8-bit PNG: at most :data:`INDEXED_COLOURS` colours in all,
    :func:`_indexed`) is searched for nothing, unless most of it is gray. Its palette holds each
    colour exactly in many places and steps from one colour to the next by far more than a
    photo's 8-bit level, so every flat region of it is one exact value with a sharp border, as a
    fill is: neither test can tell them apart.

    Last, a JPEG's own flat blocks are told apart (:func:`_jpeg_blocks`): at a low quality a
    block that kept only its DC coefficient decodes to one flat level, gray where the chroma
    kept nothing either, and neighbouring blocks of one level join into one region (with a few
    pixels of that level in the blocks beside them). A region made mostly of whole blocks of the
    8x8 grid a JPEG trace lies on (:mod:`.jpeg_trace`) fails, as a clipped region does.
    """
    masks = []
    for x in check_image(image):
        mask = torch.zeros(1, 1, *x.shape[-2:], dtype=x.dtype, device=x.device)
        rows, cols = _inside_frame(x)
        inside = x[:, rows, cols]
        k = _blown_up(inside)  # a photo blown up by nearest neighbour is searched at its own size
        found = _missing_in(inside[:, ::k, ::k], min_contrast, grow, candidates, min_lone)
        if k > 1:
            found = found.repeat_interleave(k, -2).repeat_interleave(k, -1)[..., :inside.shape[-2], :inside.shape[-1]]
        mask[..., rows, cols] = found
        masks.append(mask)
    return torch.cat(masks)


def _blown_up(x: torch.Tensor, most: int = 8) -> int:
    """The largest factor ``k`` (at most ``most``) by which ``x`` (3,H,W) was blown up by
    nearest neighbour: every k x k block of its grid, from its top left, holds one colour (a
    zoomed thumbnail, pixel art); 1 for any other image. Each block holds exact values with sharp
    steps between them, so a gray one reads as a fill. Only an image whose first k rows match, and
    its first k columns, is read whole for k."""
    height, width = x.shape[-2:]
    if height < 4 or width < 4 or not (torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, :, 0], x[:, :, 1])):
        return 1
    for k in range(min(most, height // 2, width // 2), 1, -1):
        if not (bool((x[:, 1:k] == x[:, :1]).all()) and bool((x[:, :, 1:k] == x[:, :, :1]).all())):
            continue  # the first block's rows and columns already differ
        rows = torch.arange(height, device=x.device) // k * k
        cols = torch.arange(width, device=x.device) // k * k
        if torch.equal(x[:, rows][:, :, cols], x):
            return k
    return 1


def _inside_frame(x: torch.Tensor) -> tuple[slice, slice]:
    """The rows and the columns of ``x`` (3,H,W) inside its frame: the whole rows and columns at
    its edges that each hold one value in every pixel and channel, as a letterbox's bars or a
    canvas around a photo do, peeled side by side until none is left (a bar of another value
    across a band's end is peeled first). Missing pixels never fill a whole row or column of a
    photo. Only the lines peeled and the four edges inside them are read."""
    top, bottom, left, right = 0, x.shape[-2], 0, x.shape[-1]

    def uniform(line: torch.Tensor) -> bool:  # (3, N)
        return bool((line == line[:, :1]).all())

    peeled = True
    while peeled and top < bottom and left < right:
        peeled = False
        for side in range(4):
            while top < bottom and left < right:
                line = (x[:, top, left:right], x[:, bottom - 1, left:right], x[:, top:bottom, left],
                        x[:, top:bottom, right - 1])[side]
                if not uniform(line):
                    break
                top, bottom, left, right = (top + (side == 0), bottom - (side == 1), left + (side == 2),
                                            right - (side == 3))
                peeled = True
    return slice(top, bottom), slice(left, right)


def _cut_corners(x: torch.Tensor) -> torch.Tensor:
    """(1,1,H,W): the four corners of ``x`` (3,H,W) where they are cut alike, else zeros. A
    corner is cut when the pixels of its corner pixel's value, counted row by row from its edge,
    form a staircase (runs that never grow away from the corner); the four are cut alike when
    they hold one value and their runs differ by at most a pixel, as a photo's corners rounded
    off to a colour (screenshots, cards) are. A stroke reaches one corner, not four alike. Only
    an image whose four corner pixels hold one value has its quarters read."""
    height, width = x.shape[-2:]
    cut = torch.zeros(1, 1, height, width, dtype=x.dtype, device=x.device)
    value = x[:, 0, 0]
    if not all(torch.equal(x[:, row, col], value) for row in (0, -1) for col in (0, -1)):
        return cut
    flips = ((), (-2,), (-1,), (-2, -1))  # each quarter turned so that its corner is at the top left
    quarters = []  # (rows, columns, flip, the runs of value from the corner's edge)
    for f in flips:
        rows = slice(height - height // 2, height) if -2 in f else slice(0, height // 2)
        cols = slice(width - width // 2, width) if -1 in f else slice(0, width // 2)
        corner = x[:, rows, cols].flip(f) if f else x[:, rows, cols]
        run = (corner == value[:, None, None]).all(0).to(torch.int32).cumprod(1).sum(1)  # from the edge, per row
        run = run[: int((run > 0).to(torch.int32).cumprod(0).sum())]
        if len(run) < 2 or bool((run.diff() > 0).any()):
            return cut
        quarters.append((rows, cols, f, run))
    first = quarters[0][3]
    if any(len(run) != len(first) or int((run - first).abs().max()) > 1 for *_, run in quarters):
        return cut
    for rows, cols, f, run in quarters:  # each staircase written into its own quarter
        staircase = torch.zeros(rows.stop - rows.start, cols.stop - cols.start, dtype=x.dtype, device=x.device)
        staircase[: len(run)] = (torch.arange(staircase.shape[1], device=x.device)[None] < run[:, None]).to(x.dtype)
        cut[0, 0, rows, cols] = staircase.flip(f) if f else staircase
    return cut


def _gutters(x: torch.Tensor) -> torch.Tensor:
    """(1,1,H,W): the whole rows and columns of ``x`` (3,H,W) that each hold one value in every
    pixel and channel, as the gutters between the photos of a collage do. A frame's bars are such
    lines at the edge (:func:`_inside_frame`); missing pixels never fill a whole row or column."""
    rows = (x[:, :, ::16] == x[:, :, :1]).all(0).all(1)  # every 16th pixel first: a photo's lines end there
    rows[rows.clone()] = (x[:, rows] == x[:, rows, :1]).all(0).all(1)
    cols = (x[:, ::16] == x[:, :1]).all(0).all(0)
    cols[cols.clone()] = (x[:, :, cols] == x[:, :1, cols]).all(0).all(0)
    return (rows[:, None] | cols[None, :]).to(x.dtype)[None, None]


def _missing_in(x: torch.Tensor, min_contrast: float, grow: int, candidates: int, min_lone: float) -> torch.Tensor:
    """:func:`missing_mask` of one image ``x`` (3,H,W) inside its frame, as (1,1,H,W)."""
    mask = torch.zeros(1, 1, *x.shape[-2:], dtype=x.dtype, device=x.device)
    if mask.numel() == 0:
        return mask
    gray = (x == x[:1]).all(0)[None, None].to(x.dtype)  # every channel holds the same value
    cut = torch.maximum(_cut_corners(x), _gutters(x))  # no candidates, nor any region's border
    gray = gray * (1 - cut)
    if float(gray.sum()) < 9:
        return mask
    level = x[:1][None]
    flat = ((_erode(level, 3) == _dilate(level, 3)) & (_erode(gray, 3) > 0))[0, 0]
    order = [v for v, _ in _most_frequent(level[0, 0][flat], candidates)]
    frequent = _most_frequent(level[0, 0][gray[0, 0] > 0], candidates)
    least = max(min_lone * x.shape[-2] * x.shape[-1], MIN_LONE_PIXELS)  # lone pixels needed
    searched = gray.numel() - float(cut.sum())
    colour = float(gray.sum()) - frequent[0][1] < (searched - frequent[0][1]) / 2  # beside the likeliest fill
    if colour and _indexed(x):  # a palette's flat regions look like fills; a gray photo's levels do not
        return mask
    if not colour:  # most pixels are gray: count the values of the pixels that stand out
        frequent = _most_frequent(level[0, 0][_stand_out(level, min_contrast) & (gray[0, 0] > 0)], candidates)
    cored = set(order)  # a gray photo's flat patches are evidence only for the flat candidates
    order += [v for v, count in frequent if v not in cored and count >= least]
    grown, scattered = [], torch.zeros_like(mask)  # every candidate's lone pixels
    for v in order:
        exact, window = _windowed(gray * (level == v).to(x.dtype))
        found = _grown(_erode(exact, 3), exact, grow) if colour or v in cored else torch.zeros_like(exact)
        from_cores = found  # the part grown from flat cores, before lone pixels join
        hidden = torch.zeros_like(found)  # dropped pixels that do not stand out: no evidence, so no border
        if float(exact.sum() - found.sum()) >= least:
            contrast, seen = _ring_mean(_difference(x, window, v), 1 - exact)
            lone = (exact - found) * (seen > 0) * (contrast >= min_contrast)  # they stand out
            if float(lone.sum()) >= least and _spread_at_random(exact, lone):
                scattered[window] = torch.maximum(scattered[window], lone)
                if _blind_to_content(exact, lone, contrast, seen, min_contrast):
                    found = torch.maximum(found, _grown(lone, exact, grow))
                    hidden = exact * (_box_sum(exact) < 2.5) * (1 - found)  # one neighbour of v at most
        if bool(found.any()):
            grown.append((v, window, found.bool(), hidden.bool(), from_cores.bool()))
    regions, ground = torch.zeros_like(mask), torch.zeros_like(mask)  # every candidate's grown region; the paper
    for _, window, found, _, from_cores in grown:
        regions[window] = torch.maximum(regions[window], found.to(x.dtype))
        if float(from_cores.sum()) >= BACKGROUND_SHARE * searched:  # the paper, not a hole in it
            ground[window] = torch.maximum(ground[window], from_cores.to(x.dtype))
    for v, window, found, hidden, from_cores in grown:  # another value's lone pixels are no border
        if bool(ground[window][from_cores].any()):
            continue
        from_cores = from_cores.to(x.dtype)
        found = found.to(x.dtype)
        ring = (_dilate(found, 3) - found) * (1 - scattered[window]) * (1 - cut[window])
        apart = ring * (1 - regions[window])  # nor may another value's region carry it, where the border has more
        difference = _difference(x, window, v)
        on_paper = float((ring * ground[window]).sum()) >= float(ring.sum()) / 2  # text printed on it
        if not on_paper and all(float(r.sum()) > 0 and float((difference * r).sum() / r.sum()) >= min_contrast
                                for r in ((ring, apart) if bool(apart.any()) else (ring,))) \
                and not _drawn(x, window, v, from_cores, found, cut[window], min_contrast):
            mask[window] = found + hidden.to(x.dtype)
            if not _jpeg_blocks(x, mask[0, 0] > 0):
                break
            mask.zero_()
    return mask


def _drawn(x: torch.Tensor, window: tuple, v: float, from_cores: torch.Tensor, found: torch.Tensor, cut: torch.Tensor,
           min_contrast: float) -> bool:
    """Whether the part ``from_cores`` (1,1,h,w) of a region ``found`` of value ``v`` in ``x`` (3,H,W)
    within ``window``, the part grown from flat cores, was drawn on the photo rather than cut out
    of it: its border does not continue what lies beyond. Where pixels are missing, the pixel next
    to the hole is the photo, about as far from ``v`` as the photo 2 px out; text and graphics are
    drawn anti-aliased, so the pixels at their edge are blends of ``v`` and the background, nearer
    to ``v`` (and a thin line between two parts of a region is nearer to neither). So the median,
    over the border pixels whose background (the mean of their neighbours 2 px from the region)
    differs from ``v`` by at least ``min_contrast``, of the ratio of the two distances from ``v``
    lies within [:data:`HARD_EDGE`, 1 / :data:`HARD_EDGE`] for a hole, outside it for a drawing.
    Pixels dropped one by one have no edge to blend: lone pixels are not judged."""
    outside = (1 - found) * (1 - cut)
    near = _dilate(from_cores, 3)
    rows, cols = (near * outside)[0, 0].nonzero(as_tuple=True)  # the border
    beyond = ((_dilate(near, 3) - near) * outside)[0, 0]
    pixels = x[window]
    height, width = beyond.shape
    total, seen = pixels.new_zeros(3, len(rows)), pixels.new_zeros(len(rows))
    # each border pixel's neighbours 2 px from the region, read at the border pixels alone: the same
    # mean as _ring_mean's over the whole window, which took 4 s more on a 12 Mpx photo
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            r, c = rows + dy, cols + dx
            inside = ((r >= 0) & (r < height) & (c >= 0) & (c < width)).to(pixels.dtype)
            r, c = r.clamp(0, height - 1), c.clamp(0, width - 1)
            weight = beyond[r, c] * inside
            total += pixels[:, r, c] * weight
            seen += weight
    far = (total / seen.clamp_min(1e-12) - v).abs().mean(0)
    judged = (seen > 0) & (far >= min_contrast)
    if not bool(judged.any()):
        return False
    ratio = float(((pixels[:, rows, cols] - v).abs().mean(0)[judged] / far[judged]).median())
    return not HARD_EDGE <= ratio <= 1 / HARD_EDGE


def _jpeg_blocks(x: torch.Tensor, found: torch.Tensor) -> bool:
    """Whether ``found`` (H,W) bool is a JPEG's flat blocks: ``x`` (3,H,W) carries a JPEG trace
    (:func:`jpeg_quality`) and at least :data:`MIN_BLOCK_SHARE` of ``found`` lies in blocks of
    the trace's 8x8 grid (:func:`grid_phase`) that it holds whole (where a block is cut by the
    photo's edge, its part inside). Most of such a region's top and left edges lie on one row
    and one column of the grid, modulo 8; a stroke's are spread over all eight, and it is passed
    over before the photo's luma is read."""
    for dim in (0, 1):  # the region's top edges, then its left edges, by their place modulo 8
        starts = found.narrow(dim, 1, found.shape[dim] - 1) & ~found.narrow(dim, 0, found.shape[dim] - 1)
        places = (starts.nonzero()[:, dim] + 1) % BLOCK
        if places.numel() and int(places.bincount().max()) < places.numel() / 2:
            return False
    top, left = grid_phase(luma(x[None])[0])
    height, width = found.shape
    before = (-left % BLOCK, -top % BLOCK)  # the blocks start at ``top``, ``left``: pad up to a first one
    pad = (before[0], -(width + before[0]) % BLOCK, before[1], -(height + before[1]) % BLOCK)

    def per_block(t: torch.Tensor) -> torch.Tensor:  # pixels held in each block of the grid
        return F.pad(t.to(torch.int32), pad).unflatten(0, (-1, BLOCK)).unflatten(2, (-1, BLOCK)).sum((1, 3))

    held, room = per_block(found), per_block(torch.ones_like(found))
    whole = float(held[(held == room) & (held > 0)].sum())
    return whole >= MIN_BLOCK_SHARE * float(found.sum()) and not bool(jpeg_quality(x[None]).isnan().all())


def _difference(x: torch.Tensor, window: tuple, v: float) -> torch.Tensor:
    """How far each pixel of ``x`` (3,H,W) within ``window`` lies from the value ``v``: the mean
    absolute difference over the channels, (1,1,h,w). Taken where it is needed, not kept: a
    window can be the whole photo."""
    return (x[window] - v).abs().mean(0, keepdim=True)[None]


def _most_frequent(values: torch.Tensor, count: int) -> list[tuple[float, int]]:
    """``[(value, how often)]``: the ``count`` most frequent of ``values``, the most frequent first."""
    unique, counts = values.unique(return_counts=True)
    order = counts.argsort(descending=True)[:count]
    return list(zip(unique[order].tolist(), counts[order].tolist()))


def _indexed(x: torch.Tensor, sample: int = 2**16) -> bool:
    """Whether ``x`` (3,H,W) in [0, 1] holds at most :data:`INDEXED_COLOURS` colours, on the 8-bit
    scale. Every k-th pixel is counted first (at most ``sample`` of them): a photo shows more
    colours than that in its sample alone, and only an image that does not is counted whole."""
    pixels = x.flatten(1)
    for some in (pixels[:, :: -(-pixels.shape[1] // sample)], pixels):
        codes = (some.clamp(0, 1) * 255).round().to(torch.int32)
        if ((codes[0] * 256 + codes[1]) * 256 + codes[2]).unique().numel() > INDEXED_COLOURS:
            return False
    return True


def _windowed(exact: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    """``exact`` (1,1,H,W) cut to the window where the work stays (its bounding box and a 2 px
    margin), and that window."""
    rows, cols = exact[0, 0].nonzero(as_tuple=True)
    window = (..., slice(max(int(rows.min()) - 2, 0), int(rows.max()) + 3),
              slice(max(int(cols.min()) - 2, 0), int(cols.max()) + 3))
    return exact[window], window


def _grown(seeds: torch.Tensor, exact: torch.Tensor, grow: int) -> torch.Tensor:
    """``seeds`` grown ``grow`` steps of one pixel over ``exact`` (the thin parts joined to them)."""
    if not bool(seeds.any()):
        return seeds
    for _ in range(grow):
        seeds = _dilate(seeds, 3) * exact
    return seeds


def _spread_at_random(exact: torch.Tensor, lone: torch.Tensor) -> bool:
    """Whether the ``lone`` pixels of ``exact`` (1,1,h,w) lie as pixels dropped at random would:
    at least half as many of them have no neighbour of their value as chance gives at the
    value's density ``q`` in the window, ``(1 - q) ** 8``. Rain streaks and the clipped white
    rims of a JPEG come in runs."""
    alone = float((lone * (_box_sum(exact) < 1.5)).sum() / lone.sum())  # the pixel itself counts 1
    return alone >= (1 - float(exact.mean())) ** 8 / 2


def _stand_out(level: torch.Tensor, min_contrast: float) -> torch.Tensor:
    """The pixels of the gray ``level`` (1,1,H,W) that differ from the mean of their 8 neighbours
    by at least ``min_contrast``, (H,W) bool."""
    return ((level - _ring_mean(level, torch.ones_like(level))[0]).abs() >= min_contrast)[0, 0]


def _ring_mean(t: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``weight``-ed mean of ``t`` (1,1,h,w) over each pixel's 8 neighbours (zero where they
    weigh nothing), and that weight."""
    seen = _box_sum(weight) - weight
    return (_box_sum(t * weight) - t * weight) / seen.clamp_min(1e-12), seen


def _blind_to_content(exact: torch.Tensor, lone: torch.Tensor, contrast: torch.Tensor, seen: torch.Tensor,
                      min_contrast: float) -> bool:
    """Whether the ``lone`` pixels of ``exact`` (1,1,h,w) sit on the photo's content as pixels
    dropped at random would: the ``contrast`` of their neighbours (their mean distance from the
    value, over the ``seen`` weight of those not of it) is distributed as the other pixels' is,
    the same bar asked of both. The two distributions may differ by at most
    ``max(0.05, 2 / sqrt(n))`` in the Kolmogorov-Smirnov distance (:func:`_ks_distance`; ``n``
    the two samples' effective size, and 2 about the 0.1% point of chance). Noise clipped at
    black lies in dark content, at white in bright content, and noise of one mid value stands out
    only where the content is near it. Each sample is thinned to at most ``2 ** 16`` values,
    evenly over the photo: more would not move the bar."""
    reference = _thinned(contrast[(exact == 0) & (seen > 0) & (contrast >= min_contrast)])
    if reference.numel() == 0:
        return True
    sample = _thinned(contrast[lone > 0])
    n = sample.numel() * reference.numel() / (sample.numel() + reference.numel())
    return _ks_distance(sample, reference) <= max(0.05, 2 / n**0.5)


def _thinned(values: torch.Tensor, most: int = 2**16) -> torch.Tensor:
    """Every k-th of ``values``, the smallest k that leaves at most ``most``."""
    return values[:: -(-values.numel() // most) or 1]


def _ks_distance(a: torch.Tensor, b: torch.Tensor, tolerance: float = 1e-5) -> float:
    """The two-sample Kolmogorov-Smirnov distance of the values ``a`` and ``b``: the largest gap
    between their empirical distribution functions. Values within ``tolerance`` count as one: a
    mean of 8-bit pixels is one of few values, and its float rounding must not split them."""
    a, b = a.sort().values, b.sort().values
    points = torch.cat([a, b]) + tolerance
    cdf_a = torch.searchsorted(a, points, right=True) / a.numel()
    cdf_b = torch.searchsorted(b, points, right=True) / b.numel()
    return float((cdf_a - cdf_b).abs().max())


def _box_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum over each pixel's 3x3 neighbourhood (zero outside the image)."""
    return F.avg_pool2d(t, 3, stride=1, padding=1, count_include_pad=True) * 9


def harmonic_fill(image: torch.Tensor, mask: torch.Tensor, iterations: int = 100) -> torch.Tensor:
    """``image`` (B,C,H,W) with its ``mask`` = 1 pixels (B or 1, 1, H, W) replaced by the harmonic
    interpolation of the others: the solution of Laplace's equation ``Delta u = 0`` on the
    missing pixels with the observed ones fixed. Observed pixels are returned unchanged.

    Solved coarse to fine: the observed pixels are averaged down a pyramid (2x2, weighted by
    how many are observed) until the holes close or the image is 8 px; each finer level starts
    from the bilinear upsampling of the coarser solution and runs ``iterations`` Jacobi sweeps
    of the 4-neighbour mean, so the cost is linear in the pixel count.
    """
    known = (1 - mask.to(image.dtype)).expand(image.shape[0], 1, *image.shape[-2:])
    return _harmonic(image * known, known, iterations)


def _harmonic(values: torch.Tensor, known: torch.Tensor, iterations: int) -> torch.Tensor:
    h, w = values.shape[-2:]
    if bool((known > 0).all()):
        return values / known.clamp_min(1e-12)
    observed = values / known.clamp_min(1e-12)
    if min(h, w) > 8:
        pad = (0, w % 2, 0, h % 2)
        coarse_values = F.avg_pool2d(F.pad(values, pad, mode="replicate"), 2)
        coarse_known = F.avg_pool2d(F.pad(known, pad, mode="replicate"), 2)
        coarse = _harmonic(coarse_values, coarse_known, iterations)
        start = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)[..., :h, :w]
    else:  # the coarsest level: the mean of what is observed
        mean = values.sum((-2, -1), keepdim=True) / known.sum((-2, -1), keepdim=True).clamp_min(1e-12)
        start = mean.expand_as(values)
    u = torch.where(known > 0, observed, start)
    # Jacobi sweeps over the missing pixels alone (gathered by flat index; borders replicate)
    b, c = u.shape[:2]
    flat = u.transpose(0, 1).reshape(c, -1)
    image, row, col = (known[:, 0] <= 0).nonzero(as_tuple=True)
    base = image * h * w
    neighbours = [base + row.sub(1).clamp_min(0) * w + col, base + row.add(1).clamp_max(h - 1) * w + col,
                  base + row * w + col.sub(1).clamp_min(0), base + row * w + col.add(1).clamp_max(w - 1)]
    missing = base + row * w + col
    for _ in range(iterations):
        flat[:, missing] = 0.25 * sum(flat[:, n] for n in neighbours)
    return flat.reshape(c, b, h, w).transpose(0, 1)
