import copy
import json
import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from uir.lora.strategies import top_k_weights
from uir.models.router import DegradationRouter, vision_forward
from uir.testing import TINY_CLIP, tiny_router


@pytest.fixture(scope="module")
def router():
    r = tiny_router()
    torch.manual_seed(3)
    with torch.no_grad():  # a trained controller has non-zero injections
        for layer in r.controller.zero_linears:
            layer.weight.normal_(std=0.05)
    return r.eval()


def test_top_k_renormalises_eq4():
    s = torch.tensor([[0.1, 0.5, 0.15, 0.25]])
    assert torch.allclose(top_k_weights(s, 2), torch.tensor([[0.0, 0.5 / 0.75, 0.0, 0.25 / 0.75]]))
    assert torch.allclose(top_k_weights(s, 4), s)
    with pytest.raises(ValueError, match="top_k"):
        top_k_weights(s, 5)


@torch.no_grad()
def test_probabilities_follow_eq3(router):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = router(images)
    d = router.degradation_vector(images)
    expected = (router.logit_scale.exp() * d @ F.normalize(router.encode_texts(router.vocabulary), dim=-1).T).softmax(-1)
    assert torch.allclose(out.probabilities, expected, atol=1e-6)
    assert out.names == [router.vocabulary[i] for i in expected.argmax(-1).tolist()]
    assert torch.equal(out.known, out.confidence >= router.config.min_confidence)


@torch.no_grad()
def test_blockwise_vit_equals_open_clip_and_controller_starts_neutral():
    r = tiny_router()
    pixels = torch.randn(2, 3, 32, 32)
    assert torch.equal(vision_forward(r.clip.visual, pixels)[0], r.clip.visual(pixels))
    content, _ = r.encode_image(torch.rand(2, 3, 32, 32))
    assert content.shape == (2, TINY_CLIP["embed_dim"])
    image = torch.rand(1, 3, 32, 32)
    plain = F.normalize(r.clip.encode_image(r._normalise(image)), dim=-1)
    assert torch.allclose(r.encode_image(image)[0], plain, atol=1e-6), "zero-initialised controller changed CLIP"


@torch.no_grad()
def test_crop_correction_uses_a_native_crop(router):
    big = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(2))
    out = router(big)
    resized = F.interpolate(big, size=(32, 32), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    crop = big[..., 16:48, 24:56]
    d = F.normalize(router.degradation_vector(resized) + router.degradation_vector(crop), dim=-1)
    expected = (router.logit_scale.exp() * d @ router.degradation_bank.T).softmax(-1)
    assert torch.allclose(out.probabilities, expected, atol=1e-6)
    router.register_to_config(crop_correction=False)
    try:
        assert not torch.allclose(router(big).probabilities, out.probabilities)
    finally:
        router.register_to_config(crop_correction=True)


def test_add_degradation_and_round_trip(router, tmp_path):
    r = tiny_router()
    r.add_degradation("foggy", "foggy weather")
    assert r.vocabulary[-1] == "foggy" and r.degradation_bank.shape[0] == 11
    assert torch.allclose(r.degradation_bank[-1], r.encode_texts(["foggy weather"])[0])
    with pytest.raises(ValueError, match="already in the vocabulary"):
        r.add_degradation("noisy")
    r.save_pretrained(tmp_path)
    loaded = DegradationRouter.from_pretrained(tmp_path)
    assert loaded.vocabulary == r.vocabulary and loaded.config.texts[-1] == "foggy weather"
    for key, value in r.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_from_open_clip_offline(tmp_path):
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    (config_dir / "uir-tiny-test.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config_dir)
    source = open_clip.create_model("uir-tiny-test")
    checkpoint = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, checkpoint)
    router = DegradationRouter.from_open_clip("uir-tiny-test", pretrained=str(checkpoint))
    for key, value in source.state_dict().items():
        assert torch.equal(router.clip.state_dict()[key], value), key
    assert torch.equal(router.controller.visual.conv1.weight, source.visual.conv1.weight)
    assert router.degradation_bank.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown open_clip model"):
        DegradationRouter.from_open_clip("no-such-model")


def _daclip_layout(router):
    """A checkpoint in DA-CLIP's published key layout, written from a router's tensors."""
    state = {f"clip.{k}": v for k, v in router.clip.state_dict().items()}
    state.update({f"visual.{k}": v for k, v in router.clip.visual.state_dict().items()})
    for k, v in router.controller.visual.state_dict().items():
        if k.startswith("transformer."):
            state[f"visual_control.transformer.transformer.{k.removeprefix('transformer.')}"] = v
        else:
            state[f"visual_control.{k}"] = v
    state.update({f"visual_control.transformer.zero_modules.{k}": v for k, v in router.controller.zero_linears.state_dict().items()})
    state["logit_scale"] = router.logit_scale.detach()
    return state


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_from_daclip_published_layout(router, tmp_path, suffix):
    path = tmp_path / f"daclip{suffix}"
    state = {k: v.clone().contiguous() for k, v in _daclip_layout(router).items()}
    if suffix == ".pt":
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    else:
        save_file(state, path)
    loaded = DegradationRouter.from_daclip(path, clip_config=TINY_CLIP)
    for key, value in router.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(images).probabilities, router(images).probabilities)


