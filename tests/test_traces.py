"""The JPEG trace (``uir.degradations.jpeg_trace``): the quantisation steps read back from photos
that Pillow's libjpeg saved, against the tables it wrote into the files; no trace where there
was no JPEG; and the router's calls on images with a trace (a JPEG, missing pixels)."""

import io
import math

import numpy as np
import pytest
import scipy.fft
import torch
from PIL import Image

import uir.degradations as D
from uir.degradations.jpeg_trace import (JPEG_CLASS, dct_matrix, jpeg_quality, libjpeg_quality, libjpeg_scale, luma,
                                         quantization_step)
from uir.degradations.masks import MISSING_CLASS
from uir.files import load_json_object
from uir.images import load_image
from uir.models.router import DegradationRouter
from uir.networks.router import RuntimeRouter
from uir.testing import tiny_router

PHOTO = "scikit-image__rocket.png"  # never saved as a JPEG at its size
WHITE_BACKGROUND = "opencv-doc__smarties.png"  # most blocks hold clipped pixels


def pillow_jpeg(image: torch.Tensor, quality: int, mode: str = "RGB", **options) -> tuple[torch.Tensor, list[int]]:
    """``image`` (3,H,W) saved by Pillow at ``quality`` in ``mode`` with its ``options`` and
    decoded as RGB, and the luminance table the file holds (row-major)."""
    array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format="JPEG", quality=quality, **options)
    decoded = Image.open(io.BytesIO(buffer.getvalue()))
    table = list(decoded.quantization[0])
    return torch.from_numpy(np.asarray(decoded.convert("RGB")).copy()).permute(2, 0, 1).float() / 255, table


def test_libjpeg_scale_and_quality_are_inverses():
    assert all(libjpeg_quality(libjpeg_scale(quality)) == pytest.approx(quality) for quality in range(1, 101))
    assert (libjpeg_scale(10), libjpeg_scale(50), libjpeg_scale(75)) == (500, 100, 50)


def test_dct_matrix_is_the_orthonormal_dct_ii():
    block = np.random.default_rng(0).normal(size=(8, 8))
    d = dct_matrix()
    assert np.allclose((d @ torch.from_numpy(block) @ d.T).numpy(), scipy.fft.dctn(block, norm="ortho"))


