"""Oracle tests of the output-space LoRA mixture against PEFT's own LoRA math."""

import copy

import pytest
import torch
from diffusers import UNet2DConditionModel

from uir.lora import LoRAMixtureLayer, fused, install_experts, mixture_layers, mixture_weights, remove_mixture
from uir.lora.experts import ExpertComponent
from uir.lora.targets import UNET_TARGETS
from uir.testing import TINY_UNET, peft_lora_state

NAMES = ("noisy", "hazy", "rainy")


@pytest.fixture(scope="module")
def unets():
    """(PEFT-adapted UNet with three adapters of different ranks, plain copy, our components)."""
    torch.manual_seed(0)
    base = UNet2DConditionModel(**TINY_UNET).eval()
    peft_unet = copy.deepcopy(base)
    components = []
    from peft import LoraConfig

    for i, name in enumerate(NAMES):
        rank, alpha = 2 + 2 * i, 3.0 + i
        state, config = peft_lora_state(base, rank, alpha, UNET_TARGETS, seed=10 + i)
        components.append(ExpertComponent(state, config))
        peft_unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(UNET_TARGETS)), adapter_name=name)
        from peft.utils import set_peft_model_state_dict

        set_peft_model_state_dict(peft_unet, state, adapter_name=name)
    ours = copy.deepcopy(base)
    install_experts(ours, components)
    return peft_unet, ours, base


def _inputs(batch=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, 16, 16, generator=g), torch.full((batch,), 999),
            torch.randn(batch, 6, TINY_UNET["cross_attention_dim"], generator=g))


PATHS = ("stacked", "merged", "auto")


@pytest.mark.parametrize("path", PATHS)
@torch.no_grad()
def test_shared_weights_equal_peft_set_adapters(unets, path):
    peft_unet, ours, _ = unets
    x, t, context = _inputs()
    for weights in ([0.2, 0.5, 0.3], [1.0, 0.0, 0.0], [0.7, 0.0, 0.6]):
        peft_unet.set_adapters(list(NAMES), weights=weights)
        expected = peft_unet(x, t, context).sample
        with mixture_weights(ours, weights, path=path):
            got = ours(x, t, context).sample
        assert (got - expected).abs().max() < 1e-5
        assert (expected - ours(x, t, context).sample).abs().max() > 1e-3, "the experts had no effect"


@pytest.mark.parametrize("path", PATHS)
@torch.no_grad()
def test_per_sample_weights_equal_running_each_sample_alone(unets, path):
    _, ours, _ = unets
    x, t, context = _inputs()
    rows = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.4, 0.6], [0.3, 0.3, 0.4]])
    with mixture_weights(ours, rows, path=path):
        batched = ours(x, t, context).sample
    for i in range(3):
        with mixture_weights(ours, rows[i], path="stacked"):
            alone = ours(x[i : i + 1], t[i : i + 1], context[i : i + 1]).sample
        assert (batched[i] - alone[0]).abs().max() < 1e-5


@torch.no_grad()
def test_fused_equals_unfused_and_unfuse_restores_bitwise(unets):
    _, ours, _ = unets
    x, t, context = _inputs()
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    weights = [0.25, 0.5, 0.25]
    with mixture_weights(ours, weights):
        unfused = ours(x, t, context).sample
    with fused(ours, weights):
        merged = ours(x, t, context).sample
        assert any(not torch.equal(before[k], v) for k, v in ours.state_dict().items() if k.endswith("base.weight"))
    assert (merged - unfused).abs().max() < 1e-5
    assert all(torch.equal(before[k], v) for k, v in ours.state_dict().items()), "unfuse did not restore the weights"
    with pytest.raises(ValueError, match="one weight vector"):
        with fused(ours, torch.rand(2, 3)):
            pass


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@torch.no_grad()
def test_fuse_merges_the_definition_into_a_conv_weight_in_either_layout(layout):
    """Both fuse paths (in place on a contiguous weight, a merged copy on a channels-last one)
    give ``W + sum_k s_k c_k B_k A_k``, keep the layout, and unfuse restores ``W`` bitwise."""
    generator = torch.Generator().manual_seed(0)
    ranks, scalings = [2, 3], [0.5, 2.0]
    layer = LoRAMixtureLayer(torch.nn.Conv2d(6, 5, 3, padding=1), ranks, scalings)
    for param in (layer.lora_A, layer.lora_B):
        param.normal_(generator=generator)
    layer.to(memory_format=layout)
    original = layer.base.weight.clone()
    weights = torch.tensor([0.3, -0.7])
    expected = original.clone()
    for k, scaling in enumerate(scalings):
        rows = layer.expert_slice(k)
        expected += weights[k] * scaling * torch.einsum("or,rihw->oihw", layer.lora_B[:, rows, 0, 0],
                                                        layer.lora_A[rows])
    layer.fuse(weights)
    assert layer.base.weight.is_contiguous(memory_format=layout)
    assert torch.allclose(layer.base.weight, expected, atol=1e-6)
    layer.unfuse()
    assert torch.equal(layer.base.weight, original)