@torch.no_grad()
def test_d_is_the_controllers_output_not_the_frozen_towers(router):
    """With a controller, eq. 3's d is the controller's pooled output (DA-CLIP)."""
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    trained = copy.deepcopy(router)
    trained.controller.visual.conv1.weight.mul_(2.0)  # a trained controller differs from CLIP
    pixels = trained._normalise(images)
    d = trained.degradation_vector(images)
    torch.testing.assert_close(d, F.normalize(trained.controller(pixels)[0], dim=-1))
    assert (d - F.normalize(trained.clip.encode_image(pixels), dim=-1)).abs().max() > 1e-3
    trained.clip.visual.conv1.weight.mul_(3.0)  # the frozen tower does not make d
    torch.testing.assert_close(trained.degradation_vector(images), d)


@torch.no_grad()
def test_controller_injection_is_in_reverse_order_two_blocks():
    """Block i of the frozen tower receives the controller's hidden state n-1-i, by hand."""
    r = tiny_router()
    visual = r.clip.visual
    assert len(visual.transformer.resblocks) == 2
    g = torch.Generator().manual_seed(6)
    pixels = torch.randn(1, 3, 32, 32, generator=g)
    c0, c1 = (torch.randn(1, 17, 32, generator=g) for _ in range(2))  # 16 patches + class token, width 32
    x = visual._embeds(pixels)
    x = visual.transformer.resblocks[0](x, attn_mask=None) + c1
    x = visual.transformer.resblocks[1](x, attn_mask=None) + c0
    pooled, _ = visual._pool(x)
    expected = pooled @ visual.proj
    torch.testing.assert_close(vision_forward(visual, pixels, control=[c0, c1])[0], expected)
    assert not torch.allclose(vision_forward(visual, pixels, control=[c1, c0])[0], expected)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_daclip_keys_spelled_out_land_where_daclip_means_them(router, tmp_path, suffix):
    """DA-CLIP's published names, written here by hand (not by the loader's mapping): the
    controller is ``visual_control`` (a copy of the visual tower whose ``transformer`` is
    wrapped as ``transformer.transformer`` with ``transformer.zero_modules``), CLIP is
    ``clip``, ``visual`` aliases ``clip.visual``."""
    spelled = {
        "visual_control.conv1.weight": lambda r: r.controller.visual.conv1.weight,
        "visual_control.transformer.transformer.resblocks.1.attn.in_proj_weight":
            lambda r: r.controller.visual.transformer.resblocks[1].attn.in_proj_weight,
        "visual_control.transformer.zero_modules.0.weight": lambda r: r.controller.zero_linears[0].weight,
        "visual_control.transformer.zero_modules.1.bias": lambda r: r.controller.zero_linears[1].bias,
        "visual_control.proj": lambda r: r.controller.visual.proj,
        "clip.visual.conv1.weight": lambda r: r.clip.visual.conv1.weight,
        "clip.token_embedding.weight": lambda r: r.clip.token_embedding.weight,
        "logit_scale": lambda r: r.logit_scale,
    }
    state = {k: v.clone().contiguous() for k, v in _daclip_layout(router).items()}
    g = torch.Generator().manual_seed(7)
    for key in spelled:
        assert key in state, f"{key} missing from the fixture"
        state[key] = torch.randn(state[key].shape, generator=g)
    state["visual.conv1.weight"] = state["clip.visual.conv1.weight"].clone()
    path = tmp_path / f"daclip{suffix}"
    if suffix == ".pt":
        torch.save({"state_dict": state}, path)
    else:
        save_file(state, path)
    loaded = DegradationRouter.from_daclip(path, clip_config=TINY_CLIP)
    for key, where in spelled.items():
        torch.testing.assert_close(where(loaded), state[key], msg=key)


