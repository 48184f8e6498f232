"""RestorerPipeline: the same expert machinery as UIR-LoRA around a regression NAFNet."""

import copy

import pytest
import torch
from diffusers import DiffusionPipeline
from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

from uir import RestorerPipeline
from uir.lora import mixture_layers
from uir.models import NAFNet
from uir.testing import TINY_NAFNET, tiny_restorer_pipeline, tiny_router
from uir.tiling import run_padded


@pytest.fixture(scope="module")
def pipe():
    return tiny_restorer_pipeline()


def _expert_key_survives_saving(pipe, folder, x, weights, attribute: str, values: list, expected) -> None:
    """``pipe`` saved to ``folder`` and loaded by both loaders: each expert's ``attribute`` reads
    ``values``, and the loaded pipeline restores ``x`` under ``weights`` to ``expected``."""
    from uir.pipelines.loading import load_pipeline

    pipe.save_pretrained(folder)
    for runtime in (False, True):
        loaded = load_pipeline(str(folder), runtime=runtime)
        assert [getattr(e, attribute) for e in loaded.expert_list.experts] == values
        assert torch.allclose(loaded(x, weights=weights, output_type="pt").images, expected, atol=1e-6)


def _images(batch=2, h=37, w=45, seed=0):
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_nafnet_starts_as_identity_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = NAFNet(**TINY_NAFNET)
    x = _images(h=32, w=32)
    before = model(x)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    assert torch.equal(NAFNet.from_pretrained(tmp_path)(x), before)
    with torch.no_grad():
        for block in model.modules():
            if hasattr(block, "beta"):
                assert block.beta.abs().sum() == 0 and block.gamma.abs().sum() == 0
    with pytest.raises(ValueError, match="multiple of 4"):
        model(_images(h=30, w=32))


