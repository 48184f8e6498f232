"""The full-size SD-turbo-shaped UIRLoRAPipeline (random weights, SD-turbo's configs from
``uir.testing``): it builds, takes experts at the paper's ranks, and restores one small image.
Slow (about 45 s on 2 cores, 9.5 GB of memory): ``pytest -m "not slow"`` skips it."""

import pytest
import torch

from uir.testing import full_size_uir_lora_pipeline, random_expert


@pytest.mark.slow
@torch.no_grad()
def test_full_size_pipeline_restores_one_small_image(tmp_path):
    pipe = full_size_uir_lora_pipeline(tmp_path / "tokenizer")
    assert sum(p.numel() for p in pipe.unet.parameters()) > 800e6  # SD 2.1's UNet, not a reduced one
    pipe.load_expert(random_expert("noisy", pipe.unet, pipe.vae, seed=1))
    assert pipe.experts.experts[0].metadata()["ranks"] == {"unet": 8, "vae": 4}
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = pipe(x, weights={"noisy": 1.0}, output_type="pt")
    assert out.images.shape == (1, 3, 64, 64) and torch.isfinite(out.images).all()