def test_strategy_inputs_are_checked():
    """What mutation testing found unguarded: every malformed weight shape, k = 0 and an unknown
    strategy name are errors, never silently routed."""
    from uir.lora.strategies import expert_weights

    names = ["noisy", "hazy", "rainy"]
    for bad in (torch.ones(2, 2), torch.ones(1, 3), torch.tensor(1.0), torch.ones(2, 3, 1)):
        with pytest.raises(ValueError, match="weights must have shape"):
            expert_weights("manual", names, 2, weights=bad)
    with pytest.raises(ValueError, match="top_k"):
        top_k_weights(torch.rand(2, 3), 0)
    for strategy in ("bogus", "zzz"):  # names that sort before and after the real ones
        with pytest.raises(ValueError, match="unknown strategy"):
            expert_weights(strategy, names, 2, probabilities=torch.rand(2, 3).softmax(-1), vocabulary=names,
                           weights=torch.ones(3))


@torch.no_grad()
def test_crop_grid_spans_corners_and_weighs_views_equally():
    r = tiny_router(crop_grid=3).eval()
    big = torch.rand(2, 3, 64, 80, generator=torch.Generator().manual_seed(4))
    crops = r.crops(big)
    assert crops.shape == (2 * 9, 3, 32, 32)
    assert torch.equal(crops[0], big[0, :, :32, :32]) and torch.equal(crops[8], big[0, :, 32:, 48:])
    assert torch.equal(crops[4], big[0, :, 16:48, 24:56]) and torch.equal(crops[9], big[1, :, :32, :32])
    resized = F.interpolate(big, size=(32, 32), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    d_crops = torch.stack([r.degradation_vector(crops[i * 9:(i + 1) * 9]).mean(0) for i in range(2)])
    expected = F.normalize(r.degradation_vector(resized) + d_crops, dim=-1)
    assert torch.allclose(F.normalize(sum(r.view_vectors(big)), dim=-1), expected, atol=1e-6)
    assert r.crops(torch.rand(1, 3, 31, 80)).shape[0] == 0, "an image smaller than a crop gets none"


@torch.no_grad()
def test_view_weights_weigh_each_views_similarity_per_class():
    """``logit_k = scale (w_global,k d_global + w_crops,k d_crops) @ norm(B_k) / |d_global + d_crops|``:
    all weights 1 is eq. 3 with crop correction; an image with no crops has both views its own."""
    vocabulary = ["noisy", "hazy", "rainy", "clean"]
    weighted = tiny_router(vocabulary=vocabulary, crop_grid=2, view_weights={"noisy": [0.25, 2.0], "clean": [3.0, 0.5]})
    plain = tiny_router(vocabulary=vocabulary, crop_grid=2)  # the same seed: the same towers
    weighted.eval(), plain.eval()
    w = torch.tensor([[0.25, 1.0, 1.0, 3.0], [2.0, 1.0, 1.0, 0.5]])
    bank = F.normalize(plain.encode_texts(vocabulary), dim=-1)
    scale = plain.logit_scale.exp()
    big = torch.rand(2, 3, 64, 80, generator=torch.Generator().manual_seed(5))
    resized = F.interpolate(big, size=(32, 32), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    g = plain.degradation_vector(resized)
    c = torch.stack([plain.degradation_vector(plain.crops(big)[i * 4:(i + 1) * 4]).mean(0) for i in range(2)])
    expected = scale * (w[0] * (g @ bank.T) + w[1] * (c @ bank.T)) / (g + c).norm(dim=-1, keepdim=True)
    assert torch.allclose(weighted.logits(big), expected, atol=1e-5)
    assert torch.allclose(plain.logits(big), scale * F.normalize(g + c, dim=-1) @ bank.T, atol=1e-5)
    assert not torch.allclose(weighted.logits(big), plain.logits(big), atol=1e-2)
    small = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(6))  # smaller than a crop
    d = plain.degradation_vector(F.interpolate(small, size=(32, 32), mode="bicubic", align_corners=False,
                                               antialias=True).clamp(0, 1))
    assert torch.allclose(weighted.logits(small), scale * (w[0] + w[1]) / 2 * (d @ bank.T), atol=1e-5)
    for wrong, match in (({"foggy": [1.0, 1.0]}, "lacks"), ({"noisy": [0.0, 1.0]}, "positive"),
                         ({"noisy": [1.0]}, "two"), ({"noisy": [1.0, float("inf")]}, "positive")):
        with pytest.raises(ValueError, match=match):
            tiny_router(vocabulary=vocabulary, view_weights=wrong)


def test_view_calibration_recovers_known_view_weights():
    """:func:`calibrate_views` is maximum likelihood over the per-class view weights: labels drawn
    from known weights give them back, and a class no label names keeps weight 1."""
    from uir.models.router import calibrate_views

    vocabulary = ["noisy", "hazy", "rainy", "snowy", "clean"]
    g = torch.Generator().manual_seed(0)
    similarities = 0.3 * torch.randn(8000, 2, 5, generator=g)
    true = torch.tensor([[0.2, 1.5, 1.0, 0.5, 2.0], [2.0, 0.4, 1.0, 1.5, 0.7]])
    r = tiny_router(vocabulary=vocabulary)
    logits = r.logit_scale.exp().detach() * (true * similarities).sum(1)
    labels = torch.multinomial(logits.softmax(-1), 1, generator=g).squeeze(1)
    fitted = calibrate_views(r, similarities, labels)
    assert r.config.view_weights == fitted and list(fitted) == vocabulary
    torch.testing.assert_close(torch.tensor(list(fitted.values())).T, true, rtol=0.15, atol=0.05)
    assert torch.allclose(r.logits_from_similarities(similarities), r.logit_scale.exp() * (
        torch.tensor(list(fitted.values())).T * similarities).sum(1))
    unseen = tiny_router(vocabulary=vocabulary)
    assert calibrate_views(unseen, similarities[labels != 3], labels[labels != 3])["snowy"] == [1.0, 1.0]


def test_calibration_recovers_a_known_temperature():
    from uir.models.router import calibrate_temperature, expected_calibration_error

    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 5, generator=g) * 2
    labels = torch.multinomial(true_logits.softmax(-1), 1, generator=g).squeeze(1)
    r = tiny_router(vocabulary=["noisy", "hazy", "rainy", "snowy", "clean"])
    scale = r.logit_scale.exp().item()
    temperature = calibrate_temperature(r, true_logits * 3, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    assert r.logit_scale.exp().item() == pytest.approx(scale / temperature, rel=1e-5)
    overconfident = expected_calibration_error((true_logits * 3).softmax(-1), labels)
    assert expected_calibration_error((true_logits * 3 / temperature).softmax(-1), labels) < overconfident / 3


def test_prior_correction_routes_at_the_prior_met_and_calibrates_under_it():
    """A router that learned the posterior at the training prior (clean twins: clean weighted
    ``1 + n W``) routes with ``logits + log p_run - log p_train``; calibration fits the
    temperature with that bias in place and recovers the posterior at the prior met."""
    from uir.models.router import calibrate_temperature, prior_correction

    vocabulary = ["noisy", "hazy", "rainy", "clean"]
    weights = torch.tensor([1.0, 1.0, 1.0, 1.0 + 3 * 0.5])  # a twin of weight 0.5 per degraded draw
    shift = torch.log(weights / weights.sum()) - math.log(0.25)  # log p_train - log p_run, uniform run
    bias = prior_correction(vocabulary, 0.5)
    assert bias == {"clean": pytest.approx(-float(shift[3] - shift[0]))} and prior_correction(vocabulary, None) is None

    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 4, generator=g) * 2  # the posterior at the prior met
    labels = torch.multinomial(true_logits.softmax(-1), 1, generator=g).squeeze(1)
    r = tiny_router(vocabulary=vocabulary, logit_bias=bias)
    temperature = calibrate_temperature(r, (true_logits + shift) * 3, labels)  # overconfident, trained at p_train
    assert temperature == pytest.approx(3.0, rel=0.1)
    images = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        expected = (r.logits(images) + torch.tensor([0.0, 0.0, 0.0, bias["clean"]])).softmax(-1)
        assert torch.allclose(r(images).probabilities, expected, atol=1e-6)
    for wrong, match in (({"foggy": 1.0}, "lacks"), ({"clean": float("inf")}, "finite")):
        with pytest.raises(ValueError, match=match):
            tiny_router(vocabulary=vocabulary, logit_bias=wrong)


