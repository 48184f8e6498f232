"""adapters/examples: PEFT reads them, uir loads them, and they match training's presets."""

import json
from pathlib import Path

import pytest
from peft import LoraConfig

from uir.lora import EXPERT_FORMAT
from uir.lora.targets import UNET_RANK, UNET_TARGETS, VAE_RANK, VAE_TARGETS
from uir.models.nafnet import EXPERT_TARGETS
from uir.pipelines import RestorerPipeline
from uir.pipelines.loading import default_model_dir

EXAMPLES = Path(__file__).resolve().parents[1] / "adapters" / "examples"
PRESETS = {"unet": (UNET_TARGETS, UNET_RANK), "vae": (VAE_TARGETS, VAE_RANK), "restorer": (EXPERT_TARGETS, 8)}


@pytest.mark.parametrize("example", ["sd-turbo-noisy", "nafnet-noisy"])
def test_examples_are_peft_configs_of_todays_presets(example):
    meta = json.loads((EXAMPLES / example / "uir_expert.json").read_text())
    assert meta["format"] == EXPERT_FORMAT and meta["degradation"] == "noisy"
    for component, rank in meta["ranks"].items():
        config = LoraConfig.from_pretrained(EXAMPLES / example / component)
        targets, preset_rank = PRESETS[component]
        assert set(config.target_modules) == set(targets)
        assert config.r == rank == preset_rank and config.lora_alpha == rank


def test_nafnet_example_is_the_shipped_expert():
    shipped = default_model_dir() / "experts" / "noisy.expert"
    meta = json.loads((EXAMPLES / "nafnet-noisy" / "uir_expert.json").read_text())
    assert meta == json.loads((shipped / "uir_expert.json").read_text())
    assert meta["base_fingerprint"] == RestorerPipeline.from_pretrained(default_model_dir()).base_fingerprint
    ours = json.loads((EXAMPLES / "nafnet-noisy" / "restorer" / "adapter_config.json").read_text())
    theirs = json.loads((shipped / "restorer" / "adapter_config.json").read_text())
    for key in ("r", "lora_alpha", "peft_type"):
        assert ours[key] == theirs[key]
    assert sorted(ours["target_modules"]) == sorted(theirs["target_modules"])