def _random_blocks(model):
    """A NAFNet whose blocks are not the identity they start as (beta and gamma drawn)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("beta", "gamma")):
                parameter.normal_()
    return model


@pytest.mark.parametrize("upsampling", ["pixel-shuffle", "bilinear"])
def test_bilinear_upsampling_draws_no_2px_grid_on_a_flat_image(tmp_path, upsampling):
    """The periodic grid of docs/default-model.md: PixelShuffle puts four channels at the four
    pixels of each 2x2 cell, so a flat image comes back with a 2-px pattern; bilinear upsampling
    keeps the four equal away from the borders. Either loads back through diffusers and through
    the plain-torch runtime with its ``upsampling``."""
    from uir.pipelines.loading import load_pipeline

    torch.manual_seed(0)
    model = _random_blocks(NAFNet(**TINY_NAFNET, upsampling=upsampling))
    flat = torch.full((1, 3, 128, 128), 0.55)
    with torch.no_grad():
        expected = model(flat)
    inside = expected[0, :, 32:96, 32:96]
    phases = torch.stack([inside[:, i::2, j::2] for i in (0, 1) for j in (0, 1)])
    spread = float((phases.amax(0) - phases.amin(0)).max())
    assert (spread < 1e-5) == (upsampling == "bilinear"), spread
    RestorerPipeline(model, router=None).save_pretrained(tmp_path)
    for runtime in (False, True):
        with torch.no_grad():
            got = load_pipeline(str(tmp_path), runtime=runtime).restorer(flat)
        assert torch.allclose(got, expected, atol=1e-5), float((got - expected).abs().max())
    with pytest.raises(ValueError, match="upsampling must be one of"):
        NAFNet(**TINY_NAFNET, upsampling="nearest")


def test_bilinear_from_pixel_shuffle_is_the_cell_mean_interpolated():
    """The converted upsampler's map is the pixel-shuffle output averaged over each 2x2 cell
    (oracle: ``avg_pool2d`` of the trained upsampler's output), interpolated bilinearly."""
    import torch.nn.functional as F

    from uir.networks.nafnet import bilinear_from_pixel_shuffle, upsampler

    torch.manual_seed(0)
    trained = upsampler(16, "pixel-shuffle")
    x = torch.randn(2, 16, 9, 11)
    with torch.no_grad():
        expected = F.interpolate(F.avg_pool2d(trained(x), 2), scale_factor=2, mode="bilinear", align_corners=False)
        got = bilinear_from_pixel_shuffle(trained)(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_converted_pipeline_keeps_its_experts_and_draws_no_grid(tmp_path, train_script):
    """``train/convert_upsampling.py``: a pixel-shuffle NAFNet pipeline with experts and a router
    comes back with bilinear upsampling (in the config), its experts (re-fingerprinted: without
    that they would refuse the converted base) and its router; it restores as the network
    converted in memory, in diffusers and in the runtime, with the four 2x2 phases of a flat
    image equal; it refuses to convert twice or to write over a folder."""
    from uir.lora import ExpertError
    from uir.pipelines.loading import load_pipeline

    convert = train_script("convert_upsampling")
    pipe = tiny_restorer_pipeline(names=("noisy", "hazy"))
    _random_blocks(pipe.restorer)
    pipe.rebase_experts()  # the drawn blocks are the base these experts belong to
    pipe.save_pretrained(tmp_path / "original")
    convert.main(["--model", str(tmp_path / "original"), "--output_dir", str(tmp_path / "converted")])
    assert NAFNet.load_config(tmp_path / "converted" / "restorer")["upsampling"] == "bilinear"

    stale = copy.deepcopy(pipe)  # converted, but its experts still name the pixel-shuffle base
    stale.restorer.use_bilinear_upsampling()
    stale.save_pretrained(tmp_path / "stale")
    with pytest.raises(ExpertError, match="was trained on base"):
        load_pipeline(tmp_path / "stale")

    flat = torch.full((1, 3, 64, 64), 0.55)
    expected = stale(flat, weights={"hazy": 1.0}, output_type="pt").images
    for runtime in (False, True):
        loaded = load_pipeline(tmp_path / "converted", runtime=runtime)
        assert loaded.expert_list.names == ["noisy", "hazy"] and loaded.router is not None
        restored = loaded(flat, weights={"hazy": 1.0}, output_type="pt").images
        torch.testing.assert_close(restored, expected, atol=1e-5, rtol=1e-5)
        inside = restored[0, :, 16:48, 16:48]
        phases = torch.stack([inside[:, i::2, j::2] for i in (0, 1) for j in (0, 1)])
        assert float((phases.amax(0) - phases.amin(0)).max()) < 1e-5
    with pytest.raises(SystemExit, match="already bilinear"):
        convert.main(["--model", str(tmp_path / "converted"), "--output_dir", str(tmp_path / "twice")])
    with pytest.raises(SystemExit, match="exists"):
        convert.main(["--model", str(tmp_path / "original"), "--output_dir", str(tmp_path / "converted")])
    from uir.testing import save_tiny_sd_turbo

    with pytest.raises(SystemExit, match=r"only a NAFNet restorer can be converted \(UIRLoRAPipeline\)"):
        convert.main(["--model", str(save_tiny_sd_turbo(tmp_path / "sd")), "--output_dir", str(tmp_path / "sd-bilinear")])


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_nafnet_block_in_bands_equals_the_whole_map(monkeypatch, layout):
    """Inference runs a tall map in bands of rows (a one-row halo for the 3x3 conv, the channel
    attention over the whole map): the same output as the whole map, band edges and image edges
    included, with per-sample inputs; with autograd the whole map runs."""
    import uir.networks.nafnet as nafnet

    torch.manual_seed(0)
    block = nafnet.NAFBlock(4)
    for parameter in block.parameters():  # beta and gamma start at zero: the block would be the identity
        parameter.data.normal_(0, 0.5)
    x = torch.randn(2, 4, 37, 20).contiguous(memory_format=layout)
    with torch.no_grad():
        whole = block(x)
    bands = []
    monkeypatch.setattr(nafnet, "BAND_VALUES", 5 * block.depthwise.out_channels * x.shape[-1])  # 5 rows a band
    monkeypatch.setattr(block, "expanded",
                        lambda band: bands.append(band.shape[-2]) or type(block).expanded(block, band))
    with torch.no_grad():
        banded = block(x)
    assert bands == [6] + [7] * 6 + [3], "bands of 5 rows plus their halo, the last one shorter"
    assert torch.allclose(banded, whole, atol=1e-5)
    bands.clear()
    assert torch.allclose(block(x), whole, atol=1e-5) and bands == [37], "with autograd, the whole map at once"


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_nafnet_layer_norm_normalises_each_pixel_over_its_channels(layout):
    """Per pixel, (x - mean_c) / sqrt(var_c + eps), then the per-channel affine: the fused
    inference kernel against nn.LayerNorm on the moved channels, and the autograd spelling
    against the same, values and gradients, in both memory layouts."""
    from uir.models.nafnet import LayerNorm2d

    norm, reference = LayerNorm2d(6), torch.nn.LayerNorm(6, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_(generator=torch.Generator().manual_seed(1))
        norm.bias.normal_(generator=torch.Generator().manual_seed(2))
        reference.weight.copy_(norm.weight.view(-1))
        reference.bias.copy_(norm.bias.view(-1))
    x = (3 * torch.randn(2, 6, 5, 7, generator=torch.Generator().manual_seed(0)) + 1).contiguous(memory_format=layout)
    with torch.no_grad():
        assert torch.allclose(norm(x), reference(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), atol=1e-5)
    x.requires_grad_(True)
    out, expected = norm(x), reference(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert torch.allclose(out, expected, atol=1e-5)
    weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    ours = torch.autograd.grad((out * weights).sum(), (x, norm.weight, norm.bias))
    theirs = torch.autograd.grad((expected * weights).sum(), (x, reference.weight, reference.bias))
    for a, b in zip(ours, theirs):
        assert torch.allclose(a.reshape(b.shape), b, atol=1e-4)


def test_expert_equals_peft_on_the_restorer(pipe):
    """One expert at weight 1 through our mixture = PEFT's own LoRA on a plain copy."""
    expert = pipe.experts.experts[1]
    component = expert.components["restorer"]
    plain = copy.deepcopy(pipe.restorer)
    from uir.lora.mixture import remove_mixture

    remove_mixture(plain)
    config = LoraConfig(**{k: v for k, v in component.config.items() if k in ("r", "lora_alpha", "target_modules")})
    peft_model = inject_adapter_in_model(config, plain)
    set_peft_model_state_dict(peft_model, component.state_dict)
    x = _images(h=32, w=32)
    ours = pipe(x, weights={expert.degradation: 1.0}, output_type="pt").images
    with torch.no_grad():  # the pipeline restores with a reflected border margin (uir.tiling)
        theirs = run_padded(peft_model, x, pipe.size_multiple, pipe.border_margin).clamp(0, 1)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_per_image_weights_equal_separate_calls(pipe):
    x = _images()
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    both = pipe(x, weights=weights, output_type="pt").images
    for i in range(2):
        alone = pipe(x[i : i + 1], weights=weights[i], output_type="pt").images
        assert torch.allclose(both[i : i + 1], alone, atol=1e-5)
    routed = pipe(x, output_type="pt")
    assert routed.degradations is not None and routed.weights.shape == (2, 3)
    assert torch.allclose(routed.weights.sum(-1), torch.ones(2))


def test_both_loading_paths_reproduce_the_saved_pipeline(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    x = _images()
    reference = pipe(x, output_type="pt")
    remote = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)
    local = RestorerPipeline.from_pretrained(tmp_path)
    assert type(remote).__name__ == "RestorerPipeline" and type(local) is RestorerPipeline
    for loaded in (remote, local):
        assert loaded.experts.names == pipe.experts.names
        assert mixture_layers(loaded.restorer), "experts were not installed on load"
        out = loaded(x, output_type="pt")
        assert torch.allclose(out.images, reference.images, atol=1e-6)
        assert out.degradations == reference.degradations


def test_rejects_an_expert_for_another_component(pipe):
    from uir.testing import random_expert

    stray = random_expert("snowy", restorer=NAFNet(**TINY_NAFNET), base_model="tiny-nafnet")
    stray.components["unet"] = stray.components.pop("restorer")
    with pytest.raises(ValueError, match="adapts"):
        pipe.load_expert(stray)
    assert pipe.experts.names == ["noisy", "hazy", "rainy"]


def test_assembled_pipeline_keeps_router_and_experts(tmp_path, train_script):
    """``train/assemble_pipeline.py`` loads a base with ``load_pipeline(base, experts, router)``
    and saves it; the router must be registered, or ``save_pretrained`` silently drops it."""
    from uir.pipelines.loading import load_pipeline
    from uir.testing import random_expert, tiny_router

    assemble_pipeline = train_script("assemble_pipeline")

    names = ["hazy", "noisy"]
    base = tiny_restorer_pipeline(names=(), router=False)
    base.save_pretrained(tmp_path / "base")
    for i, name in enumerate(names):
        random_expert(name, restorer=base.restorer, base_model="tiny-nafnet", seed=i).save(tmp_path / "experts" / name)
    tiny_router(names).save_pretrained(tmp_path / "router")
    arguments = ["--base", str(tmp_path / "base"), "--experts", str(tmp_path / "experts"),
                 "--router", str(tmp_path / "router"), "--output_dir", str(tmp_path / "assembled")]
    assemble_pipeline.main(arguments)
    assemble_pipeline.main(arguments)  # replacing an existing folder
    loaded = RestorerPipeline.from_pretrained(tmp_path / "assembled")
    assert loaded.router is not None and loaded.experts.names == names
    reference = load_pipeline(tmp_path / "base", experts=sorted((tmp_path / "experts").iterdir()),
                              router=tmp_path / "router")
    x = _images()
    torch.testing.assert_close(loaded(x, output_type="pt").images, reference(x, output_type="pt").images)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["assembled", "base", "experts", "router"]


def test_large_images_are_tiled_automatically(pipe, monkeypatch):
    """``tile_size="auto"`` bounds memory: above ``auto_tile_size`` the restorer never sees more
    than one tile, and the tiles are equal (seams are measured on the real model in
    test_default_model)."""
    x = _images(batch=1, h=150, w=200)
    seen = []
    original = type(pipe).restore_tensor
    monkeypatch.setattr(type(pipe), "restore_tensor", lambda self, t, *a, **k: seen.append(t.shape) or original(self, t, *a, **k))
    monkeypatch.setattr(pipe, "auto_tile_size", 64)
    assert pipe(x, output_type="pt").images.shape == x.shape
    padded = 64 + 2 * pipe.border_margin  # 3 x 4 equal tiles of 64, each with its reflected margin
    assert len(seen) == 12 and {tuple(s[-2:]) for s in seen} == {(padded, padded)}
    small = pipe(x[..., :48, :48], output_type="pt", tile_size=16).images  # overlap 32 is capped, not an error
    assert small.shape == (1, 3, 48, 48)


def test_clean_class_keeps_the_input_and_blends_by_its_weight(monkeypatch):
    """x_out = c x + (1 - c) f(x; s / (1 - c)) (uir.lora.strategies), against the pipeline
    called with the renormalised expert weights by hand."""
    from uir.models.router import RouterOutput

    pipe = tiny_restorer_pipeline(names=("noisy", "hazy"), router=False)
    pipe.register_modules(router=tiny_router(["noisy", "hazy", "clean"]))
    s = torch.tensor([[0.1, 0.2, 0.7], [0.3, 0.1, 0.6], [0.8, 0.1, 0.1]])

    def fixed(images, found=None):
        p = s[: images.shape[0]]
        confidence, best = p.max(-1)
        return RouterOutput(p, [pipe.router.vocabulary[i] for i in best.tolist()], confidence, confidence > 0.5)

    monkeypatch.setattr(pipe.router, "forward", fixed)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = pipe(x, top_k=2, output_type="pt", tile_size=None)
    assert out.clean_weight[0] == pytest.approx(0.7 / 0.9) and out.clean_weight[2] == 0
    # row 0: top-2 of (noisy .1, hazy .2, clean .7) -> hazy 2/9, clean 7/9
    hazy_only = pipe(x[:1], weights={"hazy": 1.0}, output_type="pt", tile_size=None).images
    c = 0.7 / 0.9
    assert torch.allclose(out.images[:1], c * x[:1] + (1 - c) * hazy_only, atol=1e-6)
    # row 2: noisy .8 + hazy .1 -> no input kept, the experts' own mixture
    mixed = pipe(x[2:], weights={"noisy": 0.8 / 0.9, "hazy": 0.1 / 0.9}, output_type="pt", tile_size=None).images
    assert torch.allclose(out.images[2:], mixed, atol=1e-6)
    # top-1: a photo routed to clean comes back bit for bit, and no restorer runs
    calls = []
    monkeypatch.setattr(pipe, "restore_tensor", lambda *a, **k: calls.append(1))
    assert torch.equal(pipe(x[:1], output_type="pt").images, x[:1]) and not calls


def test_zero_weights_run_the_base_alone_without_touching_the_experts(pipe):
    """All-zero weights (the low-confidence "base" policy) are the plain base network: no fused
    deltas, no per-sample mixture set on any layer."""
    from uir.lora.mixture import remove_mixture

    plain = copy.deepcopy(pipe.restorer)
    remove_mixture(plain)
    x = _images(h=32, w=32)
    layers = mixture_layers(pipe.restorer)
    with pipe.mixture_scope(torch.zeros(2, 3)):
        assert all(layer.weights is None and layer._unfused_weight is None for layer in layers)
    out = pipe(x, weights=torch.zeros(2, 3), output_type="pt").images
    with torch.no_grad():
        assert torch.equal(out, run_padded(plain, x, pipe.size_multiple, pipe.border_margin).clamp(0, 1))


@pytest.mark.parametrize("weights", [{"noisy": -1.0}, {"noisy": 1e30}, {"noisy": float("nan")},
                                     torch.tensor([0.5, 2.0, 0.0])])
def test_manual_weights_outside_zero_one_are_refused(pipe, weights):
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        pipe(torch.rand(1, 3, 16, 16), weights=weights)


def test_an_expected_gain_table_in_the_router_config_decides_and_survives_both_loaders(tmp_path):
    """A saved router's ``expected_gains`` table drives the call (here: half of the top class's
    expert for every known image, the input unchanged for every unsure one), in the diffusers
    pipeline and in the torch-only runtime alike."""
    from uir.pipelines.loading import load_pipeline
    from uir.pipelines.runtime import RuntimeRestorerPipeline

    pipe = tiny_restorer_pipeline(names=("noisy", "hazy", "rainy"))
    names = pipe.router.vocabulary
    table = {name: {"known": {"half": [1.0, 0.1, 20], "expert": [0.5, 0.1, 20]}} for name in names}
    pipe.router.register_to_config(expected_gains=table, min_confidence=0.0)
    x = _images(batch=3, h=32, w=32, seed=5)
    out = pipe(x, output_type="pt")
    assert torch.equal(out.clean_weight, torch.full((3,), 0.5))
    for row, name in enumerate(out.degradations):
        alone = pipe(x[row : row + 1], weights={name: 1.0}, output_type="pt").images
        assert torch.allclose(out.images[row : row + 1], 0.5 * x[row : row + 1] + 0.5 * alone, atol=1e-6)
    pipe.save_pretrained(tmp_path / "saved")
    runtime = load_pipeline(str(tmp_path / "saved"), runtime=True)
    assert isinstance(runtime, RuntimeRestorerPipeline)
    assert torch.equal(runtime(x, output_type="pt").images, out.images)
    pipe.router.register_to_config(min_confidence=1.1)  # every image unsure: the table never measured that bin
    assert torch.equal(pipe(x, output_type="pt").images, x)


def test_a_calls_expected_gain_table_decides_instead_of_the_routers_and_leaves_it_unchanged():
    """``pipe(..., expected_gains=table)``: that table decides the call (here the expert at weight
    1 where the router's own says half), the router's config is not touched, the next call reads
    the router's again, and a malformed table is refused in one line before anything runs."""
    pipe = tiny_restorer_pipeline(names=("noisy", "hazy", "rainy"))
    names = pipe.router.vocabulary
    own = {name: {"known": {"half": [1.0, 0.1, 20]}} for name in names}
    pipe.router.register_to_config(expected_gains=own, min_confidence=0.0)
    x = _images(batch=2, h=32, w=32, seed=6)
    halved = pipe(x, output_type="pt")
    given = {name: {"known": {"expert": [2.0, 0.1, 20]}} for name in names}
    out = pipe(x, output_type="pt", expected_gains=given)
    assert torch.equal(out.clean_weight, torch.zeros(2)) and torch.equal(halved.clean_weight, torch.full((2,), 0.5))
    for row, name in enumerate(out.degradations):
        alone = pipe(x[row : row + 1], weights={name: 1.0}, output_type="pt").images
        assert torch.allclose(out.images[row : row + 1], alone, atol=1e-6)
    assert pipe.router.config.expected_gains == own
    assert torch.equal(pipe(x, output_type="pt").images, halved.images)
    with pytest.raises(ValueError, match="expected-gain") as refused:
        pipe(x, expected_gains={"noisy": {"known": {"expert": [1.0, 0.1]}}})
    assert "\n" not in str(refused.value)


def test_the_expected_gain_rule_can_average_a_classical_prior_with_the_expert(monkeypatch):
    """``prior-expert``: x_out = 0.5 P(x) + 0.5 f(x; expert), P the top class's classical prior
    (the dark channel for hazy); ``prior``: P(x) alone, and no network runs."""
    from uir.classical import PRIORS
    from uir.models.router import RouterOutput

    pipe = tiny_restorer_pipeline(names=("noisy", "hazy"), router=False)
    pipe.register_modules(router=tiny_router(["noisy", "hazy"], expected_gains={
        "hazy": {"known": {"prior-expert": [2.0, 0.1, 30], "expert": [1.0, 0.1, 30]},
                 "unsure": {"prior": [1.0, 0.1, 30]}}}))
    s = torch.tensor([[0.1, 0.9], [0.4, 0.6]])

    def fixed(images, found=None):  # a batch of one is the second image
        p = s[-images.shape[0] :]
        return RouterOutput(p, ["hazy"] * len(p), p.amax(-1), p.amax(-1) > 0.7)

    monkeypatch.setattr(pipe.router, "forward", fixed)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    out = pipe(x, output_type="pt")
    assert torch.equal(out.prior_weight, torch.tensor([0.5, 1.0]))
    expert = pipe(x[:1], weights={"hazy": 1.0}, output_type="pt").images
    dehaze = PRIORS["hazy"].restore
    assert torch.allclose(out.images[:1], 0.5 * dehaze(x[:1]) + 0.5 * expert, atol=1e-6)
    calls = []
    monkeypatch.setattr(pipe, "restore_tensor", lambda *a, **k: calls.append(1))
    assert torch.allclose(pipe(x[1:], output_type="pt").images, dehaze(x[1:]), atol=1e-6) and not calls


def test_an_expected_gain_table_split_by_severity_reads_the_noise_each_image_shows(monkeypatch):
    """A table fitted by severity for ``noisy``: the mildly noisy image (sigma 15, measured by
    :func:`uir.classical.noise_sigma`) gets the DCT prior alone, the severely noisy one (sigma 50)
    the expert; the same images under an unsplit table get the same candidate."""
    from uir.classical import PRIORS
    from uir.models.router import RouterOutput

    pipe = tiny_restorer_pipeline(names=("noisy", "hazy"), router=False)
    split = {"noisy": {"known/mild": {"prior": [3.0, 0.1, 30]}, "known/severe": {"expert": [9.0, 0.1, 30]}}}
    pipe.register_modules(router=tiny_router(["noisy", "hazy"], expected_gains=split))
    p = torch.tensor([[0.9, 0.1], [0.9, 0.1]])
    monkeypatch.setattr(pipe.router, "forward", lambda images, found=None: RouterOutput(
        p[: len(images)], ["noisy"] * len(images), p[: len(images)].amax(-1), p[: len(images)].amax(-1) > 0.7))
    ramp = torch.linspace(0.2, 0.8, 64)
    smooth = (ramp[None, :, None] + ramp[None, None, :]).div(2).expand(3, 64, 64)
    noise = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    x = (smooth + noise * torch.tensor([15.0, 50.0]).view(2, 1, 1, 1) / 255).clamp(0, 1)
    out = pipe(x, output_type="pt")
    assert torch.equal(out.prior_weight, torch.tensor([1.0, 0.0])) and torch.equal(out.clean_weight, torch.zeros(2))
    assert torch.allclose(out.images[:1], PRIORS["noisy"].restore(x[:1]), atol=1e-6)
    assert torch.allclose(out.images[1:], pipe(x[1:], weights={"noisy": 1.0}, output_type="pt").images, atol=1e-6)
    pipe.router.register_to_config(expected_gains={"noisy": {"known": {"prior": [3.0, 0.1, 30]}}})
    assert torch.equal(pipe(x, output_type="pt").prior_weight, torch.ones(2))


def test_an_image_whose_prior_is_both_mixed_in_and_restored_runs_the_prior_once(monkeypatch):
    """The expected-gain rule gives the dark channel a share (``prior-expert``) and the leading
    hazy expert is prior-guided: x_out = 0.5 P(x) + 0.5 f(P(x); hazy), with P run once."""
    from uir.classical import PRIORS, Prior
    from uir.lora import PRIOR_INPUT_KEY
    from uir.models.router import RouterOutput

    pipe = tiny_restorer_pipeline(names=("noisy", "hazy"), router=False)
    pipe.register_modules(router=tiny_router(["noisy", "hazy"], expected_gains={
        "hazy": {"known": {"prior-expert": [2.0, 0.1, 30]}}}))
    p = torch.tensor([[0.1, 0.9]])
    monkeypatch.setattr(pipe.router, "forward", lambda images, found=None: RouterOutput(p, ["hazy"], p.amax(-1), p.amax(-1) > 0.7))
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    dehaze = PRIORS["hazy"].restore
    prior = dehaze(x)
    expert_on_prior = pipe(prior, weights={"hazy": 1.0}, output_type="pt").images
    pipe.experts.experts[1].extra[PRIOR_INPUT_KEY] = True
    calls = []
    monkeypatch.setitem(PRIORS, "hazy", Prior("counted", lambda t: calls.append(1) or dehaze(t)))
    out = pipe(x, output_type="pt")
    assert torch.equal(out.prior_weight, torch.tensor([0.5])) and len(calls) == 1
    assert torch.allclose(out.images, 0.5 * prior + 0.5 * expert_on_prior, atol=1e-6)


def test_a_prior_guided_expert_restores_its_priors_output_and_keeps_the_flag_when_saved(tmp_path):
    """An expert trained with ``--prior_input`` (the hazy one here) restores P(x), the dark
    channel's output, when it leads an image's weights; an image led by another expert is
    restored from its own pixels. The flag lives in ``uir_expert.json`` and survives a save."""
    from uir.classical import PRIORS
    from uir.lora import PRIOR_INPUT_KEY

    pipe = tiny_restorer_pipeline(names=("noisy", "hazy"), router=False)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    weights = torch.tensor([[0.0, 1.0], [0.7, 0.3]])
    plain = pipe(x, weights=weights, output_type="pt").images
    on_prior = pipe(PRIORS["hazy"].restore(x), weights=weights, output_type="pt").images
    pipe.experts.experts[1].extra[PRIOR_INPUT_KEY] = True
    guided = pipe(x, weights=weights, output_type="pt").images
    assert torch.allclose(guided[0], on_prior[0], atol=1e-6) and not torch.allclose(guided[0], plain[0], atol=1e-3)
    assert torch.equal(guided[1], plain[1])
    _expert_key_survives_saving(pipe, tmp_path / "saved", x, weights, "prior_input", [False, True], guided)


@pytest.mark.parametrize("kind, shift, bound", [("snowy", -0.25, "snow_bound"), ("rainy", 0.25, "light_bound"),
                                                 ("shadowed", 0.25, "shadow_bound")])
def test_a_veil_bounded_expert_has_its_output_capped_where_it_leads_and_keeps_the_flag_when_saved(tmp_path, kind,
                                                                                                shift, bound):
    """An expert with ``veil_bound`` in ``uir_expert.json``: the image it leads comes back as its
    class's bound (:func:`uir.classical.snow_bound`, :func:`uir.classical.light_bound`,
    :func:`uir.classical.shadow_bound`) of the unbounded output against the input; the image another expert leads is untouched. The flag
    survives a save, for both loaders; a class without a veil is refused."""
    from uir import classical
    from uir.lora import VEIL_BOUND_KEY, ExpertError
    from uir.testing import random_expert

    pipe = tiny_restorer_pipeline(names=("noisy", kind), router=False)
    x = 0.3 + 0.7 * torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))  # darkest 0.3: some veil
    weights = torch.tensor([[0.0, 1.0], [0.7, 0.3]])
    # a restorer 0.25 darker than the tiny one removes a thick veil, one 0.25 brighter adds light (and,
    # added to every channel alike, is no shadow's gain): the bound bites
    pipe.restore_tensor = lambda t, w, *args, **kwargs: type(pipe).restore_tensor(pipe, t, w, *args, **kwargs) + shift
    unbounded = pipe(x, weights=weights, output_type="pt").images
    pipe.experts.experts[1].extra[VEIL_BOUND_KEY] = True
    bounded = pipe(x, weights=weights, output_type="pt").images
    expected = getattr(classical, bound)(x[:1], unbounded[:1])
    assert not torch.allclose(expected, unbounded[:1], atol=1e-3), "the cap must bite in this test"
    assert torch.allclose(bounded[:1], expected, atol=1e-6) and torch.equal(bounded[1], unbounded[1])
    del pipe.restore_tensor
    _expert_key_survives_saving(pipe, tmp_path / "saved", x, weights, "veil_bound", [False, True],
                                pipe(x, weights=weights, output_type="pt").images)
    stray = random_expert("raindrop", restorer=NAFNet(**TINY_NAFNET), base_model="tiny-nafnet")
    stray.extra[VEIL_BOUND_KEY] = True
    with pytest.raises(ExpertError, match="no veil for 'raindrop'"):
        pipe.load_expert(stray)


def test_a_prior_blended_expert_gives_its_share_to_the_prior_where_it_leads_and_keeps_it_when_saved(tmp_path):
    """An expert with ``prior_blend`` b in ``uir_expert.json`` (the hazy one here): the image it
    leads comes back as (1 - b) f(x) + b P(x), P the dark channel; the image another expert
    leads is untouched. The share survives a save, for both loaders; a share on a type without
    a prior, or outside (0, 1], is refused."""
    from uir.classical import PRIORS
    from uir.lora import PRIOR_BLEND_KEY, ExpertError
    from uir.testing import random_expert

    pipe = tiny_restorer_pipeline(names=("noisy", "hazy"), router=False)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    weights = torch.tensor([[0.0, 1.0], [0.7, 0.3]])
    alone = pipe(x, weights=weights, output_type="pt").images
    pipe.experts.experts[1].extra[PRIOR_BLEND_KEY] = 0.25
    blended = pipe(x, weights=weights, output_type="pt").images
    expected = 0.75 * alone[:1] + 0.25 * PRIORS["hazy"].restore(x[:1])
    assert not torch.allclose(expected, alone[:1], atol=1e-3), "the prior must differ from the expert in this test"
    assert torch.allclose(blended[:1], expected, atol=1e-6) and torch.equal(blended[1], alone[1])
    _expert_key_survives_saving(pipe, tmp_path / "saved", x, weights, "prior_blend", [0.0, 0.25], blended)
    for kind, share in (("snowy", 0.5), ("hazy", 1.5)):
        stray = random_expert(kind, restorer=NAFNet(**TINY_NAFNET), base_model="tiny-nafnet")
        stray.extra[PRIOR_BLEND_KEY] = share
        with pytest.raises(ExpertError, match=f"gives {share} of its output to a classical prior"):
            pipe.load_expert(stray)
    stray.extra[PRIOR_BLEND_KEY] = "half"
    with pytest.raises(ExpertError, match="prior_blend in uir_expert.json must be a number, got 'half'"):
        pipe.load_expert(stray)
    assert pipe.experts.names == ["noisy", "hazy"]


def test_an_input_blended_expert_gives_its_share_back_to_the_input_after_the_prior_and_keeps_it_when_saved(tmp_path):
    """An expert with ``input_blend`` a (and ``prior_blend`` b): the image it leads comes back as
    (1 - a) ((1 - b) f(x) + b P(x)) + a x; at a = 1 as its input, bit for bit where the weights are
    exact. The output reports the shares it returned, and its description says so. The image
    another expert leads is untouched; the share survives a save, for both loaders; a share
    outside (0, 1] is refused."""
    from uir.classical import PRIORS
    from uir.commands.restore import describe_restoration
    from uir.lora import INPUT_BLEND_KEY, PRIOR_BLEND_KEY, ExpertError
    from uir.testing import random_expert

    pipe = tiny_restorer_pipeline(names=("noisy", "hazy"), router=False)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    weights = torch.tensor([[0.0, 1.0], [0.7, 0.3]])
    alone = pipe(x, weights=weights, output_type="pt").images
    hazy = pipe.experts.experts[1]
    hazy.extra[PRIOR_BLEND_KEY], hazy.extra[INPUT_BLEND_KEY] = 0.5, 0.25
    blended = pipe(x, weights=weights, output_type="pt").images
    expected = 0.75 * (0.5 * alone[:1] + 0.5 * PRIORS["hazy"].restore(x[:1])) + 0.25 * x[:1]
    assert torch.allclose(blended[:1], expected, atol=1e-6) and torch.equal(blended[1], alone[1])
    _expert_key_survives_saving(pipe, tmp_path / "saved", x, weights, "input_blend", [0.0, 0.25], blended)
    given = pipe(x, weights=weights, output_type="pt")  # the shares reported are those returned
    assert given.weights[0].tolist() == [0.0, 0.375] and given.weights[1].tolist() == weights[1].tolist()
    assert given.clean_weight.tolist() == [0.25, 0.0] and given.prior_weight.tolist() == [0.375, 0.0]
    assert describe_restoration(given, 0) == "experts: hazy 0.38, dark-channel prior with guided filter 0.38, input kept 0.25"
    hazy.extra[INPUT_BLEND_KEY] = 1.0
    given = pipe(x, weights=weights, output_type="pt")
    assert torch.equal(given.images[0], x[0]) and describe_restoration(given, 0) == "input returned unchanged"
    stray = random_expert("motion-blurry", restorer=NAFNet(**TINY_NAFNET), base_model="tiny-nafnet")
    stray.extra[INPUT_BLEND_KEY] = 1.5
    with pytest.raises(ExpertError, match="gives 1.5 of its output back to its input"):
        pipe.load_expert(stray)
    assert pipe.experts.names == ["noisy", "hazy"]


def test_a_prior_guided_expert_of_a_type_without_a_prior_is_refused():
    from uir.lora import PRIOR_INPUT_KEY, ExpertError
    from uir.testing import random_expert

    pipe = tiny_restorer_pipeline(names=("noisy",), router=False)
    stray = random_expert("snowy", restorer=NAFNet(**TINY_NAFNET), base_model="tiny-nafnet")
    stray.extra[PRIOR_INPUT_KEY] = True
    with pytest.raises(ExpertError, match="no prior for 'snowy'"):
        pipe.load_expert(stray)
    assert pipe.experts.names == ["noisy"]


def test_an_image_with_a_jpeg_trace_has_its_restored_chroma_estimated_from_its_luma(photos_dir, monkeypatch):
    """With the router choosing, a restored image whose JPEG trace the router found gets
    ``uir.classical.jpeg_chroma`` of its restoration; an image without a trace, and a call with
    manual weights, are restored as without the step. The trace's quality is read once, for the
    router, the step and an expected-gain table split by severity."""
    import uir.classical
    import uir.networks.router
    from uir.classical import jpeg_chroma
    from uir.degradations.filters import jpeg
    from uir.images import load_image

    pipe = tiny_restorer_pipeline(names=("noisy", "jpeg-compressed"), router=False)
    pipe.register_modules(router=tiny_router(["noisy", "jpeg-compressed"], jpeg_max_quality=30))
    pipe.routes_again_after = ()  # the step alone (the second routing: the next test)
    photo = load_image(photos_dir / "scikit-image__rocket.png")[None][..., :128, :192]
    x = torch.cat([jpeg(photo, 10), photo])
    out = pipe(x, output_type="pt")
    manual = pipe(x[:1], weights={"jpeg-compressed": 1.0}, output_type="pt").images
    with monkeypatch.context() as patch:
        reads, read = [], uir.networks.router.jpeg_quality
        patch.setattr(uir.networks.router, "jpeg_quality", lambda images: reads.append(len(images)) or read(images))
        patch.setattr(uir.classical, "jpeg_quality", lambda images: pytest.fail("the quality read again"))
        assert torch.equal(pipe(x, output_type="pt").images, out.images) and reads == [2]
    pipe.restores_jpeg_chroma = False
    without = pipe(x, output_type="pt")
    assert out.degradations[0] == "jpeg-compressed" and float(out.clean_weight[0]) < 1
    assert out.chroma_radius.tolist() == [8, 0]
    assert torch.allclose(out.images[:1], jpeg_chroma(x[:1], without.images[:1])[0], atol=1e-6)
    assert not torch.allclose(out.images[:1], without.images[:1], atol=1e-3)
    assert torch.equal(out.images[1:], without.images[1:])
    assert torch.equal(manual, pipe(x[:1], weights={"jpeg-compressed": 1.0}, output_type="pt").images)
    pipe.restores_jpeg_chroma = True  # a table split by severity reads the JPEG's severity from that one read
    pipe.router.register_to_config(expected_gains={"jpeg-compressed": {"known/severe": {"half": [1.0, 0.1, 9]}}})
    with monkeypatch.context() as patch:
        reads = []
        patch.setattr(uir.networks.router, "jpeg_quality", lambda images: reads.append(len(images)) or read(images))
        patch.setitem(uir.classical.SEVERITY_MEASURES, "jpeg-compressed",
                      ("quality", lambda images: pytest.fail("the quality read again")))
        assert float(pipe(x, output_type="pt").clean_weight[0]) == 0.5 and reads == [2]


def test_a_restored_jpeg_is_routed_again_as_an_image_without_its_traces(photos_dir, monkeypatch):
    """With the router choosing, an image whose JPEG trace was found and restored is routed and
    restored again: exactly the pipeline's call on the first restoration with the router reading
    no JPEG trace and nothing filled. The JPEG's quality is still read once, and a detector runs
    only in the first call; an image without a trace is restored once; ``then`` says what the
    second call did, and the CLI's line too."""
    import uir.networks.router
    from uir.commands.restore import describe_restoration
    from uir.degradations.filters import jpeg
    from uir.images import load_image
    from uir.testing import detector_router

    pipe = tiny_restorer_pipeline(names=("noisy", "jpeg-compressed"), router=False)
    pipe.register_modules(router=tiny_router(["noisy", "jpeg-compressed"], jpeg_max_quality=30))
    photo = load_image(photos_dir / "scikit-image__rocket.png")[None][..., :128, :192]
    x = torch.cat([jpeg(photo, 10), photo])
    with monkeypatch.context() as patch:
        reads, read = [], uir.networks.router.jpeg_quality
        patch.setattr(uir.networks.router, "jpeg_quality", lambda images: reads.append(len(images)) or read(images))
        out = pipe(x, output_type="pt")
    assert reads == [2] and out.degradations[0] == "jpeg-compressed" and out.then[1] is None
    pipe.routes_again_after = ()
    once = pipe(x, output_type="pt")
    assert torch.equal(out.images[1:], once.images[1:])
    assert once.then is None and torch.equal(out.clean_weight, once.clean_weight)
    pipe.restores_jpeg_chroma = False
    pipe.router.register_to_config(jpeg_max_quality=None)
    again = pipe(once.images[:1], fill_missing=False, output_type="pt")
    assert float(again.clean_weight[0]) < 1  # the second call changed the image
    assert torch.allclose(out.images[:1], again.images, atol=1e-6)
    assert not torch.allclose(out.images[:1], once.images[:1], atol=1e-3)
    then = out.then[0]
    assert then.images is None and then.expert_names == out.expert_names
    assert then.degradations == again.degradations and torch.equal(then.weights, again.weights)
    line = describe_restoration(out, 0)
    assert line.startswith("detected jpeg-compressed (confidence 1.00); experts: ")
    assert line.endswith(f"; then {describe_restoration(again, 0)}") and "then" not in describe_restoration(out, 1)
    # a drop detector that finds drops everywhere clears the photo without a trace, and nothing in the second call
    names = ("noisy", "jpeg-compressed", "raindrop")
    pipe = tiny_restorer_pipeline(names=names, router=False)
    pipe.register_modules(router=detector_router("drop_detector", 6.0, vocabulary=list(names), jpeg_max_quality=30))
    out = pipe(x, output_type="pt")
    assert out.degradations == ["jpeg-compressed", "raindrop"] and out.drops[0] == 0 < out.drops[1]
    assert out.then[0].drops is None and out.then[0].degradations[0] != "raindrop" and out.then[1] is None


def test_the_classes_routed_again_are_those_the_first_call_named(photos_dir):
    """``routes_again_after`` keys on the first call's class: an image it named one of those
    for and restored is restored again as the pipeline's call on that first restoration says
    (``then`` holds that call); an image named for another class, or kept, is restored once."""
    from uir.images import load_image

    pipe = tiny_restorer_pipeline()
    photo = load_image(photos_dir / "scikit-image__rocket.png")[None][..., :64, :96]
    x = torch.cat([photo, 1 - photo, photo.flip(-1) * 0.3])
    once = pipe(x, output_type="pt")
    assert once.then is None and bool((once.clean_weight < 1).all()) and len(set(once.degradations)) == 2
    named = once.degradations[0]
    pipe.routes_again_after = (named,)
    out = pipe(x, output_type="pt")
    rows = [i for i, name in enumerate(once.degradations) if name == named]
    pipe.routes_again_after = ()
    again = pipe(once.images[rows], fill_missing=False, output_type="pt")
    assert torch.allclose(out.images[rows], again.images, atol=1e-6)
    assert not torch.allclose(out.images[rows], once.images[rows], atol=1e-3)
    assert [out.then[i].degradations for i in rows] == [[name] for name in again.degradations]
    others = [i for i in range(len(x)) if i not in rows]
    assert torch.equal(out.images[others], once.images[others]) and all(out.then[i] is None for i in others)
    pipe.routes_again_after = tuple(name for name in pipe.expert_list.names if name not in once.degradations)
    assert torch.equal(pipe(x, output_type="pt").images, once.images)


def test_split_readings_give_both_shares_to_the_class_undone_first():
    """A call whose two likeliest classes are a pair, together at least the bar and each at least
    SPLIT_SHARE, is read as the first class (both shares), then as the call without it (the rest
    renormalised); any other call is left as it was."""
    from uir.models.router import RouterOutput
    from uir.pipelines.restoring import SPLIT_SHARE, split_readings

    vocabulary = ["noisy", "hazy", "low-light", "clean"]
    p = torch.tensor([[0.40, 0.03, 0.55, 0.02],   # split: low-light leads, noise undone first
                      [0.80, 0.15, 0.05, 0.00],   # the pair is not the two likeliest
                      [0.30, 0.00, 0.30, 0.40],   # the pair is not the two likeliest
                      [0.97, 0.00, SPLIT_SHARE / 2, 0.03 - SPLIT_SHARE / 2],  # the lesser share under the floor
                      [0.20, 0.50, 0.22, 0.08]])  # not the pair either
    routed = RouterOutput.read(p, vocabulary, 0.7)
    first, second, rows = split_readings(routed, vocabulary, [("noisy", "low-light")], 0.7)
    assert rows == [0]
    assert first.names[0] == "noisy" and first.confidence[0] == pytest.approx(0.95) and bool(first.known[0])
    assert torch.equal(first.probabilities[1:], p[1:]) and first.names[1:] == routed.names[1:]
    assert second.names == ["low-light"] and second.probabilities[0, 0] == 0
    assert torch.allclose(second.probabilities[0], torch.tensor([0.0, 0.03, 0.55, 0.02]) / 0.60)
    assert split_readings(routed, vocabulary, [("noisy", "low-light")], 0.96)[2] == []  # 0.95 under the bar
    assert split_readings(routed, vocabulary, [("noisy", "rainy")], 0.7)[2] == []  # not in the vocabulary
    assert split_readings(routed, vocabulary, [], 0.7)[0] is routed
    # an image not split keeps the router's reading as given, its own "known" included
    given = RouterOutput(p, routed.names, routed.confidence, torch.tensor([False, False, True, False, True]))
    assert torch.equal(split_readings(given, vocabulary, [("noisy", "low-light")], 0.7)[0].known[1:], given.known[1:])


def test_a_split_call_undoes_its_first_class_then_the_second(monkeypatch):
    """With ``split_calls``, an image whose call the router split between a pair is restored as a
    call of the first class, then the result, mapped back from the clipped noise's mean where the
    first class is noise, as the call without it, read on the image as given (the router runs
    once); ``then`` holds that second call. Other images are restored as before."""
    from uir.classical import unclip_noise
    from uir.models.router import RouterOutput

    names = ("noisy", "hazy", "low-light")
    pipe = tiny_restorer_pipeline(names=names, router=False)
    pipe.register_modules(router=tiny_router([*names, "clean"], min_confidence=0.7))
    s = torch.tensor([[0.55, 0.05, 0.40, 0.00], [0.50, 0.45, 0.05, 0.00], [0.02, 0.10, 0.80, 0.08]])
    calls = []

    def fixed(images, found=None):
        calls.append(len(images))
        return RouterOutput.read(s[: len(images)], pipe.router.vocabulary, pipe.router.config.min_confidence)

    monkeypatch.setattr(pipe.router, "forward", fixed)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    pipe.split_calls = ()
    before = pipe(x, output_type="pt", tile_size=None)
    pipe.split_calls = (("noisy", "low-light"),)  # the default's
    calls.clear()
    out = pipe(x, output_type="pt", tile_size=None)
    assert calls == [3]
    denoised = pipe(x[:1], weights={"noisy": 1.0}, output_type="pt", tile_size=None).images
    then = {}  # the denoised image as is, and mapped back from the clipped noise's mean (noise's CLIPPED_MEANS)
    for name, first in (("as is", denoised), ("unclipped", unclip_noise(x[:1], denoised))):
        then[name] = pipe(first, weights={"low-light": 1.0}, fill_missing=False, output_type="pt", tile_size=None).images
    assert torch.allclose(out.images[:1], then["unclipped"], atol=1e-6)
    assert not torch.allclose(out.images[:1], then["as is"], atol=1e-3) and not torch.allclose(out.images[:1], denoised, atol=1e-3)
    assert out.degradations[0] == "noisy" and out.confidence[0] == pytest.approx(0.95) and bool(out.known[0])
    assert out.then[0].degradations == ["low-light"] and out.then[0].confidence[0] == pytest.approx(0.40 / 0.45)
    assert torch.equal(out.images[1:], before.images[1:]) and out.then[1:] == [None, None]
    assert not bool(before.known[0])  # unsure without the rule: 0.55
    # a second call splits nothing: row 2 (low-light) routed again reads row 0's split call, unsure
    pipe.routes_again_after = ("low-light",)
    again = pipe(x, output_type="pt", tile_size=None)
    assert again.then[2].degradations == ["noisy"] and again.then[2].confidence[0] == pytest.approx(0.55)
    assert not bool(again.then[2].known[0]) and again.then[0].degradations == ["low-light"]


def test_a_split_calls_first_step_takes_the_candidate_of_the_tables_split_bin(monkeypatch):
    """With an expected-gain table that has a ``split`` bin for noise, a split call's first step is
    that bin's candidate (the DCT prior), mapped back from the clipped mean and restored for low
    light; an unsplit noisy image still gets the ``known`` bin's (the expert)."""
    from uir.classical import PRIORS, unclip_noise
    from uir.models.router import RouterOutput

    names = ("noisy", "hazy", "low-light")
    table = {"noisy": {"known": {"expert": [9.0, 0.1, 30]}, "split": {"prior": [8.0, 0.1, 20]}},
             "low-light": {"known": {"expert": [5.0, 0.1, 30]}}}
    pipe = tiny_restorer_pipeline(names=names, router=False)
    pipe.register_modules(router=tiny_router([*names, "clean"], min_confidence=0.7, expected_gains=table))
    s = torch.tensor([[0.55, 0.05, 0.40, 0.00], [0.90, 0.05, 0.05, 0.00]])
    monkeypatch.setattr(pipe.router, "forward", lambda images, found=None: RouterOutput.read(
        s[: len(images)], pipe.router.vocabulary, pipe.router.config.min_confidence))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = pipe(x, output_type="pt", tile_size=None)
    first = unclip_noise(x[:1], PRIORS["noisy"].restore(x[:1]))
    chain = pipe(first, weights={"low-light": 1.0}, fill_missing=False, output_type="pt", tile_size=None).images
    assert torch.allclose(out.images[:1], chain, atol=1e-6) and out.prior_weight[0] == 1
    assert torch.allclose(out.images[1:], pipe(x[1:], weights={"noisy": 1.0}, output_type="pt").images, atol=1e-6)
    assert out.prior_weight[1] == 0 and out.then[1] is None