@pytest.mark.parametrize("base, shape, layout", [
    (lambda: torch.nn.Conv2d(6, 5, 3, padding=1), (3, 6, 7, 9), torch.contiguous_format),
    (lambda: torch.nn.Conv2d(6, 5, 3, padding=1), (3, 6, 7, 9), torch.channels_last),
    (lambda: torch.nn.Conv2d(6, 5, 2, stride=2), (3, 6, 8, 8), torch.channels_last),
    (lambda: torch.nn.Linear(6, 5), (3, 6), torch.contiguous_format),
    (lambda: torch.nn.Linear(6, 5), (3, 4, 6), torch.contiguous_format),
])
@pytest.mark.parametrize("rows", [1, 3])
@torch.no_grad()
def test_stacked_and_merged_forms_give_the_definition(base, shape, layout, rows):
    """Each form of a layer, for one weight row shared by the batch and for a row per sample,
    in either memory layout: ``base(x) + sum_k s_k c_k B_k (A_k x)`` per sample, computed
    expert by expert (``B_k`` 1x1, ``A_k`` with the base's kernel, stride and padding)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    base = base()
    generator = torch.Generator().manual_seed(0)
    ranks, scalings = [2, 3], [0.5, 2.0]
    layer = LoRAMixtureLayer(base, ranks, scalings)
    for param in (layer.lora_A, layer.lora_B):
        param.normal_(generator=generator)
    x = torch.randn(shape, generator=generator)
    x = x.contiguous(memory_format=layout) if x.dim() == 4 else x
    weights = torch.randn(rows, 2, generator=generator)
    expected = []
    for i in range(shape[0]):
        sample, row = x[i : i + 1], weights[i % rows]
        out = base(sample)
        for k, scaling in enumerate(scalings):
            a, b = layer.lora_A[layer.expert_slice(k)], layer.lora_B[:, layer.expert_slice(k)]
            if isinstance(base, torch.nn.Linear):
                out = out + row[k] * scaling * F.linear(F.linear(sample, a), b)
            else:
                hidden = F.conv2d(sample, a, stride=base.stride, padding=base.padding)
                out = out + row[k] * scaling * F.conv2d(hidden, b)
        expected.append(out)
    expected = torch.cat(expected)
    for path in ("stacked", "merged"):
        with mixture_weights(layer, weights, path=path):
            assert torch.allclose(layer(x), expected, atol=1e-4), path  # outputs reach 40: float32 sums


@torch.no_grad()
def test_zero_weights_and_removal_give_the_base_model(unets):
    _, ours, base = unets
    x, t, context = _inputs()
    expected = base(x, t, context).sample
    with mixture_weights(ours, [0.0, 0.0, 0.0]):
        assert torch.allclose(ours(x, t, context).sample, expected, atol=1e-6)
    stripped = copy.deepcopy(ours)
    remove_mixture(stripped)
    assert not mixture_layers(stripped)
    assert torch.equal(stripped(x, t, context).sample, expected)


def test_stacked_cost_does_not_grow_with_k():
    """The stacked form is the same few products whatever K: the stacked A is (sum r_k, in), and
    the scaled B's product accumulates into the base output in one batched matmul."""
    layer = LoRAMixtureLayer(torch.nn.Linear(16, 8), ranks=[4] * 10, scalings=[1.0] * 10)
    assert layer.lora_A.shape == (40, 16) and layer.lora_B.shape == (8, 40)
    calls = []
    original = torch.nn.functional.linear

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    torch.nn.functional.linear = counting
    try:
        with mixture_weights(layer, torch.rand(5, 10), path="stacked"):
            layer(torch.randn(5, 7, 16))
    finally:
        torch.nn.functional.linear = original
    assert len(calls) == 2  # base + A (B: one baddbmm_ into the base output)


def test_mixture_errors(unets):
    _, ours, _ = unets
    x, t, context = _inputs()
    with pytest.raises(ValueError, match=r"shape \(K,\) or \(B, K\) with K=3"):
        with mixture_weights(ours, [1.0, 0.0]):
            pass
    with pytest.raises(ValueError, match="batch of 2"):
        with mixture_weights(ours, torch.rand(2, 3)), torch.no_grad():
            ours(x, t, context)
    with pytest.raises(ValueError, match="NaN"):
        with mixture_weights(ours, [float("nan"), 0, 0]):
            pass
    with pytest.raises(ValueError, match="unknown mixture path"):
        with mixture_weights(ours, [1.0, 0, 0], path="fast"):
            pass
    with pytest.raises(TypeError, match="nn.Linear and nn.Conv2d"):
        LoRAMixtureLayer(torch.nn.GroupNorm(2, 4), [2], [1.0])


def test_auto_path_picks_the_cheaper_form():
    conv = LoRAMixtureLayer(torch.nn.Conv2d(64, 64, 3, padding=1), ranks=[8] * 10, scalings=[1.0] * 10)
    with mixture_weights(conv, torch.rand(8, 10)):
        assert conv._merged_is_cheaper(torch.zeros(8, 64, 64, 64), rows=8)  # many pixels: merge
        assert not conv._merged_is_cheaper(torch.zeros(8, 64, 2, 2), rows=8)  # few pixels: stack
