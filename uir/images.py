"""Reading, converting and writing images safely.

Everything in uir works on float tensors in [0, 1], (C,H,W) or (B,C,H,W), RGB. This module
turns whatever a user hands over into that, or raises :class:`ImageError` with one line
saying what is wrong:

* files: unreadable, truncated or non-image files, decompression bombs;
* modes: 1, L, LA, P, RGBA, CMYK, YCbCr, 16-bit (I;16*, I) and float (F) images are converted
  to RGB; alpha is composited over white; EXIF orientation is applied; 16-bit PNGs (grey or
  colour, which PIL would cut to 8 bits) are read at full depth, and :func:`image_bit_depth`
  lets a caller write 16 bits back (``save_image(..., bit_depth=16)``);
* animated GIF/WebP/PNG: the first frame, with a warning that says so;
* arrays: uint8, uint16 and float numpy arrays, (H,W), (H,W,C) with C in {1,3,4};
* sizes: at least ``MIN_SIDE`` pixels on each side and at most ``MAX_PIXELS`` in total.

:func:`save_image` writes to a temporary file beside the target and renames it, so an output
is never half-written.
"""

from __future__ import annotations

import glob
import warnings
from pathlib import Path

import numpy as np
import png
import torch
from PIL import Image, ImageOps

from .files import atomic_write

MIN_SIDE = 8
MAX_PIXELS = 8192 * 8192
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}


class ImageError(ValueError):
    """An input image that cannot be used; the message is one line for the user."""


