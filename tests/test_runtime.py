"""The diffusers-free runtime (``uir.pipelines.runtime``): the same outputs as the diffusers
pipeline it stands in for, from the same saved folder, without importing diffusers or open_clip."""

import subprocess
import sys

import pytest
import torch

from uir.lora import ExpertError, ExpertList
from uir.networks.clip_vision import ResNetTower, VisionTower, supported_vision_config
from uir.pipelines.loading import default_model_dir
from uir.pipelines.runtime import RuntimeRestorerPipeline, why_not_runtime
from uir.pipelines.saved import read_saved_pipeline
from uir.networks.router import RuntimeRouter
from uir.testing import TINY_CLIP, TINY_CONVNET_CLIP


@pytest.mark.parametrize("quick_gelu, mlp_ratio", [(False, 4.0), (True, 2.0)])
def test_vision_tower_equals_open_clips_vision_transformer(quick_gelu, mlp_ratio):
    import open_clip

    vision_cfg = {"width": 64, "layers": 2, "head_width": 16, "patch_size": 8, "image_size": 32, "mlp_ratio": mlp_ratio}
    torch.manual_seed(0)
    clip = open_clip.CLIP(embed_dim=24, vision_cfg=vision_cfg, text_cfg={"width": 32, "heads": 2, "layers": 1,
                                                                        "context_length": 8}, quick_gelu=quick_gelu)
    for parameter in clip.visual.parameters():  # no zero or identity initialisations left to hide a mistake
        parameter.data.normal_(0, 0.2)
    tower = VisionTower(vision_cfg, embed_dim=24, quick_gelu=quick_gelu)
    tower.load_state_dict(clip.visual.state_dict())  # strict: the same parameter names and shapes
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(tower(pixels), clip.visual(pixels), atol=1e-5)


def randomise(module, seed=0):
    """Random weights (variance-preserving) and BatchNorm statistics: no zero or identity
    initialisation left to hide a mistake, and outputs that depend on the image."""
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in module.state_dict().items():
        if not tensor.is_floating_point():
            continue
        noise = torch.randn(tensor.shape, generator=generator)
        if name.endswith("running_var"):
            tensor.copy_(1 + 0.2 * noise.abs())
        elif tensor.dim() > 1:  # convolution and projection weights
            tensor.copy_(noise / tensor[0].numel() ** 0.5)
        else:  # BatchNorm scales near 1; biases and means near 0
            tensor.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * noise)


def test_resnet_tower_equals_open_clips_modified_resnet():
    import open_clip

    clip = open_clip.CLIP(embed_dim=24, vision_cfg=TINY_CONVNET_CLIP["vision_cfg"], text_cfg=TINY_CLIP["text_cfg"])
    randomise(clip.visual)
    clip.visual.eval()
    tower = ResNetTower(TINY_CONVNET_CLIP["vision_cfg"], embed_dim=24).eval()
    tower.load_state_dict(clip.visual.state_dict())  # strict: the same names and shapes, buffers too
    pixels = torch.randn(3, 3, 1, 1) + 0.5 * torch.randn(3, 3, 32, 32)  # global pooling: images of unlike colours
    with torch.no_grad():
        expected = clip.visual(pixels)
        assert torch.allclose(tower(pixels), expected, atol=1e-5)
    assert (expected[0] - expected[1]).abs().max() > 0.01 * expected.abs().max(), "the embedding ignores the image"


def test_vision_configs_the_tower_does_not_implement_are_refused():
    assert supported_vision_config({"width": 64, "layers": 2, "image_size": 32})
    assert not supported_vision_config({"width": 64, "ls_init_value": 0.1})
    assert not supported_vision_config({"width": 64, "image_size": [32, 48]})
    assert supported_vision_config(TINY_CONVNET_CLIP["vision_cfg"])
    assert not supported_vision_config({**TINY_CONVNET_CLIP["vision_cfg"], "layers": [1, 1, 1]})
    assert not supported_vision_config({**TINY_CONVNET_CLIP["vision_cfg"], "patch_size": 8})
    with pytest.raises(ValueError, match="ls_init_value"):
        VisionTower({"width": 64, "ls_init_value": 0.1}, embed_dim=8)
    with pytest.raises(ValueError, match="four stages"):
        ResNetTower({"width": 8, "layers": [1, 1]}, embed_dim=8)