@pytest.mark.parametrize("quality", [10, 20, 30])
def test_steps_and_quality_read_back_from_the_file_pillow_wrote(photos_dir, quality):
    photo = load_image(photos_dir / PHOTO)
    decoded, table = pillow_jpeg(photo[:, : photo.shape[1] // 8 * 8, : photo.shape[2] // 8 * 8], quality)
    blocks = luma(decoded)[0].reshape(-1, 8, decoded.shape[-1] // 8, 8).transpose(1, 2).reshape(-1, 8, 8)
    d = dct_matrix()
    for u, v in ((0, 1), (1, 0)):
        assert quantization_step(torch.einsum("i,nij,j->n", d[u], blocks, d[v])) == table[8 * u + v]
    assert float(jpeg_quality(decoded)) == quality
    # a crop off the 8x8 grid keeps the trace at another offset
    assert float(jpeg_quality(decoded[:, 3:, 5:])) == quality


@pytest.mark.parametrize("mode, options", [("RGB", {"subsampling": 0}), ("RGB", {"progressive": True}), ("L", {})])
def test_quality_read_back_whatever_the_chroma_and_scan(photos_dir, mode, options):
    decoded, _ = pillow_jpeg(load_image(photos_dir / PHOTO), 20, mode, **options)
    assert float(jpeg_quality(decoded)) == 20


def test_clipped_blocks_are_left_out(photos_dir):
    decoded, _ = pillow_jpeg(load_image(photos_dir / WHITE_BACKGROUND), 10)
    assert float(jpeg_quality(decoded)) == 10


def test_a_multiple_of_the_step_does_not_fit():
    """Coefficients on 55 and 110: without those near 55 in the fit, 118 (cos(2 pi 110/118) = 0.91)
    would pass for the step; with every coefficient from q/4 on, only 55 does."""
    noise = torch.randn(400, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.4
    levels = torch.tensor([-2, -1, 1, 2], dtype=torch.float64).repeat(100)
    assert quantization_step(55 * levels + noise) == 55


def test_no_trace_without_a_jpeg(photos_dir):
    photo = load_image(photos_dir / PHOTO)
    noisy = (photo + 0.05 * torch.randn(photo.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    resized = torch.nn.functional.interpolate(pillow_jpeg(photo, 10)[0][None], scale_factor=0.75, mode="bilinear",
                                              antialias=True)[0]
    for image in (photo, noisy, resized):
        assert math.isnan(float(jpeg_quality(image)))


@torch.no_grad()
def test_router_calls_traced_images_and_leaves_the_others_to_eq3(photos_dir, tmp_path):
    photo = load_image(photos_dir / PHOTO)[:, :128, :128]
    holes = D.apply("uncompleted", photo, generator=torch.Generator().manual_seed(0))
    images = torch.stack([pillow_jpeg(photo, 10)[0], holes, photo, pillow_jpeg(photo, 75)[0]])
    plain = tiny_router(seed=1).eval()
    traced = tiny_router(seed=1, jpeg_max_quality=30, call_missing_pixels=True).eval()
    expected, out = plain(images), traced(images)
    assert out.names[:2] == [JPEG_CLASS, MISSING_CLASS]
    assert out.confidence[:2].tolist() == [1.0, 1.0] and bool(out.known[:2].all())
    assert torch.equal(out.probabilities[2:], expected.probabilities[2:])  # no trace, or above quality 30
    qualities = traced.jpeg_trace_qualities(images)  # the quality 75 JPEG's trace is above the bound
    assert qualities[0].item() == jpeg_quality(images[:1]).item() and bool(qualities[1:].isnan().all())
    assert plain.jpeg_trace_qualities(images) is None
    traced.save_pretrained(tmp_path)
    runtime = RuntimeRouter.from_config(load_json_object(tmp_path / "config.json"),
                                        tmp_path / "diffusion_pytorch_model.safetensors")
    assert runtime(images).names == out.names
    assert DegradationRouter.from_pretrained(tmp_path).eval()(images).names == out.names
    with pytest.raises(ValueError, match="jpeg_max_quality"):
        tiny_router(vocabulary=["noisy", "hazy"], jpeg_max_quality=30)
    with pytest.raises(ValueError, match="call_missing_pixels"):
        tiny_router(vocabulary=["noisy", "hazy"], call_missing_pixels=True)
    with pytest.raises(ValueError, match="jpeg_max_quality"):
        tiny_router(jpeg_max_quality=0)


def test_a_router_with_a_clean_class_calls_an_image_of_one_colour_clean(photos_dir):
    """A black frame, a blank page or a colour card hold nothing to restore. Without the rule the
    default called a black image low-light and brightened it to a tinted grey (17 of 255 off)."""
    photo = load_image(photos_dir / PHOTO)[:, :64, :64]
    flat = torch.stack([torch.zeros(3, 64, 64), torch.ones(3, 64, 64), torch.tensor([0.1, 0.2, 0.8])[:, None, None].expand(3, 64, 64)])
    almost = flat[0].clone()
    almost[1, 5, 7] = 1 / 255
    images = torch.cat([flat, almost[None], photo[None]])
    with_clean, without = tiny_router(vocabulary=(*D.DEFAULT_VOCABULARY, "clean"), seed=1).eval(), tiny_router(seed=1).eval()
    out, plain = with_clean(images), with_clean.logits(images).softmax(-1)
    assert out.names[:3] == ["clean"] * 3 and out.confidence[:3].tolist() == [1.0] * 3
    assert torch.allclose(out.probabilities[3:], plain[3:])  # one pixel off, or a photo: eq. 3 decides
    assert "clean" not in without.vocabulary and without.exact_traces(images) == {}



def test_the_default_returns_an_image_of_one_colour_unchanged():
    from uir.pipelines.loading import load_pipeline

    images = torch.stack([torch.zeros(3, 48, 64), torch.tensor([0.1, 0.2, 0.8])[:, None, None].expand(3, 48, 64)])
    out = load_pipeline(runtime=True)(images, output_type="pt")
    assert out.degradations == ["clean", "clean"] and torch.equal(out.images, images)
