import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import uir.degradations as D
from uir import metrics
from uir.data import split_photos
from uir.images import load_image

from .conftest import seeded

SK_SSIM = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


@pytest.fixture(scope="module")
def pairs(photos_dir):
    _, held_out = split_photos(photos_dir)
    out = []
    for i, path in enumerate(held_out[:3]):
        gt = load_image(path)
        lq = D.apply(["motion-blurry", "noisy"], gt, generator=seeded(i), noisy={"sigma": 15})
        out.append((lq, gt))
    return out


def _hwc(t):
    return t.permute(1, 2, 0).double().numpy()


def test_psnr_and_ssim_match_skimage_on_rgb(pairs):
    for lq, gt in pairs:
        assert abs(metrics.psnr(lq, gt).item() - peak_signal_noise_ratio(_hwc(gt), _hwc(lq), data_range=1.0)) < 1e-3
        expected = structural_similarity(_hwc(gt), _hwc(lq), data_range=1.0, channel_axis=2, **SK_SSIM)
        assert abs(metrics.ssim(lq, gt).item() - expected) < 1e-4


@pytest.mark.parametrize("crop", [0, 4])
def test_psnr_and_ssim_match_skimage_on_y_with_crop(pairs, crop):
    for lq, gt in pairs:
        ylq, ygt = rgb2ycbcr(_hwc(lq))[..., 0], rgb2ycbcr(_hwc(gt))[..., 0]
        if crop:
            ylq, ygt = ylq[crop:-crop, crop:-crop], ygt[crop:-crop, crop:-crop]
        psnr = metrics.psnr(lq, gt, crop_border=crop, y_channel=True).item()
        assert abs(psnr - peak_signal_noise_ratio(ygt, ylq, data_range=255.0)) < 1e-3
        ssim = metrics.ssim(lq, gt, crop_border=crop, y_channel=True).item()
        assert abs(ssim - structural_similarity(ygt, ylq, data_range=255.0, **SK_SSIM)) < 1e-4


def test_batched_values_equal_per_image(pairs):
    lq = torch.stack([p[0][:, :128, :128] for p in pairs])
    gt = torch.stack([p[1][:, :128, :128] for p in pairs])
    for fn in (metrics.psnr, metrics.ssim):
        batched = fn(lq, gt)
        assert batched.shape == (len(pairs),)
        assert torch.allclose(batched, torch.stack([fn(a, b) for a, b in zip(lq, gt)]).flatten())


def test_identity_and_errors(sample):
    assert metrics.psnr(sample, sample).item() == float("inf")
    assert abs(metrics.ssim(sample, sample).item() - 1.0) < 1e-6
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(sample, sample[:, :10])
    with pytest.raises(ValueError, match="crop_border"):
        metrics.psnr(sample, sample, crop_border=100)
    with pytest.raises(ValueError, match="RGB"):
        metrics.psnr(sample[:1], sample[:1], y_channel=True)


def test_lpips_never_scores_without_pretrained_weights(sample, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.delenv("UIR_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(metrics.LPIPSUnavailableError, match="lpips|alexnet-owt"):
        metrics.lpips(sample, sample)
