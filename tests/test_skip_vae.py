import pytest
import torch
from diffusers import AutoencoderKL

from uir.models import SkipAutoencoderKL, skip_channel_plan
from uir.testing import SD_TURBO_VAE, TINY_VAE


def test_channel_plan_follows_the_config():
    assert skip_channel_plan(SD_TURBO_VAE["block_out_channels"]) == [(512, 512), (256, 512), (128, 512), (128, 256)]
    vae = SkipAutoencoderKL(**TINY_VAE)
    for j, conv in enumerate(vae.skip_convs):
        assert (conv.in_channels, conv.out_channels) == skip_channel_plan(TINY_VAE["block_out_channels"])[j]
        assert conv.kernel_size == (1, 1) and conv.weight.abs().max() < 1e-3


@torch.no_grad()
def test_gamma_zero_reproduces_the_plain_vae_exactly():
    torch.manual_seed(0)
    plain = AutoencoderKL(**TINY_VAE).eval()
    skip = SkipAutoencoderKL.from_vae(plain, skip_gamma=0.0).eval()
    x = torch.rand(2, 3, 40, 48) * 2 - 1
    assert torch.equal(skip(x).sample, plain(x).sample)
    for conv in skip.skip_convs:
        torch.nn.init.normal_(conv.weight, std=0.5)
    assert torch.equal(skip(x).sample, plain(x).sample)
    skip.register_to_config(skip_gamma=1.0)
    assert (skip(x).sample - plain(x).sample).abs().max() > 1e-2


@torch.no_grad()
def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    vae = SkipAutoencoderKL(**TINY_VAE, skip_gamma=0.7).eval()
    vae.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = SkipAutoencoderKL.from_pretrained(tmp_path).eval()
    assert loaded.config.skip_gamma == 0.7
    for key, value in vae.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_from_vae_rejects_foreign_weights():
    other = AutoencoderKL(**{**TINY_VAE, "block_out_channels": (8, 16, 16, 32)})
    skip = SkipAutoencoderKL(**TINY_VAE)
    with pytest.raises(RuntimeError):
        skip.load_state_dict(other.state_dict(), strict=False)


def test_fresh_skips_are_reproducible():
    from uir.testing import TINY_VAE

    torch.manual_seed(1)
    a = SkipAutoencoderKL(**TINY_VAE)
    torch.manual_seed(2)
    b = SkipAutoencoderKL(**TINY_VAE)
    for key in a.state_dict():
        if key.startswith("skip_convs."):
            assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert a.state_dict()["skip_convs.0.weight"].abs().max() < 1e-4
