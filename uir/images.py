"""Reading, converting and writing images safely.

Everything in uir works on float tensors in [0, 1], (C,H,W) or (B,C,H,W), RGB. This module
turns whatever a user hands over into that, or raises :class:`ImageError` with one line
saying what is wrong:

* files: unreadable, truncated or non-image files, decompression bombs;
* modes: 1, L, LA, P, RGBA, CMYK, YCbCr, 16-bit (I;16*, I) and float (F) images are converted
  to RGB; alpha is composited over white; EXIF orientation is applied; 16-bit PNGs (grey or
  colour, which PIL would cut to 8 bits) are read at full depth;
* layout: :func:`read_image` also returns the file's :class:`Layout` (16 bits, one grey channel,
  an alpha channel), and ``save_image(..., layout=...)`` writes a result back in kind;
* animated GIF/WebP/PNG: the first frame, with a warning that says so;
* arrays: uint8, uint16 and float numpy arrays, (H,W), (H,W,C) with C in {1,3,4};
* sizes: at least ``MIN_SIDE`` pixels on each side and at most ``MAX_PIXELS`` in total.

:func:`save_image` writes to a temporary file beside the target and renames it, so an output
is never half-written.
"""

from __future__ import annotations

import glob
import io
import warnings
import zlib
from dataclasses import dataclass
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
_SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}  # a restored photo gains no new artefacts
_ALPHA_FORMATS = ("PNG", "TIFF", "WEBP")
_ORIENTATION = 0x0112  # the EXIF tag
_INTEGER_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_GREY_MODES = ("1", "L", "LA", "La", "F", *_INTEGER_GREY_MODES)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageError(ValueError):
    """An input image that cannot be used; the message is one line for the user."""