def test_expected_calibration_error_by_hand():
    from uir.models.router import expected_calibration_error

    probabilities = torch.tensor([[0.85, 0.15], [0.82, 0.18], [0.35, 0.65], [0.38, 0.62]])
    labels = torch.tensor([0, 1, 1, 0])
    # bin (0.8, 0.9]: two images, mean confidence 0.835, accuracy 0.5; bin (0.6, 0.7]: 0.635, 0.5
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.5 * 0.335 + 0.5 * 0.135)


def test_router_weights_clean_class_and_low_confidence_policies():
    from uir.lora.strategies import SOFT_TOP_K, router_weights

    vocabulary = ["noisy", "hazy", "clean", "rainy"]
    experts = ["hazy", "noisy", "rainy"]
    s = torch.tensor([[0.1, 0.2, 0.6, 0.1],     # clean wins: keep the input
                      [0.7, 0.1, 0.1, 0.1],     # noisy wins
                      [0.3, 0.28, 0.22, 0.2]])  # unsure
    known = torch.tensor([True, True, False])
    weights, clean = router_weights(s, vocabulary, experts, top_k=1, known=known, low_confidence="soft")
    assert torch.equal(clean[:2], torch.tensor([1.0, 0.0])) and torch.equal(weights[0], torch.zeros(3))
    assert torch.equal(weights[1], torch.tensor([0.0, 1.0, 0.0]))
    assert SOFT_TOP_K == 3  # the three largest of (hazy .28, noisy .3, rainy .2, clean .22)
    kept = torch.tensor([0.28, 0.3, 0.0, 0.22]) / 0.8
    assert torch.allclose(torch.cat([weights[2], clean[2:]]), kept)
    weights, clean = router_weights(s, vocabulary, experts, top_k=1, known=known, low_confidence="base")
    assert torch.equal(weights[2], torch.zeros(3)) and clean[2] == 0
    weights, clean = router_weights(s, vocabulary, experts, top_k=1, known=known, low_confidence="identity")
    assert torch.equal(weights[2], torch.zeros(3)) and clean[2] == 1, "unsure: the input comes back unchanged"
    assert torch.equal(weights[1], torch.tensor([0.0, 1.0, 0.0])) and torch.equal(clean[:2], torch.tensor([1.0, 0.0]))
    weights, clean = router_weights(s[:, [0, 1, 3]], ["noisy", "hazy", "rainy"], experts, top_k=1, known=known,
                                    low_confidence="identity")
    assert torch.equal(clean, torch.tensor([0.0, 0.0, 1.0])), "identity needs no clean entry in the vocabulary"
    weights, clean = router_weights(s[:, [0, 1, 3]], ["noisy", "hazy", "rainy"], experts, top_k=1)
    assert torch.equal(clean, torch.zeros(3)), "no clean entry, no kept input"
    with pytest.raises(ValueError, match="low_confidence"):
        router_weights(s, vocabulary, experts, 1, known, "bogus")


