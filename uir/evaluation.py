"""Held-out evaluation of restorers and routers: synthetic degradations of clean photos, or
``lq/`` + ``gt/`` pairs; score tables, CSV/JSON and comparison grids (``uir eval``,
``uir eval-router`` and the ``train/`` scripts' evaluate stages).

Every (photo, degradation) pair is degraded with its own generator, seeded from ``seed`` and
the pair's position, so a table is reproducible and does not depend on the order of the
loop. ``severity=None`` uses each degradation's defaults, which follow the benchmark
protocol (noise sigma 50/255, JPEG quality 10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from . import degradations
from .images import ImageError, load_image
from .metrics import psnr, ssim


@dataclass
class DegradedPair:
    name: str
    index: int
    path: str
    lq: torch.Tensor
    gt: torch.Tensor


#: ``on_skip(path, reason)``: told of each photo or pair that cannot be scored, which is left out
SkipHandler = Callable[[str, str], None]


def _raise(path: str, reason: str) -> None:
    raise ImageError(reason)


def degraded_pairs(files: Sequence, names: Sequence[str], seed: int = 0, severity: str | None = None,
                   repeats: int = 1, first_index: int = 0, on_skip: SkipHandler = _raise) -> Iterator[DegradedPair]:
    """Yield each photo under each degradation (``repeats`` independent draws each), as (1,3,H,W).
    A mixed name (``low-light+noisy``) applies its parts left to right.

    ``first_index`` is the position of ``files[0]`` in the whole list, so that a process scoring
    a contiguous share draws the same degradations as one process scoring everything.
    ``on_skip`` hears of an unreadable photo (default: raise :class:`~uir.images.ImageError`).
    """
    for f, path in enumerate(files, start=first_index):
        try:
            gt = load_image(path)[None]
        except ImageError as error:
            on_skip(str(path), str(error))
            continue
        for k, name in enumerate(names):
            for r in range(repeats):
                generator = torch.Generator().manual_seed(((seed * 7919 + f) * 131 + k) * 17 + r)
                lq = degradations.apply(degradations.mix_parts(name), gt, generator=generator, severity=severity)
                yield DegradedPair(name, k, str(path), lq, gt)


#: PSNR of identical images in the score tables (dB)
PSNR_CAP = 100.0
SCORE_TABLES = ("psnr_in", "psnr_out", "ssim_in", "ssim_out", "worse")


@dataclass
class RestorationScores:
    """Mean PSNR/SSIM per degradation, of the degraded input and of the restored output, the
    fraction of images the restoration made ``worse`` (lower PSNR than the input), and the
    number of pairs behind each mean (``count``). PSNR is capped at :data:`PSNR_CAP` (an
    identical image, e.g. a clean photo kept as it is, scores the cap, not infinity).

    ``pairs`` holds one row per pair scored: its ``photo`` (file name), ``degradation``, PSNR in
    and out, ``gain``, whether it got ``worse``, and what the restorer noted of it (the ``notes``
    of :func:`evaluate_restoration`)."""

    psnr_in: dict = field(default_factory=dict)
    psnr_out: dict = field(default_factory=dict)
    ssim_in: dict = field(default_factory=dict)
    ssim_out: dict = field(default_factory=dict)
    worse: dict = field(default_factory=dict)
    count: dict = field(default_factory=dict)
    pairs: list = field(default_factory=list)

    @classmethod
    def merge(cls, parts: Sequence["RestorationScores"]) -> "RestorationScores":
        """One table from the scores of disjoint shares (e.g. one per process), weighted by count."""
        merged = cls(pairs=[row for part in parts for row in part.pairs])
        for name in dict.fromkeys(name for part in parts for name in part.count):
            total = sum(part.count.get(name, 0) for part in parts)
            merged.count[name] = total
            for table in SCORE_TABLES:
                getattr(merged, table)[name] = sum(getattr(part, table)[name] * part.count[name]
                                                   for part in parts if name in part.count) / total
        return merged

    def mean(self, table: str) -> float:
        values = list(getattr(self, table).values())
        return sum(values) / len(values)

    def rows(self) -> list[dict]:
        return [{"degradation": name, "psnr_in": self.psnr_in[name], "psnr_out": self.psnr_out[name],
                 "gain": self.psnr_out[name] - self.psnr_in[name], "ssim_in": self.ssim_in[name],
                 "ssim_out": self.ssim_out[name], "worse": self.worse[name]} for name in self.psnr_in]


def _score(triples: Iterator[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, dict]]) -> RestorationScores:
    """Mean PSNR/SSIM per name over ``(name, lq, restored, gt, about)``, and a row per pair
    (:attr:`RestorationScores.pairs`) that starts with ``about``'s photo."""
    sums: dict[str, list[float]] = {}
    pairs = []
    for name, lq, restored, gt, about in triples:
        row = sums.setdefault(name, [0.0] * len(SCORE_TABLES) + [0])
        p_in, p_out = (min(psnr(x, gt).item(), PSNR_CAP) for x in (lq, restored))
        for i, value in enumerate((p_in, p_out, ssim(lq, gt).item(), ssim(restored, gt).item(), float(p_out < p_in))):
            row[i] += value
        row[-1] += 1
        pairs.append({"photo": about["photo"], "degradation": name, "psnr_in": p_in, "psnr_out": p_out,
                      "gain": p_out - p_in, "worse": p_out < p_in, **about})  # the photo stays first
    scores = RestorationScores(pairs=pairs)
    for name, row in sums.items():
        for table, total in zip(SCORE_TABLES, row):
            getattr(scores, table)[name] = total / row[-1]
        scores.count[name] = row[-1]
    return scores


