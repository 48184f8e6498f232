import io
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from uir import images
from uir.images import ImageError, Layout, list_images, load_image, read_image, save_image, to_tensor


def _rgb_array(h=24, w=32):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) % 256], -1).astype(np.uint8)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "P", "CMYK", "1"])
def test_pil_modes_load_as_rgb(tmp_path, mode):
    src = Image.fromarray(_rgb_array()).convert(mode)
    path = tmp_path / f"img_{mode}.{'tiff' if mode == 'CMYK' else 'png'}"
    src.save(path)
    out = load_image(path)
    assert out.shape == (3, 24, 32) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    if mode == "RGB":
        assert torch.allclose(out, torch.from_numpy(_rgb_array()).permute(2, 0, 1) / 255.0)


def test_rgba_composites_over_white(tmp_path):
    array = np.zeros((16, 16, 4), np.uint8)
    array[..., 0] = 255
    array[:8, :, 3] = 255  # top opaque red, bottom transparent
    Image.fromarray(array, "RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert torch.allclose(out[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(out[:, 15, 0], torch.tensor([1.0, 1.0, 1.0]))


def test_16_bit_grayscale_keeps_precision(tmp_path):
    array = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    Image.fromarray(array).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    assert torch.allclose(out[0], torch.from_numpy(array.astype(np.float32) / 65535.0), atol=1e-6)


def _layout_file(path, kind):
    """A 24x32 file of one layout: 8-bit grey, grey+alpha, RGBA, a palette with a transparent
    entry, or 16-bit grey+alpha (through pypng, since PIL cuts 16 bits to 8)."""
    import png

    colour = _rgb_array()
    alpha = (np.arange(24 * 32).reshape(24, 32) % 256).astype(np.uint8)
    alpha[:, :4] = 255  # some opaque pixels, some transparent (alpha 0 appears) and every level between
    if kind == "grey":
        Image.fromarray(colour[..., 0]).save(path)
    elif kind == "grey+alpha":
        Image.fromarray(np.stack([colour[..., 0], alpha], -1), "LA").save(path)
    elif kind == "rgba":
        Image.fromarray(np.dstack([colour, alpha]), "RGBA").save(path)
    elif kind == "palette+transparency":
        image = Image.fromarray(colour).quantize(16)
        image.info["transparency"] = 3
        image.save(path, transparency=3)
    elif kind == "grey16+alpha":
        planes = np.stack([colour[..., 0].astype(np.uint16) * 257 + 5, alpha.astype(np.uint16) * 257], -1)
        png.from_array(planes.reshape(24, -1), "LA;16").save(str(path))


@pytest.mark.parametrize("kind, grey, has_alpha, bit_depth", [
    ("grey", True, False, 8), ("grey+alpha", True, True, 8), ("rgba", False, True, 8),
    ("palette+transparency", False, True, 8), ("grey16+alpha", True, True, 16)])
def test_a_file_is_written_back_in_its_layout(tmp_path, kind, grey, has_alpha, bit_depth):
    """read_image's Layout names what the file held beyond RGB, and save_image with it writes a
    file of the same layout whose composite over white is the image written (within rounding),
    its alpha unchanged, and its colour the original's where the pixel is opaque enough to tell."""
    _layout_file(tmp_path / "in.png", kind)
    image, layout = read_image(tmp_path / "in.png")
    assert (layout.grey, layout.alpha is not None, layout.bit_depth) == (grey, has_alpha, bit_depth)
    assert image.shape == (3, 24, 32)
    save_image(image, tmp_path / "out.png", layout=layout)
    again, kept = read_image(tmp_path / "out.png")
    assert (kept.grey, kept.bit_depth) == (grey, bit_depth)
    step = 1 / (65535 if bit_depth == 16 else 255)
    assert torch.allclose(again, image, atol=step)
    if has_alpha:
        assert torch.equal(kept.alpha, layout.alpha)
        straight_in, straight_out = (Image.open(tmp_path / name) for name in ("in.png", "out.png"))
        if bit_depth == 8:
            a_in = np.asarray(straight_in.convert("RGBA"), np.float64)
            a_out = np.asarray(straight_out.convert("RGBA"), np.float64)
            opaque = a_in[..., 3] >= 128
            assert np.abs(a_in[..., :3] - a_out[..., :3])[opaque].max() <= 2.0


def test_a_layout_keeps_alpha_only_where_the_format_holds_it(tmp_path):
    image = torch.full((3, 8, 8), 0.75)
    alpha = torch.full((1, 8, 8), 0.5)
    save_image(image, tmp_path / "a.webp", layout=Layout(alpha=alpha, grey=True))
    save_image(image, tmp_path / "a.jpg", layout=Layout(alpha=alpha))
    assert Image.open(tmp_path / "a.webp").mode == "RGBA"  # WebP has no grey mode with alpha
    assert Image.open(tmp_path / "a.jpg").mode == "RGB"  # the composite, as restored
    assert np.abs(np.asarray(Image.open(tmp_path / "a.jpg"), np.float64) - 191).max() <= 2
    # 0.75 over white at alpha 0.5 is a straight colour of 0.5
    assert np.abs(np.asarray(Image.open(tmp_path / "a.webp"), np.float64)[..., :3] - 128).max() <= 1
    with pytest.raises(ImageError, match="alpha channel is 4x4"):
        save_image(image, tmp_path / "b.png", layout=Layout(alpha=torch.ones(1, 4, 4)))


def _profile(space: bytes) -> bytes:
    """An ICC profile whose header names colour space ``space`` (PIL's sRGB profile, relabelled)."""
    from PIL import ImageCms

    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[16:20] = space
    return bytes(profile)


@pytest.mark.parametrize("name, mode, bits", [("a.png", "RGB", 8), ("a.jpg", "RGB", 8), ("a.tiff", "RGB", 8),
                                              ("a.webp", "RGB", 8), ("g.png", "L", 8), ("a16.png", "RGB", 16)])
def test_a_colour_profile_is_written_back(tmp_path, name, mode, bits):
    """A file's ICC profile says what its values mean; a result written in its layout carries it,
    in every format that holds one, 16-bit PNGs included (through an iCCP chunk)."""
    profile = _profile(b"GRAY" if mode == "L" else b"RGB ")
    Image.fromarray(_rgb_array()).convert(mode).save(tmp_path / name, icc_profile=profile)
    image, layout = read_image(tmp_path / name)
    assert layout.icc_profile == profile
    layout = Layout(bit_depth=bits, grey=layout.grey, icc_profile=layout.icc_profile)
    save_image(image, tmp_path / f"out-{name}", layout=layout)
    again, kept = read_image(tmp_path / f"out-{name}")
    assert kept.icc_profile == profile and kept.bit_depth == bits
    assert (again - image).abs().mean() < 1 / 255 if name.endswith(".jpg") else torch.allclose(again, image, atol=1 / 255)


def test_a_profile_of_another_colour_space_is_not_written(tmp_path):
    """A CMYK file's profile does not describe the RGB uir writes, nor a grey profile a colour
    output (``uir degrade`` writes a grey photo's degraded copy in colour): none is written."""
    cmyk = Image.fromarray(_rgb_array()).convert("CMYK")
    cmyk.save(tmp_path / "c.tiff", icc_profile=_profile(b"CMYK"))
    image, layout = read_image(tmp_path / "c.tiff")
    assert layout.icc_profile == _profile(b"CMYK") and not layout.grey
    save_image(image, tmp_path / "c.png", layout=layout)
    assert "icc_profile" not in Image.open(tmp_path / "c.png").info
    grey = Layout(grey=True, icc_profile=_profile(b"GRAY"))
    assert grey.profile_for(1) == grey.profile_for(2) == _profile(b"GRAY") and grey.profile_for(3) is None
    save_image(image, tmp_path / "b.bmp", layout=Layout(icc_profile=_profile(b"RGB ")))
    assert "icc_profile" not in Image.open(tmp_path / "b.bmp").info


def test_exif_orientation_is_applied(tmp_path):
    src = Image.fromarray(_rgb_array(20, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    src.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    assert load_image(tmp_path / "rot.jpg").shape == (3, 40, 20)


@pytest.mark.parametrize("suffix, bits", [(".jpg", 8), (".png", 8), (".webp", 8), (".tiff", 8), (".png", 16)])
def test_exif_is_written_back_upright(tmp_path, suffix, bits):
    """A photo's EXIF (the date taken, the camera) is carried to the result, its orientation tag
    set upright since the pixels were turned upright when read: a viewer shows the result as the
    input, not turned twice."""
    exif = Image.Exif()
    exif[0x0112], exif[0x0132], exif[0x010F] = 6, "2019:07:14 18:03:00", "uir-camera"
    exif.get_ifd(0x8769)[0x9003] = "2019:07:14 18:02:59"  # DateTimeOriginal, in the Exif sub-IFD
    Image.fromarray(_rgb_array(20, 40)).save(tmp_path / "in.jpg", exif=exif, quality=95)
    image, layout = read_image(tmp_path / "in.jpg")
    assert image.shape == (3, 40, 20)
    save_image(image, tmp_path / f"out{suffix}", layout=Layout(bit_depth=bits, exif=layout.exif))
    with Image.open(tmp_path / f"out{suffix}") as written:
        kept = written.getexif()
        assert (kept.get(0x0112), kept.get(0x0132), kept.get(0x010F)) == (1, "2019:07:14 18:03:00", "uir-camera")
        assert kept.get_ifd(0x8769).get(0x9003) == "2019:07:14 18:02:59"
    again, _ = read_image(tmp_path / f"out{suffix}")
    assert again.shape == (3, 40, 20)
    save_image(image, tmp_path / "out.bmp", layout=layout)  # BMP holds no EXIF: written without it


@pytest.mark.parametrize(
    "content, message",
    [
        (b"this is not an image", "not an image file"),
        (None, "unreadable image"),
    ],
)
def test_broken_files_raise_one_line_errors(tmp_path, content, message):
    path = tmp_path / "broken.png"
    if content is None:
        buffer = io.BytesIO()
        Image.fromarray(_rgb_array(64, 64)).save(buffer, format="PNG")
        content = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as info:
        load_image(path)
    assert "\n" not in str(info.value)


def test_tiny_missing_and_huge(tmp_path, monkeypatch):
    Image.new("RGB", (1, 1)).save(tmp_path / "tiny.png")
    with pytest.raises(ImageError, match="at least 8x8"):
        load_image(tmp_path / "tiny.png")
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    Image.new("RGB", (20, 20)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="at most 100 pixels"):
        load_image(tmp_path / "big.png")


def test_to_tensor_accepts_pil_numpy_torch_and_lists():
    array = _rgb_array()
    expected = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0) / 255.0
    assert torch.allclose(to_tensor(Image.fromarray(array)), expected)
    assert torch.allclose(to_tensor(array), expected)
    assert torch.allclose(to_tensor(array.astype(np.uint16) * 257), expected)
    assert torch.allclose(to_tensor(array.astype(np.float32) / 255.0), expected)
    assert torch.allclose(to_tensor(expected[0]), expected)
    assert to_tensor([array, array]).shape == (2, 3, 24, 32)
    assert to_tensor(array[..., 0]).shape == (1, 3, 24, 32)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((24, 32, 2), np.uint8), "1, 3 or 4 channels"),
        (np.full((24, 32, 3), np.nan, np.float32), "NaN"),
        (np.full((24, 32, 3), 2.0, np.float32), r"\[0, 1\]"),
        (np.zeros((4, 4, 3), np.uint8), "at least 8x8"),
        ("a string", "unsupported image type"),
        ([np.zeros((16, 16, 3), np.uint8), np.zeros((24, 16, 3), np.uint8)], "share a size"),
    ],
)
def test_to_tensor_errors(bad, message):
    with pytest.raises(ImageError, match=message):
        to_tensor(bad)