def test_expected_gain_table_is_the_mean_and_standard_error_of_each_cell():
    import numpy as np

    from uir.lora.strategies import check_expected_gain_table, expected_gain_table

    gains = [1.0, 3.0, 2.5, -0.5]
    samples = [("noisy", "known", "expert", g) for g in gains] + [("noisy", "unsure", "base", -1.0), ("hazy", "known", "half", 0.2)]
    table = expected_gain_table(samples)
    mean, error, count = table["noisy"]["known"]["expert"]
    assert mean == pytest.approx(np.mean(gains)) and count == 4
    assert error == pytest.approx(np.std(gains, ddof=1) / 2)
    assert table["noisy"]["unsure"]["base"][:1] == [-1.0] and table["noisy"]["unsure"]["base"][1] is None
    assert "Infinity" not in json.dumps(table) and "NaN" not in json.dumps(table), "a config.json must be plain JSON"
    with pytest.raises(ValueError, match="candidate"):
        expected_gain_table([("noisy", "known", "sharpen", 1.0)])
    with pytest.raises(ValueError, match="standard error"):
        check_expected_gain_table({"noisy": {"known": {"expert": [1.0, -0.5, 4]}}})
    with pytest.raises(ValueError, match="standard error"):
        check_expected_gain_table({"noisy": {"known": {"expert": [1.0, "0.5", 4]}}})


