"""The real photographs used for training and evaluation, and their fixed split.

The split is by sorted file name: every fifth file (positions 5, 10, 15, ... counting from 1)
is held out. Anyone with the same folder gets the same split, and adding a photo at the end
of the order does not move the others between splits. The real degraded captures of
``shared/photos`` (:data:`REAL_CAPTURES`) are then left out of every part: they have no clean
ground truth, so they are neither trained towards nor scored against (docs/gallery.md shows them).

uir never needs these photos at run time; training scripts and tests find them through
:func:`default_photos_dir`, and the options ``--train_data_dir`` / ``--validation_data_dir``
through :func:`photo_split`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path


logger = logging.getLogger("uir.data")

HOLDOUT_EVERY = 5
#: the photos of ``shared/photos`` that its README names as real degraded captures (real motion
#: blur, real defocus): qualitative inputs, never clean references
REAL_CAPTURES = frozenset({"opencv-doc__text_motion.png", "opencv-doc__licenseplate_motion.png",
                           "scikit-image__clock_motion.png", "opencv-doc__text_defocus.png"})
#: environment variable that points at a folder of clean photographs
PHOTOS_ENV = "UIR_PHOTOS"


def default_photos_dir() -> Path | None:
    """``$UIR_PHOTOS`` if set, else ``../shared/photos`` beside the repository, if present."""
    if os.environ.get(PHOTOS_ENV):
        return Path(os.environ[PHOTOS_ENV])
    candidate = Path(__file__).resolve().parents[3] / "shared" / "photos"
    return candidate if candidate.is_dir() else None


def photo_root(folder=None, option: str = "--data") -> Path:
    """``folder``, else :func:`default_photos_dir`; a ``FileNotFoundError`` naming ``option`` when
    neither is given."""
    root = Path(folder) if folder is not None else default_photos_dir()
    if root is None:
        raise FileNotFoundError(f"no {option} given and no photo folder found (set {PHOTOS_ENV})")
    return root


def _image_files(root) -> list[Path]:
    """Image files directly in ``root``, sorted by name: the order the split counts in."""
    from ..images import IMAGE_SUFFIXES  # here, not above: default_photos_dir stays torch-free (uir info)

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"photo folder {root} does not exist")
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _clean_references(files: list[Path]) -> list[Path]:
    """``files`` without the :data:`REAL_CAPTURES`, which have no clean ground truth."""
    return [p for p in files if Path(p).name not in REAL_CAPTURES]


def photo_files(root) -> list[Path]:
    """The clean photos directly in ``root``, sorted by name: its image files less the
    :data:`REAL_CAPTURES`."""
    return _clean_references(_image_files(root))


def set_aside(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """``(kept, set_aside)``: every ``HOLDOUT_EVERY``-th of ``files`` (counting from 1) is set aside."""
    return ([p for i, p in enumerate(files, start=1) if i % HOLDOUT_EVERY != 0],
            [p for i, p in enumerate(files, start=1) if i % HOLDOUT_EVERY == 0])


def split_photos(root) -> tuple[list[Path], list[Path]]:
    """``(train, held_out)``: every ``HOLDOUT_EVERY``-th file by sorted name is held out; the real
    captures are left out of both, after the split, so every other photo keeps its part."""
    train, held_out = set_aside(_image_files(root))
    return _clean_references(train), _clean_references(held_out)


def validation_split(root) -> tuple[list[Path], list[Path], list[Path]]:
    """``(train, validation, held_out)``: :func:`split_photos` with every fifth training photo set
    aside again, for the choices the held-out photos must not see (early stopping, GRIDS's
    verification, fitting a policy), so that the held-out score reports a choice made without them.
    As there, the real captures are left out after the split."""
    train, held_out = set_aside(_image_files(root))
    return (*map(_clean_references, set_aside(train)), _clean_references(held_out))


def link_photos(files, folder) -> Path:
    """``folder`` holding a symbolic link to each of ``files`` (links already there are kept), for
    the scripts whose options take a photo folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        link = folder / Path(path).name
        if not link.exists():
            link.symlink_to(Path(path).resolve())
    return folder