def test_save_is_atomic_and_round_trips(tmp_path, monkeypatch):
    image = torch.from_numpy(_rgb_array()).permute(2, 0, 1) / 255.0
    target = save_image(image, tmp_path / "out" / "x.png")
    assert torch.equal(load_image(target), image)
    before = target.read_bytes()

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(torch.zeros(3, 24, 32), target)
    assert target.read_bytes() == before, "a failed save damaged the existing file"
    assert [p.name for p in target.parent.iterdir()] == ["x.png"], "a temporary file was left behind"
    with pytest.raises(ImageError, match="unknown output format"):
        save_image(image, tmp_path / "x.xyz")


def test_saved_files_and_folders_get_umask_permissions_and_failures_keep_the_old(tmp_path):
    """Also the safetensors files of a saved model and of an expert, which safetensors 0.8 itself
    creates ``0o600`` (unreadable to another user or a container's)."""
    from safetensors.torch import save_file

    from uir.files import atomic_write, save_pretrained_staged, staged_directory
    from uir.models import NAFNet
    from uir.testing import TINY_NAFNET, random_expert

    old_mask = os.umask(0o027)
    try:
        path = atomic_write(tmp_path / "a.json", lambda stream: stream.write(b"{}"))
        with staged_directory(tmp_path / "folder") as staging:
            (staging / "x").write_text("new")
            save_file({"w": torch.zeros(2)}, staging / "w.safetensors")
        model = NAFNet(**TINY_NAFNET)
        save_pretrained_staged(model, tmp_path / "model")
        random_expert("noisy", restorer=model).save(tmp_path / "expert")
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o750
    saved = [*(tmp_path / "folder").iterdir(), *(tmp_path / "model").rglob("*.*"), *(tmp_path / "expert").rglob("*.*")]
    assert sum(p.suffix == ".safetensors" for p in saved) == 3
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in saved} == {p.name: "0o640" for p in saved}
    with pytest.raises(RuntimeError, match="midway"):
        with staged_directory(tmp_path / "folder") as staging:
            (staging / "x").write_text("half")
            raise RuntimeError("midway")
    assert (tmp_path / "folder" / "x").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "expert", "folder", "model"], "a temporary folder was left behind"


def test_list_images_expands_folders_and_globs(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images([tmp_path])] == ["a.jpg", "b.png"]
    assert [p.name for p in list_images([str(tmp_path / "*.png")])] == ["b.png"]
    assert [p.name for p in list_images([tmp_path / "notes.txt"])] == ["notes.txt"]