def _check_size(height: int, width: int, where: str = "image") -> None:
    if min(height, width) < MIN_SIDE:
        raise ImageError(f"{where} is {width}x{height}; uir needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    if height * width > MAX_PIXELS:
        raise ImageError(f"{where} is {width}x{height}; uir accepts at most {MAX_PIXELS} pixels")


@dataclass(frozen=True)
class Layout:
    """How a file stored its pixels beyond the RGB in [0, 1] that uir works on, so that a result
    can be written back in kind (:func:`read_image`, :func:`save_image`): its bit depth (16 for a
    16-bit PNG), whether it had one grey channel, its alpha channel, (1,H,W) in [0, 1], its ICC
    colour profile, which says what colours its values mean (a camera's Display P3, say), and its
    EXIF metadata (the date taken, the camera, where), its orientation set upright since the
    pixels were turned upright when read (PIL writes back no EXIF thumbnail, which would show
    the input)."""

    bit_depth: int = 8
    grey: bool = False
    alpha: torch.Tensor | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None

    def profile_for(self, channels: int) -> bytes | None:
        """The ICC profile to write with ``channels`` planes (1-4, alpha last): the file's own where
        its colour space is the one written (``GRAY`` or ``RGB``; a CMYK file's profile does not
        describe the RGB uir writes), else none."""
        space = b"GRAY" if channels in (1, 2) else b"RGB "
        return self.icc_profile if self.icc_profile and self.icc_profile[16:20] == space else None


def _pil_planes(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Float32 colour planes in [0, 1], (H,W,1) for a grey mode and (H,W,3) otherwise, and the
    alpha plane (H,W) or ``None``, from any PIL mode, EXIF orientation applied."""
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in _INTEGER_GREY_MODES:
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        return np.clip(array / peak, 0.0, 1.0)[..., None].astype(np.float32), None
    if mode == "F":
        return np.clip(np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0), 0.0, 1.0)[..., None], None
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        colour, alpha = rgba[..., :3], rgba[..., 3]
    else:
        colour, alpha = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0, None
    return (colour[..., :1] if mode in _GREY_MODES else colour), alpha


def _flatten(colour: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Float32 (H,W,3): the colour planes composited over white, one grey plane repeated."""
    if alpha is not None:
        colour = colour * alpha[..., None] + (1.0 - alpha[..., None])
    return np.ascontiguousarray(np.repeat(colour, 3, axis=2) if colour.shape[-1] == 1 else colour, dtype=np.float32)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_bit_depth(path) -> int:
    """16 for a 16-bit PNG, else 8 (from the PNG header; other formats are read as 8-bit)."""
    with open(path, "rb") as stream:
        header = stream.read(26)
    return 16 if header[:8] == _PNG_SIGNATURE and header[12:16] == b"IHDR" and header[24] == 16 else 8


def _read_png16(path) -> tuple[np.ndarray, np.ndarray | None]:
    """A 16-bit PNG's colour planes (H,W,1) or (H,W,3) and alpha plane (H,W) or ``None``, float32 in [0, 1]."""
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    array = np.array([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, info["planes"])
    array = (array / 65535.0).astype(np.float32)
    return (array[..., :-1], array[..., -1]) if info["alpha"] else (array, None)


def _exif(image: Image.Image, turned_upright: bool) -> bytes | None:
    """``image``'s EXIF block, or ``None`` without one; where its pixels were ``turned_upright``
    (:func:`ImageOps.exif_transpose`), with its orientation tag set to upright (1)."""
    exif = Image.Exif()
    try:
        exif.load(image.info.get("exif") or image.getexif().tobytes())
    except Exception:  # metadata PIL cannot parse is not carried; the pixels are what matter
        return None
    if not len(exif):
        return None
    if turned_upright and _ORIENTATION in exif:
        exif[_ORIENTATION] = 1
    return exif.tobytes()


def read_image(path) -> tuple[torch.Tensor, Layout]:
    """Read an image file as a float32 RGB tensor (3,H,W) in [0, 1] (alpha composited over white,
    grey repeated) and its :class:`Layout`, for writing a result back in kind."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_size(image.height, image.width, str(path))
                frames = getattr(image, "n_frames", 1)
                bit_depth, icc_profile = image_bit_depth(path), image.info.get("icc_profile")
                if bit_depth == 16:  # read as stored: pypng does not turn the pixels upright
                    colour, alpha = _read_png16(path)
                else:
                    image.load()
                    colour, alpha = _pil_planes(image)
                exif = _exif(image, turned_upright=bit_depth != 16)
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
    layout = Layout(bit_depth=bit_depth, grey=colour.shape[-1] == 1, icc_profile=icc_profile or None, exif=exif,
                    alpha=None if alpha is None else torch.from_numpy(np.ascontiguousarray(alpha))[None])
    return torch.from_numpy(_flatten(colour, alpha)).permute(2, 0, 1), layout


def load_image(path) -> torch.Tensor:
    """Read an image file as a float32 RGB tensor (3,H,W) in [0, 1] (:func:`read_image` without the layout)."""
    return read_image(path)[0]


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
        return torch.from_numpy(_flatten(*_pil_planes(image))).permute(2, 0, 1).unsqueeze(0)
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
    """(C,H,W) or (B,C,H,W) floats in [0, 1] to a list of 8-bit PIL images (rounded): L, LA, RGB
    or RGBA for 1 to 4 channels."""
    batch = image.detach().float().cpu().clamp(0, 1)
    batch = batch.unsqueeze(0) if batch.dim() == 3 else batch
    arrays = (batch.permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arrays]


def _planes_in_kind(pixels: torch.Tensor, layout: Layout, fmt: str) -> torch.Tensor:
    """The (C,H,W) planes that write ``pixels`` (3,H,W) back in ``layout``: grey as the mean of
    the channels; the alpha channel where ``fmt`` holds one, with the colour that, composited over
    white, gives ``pixels`` back as near as a colour in [0, 1] can (at opacity a, composites lie
    in [1 - a, 1]; where a is 0, ``pixels`` itself)."""
    alpha = layout.alpha if fmt in _ALPHA_FORMATS else None
    if alpha is not None:
        if tuple(alpha.shape[-2:]) != tuple(pixels.shape[-2:]):
            raise ImageError(f"the alpha channel is {alpha.shape[-1]}x{alpha.shape[-2]}, the image "
                             f"{pixels.shape[-1]}x{pixels.shape[-2]}")
        alpha = alpha.to(pixels).reshape(1, *pixels.shape[-2:])
        pixels = torch.where(alpha > 0, (pixels - (1.0 - alpha)) / alpha.clamp_min(1e-12), pixels).clamp(0, 1)
    if layout.grey:
        pixels = pixels.mean(0, keepdim=True)
    return pixels if alpha is None else torch.cat([pixels, alpha])


def output_format(path) -> str:
    """The PIL format :func:`save_image` writes ``path`` in, from its suffix; an
    :class:`ImageError` for a suffix it cannot write (``.gif``, ``.xyz``, none)."""
    fmt = _SAVE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unknown output format; use one of {', '.join(sorted(_SAVE_FORMATS))}")
    return fmt


def save_image(image, path, overwrite: bool = True, layout: Layout | None = None) -> Path:
    """Write one image ((C,H,W) tensor or PIL) atomically; the format comes from the file suffix.

    With ``overwrite=False`` an existing ``path`` is kept and ``FileExistsError`` raised. A
    ``layout`` (:func:`read_image`'s for the input) writes an RGB tensor back in kind: a 16-bit
    PNG at 16 bits, a grey file grey, its alpha channel where the format holds one (PNG, TIFF,
    WebP), its colour profile (:meth:`Layout.profile_for`) and its EXIF metadata (neither in BMP).
    """
    path = Path(path)
    fmt = output_format(path)
    if isinstance(image, Image.Image):
        pil, profile, exif = image.convert("RGB"), None, None
    else:
        if image.dim() == 4:
            if image.shape[0] != 1:
                raise ImageError(f"save_image writes one image, got a batch of {image.shape[0]}")
            image = image[0]
        layout = layout or Layout()
        planes = _planes_in_kind(image.detach().float().cpu().clamp(0, 1), layout, fmt)
        profile, exif = (layout.profile_for(planes.shape[0]), layout.exif) if fmt != "BMP" else (None, None)
        if layout.bit_depth == 16 and fmt == "PNG":
            return atomic_write(path, lambda stream: _write_png16(stream, planes, profile, exif), overwrite=overwrite)
        pil = to_pil(planes)[0]
    options = dict(_SAVE_OPTIONS.get(fmt, {}))
    if profile:
        options["icc_profile"] = profile
    if exif:
        options["exif"] = exif
    return atomic_write(path, lambda stream: pil.save(stream, format=fmt, **options), overwrite=overwrite)


def _write_png16(stream, planes: torch.Tensor, profile: bytes | None, exif: bytes | None) -> None:
    """A 16-bit PNG of (C,H,W) planes in [0, 1] (1-4 channels, alpha last), with an iCCP chunk for
    the ICC ``profile`` and an eXIf chunk for the ``exif`` block, where given."""
    channels, height, width = planes.shape
    rows = (planes.permute(1, 2, 0).numpy() * 65535.0).round().astype(np.uint16).reshape(height, -1)
    writer = png.Writer(width, height, greyscale=channels in (1, 2), alpha=channels in (2, 4), bitdepth=16)
    extra = ([(b"iCCP", b"icc\x00\x00" + zlib.compress(profile))] if profile else []) + (  # name, NUL, deflate
        [(b"eXIf", exif.removeprefix(b"Exif\x00\x00"))] if exif else [])
    if not extra:
        writer.write(stream, rows)
        return
    encoded = io.BytesIO()
    writer.write(encoded, rows)
    chunks = list(png.Reader(bytes=encoded.getvalue()).chunks())
    png.write_chunks(stream, chunks[:1] + extra + chunks[1:])  # after IHDR, before the pixels


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