def _given_or_split(folder, part: int, option: str) -> list[Path]:
    return photo_files(folder) if folder is not None else split_photos(photo_root(None, option))[part]


def training_photos(train_data_dir) -> list[Path]:
    """The clean photos in ``train_data_dir``, or the training split of the default photos."""
    return _given_or_split(train_data_dir, 0, "--train_data_dir")


def held_out_photos(data_dir) -> list[Path]:
    """The clean photos in ``data_dir``, or the held-out split of the default photos."""
    return _given_or_split(data_dir, 1, "--data")


def readable_photos(files, crop: int | None = None) -> list[Path]:
    """``files`` less those PIL cannot open and verify, said in one warning line (so a corrupt
    photo among hundreds costs a line at start-up, not the run at step 5000). ``ValueError`` when
    none is left, or when ``crop`` exceeds the shorter side of every photo (they would only be
    padded, at any memory cost)."""
    from PIL import Image

    kept, bad, shorter = [], [], []
    for path in files:
        try:
            with Image.open(path) as image:
                side = min(image.size)
                image.verify()
        except Exception:  # PIL raises many kinds for a damaged file
            bad.append(path)
            continue
        kept.append(path)
        shorter.append(side)
    if bad:
        logger.warning("skipping %d unreadable photo(s): %s%s", len(bad), ", ".join(str(p) for p in bad[:3]),
                       " ..." if len(bad) > 3 else "")
    if not kept:
        raise ValueError(f"no readable photos ({len(bad)} unreadable)" if bad else "no photos")
    if crop is not None and crop > max(shorter):
        raise ValueError(f"--resolution {crop} is larger than every photo (the largest shorter side is "
                         f"{max(shorter)} px); choose a smaller crop")
    return kept


def _held_out(args) -> list[Path]:
    """``--validation_data_dir``'s photos, else the held-out split of the default photos."""
    if args.validation_data_dir is not None:
        return photo_files(args.validation_data_dir)
    root = default_photos_dir()
    return split_photos(root)[1] if root is not None else []


def _first_for_validation(held_out: list[Path], args) -> list[Path]:
    validation = held_out[: args.num_validation_images]
    if args.num_validation_images and not validation:
        logger.warning("no validation photos (give --validation_data_dir or set %s): validation is skipped", PHOTOS_ENV)
    return validation


def validation_photos(args) -> list[Path]:
    """The validation files of :func:`photo_split`, without listing or checking the training ones."""
    return _first_for_validation(_held_out(args), args)


def photo_split(args) -> tuple[list[Path], list[Path]]:
    """(training files, validation files) from the data options.

    Validation photos come from ``--validation_data_dir``, else the held-out split of the
    default photos; the first ``--num_validation_images`` are used. The split is respected: a
    ``--train_data_dir`` that holds held-out or validation photos trains without them. Both
    this and a run without validation photos are said in one log line, never silently. The
    training files are those :func:`readable_photos` keeps (a usage error when none is left).
    """
    train_files = training_photos(args.train_data_dir)
    held_out = _held_out(args)
    excluded = {path.resolve() for path in held_out}
    kept = [path for path in train_files if path.resolve() not in excluded]
    if len(kept) < len(train_files):
        logger.warning("%d photo(s) of the training folder are held out for validation; training without them",
                       len(train_files) - len(kept))
    try:
        kept = readable_photos(kept, getattr(args, "resolution", None))
    except ValueError as error:
        from ..boundary import UsageError

        raise UsageError(f"training photos: {error}") from None
    return kept, _first_for_validation(held_out, args)


__all__ = ["HOLDOUT_EVERY", "PHOTOS_ENV", "REAL_CAPTURES", "default_photos_dir", "held_out_photos", "link_photos", "photo_files",
           "photo_root", "readable_photos", "set_aside", "validation_photos", "validation_split",
           "photo_split", "split_photos", "training_photos"]