def read_saved_config(folder):
    from uir.files import load_json_object

    return load_json_object(folder / "config.json")


@pytest.mark.parametrize("use_controller, tower", [(True, "vit"), (False, "vit"), (True, "convnet"), (False, "convnet")])
def test_runtime_router_routes_as_the_saved_router(tmp_path, use_controller, tower):
    from uir.testing import tiny_router

    router = tiny_router(vocabulary=["noisy", "hazy", "rainy", "clean"], use_controller=use_controller, crop_grid=2,
                         min_confidence=0.3, clip_config=TINY_CLIP if tower == "vit" else TINY_CONVNET_CLIP,
                         logit_bias={"clean": -0.7}, view_weights={"hazy": [0.4, 2.5]}).eval()
    if tower == "convnet":  # trained BatchNorm statistics, which eval mode uses
        randomise(router.clip.visual, seed=1)
    if use_controller:  # non-zero: the controller's tower must differ from the frozen CLIP tower's
        for parameter in router.controller.visual.parameters():
            parameter.data.add_(0.05 * torch.randn_like(parameter))
    router.save_pretrained(tmp_path)
    runtime = RuntimeRouter.from_config(read_saved_config(tmp_path), tmp_path / "diffusion_pytorch_model.safetensors")
    images = 0.5 * torch.rand(2, 3, 1, 1) + 0.5 * torch.rand(2, 3, 80, 100)  # larger than the input: crops run
    with torch.no_grad():
        expected, got = router(images), runtime(images)
    assert torch.allclose(got.probabilities, expected.probabilities, atol=1e-5)
    assert (expected.probabilities[0] - expected.probabilities[1]).abs().max() > 1e-3, "routing ignores the image"
    assert got.names == expected.names and torch.equal(got.known, expected.known)
    config = read_saved_config(tmp_path) | {"view_weights": {"hazy": [1.0]}}
    with pytest.raises(ValueError, match="two positive numbers"):  # refused on load, as the diffusers router does
        RuntimeRouter.from_config(config, tmp_path / "diffusion_pytorch_model.safetensors")


@pytest.fixture(scope="module")
def default_pipelines():
    from uir.pipelines.loading import load_pipeline

    runtime = load_pipeline(runtime=True)
    assert isinstance(runtime, RuntimeRestorerPipeline)
    return runtime, load_pipeline()


@pytest.mark.parametrize("options", [{}, {"weights": {"noisy": 0.7, "hazy": 0.3}, "tile_size": 64},
                                     {"strategy": "average", "top_k": 2}])
def test_runtime_restores_the_default_as_its_diffusers_pipeline_does(default_pipelines, options):
    from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

    from uir import sample_image_path
    from uir.images import load_image

    runtime, pipeline = default_pipelines
    image = load_image(sample_image_path())[None]
    images = torch.cat([image, 1 - image])[..., :136, :200]
    got, expected = runtime(images, output_type="pt", **options), pipeline(images, output_type="pt", **options)
    assert isinstance(expected, ImagePipelineOutput) and isinstance(expected, type(got))
    assert torch.equal(got.images, expected.images)
    assert torch.equal(got.weights, expected.weights) and torch.equal(got.clean_weight, expected.clean_weight)
    assert got.expert_names == expected.expert_names and got.degradations == expected.degradations


def test_runtime_checks_experts_against_the_restorer_it_runs():
    from uir.networks.nafnet import NAFNet
    from uir.files import load_json_object

    config = load_json_object(default_model_dir() / "restorer" / "config.json")
    other = NAFNet(**{k: v for k, v in config.items() if not k.startswith("_")})  # random weights
    with pytest.raises(ExpertError, match="trained on base"):
        RuntimeRestorerPipeline(other, None, ExpertList.from_folder(default_model_dir() / "experts"))


