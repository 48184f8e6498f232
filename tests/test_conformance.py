"""Both uir pipelines behave as diffusers pipelines do, in the calls a diffusers user makes.

Our own checks in the spirit of diffusers' common pipeline tests: save/load, dtypes, components,
batch consistency, output types, optional components, variants, ``from_pipe``, tuple outputs,
the progress bar and ``fuse_qkv_projections``; each on ``RestorerPipeline`` (a tiny NAFNet) and
``UIRLoRAPipeline`` (a tiny SD-turbo-shaped checkpoint), both with router and experts.
"""

import dataclasses
import inspect

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from uir.pipelines import RestorerPipeline, UIRLoRAPipeline
from uir.testing import random_expert, save_tiny_sd_turbo, tiny_restorer_pipeline, tiny_router

NAMES = ("noisy", "hazy")
WEIGHTS = torch.tensor([[1.0, 0.0], [0.3, 0.7]])


def _uir_lora(base_dir):
    pipe = UIRLoRAPipeline.from_sd_turbo(str(base_dir), router=tiny_router(NAMES))
    for i, name in enumerate(NAMES):
        pipe.load_expert(random_expert(name, pipe.unet, pipe.vae, base_model=str(base_dir), seed=i, scale=0.5))
    return pipe


@pytest.fixture(scope="module")
def sd_turbo_dir(tmp_path_factory):
    return save_tiny_sd_turbo(tmp_path_factory.mktemp("sd-turbo"))


@pytest.fixture(params=["restorer", "uir_lora"])
def pipe(request, sd_turbo_dir):
    pipe = tiny_restorer_pipeline(names=NAMES, scale=0.5) if request.param == "restorer" else _uir_lora(sd_turbo_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _images(batch=2, size=32, seed=0):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _restore(pipe, x=None, **kwargs):
    return pipe(_images() if x is None else x, weights=kwargs.pop("weights", WEIGHTS), output_type="pt",
                **kwargs).images


def test_save_load_through_the_class_and_diffusers(pipe, tmp_path):
    expected = _restore(pipe)
    pipe.save_pretrained(tmp_path)
    for loaded in (type(pipe).from_pretrained(tmp_path),
                   DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)):
        assert type(loaded).__name__ == type(pipe).__name__ and loaded.experts.names == list(NAMES)
        assert (_restore(loaded) - expected).abs().max() < 1e-5


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 0.1), (torch.float16, 0.02)])
def test_every_dtype_loads_with_its_experts(pipe, tmp_path, dtype, tolerance):
    """The experts' base fingerprint holds in every dtype (float16 used to be refused)."""
    expected = _restore(pipe)
    pipe.save_pretrained(tmp_path)
    for loaded in (type(pipe).from_pretrained(tmp_path, dtype=dtype),
                   DiffusionPipeline.from_pretrained(tmp_path, dtype=dtype, trust_remote_code=True)):
        assert loaded.experts.names == list(NAMES) and loaded.dtype == dtype
        assert (_restore(loaded) - expected).abs().max() < tolerance
    again = type(pipe).from_pretrained(tmp_path)
    again.to(dtype)
    again.load_expert(loaded.experts.experts[0], replace=True)  # an expert checked on the other dtype's base


def test_components_rebuild_the_pipeline(pipe):
    parameters = set(inspect.signature(type(pipe).__init__).parameters) - {"self"}
    assert set(pipe.components) == parameters - set(pipe.config.keys() - pipe.components.keys()) - {"prompt"}
    rebuilt = type(pipe)(**pipe.components)
    assert torch.equal(_restore(rebuilt), _restore(pipe))


def test_batch_equals_one_image_at_a_time(pipe):
    x = _images(3)
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    batch = _restore(pipe, x, weights=weights)
    for i in range(3):
        assert (batch[i] - _restore(pipe, x[i:i + 1], weights=weights[i:i + 1])[0]).abs().max() < 1e-5
    assert torch.equal(_restore(pipe, x, weights=weights, batch_size=1), batch) or \
        (_restore(pipe, x, weights=weights, batch_size=1) - batch).abs().max() < 1e-5