def evaluate_restoration(restore: Callable[[torch.Tensor, DegradedPair], torch.Tensor], files, names, seed: int = 0,
                         severity: str | None = None, on_pair: Callable | None = None,
                         first_index: int = 0, on_skip: SkipHandler = _raise,
                         notes: Callable[[], dict] | None = None) -> RestorationScores:
    """Score ``restore(lq, pair) -> restored`` (both (1,3,H,W) in [0, 1]) on every pair.

    ``on_pair(pair, restored)`` sees each result (for grids); ``notes()``, called after each
    restore, gives that pair's extra columns in :attr:`RestorationScores.pairs` (e.g. what the
    router called it); ``first_index`` and ``on_skip`` as in :func:`degraded_pairs`.
    """
    def triples():
        for pair in degraded_pairs(files, names, seed, severity, first_index=first_index, on_skip=on_skip):
            with torch.no_grad():
                restored = restore(pair.lq, pair).float().clamp(0, 1)
            if on_pair is not None:
                on_pair(pair, restored)
            yield pair.name, pair.lq, restored, pair.gt, {"photo": Path(pair.path).name, **(notes() if notes else {})}

    return _score(triples())


def evaluate_paired(restore: Callable[[torch.Tensor], torch.Tensor], folder, name: str = "paired",
                    select: Callable[[list], list] = list, on_skip: SkipHandler = _raise) -> RestorationScores:
    """Score ``restore(lq) -> restored`` on the ``lq/`` and ``gt/`` pairs of ``folder`` (matched by
    file stem), as one row ``name``; ``select`` picks the pair indices to score (a process's share);
    ``on_skip`` hears of an unreadable pair or one whose two images differ in size."""
    from .data import PairedFolderDataset

    dataset = PairedFolderDataset(Path(folder) / "lq", Path(folder) / "gt")

    def triples():
        for index in select(list(range(len(dataset)))):
            try:
                item = dataset[index]
            except ValueError as error:  # ImageError, or sizes that differ
                on_skip(str(dataset.pairs[index][0]), str(error))
                continue
            lq, gt = item["lq"][None], item["gt"][None]
            with torch.no_grad():
                restored = restore(lq).float().clamp(0, 1)
            yield name, lq, restored, gt, {"photo": Path(dataset.pairs[index][0]).name}

    return _score(triples())


def with_mean(rows: list[dict]) -> list[dict]:
    """``rows`` plus a ``mean`` row averaging every numeric column."""
    key = next(iter(rows[0]))
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != key}
    return rows + [{key: "mean", **mean}]


def write_csv(rows: list[dict], path) -> Path:
    """Write ``rows`` (dicts with the same keys) to ``path`` as CSV, atomically."""
    import csv
    import io

    from .files import atomic_write

    def write(stream):
        text = io.TextIOWrapper(stream, newline="", encoding="utf-8")
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        text.detach()

    return atomic_write(Path(path), write)


def write_scores(rows: list[dict], folder, pairs: list[dict] | None = None) -> list[Path]:
    """Write ``rows`` as ``scores.csv`` and ``scores.json`` in ``folder``, and ``pairs``
    (:attr:`RestorationScores.pairs`), if any, as ``pairs.csv``; each atomically."""
    from .files import save_json

    folder = Path(folder)
    written = [write_csv(rows, folder / "scores.csv"), save_json(rows, folder / "scores.json")]
    return written + ([write_csv(pairs, folder / "pairs.csv")] if pairs else [])


