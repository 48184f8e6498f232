"""Expert folders: exact round trips, PEFT interoperability and clear errors."""

import copy
import json

import pytest
import torch
from diffusers import UNet2DConditionModel
from peft import PeftModel
from safetensors.torch import load_file, save_file

from uir.lora import PEFT_KEY_PREFIX, ExpertError, LoRAExpert, install_experts, mixture_weights
from uir.models.experts import ExpertListModel
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
def test_plain_peft_and_diffusers_load_an_expert_folder_as_uir_does(models, tmp_path):
    """The two lines of adapters/README.md: ``PeftModel.from_pretrained`` and diffusers'
    ``load_lora_adapter`` on a component folder give uir's output, lora_alpha / r = 1.5 included
    (both used to load nothing or scale 1.0 without a word)."""
    unet, _ = models
    random_expert("noisy", unet, scale=1.5).save(tmp_path / "noisy")
    folder = tmp_path / "noisy" / "unet"
    ours = copy.deepcopy(unet)
    install_experts(ours, [LoRAExpert.load(tmp_path / "noisy").components["unet"]])
    g = torch.Generator().manual_seed(0)
    x, t, context = torch.randn(2, 4, 16, 16, generator=g), torch.full((2,), 999), torch.randn(2, 5, 32, generator=g)
    base = unet(x, t, context).sample
    with mixture_weights(ours, [1.0]):
        expected = ours(x, t, context).sample
    assert (expected - base).abs().max() > 0.1
    with_peft = PeftModel.from_pretrained(copy.deepcopy(unet), str(folder))
    with_diffusers = copy.deepcopy(unet)
    with_diffusers.load_lora_adapter(str(folder), prefix="base_model.model", weight_name="adapter_model.safetensors")
    for model in (with_peft, with_diffusers):
        assert (model(x, t, context).sample - expected).abs().max() < 1e-5


def test_the_first_key_layout_still_loads_with_one_notice(models, tmp_path, caplog):
    unet, _ = models
    expert = random_expert("noisy", unet)
    expert.save(tmp_path / "noisy")
    weights = tmp_path / "noisy" / "unet" / "adapter_model.safetensors"
    save_file({k.removeprefix(PEFT_KEY_PREFIX): v for k, v in load_file(weights).items()}, weights)  # as uir wrote it
    with caplog.at_level("WARNING", logger="uir.lora"):
        loaded = LoRAExpert.load(tmp_path / "noisy")
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and "\n" not in notices[0] and str(weights) in notices[0]
    state = expert.components["unet"].state_dict
    assert all(torch.equal(loaded.components["unet"].state_dict[k], v) for k, v in state.items())
    mixed = {**load_file(weights), PEFT_KEY_PREFIX + "x.lora_A.weight": torch.zeros(1)}
    save_file(mixed, weights)
    with pytest.raises(ExpertError, match="some keys"):
        LoRAExpert.load(tmp_path / "noisy")


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
    bank = ExpertListModel(base_model="stabilityai/sd-turbo")
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
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ExpertError, match="not a local folder, and cannot reach the Hub .*HF_HUB_OFFLINE"):
        LoRAExpert.load("someone/uir-expert-noisy")