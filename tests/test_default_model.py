"""The embedded default model: shipped weights, both loading paths, and a real PSNR gain."""

import pytest
import torch
from diffusers import DiffusionPipeline

from uir import degradations, sample_image_path
from uir.cli import EXIT_OK, main
from uir.images import load_image
from uir.loading import default_model_dir, load_pipeline
from uir.metrics import psnr

DEFAULT = default_model_dir()
pytestmark = pytest.mark.skipif(not (DEFAULT / "model_index.json").is_file(), reason="no embedded default model")


def test_default_is_small_and_has_ten_experts_and_a_router():
    size = sum(f.stat().st_size for f in DEFAULT.rglob("*") if f.is_file())
    assert size < 30 * 2**20, f"default model is {size / 2**20:.1f} MiB"
    assert not any(f.suffix in (".bin", ".pt", ".pkl") for f in DEFAULT.rglob("*"))
    pipe = load_pipeline()
    assert len(pipe.experts.names) == 10 and pipe.router is not None
    assert set(pipe.experts.names) <= set(pipe.router.vocabulary)


def test_default_loads_with_trust_remote_code_and_matches():
    x = load_image(sample_image_path())[None][..., :96, :128]
    remote = DiffusionPipeline.from_pretrained(DEFAULT, trust_remote_code=True)
    assert type(remote).__name__ == "RestorerPipeline"
    ours = load_pipeline()(x, output_type="pt").images
    assert torch.allclose(remote(x, output_type="pt").images, ours, atol=1e-6)


@pytest.mark.parametrize("name", ["noisy", "low-light"])
def test_default_improves_a_held_out_photo(name):
    """The bundled photo is in the held-out split: none of its pixels were trained on."""
    clean = load_image(sample_image_path())[None]
    degraded = degradations.apply(name, clean, generator=torch.Generator().manual_seed(0))
    restored = load_pipeline()(degraded, output_type="pt").images
    assert psnr(restored, clean).item() > psnr(degraded, clean).item() + 3.0


def test_readme_first_command_path(tmp_path, capsys):
    noisy = tmp_path / "noisy.png"
    assert main(["degrade", "--sample", "--type", "noisy", "-o", str(noisy)]) == EXIT_OK
    assert main(["restore", str(noisy), "-o", str(tmp_path / "restored.png")]) == EXIT_OK
    assert (tmp_path / "restored.png").is_file() and "detected" in capsys.readouterr().out
