"""UIRLoRAPipeline on a tiny SD-turbo-shaped checkpoint built from configs (no download)."""

import json

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from uir import UIRLoRAPipeline
from uir.lora import ExpertError
from uir.testing import random_expert, save_tiny_sd_turbo, tiny_router

NAMES = ("noisy", "hazy", "rainy")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return save_tiny_sd_turbo(tmp_path_factory.mktemp("sd-turbo"))


@pytest.fixture(scope="module")
def pipe(base_dir):
    pipe = UIRLoRAPipeline.from_sd_turbo(str(base_dir), router=tiny_router())
    for i, name in enumerate(NAMES):
        pipe.load_expert(random_expert(name, pipe.unet, pipe.vae, base_model=str(base_dir), seed=i, scale=4.0))
    return pipe


def _images(batch=2, h=37, w=45, seed=0):
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_assembled_like_sd_turbo(pipe, base_dir):
    assert pipe.scheduler.timesteps.tolist() == [999]
    assert pipe.experts.names == list(NAMES) and pipe.experts.config.base_model == str(base_dir)
    assert pipe.prompt_embedding() is pipe.prompt_embedding(), "the prompt embedding is recomputed"
    for model in (pipe.unet, pipe.vae, pipe.text_encoder):
        trainable = [n for n, p in model.named_parameters() if p.requires_grad and ".lora_" not in n]
        assert trainable == [], f"base weights are not frozen: {trainable[:3]}"


def test_inputs_outputs_and_odd_sizes(pipe):
    x = _images()
    pt = pipe(x, output_type="pt").images
    assert pt.shape == x.shape and 0 <= pt.min() and pt.max() <= 1
    array = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    pil = pipe(Image.fromarray(array)).images
    assert isinstance(pil[0], Image.Image) and pil[0].size == (45, 37)
    npy = pipe(array, output_type="np").images
    assert npy.shape == (1, 37, 45, 3) and npy.dtype == np.float32
    assert pipe([array, array], output_type="pt").images.shape == (2, 3, 37, 45)
    assert torch.equal(pipe(x, output_type="pt").images, pt), "restoration is not deterministic"
    with pytest.raises(ValueError, match="output_type"):
        pipe(x, output_type="jpeg")


def test_router_weights_and_strategies(pipe):
    x = _images()
    out = pipe(x, output_type="pt", top_k=2)
    assert out.expert_names == list(NAMES) and out.weights.shape == (2, 3)
    assert ((out.weights > 0).sum(-1) == 2).all() and torch.allclose(out.weights.sum(-1), torch.ones(2))
    assert len(out.degradations) == 2 and out.confidence.shape == (2,)
    manual = pipe(x, weights={"hazy": 1.0}, output_type="pt")
    assert manual.weights.tolist() == [[0.0, 1.0, 0.0]] * 2
    assert torch.allclose(pipe(x, strategy="average", output_type="pt").weights, torch.full((2, 3), 1 / 3))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    r1 = pipe(x, strategy="random", generator=g1, output_type="pt")
    assert torch.equal(r1.weights, pipe(x, strategy="random", generator=g2, output_type="pt").weights)
    assert (r1.weights.sum(-1) == 1).all()
    with pytest.raises(ValueError, match="no expert loaded for foggy"):
        pipe(x, weights={"foggy": 1.0})
    with pytest.raises(ValueError, match="unknown strategy"):
        pipe(x, strategy="vote")


def test_per_image_weights_equal_restoring_each_image_alone(pipe):
    x = _images(batch=3)
    rows = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.2, 0.3, 0.5]])
    batched = pipe(x, weights=rows, output_type="pt").images
    for i in range(3):
        alone = pipe(x[i : i + 1], weights=rows[i], output_type="pt").images
        assert (batched[i] - alone[0]).abs().max() < 1e-5
    expert_effect = (pipe(x[:1], weights=[1.0, 0, 0], output_type="pt").images
                     - pipe(x[:1], weights=[0.0, 1.0, 0], output_type="pt").images).abs().max()
    assert expert_effect > 1e-3, "experts do not change the output"


def test_tiling_bounds_the_restored_size(pipe, monkeypatch):
    x = _images(batch=1, h=72, w=100)
    seen = []
    original = UIRLoRAPipeline.restore_tensor

    def spy(self, t, *args, **kwargs):
        seen.append(tuple(t.shape[-2:]))
        return original(self, t, *args, **kwargs)

    monkeypatch.setattr(UIRLoRAPipeline, "restore_tensor", spy)
    whole = pipe(x, weights=[1.0, 0, 0], output_type="pt").images
    assert seen == [(72, 104)]
    seen.clear()
    tiled = pipe(x, weights=[1.0, 0, 0], output_type="pt", tile_size=48, tile_overlap=16).images
    assert len(seen) > 1 and all(h <= 48 and w <= 48 for h, w in seen)
    assert tiled.shape == whole.shape and torch.isfinite(tiled).all()
    assert torch.equal(pipe(x, weights=[1.0, 0, 0], output_type="pt", tile_size=128).images, whole)