def test_output_types_agree(pipe):
    x = _images()
    pt = pipe(x, weights=WEIGHTS, output_type="pt").images
    np_images = pipe(x, weights=WEIGHTS, output_type="np").images
    pil = pipe(x, weights=WEIGHTS, output_type="pil").images
    assert pt.shape == (2, 3, 32, 32) and np_images.shape == (2, 32, 32, 3) and np_images.dtype == np.float32
    np.testing.assert_allclose(np_images, pt.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    assert len(pil) == 2 and pil[0].size == (32, 32)
    assert np.abs(np.asarray(pil[1], dtype=np.float32) / 255 - np_images[1]).max() <= 1 / 255 + 1e-6


def test_tuple_output_carries_every_field(pipe):
    x = _images()
    output = pipe(x, output_type="pt")
    as_tuple = pipe(x, output_type="pt", return_dict=False)
    names = [f.name for f in dataclasses.fields(output)]
    assert names[:2] == ["images", "weights"] and len(as_tuple) == len(names) == 13
    for name, value in zip(names, as_tuple):
        expected = getattr(output, name)
        assert torch.equal(value, expected) if isinstance(value, torch.Tensor) else value == expected, name
    assert as_tuple[4] is not None, "the router's verdict is in the tuple"


@pytest.mark.parametrize("component", ["router", "experts"])
def test_optional_components_set_to_none_survive_save_load_and_the_call(pipe, tmp_path, component):
    setattr(pipe, component, None)
    x = _images()
    # no experts: the base alone, whatever the router says; no router: the caller's weights
    call = {"weights": WEIGHTS} if component == "router" else {}
    expected = pipe(x, output_type="pt", **call)
    if component == "experts":
        assert expected.expert_names == [] and expected.weights.shape == (2, 0)
    else:
        assert expected.degradations is None
    pipe.save_pretrained(tmp_path)
    for loaded in (type(pipe).from_pretrained(tmp_path),
                   DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)):
        assert getattr(loaded, component) is None
        assert (loaded(x, output_type="pt", **call).images - expected.images).abs().max() < 1e-5
    if component == "experts":  # an expert added later starts a bank
        loaded.load_expert(random_expert("noisy", **_adapted(loaded), base_model="x", seed=3))
        assert loaded.experts.names == ["noisy"]


def _adapted(pipe):
    return {name: getattr(pipe, name) for name in pipe.adapted_components}


def test_variant_saves_and_loads_and_a_wrong_one_is_diffusers_error(pipe, tmp_path):
    pipe.to(torch.float16)
    expected = _restore(pipe)
    pipe.save_pretrained(tmp_path, variant="fp16")
    assert (tmp_path / "experts" / "noisy.fp16.expert" / "uir_expert.json").is_file()
    load = dict(variant="fp16", dtype=torch.float16)
    for loaded in (type(pipe).from_pretrained(tmp_path, **load),
                   DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True, **load)):
        assert loaded.experts.names == list(NAMES) and loaded.dtype == torch.float16
        assert (_restore(loaded) - expected).abs().max() < 2e-3
    with pytest.raises(ValueError, match="variant=ema"):
        type(pipe).from_pretrained(tmp_path, variant="ema")


def test_a_folder_of_the_first_expert_layout_still_loads(tmp_path):
    """Folders saved before expert folders had a dot (``experts/noisy/``) keep loading."""
    pipe = tiny_restorer_pipeline(names=NAMES)
    pipe.save_pretrained(tmp_path)
    for name in NAMES:
        (tmp_path / "experts" / f"{name}.expert").rename(tmp_path / "experts" / name)
    loaded = RestorerPipeline.from_pretrained(tmp_path)
    assert loaded.experts.names == list(NAMES) and torch.equal(_restore(loaded), _restore(pipe))


def test_variant_of_a_folder_without_one_is_diffusers_error(tmp_path):
    tiny_restorer_pipeline(names=NAMES).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="variant=fp16"):
        RestorerPipeline.from_pretrained(tmp_path, variant="fp16")


def test_from_pipe_shares_the_components(pipe):
    other = type(pipe).from_pipe(pipe)
    assert type(other) is type(pipe)
    for name, component in pipe.components.items():
        assert other.components[name] is component, name
    assert torch.equal(_restore(other), _restore(pipe))


def test_progress_bar_obeys_set_progress_bar_config(pipe, capsys):
    x = _images(3)
    pipe.set_progress_bar_config(desc="custom bar")
    pipe(x, weights=[1.0, 0.0], output_type="pt", batch_size=1)
    assert "custom bar" in capsys.readouterr().err
    pipe.set_progress_bar_config(disable=True)
    pipe(x, weights=[1.0, 0.0], output_type="pt", batch_size=1)
    assert capsys.readouterr().err == ""


def test_fuse_qkv_projections_keeps_the_experts(sd_turbo_dir):
    """diffusers builds the fused q/k/v layer from the base weights alone; the experts must still
    act on q, k and v (fused before or after they are loaded), and unfusing changes nothing."""
    pipe = _uir_lora(sd_turbo_dir)
    expected, base = _restore(pipe), _restore(pipe, weights=torch.zeros(2, 2))
    assert (expected - base).abs().max() > 1e-2
    pipe.unet.fuse_qkv_projections()
    assert (_restore(pipe) - expected).abs().max() < 1e-5
    pipe.unet.unfuse_qkv_projections()
    assert (_restore(pipe) - expected).abs().max() < 1e-5

    fused_first = UIRLoRAPipeline.from_sd_turbo(str(sd_turbo_dir), router=tiny_router(NAMES))
    fused_first.unet.fuse_qkv_projections()
    for i, name in enumerate(NAMES):
        fused_first.load_expert(random_expert(name, pipe.unet, pipe.vae, base_model=str(sd_turbo_dir), seed=i,
                                              scale=0.5))
    assert (_restore(fused_first) - expected).abs().max() < 1e-5