def router_confusion(router, files, names, seed: int = 0, severity: str | None = "random",
                     repeats: int = 1, on_skip: SkipHandler = _raise) -> dict[str, dict[str, int]]:
    """``{true degradation: {predicted name: count}}`` of ``router``'s top-1 over each photo
    under each of ``names`` (``repeats`` draws each); ``on_skip`` as in :func:`degraded_pairs`."""
    counts: dict[str, dict[str, int]] = {name: {} for name in names}
    device = router.degradation_bank.device
    with torch.no_grad():
        for pair in degraded_pairs(files, names, seed, severity, repeats, on_skip=on_skip):
            predicted = router(pair.lq.to(device)).names[0]
            counts[pair.name][predicted] = counts[pair.name].get(predicted, 0) + 1
    return counts


def router_accuracy(confusion: dict[str, dict[str, int]]) -> dict[str, float]:
    """Top-1 accuracy per degradation, plus ``"overall"``, from :func:`router_confusion`."""
    accuracy = {name: row.get(name, 0) / max(1, sum(row.values())) for name, row in confusion.items()}
    accuracy["overall"] = (sum(row.get(name, 0) for name, row in confusion.items())
                           / max(1, sum(sum(row.values()) for row in confusion.values())))
    return accuracy


def evaluate_router(router, files, names, seed: int = 0, severity: str | None = "random",
                    repeats: int = 1) -> dict[str, float]:
    """Top-1 accuracy of ``router`` per degradation, plus ``"overall"``; the true label of each
    pair is its degradation name, and a prediction outside ``names`` counts as wrong."""
    return router_accuracy(router_confusion(router, files, names, seed, severity, repeats))


def comparison_grid(rows: Sequence[tuple[str, Sequence[torch.Tensor]]], height: int = 160,
                    columns: Sequence[str] = ("input", "output", "ground truth")):
    """A labelled PIL grid: one row per ``(label, [image, ...])``, images (1,3,H,W) or (3,H,W)
    resized to ``height``; a header names the columns. Labels may span lines (``\\n``); the label
    column is as wide as the widest label, so none is cut."""
    from PIL import Image, ImageDraw

    from .images import to_pil

    def tile(image):
        picture = to_pil(image if image.dim() == 4 else image[None])[0]
        width = max(1, round(picture.width * height / picture.height))
        return picture.resize((width, height), Image.BICUBIC)

    tiles = [[tile(image) for image in images] for _, images in rows]
    widths = [max(row[c].width for row in tiles) for c in range(len(tiles[0]))] if tiles else []
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [measure.multiline_textbbox((0, 0), label) for label, _ in rows]
    label_width, header = max([150] + [box[2] + 12 for box in boxes]), 18
    grid = Image.new("RGB", (label_width + sum(widths), header + height * len(tiles)), "white")
    draw = ImageDraw.Draw(grid)
    x = label_width
    for name, width in zip(columns, widths):
        draw.text((x + 4, 3), name, fill="black")
        x += width
    for r, ((label, _), row, box) in enumerate(zip(rows, tiles, boxes)):
        y = header + r * height
        draw.multiline_text((4, y + (height - box[3]) // 2), label, fill="black")
        x = label_width
        for picture, width in zip(row, widths):
            grid.paste(picture, (x, y))
            x += width
    return grid


def markdown_table(rows: list[dict], digits: int = 2) -> str:
    """Rows of equal keys as a Markdown table (floats rounded)."""
    if not rows:
        return ""
    keys = list(rows[0])
    cell = lambda v: f"{v:.{digits}f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "|".join(" --- " for _ in keys) + "|"]
    lines += ["| " + " | ".join(cell(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def evaluate_severities(restore: Callable[[torch.Tensor, DegradedPair], torch.Tensor], files, names,
                        severities: Sequence[str], seed: int = 0) -> list[dict]:
    """:func:`evaluate_restoration` at each severity: one row per (severity, degradation), ``level`` first."""
    rows = []
    for severity in severities:
        scores = evaluate_restoration(restore, files, names, seed=seed, severity=severity)
        rows += [{"level": severity, **row} for row in scores.rows()]
    return rows


def report(rows: list[dict], output=None) -> list[dict]:
    """Print ``rows`` as a Markdown table and, with ``output``, write them there as JSON."""
    from .files import save_json

    print(markdown_table(rows))
    if output:
        save_json(rows, output)
    return rows


__all__ = ["DegradedPair", "RestorationScores", "comparison_grid", "degraded_pairs", "evaluate_paired",
           "evaluate_restoration", "evaluate_router", "router_accuracy", "router_confusion", "evaluate_severities", "markdown_table", "report", "with_mean",
           "write_csv", "write_scores"]