def test_expected_gain_rule_picks_the_candidate_whose_gain_clears_its_uncertainty():
    from uir.lora.strategies import gain_choice, gain_weights

    table = {"noisy": {"known": {"expert": [3.0, 0.5, 40], "half": [2.0, 0.1, 40], "base": [2.6, 0.05, 40]},
                       "unsure": {"expert": [0.4, 0.6, 9], "half": [0.3, 0.1, 9]}},
             "hazy": {"known": {"expert": [1.0, 0.1, 40], "half": [1.2, 0.1, 40]}},
             "rainy": {"known": {"expert": [5.0, None, 1]}}}
    assert gain_choice(table, "noisy", True) == "base"  # 2.55 beats 2.5 and 1.9
    assert gain_choice(table, "noisy", False) == "half"  # 0.2 > 0 beats -0.2
    assert gain_choice(table, "hazy", True) == "half"
    assert gain_choice(table, "rainy", True) == "identity", "one measurement clears nothing"
    assert gain_choice(table, "snowy", True) == gain_choice(table, "hazy", False) == "identity", "never measured"
    vocabulary = ["noisy", "hazy", "rainy", "clean"]
    experts = ["hazy", "noisy", "rainy"]
    s = torch.tensor([[0.9, 0.05, 0.03, 0.02],   # noisy, known: base
                      [0.4, 0.3, 0.2, 0.1],      # noisy, unsure: half of the noisy expert
                      [0.1, 0.8, 0.05, 0.05],    # hazy, known: half
                      [0.02, 0.02, 0.9, 0.06]])  # rainy: identity
    known = torch.tensor([True, False, True, True])
    weights, clean, prior = gain_weights(s, vocabulary, experts, top_k=1, known=known, table=table)
    assert torch.equal(weights, torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert torch.equal(clean, torch.tensor([0.0, 0.5, 0.5, 1.0])) and not prior.any()
    table["hazy"]["known"]["prior-expert"] = [2.0, 0.1, 40]  # the dark channel and the expert, averaged
    weights, clean, prior = gain_weights(s, vocabulary, experts, top_k=1, known=known, table=table)
    assert torch.equal(prior, torch.tensor([0.0, 0.0, 0.5, 0.0])) and torch.equal(clean, torch.tensor([0.0, 0.5, 0.0, 1.0]))
    assert torch.equal(weights[2], torch.tensor([0.5, 0.0, 0.0]))
    table["rainy"]["known"]["prior"] = [9.0, 0.1, 40]  # a hand-edited table: rain has no classical prior
    with pytest.raises(ValueError, match="'prior' for 'rainy', which has no classical prior"):
        gain_weights(s, vocabulary, experts, top_k=1, known=known, table=table)
    for broken, match in [({"noisy": {"sure": {}}}, "bin 'sure'"), ({"noisy": {"known/extreme": {}}}, "bin 'known/extreme'"), ({"noisy": {"known": {"sharpen": [1, 0, 2]}}}, "candidate"),
                          ({"noisy": {"known": {"expert": 2.0}}}, r"\[mean, standard error \(null if unknown\), count\]")]:
        with pytest.raises(ValueError, match=match):
            gain_weights(s, vocabulary, experts, top_k=1, known=known, table=broken)


def test_an_expected_gain_table_split_by_severity_decides_by_the_severity_measured():
    """A class fitted by severity (``known/mild``, ...) is decided in the bin of the severity its
    image shows; a severity it never measured gets the input; a class the table did not split
    ignores the severity."""
    from uir.lora.strategies import gain_bin, gain_choice, gain_weights, split_by_severity

    assert (gain_bin(True), gain_bin(False, "mild"), gain_bin(True, "severe")) == ("known", "unsure/mild", "known/severe")
    table = {"noisy": {"known/mild": {"prior": [3.0, 0.2, 10], "prior-expert": [2.0, 0.2, 10]},
                       "known/severe": {"prior": [9.0, 0.2, 30], "prior-expert": [10.0, 0.2, 30]}},
             "hazy": {"known": {"expert": [4.0, 0.5, 40]}}}
    assert split_by_severity(table, "noisy") and not split_by_severity(table, "hazy")
    assert gain_choice(table, "noisy", True, "mild") == "prior"
    assert gain_choice(table, "noisy", True, "severe") == "prior-expert"
    assert gain_choice(table, "noisy", True, "moderate") == gain_choice(table, "noisy", True) == "identity"
    assert gain_choice(table, "hazy", True, "mild") == gain_choice(table, "hazy", True) == "expert"
    s = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9]])
    weights, clean, prior = gain_weights(s, ["noisy", "hazy"], ["noisy", "hazy"], top_k=1, known=torch.ones(3, dtype=torch.bool),
                                         table=table, severities=["mild", "severe", None])
    assert torch.equal(prior, torch.tensor([1.0, 0.5, 0.0])) and torch.equal(clean, torch.zeros(3))
    assert torch.equal(weights, torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, 1.0]]))