def _check_size(height: int, width: int, where: str = "image") -> None:
    if min(height, width) < MIN_SIDE:
        raise ImageError(f"{where} is {width}x{height}; uir needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    if height * width > MAX_PIXELS:
        raise ImageError(f"{where} is {width}x{height}; uir accepts at most {MAX_PIXELS} pixels")


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """Float32 (H,W,3) in [0, 1] from any PIL mode."""
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        gray = np.clip(array / peak, 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    if mode == "F":
        gray = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0)
        return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "P", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_bit_depth(path) -> int:
    """16 for a 16-bit PNG, else 8 (from the PNG header; other formats are read as 8-bit)."""
    with open(path, "rb") as stream:
        header = stream.read(26)
    return 16 if header[:8] == _PNG_SIGNATURE and header[12:16] == b"IHDR" and header[24] == 16 else 8


def _read_png16(path) -> np.ndarray:
    """Float32 (H,W,3) in [0, 1] from a 16-bit PNG, alpha composited over white."""
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    array = np.array([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes) / 65535.0
    if info["alpha"]:
        array = array[..., :-1] * array[..., -1:] + (1.0 - array[..., -1:])
    return np.ascontiguousarray(np.broadcast_to(array, (height, width, 3)) if array.shape[-1] == 1 else array,
                                dtype=np.float32)


def load_image(path) -> torch.Tensor:
    """Read an image file as a float32 RGB tensor (3,H,W) in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_size(image.height, image.width, str(path))
                frames = getattr(image, "n_frames", 1)
                if image_bit_depth(path) == 16:
                    array = _read_png16(path)
                else:
                    image.load()
                    array = _pil_to_array(image)
        if frames > 1:
            warnings.warn(f"{path}: an animation of {frames} frames; only the first is used", stacklevel=2)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: image is too large to decode safely") from None
    except OSError as error:  # PIL's UnidentifiedImageError and truncation errors are OSErrors
        reason = "not an image file" if isinstance(error, Image.UnidentifiedImageError) else f"unreadable image ({error})"
        raise ImageError(f"{path}: {reason}") from None
    except (ValueError, SyntaxError, png.Error) as error:
        raise ImageError(f"{path}: unreadable image ({error})") from None
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)


def resize_shorter(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (C,H,W) or (B,C,H,W) (bicubic, antialiased, clamped to [0, 1]) so the shorter side is ``size``."""
    import torch.nn.functional as F

    h, w = image.shape[-2:]
    scale = size / min(h, w)
    batch = image if image.dim() == 4 else image[None]
    resized = F.interpolate(batch, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode="bicubic",
                            antialias=True, align_corners=False).clamp(0, 1)
    return resized if image.dim() == 4 else resized[0]


def to_tensor(image) -> torch.Tensor:
    """Convert PIL, numpy, a tensor, or a list of them, to a float (B,3,H,W) batch in [0, 1].

    Numpy arrays are (H,W), (H,W,C) or (B,H,W,C); integer arrays are scaled by their dtype's
    maximum. Tensors are (C,H,W) or (B,C,H,W) floats in [0, 1]. One channel is repeated to
    three; a fourth (alpha) channel is composited over white.
    """
    if isinstance(image, (list, tuple)):
        if not image:
            raise ImageError("empty list of images")
        batch = [to_tensor(item) for item in image]
        if len({tuple(item.shape[-2:]) for item in batch}) > 1:
            raise ImageError("images in one batch must share a size; pass them one at a time or resize them")
        return torch.cat(batch)
    if isinstance(image, Image.Image):
        _check_size(image.height, image.width)
        return torch.from_numpy(np.ascontiguousarray(_pil_to_array(image))).permute(2, 0, 1).unsqueeze(0)
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype.kind in "ui":
            array = array.astype(np.float32) / float(np.iinfo(image.dtype).max)
        elif array.dtype.kind == "f":
            array = array.astype(np.float32)
        else:
            raise ImageError(f"unsupported array dtype {image.dtype}")
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            raise ImageError(f"expected an array of shape (H,W), (H,W,C) or (B,H,W,C), got {image.shape}")
        return _channels_to_rgb(torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2))
    if isinstance(image, torch.Tensor):
        if image.dim() == 3:
            image = image.unsqueeze(0)
        if image.dim() != 4:
            raise ImageError(f"expected a tensor of shape (C,H,W) or (B,C,H,W), got {tuple(image.shape)}")
        if not image.is_floating_point():
            image = image.float() / float(torch.iinfo(image.dtype).max)
        return _channels_to_rgb(image)
    raise ImageError(f"unsupported image type {type(image).__name__}; pass PIL, numpy or torch images")


def _channels_to_rgb(batch: torch.Tensor) -> torch.Tensor:
    channels = batch.shape[1]
    if channels not in (1, 3, 4):
        raise ImageError(f"expected 1, 3 or 4 channels, got {channels}")
    _check_size(*batch.shape[-2:])
    if not torch.isfinite(batch).all():
        raise ImageError("image contains NaN or infinite values")
    if batch.min() < -1e-3 or batch.max() > 1 + 1e-3:
        raise ImageError(f"float images must lie in [0, 1], got [{batch.min().item():.3g}, {batch.max().item():.3g}]")
    batch = batch.clamp(0.0, 1.0)
    if channels == 4:
        alpha = batch[:, 3:]
        batch = batch[:, :3] * alpha + (1.0 - alpha)
    return batch.expand(-1, 3, -1, -1).contiguous() if channels == 1 else batch


def to_pil(image: torch.Tensor) -> list[Image.Image]:
    """(C,H,W) or (B,C,H,W) floats in [0, 1] to a list of 8-bit RGB PIL images (rounded)."""
    batch = image.detach().float().cpu().clamp(0, 1)
    batch = batch.unsqueeze(0) if batch.dim() == 3 else batch
    arrays = (batch.permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arrays]


def output_format(path) -> str:
    """The PIL format :func:`save_image` writes ``path`` in, from its suffix; an
    :class:`ImageError` for a suffix it cannot write (``.gif``, ``.xyz``, none)."""
    fmt = _SAVE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unknown output format; use one of {', '.join(sorted(_SAVE_FORMATS))}")
    return fmt


def save_image(image, path, overwrite: bool = True, bit_depth: int = 8) -> Path:
    """Write one image ((C,H,W) tensor or PIL) atomically; the format comes from the file suffix.

    With ``overwrite=False`` an existing ``path`` is kept and ``FileExistsError`` raised.
    ``bit_depth=16`` writes a 16-bit PNG from a tensor (for a 16-bit input).
    """
    path = Path(path)
    fmt = output_format(path)
    if bit_depth == 16 and fmt == "PNG" and isinstance(image, torch.Tensor):
        pixels = image.detach().float().cpu().clamp(0, 1).reshape(-1, *image.shape[-2:])
        rows = (pixels.permute(1, 2, 0).numpy() * 65535.0).round().astype(np.uint16).reshape(pixels.shape[1], -1)
        writer = png.Writer(pixels.shape[2], pixels.shape[1], greyscale=pixels.shape[0] == 1, bitdepth=16)
        return atomic_write(path, lambda stream: writer.write(stream, rows), overwrite=overwrite)
    if isinstance(image, Image.Image):
        pil = image.convert("RGB")
    else:
        if image.dim() == 4:
            if image.shape[0] != 1:
                raise ImageError(f"save_image writes one image, got a batch of {image.shape[0]}")
            image = image[0]
        pil = to_pil(image)[0]
    return atomic_write(path, lambda stream: pil.save(stream, format=fmt, **({"quality": 95} if fmt == "JPEG" else {})),
                        overwrite=overwrite)


def list_images(inputs) -> list[Path]:
    """Expand files, folders (non-recursive, sorted) and glob patterns into image paths.

    Files are kept whatever their suffix, so that a bad one is reported rather than skipped;
    folders and globs contribute files with an image suffix.
    """
    paths: list[Path] = []
    for item in inputs:
        item = str(item)
        p = Path(item)
        if p.is_dir():
            paths += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
        elif p.exists():
            paths.append(p)
        elif any(ch in item for ch in "*?["):
            paths += [Path(q) for q in sorted(glob.glob(item)) if Path(q).suffix.lower() in IMAGE_SUFFIXES]
        else:
            paths.append(p)  # reported as missing by load_image
    return paths
