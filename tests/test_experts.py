"""Expert folders: exact round trips, PEFT interoperability and clear errors."""

import copy
import json

import pytest
import torch
from diffusers import UNet2DConditionModel
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import set_peft_model_state_dict
from safetensors.torch import load_file

from uir.lora import ExpertError, LoRAExpert, install_experts, mixture_weights
from uir.lora.bank import ExpertBank
from uir.models import SkipAutoencoderKL
from uir.testing import TINY_UNET, TINY_VAE, random_expert


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return UNet2DConditionModel(**TINY_UNET).eval(), SkipAutoencoderKL(**TINY_VAE).eval()


def test_round_trip_is_exact_and_keeps_lora_alpha(models, tmp_path):
    unet, vae = models
    expert = random_expert("noisy", unet, vae, base_model="stabilityai/sd-turbo", scale=1.5)
    expert.save(tmp_path / "noisy")
    assert sorted(p.name for p in (tmp_path / "noisy").iterdir()) == ["uir_expert.json", "unet", "vae"]
    loaded = LoRAExpert.load(tmp_path / "noisy")
    assert loaded.metadata() == expert.metadata()
    assert loaded.metadata()["ranks"] == {"unet": 8, "vae": 4}
    for name, component in expert.components.items():
        other = loaded.components[name]
        assert other.config["lora_alpha"] == component.config["lora_alpha"] == component.config["r"] * 1.5
        assert other.state_dict.keys() == component.state_dict.keys()
        assert all(torch.equal(other.state_dict[k], v) for k, v in component.state_dict.items())


@torch.no_grad()
def test_peft_loads_our_component_folder_and_agrees(models, tmp_path):
    """PEFT's own loader is the oracle: its LoRA on the saved folder equals our mixture at weight 1."""
    unet, _ = models
    expert = random_expert("noisy", unet)
    expert.save(tmp_path / "noisy")
    folder = tmp_path / "noisy" / "unet"
    config = LoraConfig.from_pretrained(str(folder))
    peft_unet = inject_adapter_in_model(config, copy.deepcopy(unet))
    set_peft_model_state_dict(peft_unet, load_file(folder / "adapter_model.safetensors"))
    ours = copy.deepcopy(unet)
    install_experts(ours, [LoRAExpert.load(tmp_path / "noisy").components["unet"]])
    g = torch.Generator().manual_seed(0)
    x, context = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 5, 32, generator=g)
    expected = peft_unet(x, torch.full((2,), 999), context).sample
    with mixture_weights(ours, [1.0]):
        got = ours(x, torch.full((2,), 999), context).sample
    assert (got - expected).abs().max() < 1e-5


def test_atomic_overwrite_and_bad_folders(models, tmp_path):
    unet, _ = models
    expert = random_expert("noisy", unet)
    target = expert.save(tmp_path / "noisy")
    expert.save(target)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noisy"]
    (target / "unet" / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(ExpertError, match="refusing pickle"):
        LoRAExpert.load(target)
    (target / "unet" / "adapter_model.bin").unlink()
    (target / "unet" / "adapter_config.json").unlink()
    with pytest.raises(ExpertError, match="missing unet/adapter_config.json"):
        LoRAExpert.load(target)
    with pytest.raises(ExpertError, match="missing uir_expert.json"):
        LoRAExpert.load(target / "unet")
    meta = json.loads((target / "uir_expert.json").read_text())
    (target / "uir_expert.json").write_text(json.dumps({**meta, "format": "other/9"}))
    with pytest.raises(ExpertError, match="unsupported expert format"):
        LoRAExpert.load(target)


def test_expert_for_another_base_is_refused(models):
    unet, _ = models
    bank = ExpertBank(base_model="stabilityai/sd-turbo")
    with pytest.raises(ExpertError, match="made for base model 'other/model'"):
        bank.add(random_expert("noisy", unet, base_model="other/model"))
    bank.add(random_expert("noisy", unet, base_model="stabilityai/sd-turbo"))
    with pytest.raises(ExpertError, match="already loaded"):
        bank.add(random_expert("noisy", unet, base_model="stabilityai/sd-turbo"))
    other_unet = UNet2DConditionModel(**{**TINY_UNET, "block_out_channels": (32, 48)})
    mismatched = random_expert("hazy", other_unet)
    with pytest.raises(ExpertError, match="another base model"):
        install_experts(copy.deepcopy(unet), [mismatched.components["unet"]])


def test_hub_id_that_cannot_be_reached_gets_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ExpertError, match="not a local folder, and the Hub download failed"):
        LoRAExpert.load("someone/uir-expert-noisy")