def test_save_and_both_loading_paths(pipe, tmp_path):
    x = _images()
    expected = pipe(x, output_type="pt")
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline", "UIRLoRAPipeline"] and (tmp_path / "pipeline.py").is_file()
    assert sorted(p.name for p in (tmp_path / "experts").iterdir()) == ["config.json",
                                                                         *(f"{n}.expert" for n in sorted(NAMES))]
    assert (tmp_path / "README.md").read_text().startswith("---\nlibrary_name: diffusers")
    assert not list(tmp_path.rglob("*.bin")), "a pickle was written"
    assert torch.equal(pipe(x, output_type="pt").images, expected.images), "saving changed the pipeline"
    for loaded in (DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True),
                   UIRLoRAPipeline.from_pretrained(tmp_path)):
        assert type(loaded).__name__ == "UIRLoRAPipeline" and loaded.experts.names == list(NAMES)
        for ours, theirs in zip(pipe.experts.experts, loaded.experts.experts):
            for name, component in ours.components.items():
                other = theirs.components[name]
                assert other.config["lora_alpha"] == component.config["lora_alpha"]
                assert all(torch.equal(other.state_dict[k], v) for k, v in component.state_dict.items())
        assert (loaded(x, output_type="pt").images - expected.images).abs().max() < 1e-5
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(tmp_path)


def test_experts_save_load_and_grow_the_router(pipe, base_dir, tmp_path):
    paths = pipe.save_experts(tmp_path)
    fresh = UIRLoRAPipeline.from_sd_turbo(str(base_dir), experts=paths, router=tiny_router())
    x = _images()
    assert (fresh(x, output_type="pt").images - pipe(x, output_type="pt").images).abs().max() < 1e-5
    foggy = random_expert("foggy", fresh.unet, fresh.vae, base_model=str(base_dir), seed=9)
    foggy.text = "foggy weather"
    fresh.load_expert(foggy)
    assert fresh.router.vocabulary[-1] == "foggy" and fresh.experts.names[-1] == "foggy"
    assert fresh(x, output_type="pt").weights.shape == (2, 4)
    with pytest.raises(ExpertError, match="made for base model"):
        fresh.load_expert(random_expert("snowy", fresh.unet, base_model="another/model"))
    assert fresh.experts.names[-1] == "foggy"


def test_push_to_hub_uploads_folder_with_card(pipe, monkeypatch, tmp_path):
    uploads = []
    import huggingface_hub

    class Repo:
        repo_id = "me/uir-test"

    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, **kw: Repo())
    monkeypatch.setattr(huggingface_hub, "upload_folder",
                        lambda repo_id, folder_path, **kw: uploads.append((repo_id, sorted(p.name for p in __import__("pathlib").Path(folder_path).iterdir()))))
    pipe.save_pretrained(tmp_path / "p", push_to_hub=True, repo_id="me/uir-test")
    pipe.experts.experts[0].push_to_hub("me/uir-noisy")
    assert uploads[0][0] == "me/uir-test" and "README.md" in uploads[0][1] and "pipeline.py" in uploads[0][1]
    assert "README.md" in uploads[1][1] and "uir_expert.json" in uploads[1][1]


def test_bad_construction_and_no_experts(base_dir):
    from diffusers import AutoencoderKL

    pipe = UIRLoRAPipeline.from_sd_turbo(str(base_dir))
    base_only = pipe(_images(), output_type="pt")  # no experts: the frozen base alone
    assert base_only.weights.shape == (2, 0) and base_only.images.shape == (2, 3, 37, 45)
    with pytest.raises(ValueError, match="no expert loaded for noisy"):
        pipe(_images(), weights={"noisy": 1.0})
    with pytest.raises(TypeError, match="SkipAutoencoderKL"):
        UIRLoRAPipeline(pipe.unet, AutoencoderKL.from_pretrained(base_dir, subfolder="vae"), pipe.text_encoder,
                        pipe.tokenizer, pipe.scheduler)
    with pytest.raises(ExpertError, match="missing uir_expert.json"):
        pipe.load_expert(str(base_dir / "unet"))
    assert pipe.experts.names == []