def test_a_split_calls_first_step_is_decided_in_the_split_bin_where_the_table_has_one():
    """The first step of a split call reads its class's ``split`` bin (by severity, as the class's
    other bins), fitted on whole chains; an unsplit image of the same class and severity reads
    ``known``; a table without the bin, or without that severity in it, reads ``known`` for both."""
    from uir.lora.strategies import SPLIT_BIN, check_expected_gain_table, gain_bin, gain_choice, gain_weights

    assert (gain_bin(True, split=True), gain_bin(False, "severe", split=True)) == (SPLIT_BIN, f"{SPLIT_BIN}/severe")
    table = {"noisy": {"known/severe": {"expert": [13.0, 0.3, 30], "prior": [11.0, 0.3, 30]},
                       "split/severe": {"expert": [7.0, 0.4, 20], "prior": [8.5, 0.4, 20]}}}
    assert check_expected_gain_table(table) is table
    assert gain_choice(table, "noisy", True, "severe", split=True) == "prior"
    assert gain_choice(table, "noisy", True, "severe") == "expert"
    assert gain_choice(table, "noisy", True, "moderate", split=True) == gain_choice(table, "noisy", True, "moderate")
    assert gain_choice({"noisy": {"known/severe": table["noisy"]["known/severe"]}}, "noisy", True, "severe",
                       split=True) == "expert"
    s = torch.tensor([[0.9, 0.1], [0.9, 0.1]])
    weights, clean, prior = gain_weights(s, ["noisy", "hazy"], ["noisy", "hazy"], top_k=1, known=torch.ones(2, dtype=torch.bool),
                                         table=table, severities=["severe", "severe"], split_rows=[1])
    assert torch.equal(prior, torch.tensor([0.0, 1.0])) and torch.equal(weights[:, 0], torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="bin 'split/extreme'"):
        check_expected_gain_table({"noisy": {"split/extreme": {}}})