def test_what_the_runtime_builds_and_what_it_leaves_to_diffusers(tmp_path, caplog):
    from uir.cli import build_parser
    from uir.commands.common import load_for_cli
    from uir.models import SRResNet
    from uir.pipelines import RestorerPipeline
    from uir.pipelines.loading import load_pipeline
    from uir.testing import tiny_restorer_pipeline, tiny_router

    def runtime_builds(folder):
        return why_not_runtime(read_saved_pipeline(folder)) is None

    assert runtime_builds(default_model_dir()) and not runtime_builds(tmp_path)
    tiny = tiny_restorer_pipeline(router=False)
    tiny.save_pretrained(tmp_path / "no_router")
    assert runtime_builds(tmp_path / "no_router")
    runtime = load_pipeline(tmp_path / "no_router", runtime=True)
    x = torch.rand(1, 3, 32, 32)
    assert isinstance(runtime, RuntimeRestorerPipeline)
    assert runtime.router is None and runtime.experts.names == tiny.experts.names
    assert torch.equal(runtime(x, weights={"hazy": 1.0}, output_type="pt").images,
                       tiny(x, weights={"hazy": 1.0}, output_type="pt").images)
    RestorerPipeline(SRResNet(), router=None).save_pretrained(tmp_path / "srresnet")
    assert not runtime_builds(tmp_path / "srresnet"), "a restorer without a plain network goes to diffusers"
    tiny_router(vocabulary=["noisy"], use_controller=False).save_pretrained(tmp_path / "router")

    def loaded(*argv):
        return type(load_for_cli(build_parser().parse_args(["restore", "x.png", "-o", "y.png", *argv])))

    assert loaded() is RuntimeRestorerPipeline
    assert type(load_pipeline()) is RestorerPipeline, "without runtime=True, Python users get the diffusers pipeline"
    with caplog.at_level("DEBUG", logger="uir.pipelines"):  # never a silent switch: one debug line says why
        assert loaded("--router", str(tmp_path / "router")) is RestorerPipeline  # a router to add: diffusers
        assert loaded("--model", str(tmp_path / "srresnet")) is RestorerPipeline
        assert type(load_pipeline(dtype=torch.bfloat16, runtime=True)) is RestorerPipeline
    reasons = [record.getMessage() for record in caplog.records if record.name == "uir.pipelines"]
    assert len(reasons) == 3 and "router= asks for what only the diffusers pipeline does" in reasons[0]
    assert "SRResNet has no plain torch twin" in reasons[1] and "dtype=" in reasons[2]


def test_old_class_paths_in_saved_folders_still_load(tmp_path):
    """Folders saved before DegradationRouter and the expert list moved to uir.models record
    ``uir.router`` and ``uir.lora.bank``: both loaders still build them."""
    import json

    from uir.pipelines import RestorerPipeline
    from uir.pipelines.loading import load_pipeline
    from uir.testing import tiny_restorer_pipeline

    tiny_restorer_pipeline().save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["router"] == ["uir.models.router", "DegradationRouter"]
    index.update(router=["uir.router", "DegradationRouter"], experts=["uir.lora.bank", "ExpertBank"])
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    x = torch.rand(1, 3, 32, 32)
    runtime, pipeline = load_pipeline(tmp_path, runtime=True), load_pipeline(tmp_path)
    assert isinstance(runtime, RuntimeRestorerPipeline) and isinstance(pipeline, RestorerPipeline)
    assert pipeline.experts.names == runtime.experts.names != []
    assert torch.equal(runtime(x, output_type="pt").images, pipeline(x, output_type="pt").images)


def test_uir_restore_imports_neither_diffusers_nor_open_clip(tmp_path):
    """What made a cold restore 4.7x ``import torch``: now 1.6x (``benchmarks/startup.py``)."""
    from uir import sample_image_path

    heavy = ("diffusers", "open_clip", "transformers", "peft", "torchvision", "torch._dynamo", "accelerate")
    script = ("import sys\nfrom uir.cli import main\ncode = main(sys.argv[1:])\n"
              f"print(code, sorted(m for m in {heavy!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script, "restore", str(sample_image_path()), "-o",
                             str(tmp_path / "out.png")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "0 []" and (tmp_path / "out.png").is_file()


@pytest.mark.parametrize("damage", ["truncated", "other shapes"])
def test_a_damaged_folder_is_one_line_from_the_cli_and_nothing_is_written(tmp_path, capsys, damage):
    import shutil

    from safetensors.torch import load_file, save_file

    from uir import sample_image_path
    from uir.cli import main

    folder = tmp_path / "model"
    shutil.copytree(default_model_dir(), folder)
    weights = folder / "restorer" / "diffusion_pytorch_model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        save_file({k: v[..., :1].contiguous() for k, v in load_file(weights).items()}, weights)
    code = main(["restore", str(sample_image_path()), "-o", str(tmp_path / "out.png"), "--model", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot load model" in err and str(weights) in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out.png").exists()
