"""DL-Net: the unrolled likelihood steps (eq. 4-5), gradient flow, splits, round trips, script."""


import pytest
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from uir.degradations.operators import MaskOperator, SISROperator
from uir.models import NAFNet
from uir.dlnet import ContextEncoder, DLNet
from uir.testing import save_sample_crops

from .conftest import load_train_script


train_dlnet = load_train_script("train_dlnet")


class TwoConv(ModelMixin, ConfigMixin):
    """A tiny restorer: ``conv(tanh(conv(upsample(y))))``, split by default at its last conv."""

    @register_to_config
    def __init__(self, channels: int = 4, scale: int = 1):
        super().__init__()
        self.first = nn.Conv2d(3, channels, 3, padding=1)
        self.last = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, y):
        if self.config.scale > 1:
            y = nn.functional.interpolate(y, scale_factor=self.config.scale, mode="nearest")
        return self.last(torch.tanh(self.first(y)))


def masked(shape=(2, 8, 8), missing=0.5, seed=0):
    operator = MaskOperator.bernoulli(shape, missing, torch.Generator().manual_seed(seed))
    clean = torch.rand(shape[0], 3, *shape[1:], generator=torch.Generator().manual_seed(seed + 1))
    return operator, operator(clean)


def test_steps_follow_eq_5_exactly():
    torch.manual_seed(0)
    reference = TwoConv().eval()
    operator, y = masked()
    for correction in ("paper", "adam"):
        net = DLNet.wrap(reference, steps=3, step_size=0.05, bias_correction=correction).eval()
        # eq. 4-5 by hand: z = tanh(first(y)), h(z) = last(z)
        z = torch.tanh(reference.first(y)).detach()
        m, v = torch.zeros_like(z), torch.zeros_like(z)
        for k in range(1, 4):
            z.requires_grad_(True)
            (grad,) = torch.autograd.grad(0.5 * (operator(reference.last(z)) - y).pow(2).sum(), z)
            m, v = 0.9 * m + 0.1 * grad, 0.999 * v + 0.001 * grad**2
            scale = (1 - 0.9, 1 - 0.999) if correction == "paper" else (1 - 0.9**k, 1 - 0.999**k)
            z = (z - 0.05 * (m / scale[0]) / (v / scale[1]).clamp_min(1e-16).sqrt()).detach()
        torch.testing.assert_close(net(y, operator), reference.last(z))
        assert net.split_name == "last"  # found at the first forward: the last convolution run


def test_likelihood_steps_lower_the_fidelity_and_zero_steps_is_the_reference():
    torch.manual_seed(0)
    reference = TwoConv().eval()
    operator, y = masked()
    plain = reference(y)
    assert torch.equal(DLNet.wrap(reference, steps=0)(y, operator), plain)
    assert torch.equal(DLNet.wrap(reference)(y), plain)  # no operator: the reference
    stepped = DLNet.wrap(reference, steps=5, step_size=0.05).eval()(y, operator)
    fidelity = lambda x: (operator(x) - y).pow(2).sum()  # noqa: E731
    assert fidelity(stepped) < 0.9 * fidelity(plain)
    # SISR: A is blur + downsampling, the reference upsamples
    sisr = SISROperator(2, blur_sigma=1.0)
    low = sisr(torch.rand(1, 3, 16, 16))
    upsampler = TwoConv(scale=2).eval()
    with torch.no_grad():
        before = (sisr(upsampler(low)) - low).pow(2).sum()
    after = (sisr(DLNet.wrap(upsampler, steps=5, step_size=0.05).eval()(low, sisr)) - low).pow(2).sum()
    assert after < 0.9 * before


def test_training_backpropagates_through_the_unrolled_steps():
    """Central differences in float64: the parameter gradient includes the second-order terms."""
    torch.manual_seed(0)
    net = DLNet.wrap(TwoConv(channels=2), steps=2, step_size=0.1, bias_correction="adam").double().train()
    operator, y = masked(shape=(1, 4, 4))
    y = y.double()
    weight = net.reference.first.weight  # reaches the output through z and the steps' gradients of h

    loss = net(y, operator).pow(2).sum()
    (grad,) = torch.autograd.grad(loss, weight)
    eps = 1e-6
    numeric = torch.zeros_like(grad)
    for index in range(weight.numel()):
        for sign in (1, -1):
            with torch.no_grad():
                weight.view(-1)[index] += sign * eps
            value = net(y, operator).pow(2).sum().item()
            with torch.no_grad():
                weight.view(-1)[index] -= sign * eps
            numeric.view(-1)[index] += sign * value / (2 * eps)
    torch.testing.assert_close(grad, numeric, rtol=1e-4, atol=1e-6)
    # and it differs from treating the steps as constants (first-order only)
    net.eval()
    (first_order,) = torch.autograd.grad(net(y, operator).pow(2).sum(), weight, allow_unused=True)
    assert first_order is None or not torch.allclose(first_order, grad)


def test_split_choices_and_round_trip(tmp_path):
    nafnet = NAFNet(width=4, encoder_blocks=(1,), middle_blocks=1, decoder_blocks=(1,))
    assert DLNet.wrap(nafnet).split_name == "ending"  # declared by the backbone
    encoder = ContextEncoder(width=4, image_size=32)
    assert DLNet.wrap(encoder).split_name == "head"  # z before the last ReLU (sec. 3.3)
    assert DLNet.wrap(encoder, split="decoder").split_name == "decoder"
    with pytest.raises(ValueError, match="no module"):
        DLNet.wrap(encoder, split="nope")
    with pytest.raises(ValueError, match="ContextEncoder expects"):
        encoder(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="is not a ModelMixin"):
        DLNet(reference_class="torch.nn.Conv2d")
    net = DLNet.wrap(nafnet.eval(), steps=2, step_size=1e-2).eval()
    operator, y = masked(shape=(1, 8, 8))
    net.save_pretrained(tmp_path / "dl")
    loaded = DLNet.from_pretrained(tmp_path / "dl").eval()
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.state_dict().items())
    torch.testing.assert_close(loaded(y, operator), net(y, operator), rtol=0, atol=1e-6)


def test_script_trains_and_evaluates(tmp_path):
    from accelerate.state import AcceleratorState, GradientState

    photos = save_sample_crops(tmp_path / "photos", 2, 100, 120, step=(30, 0))
    common = ["--width", "4", "--image_size", "32", "--train_batch_size", "2", "--max_train_steps", "2",
              "--checkpointing_steps", "2", "--train_data_dir", str(photos)]
    try:
        train_dlnet.main(["train", "--model", "reference", *common, "--output_dir", str(tmp_path / "ref")])
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        train_dlnet.main(["train", "--model", "dlnet", "--init", str(tmp_path / "ref" / "model"), "--steps", "2",
                          *common, "--output_dir", str(tmp_path / "dl")])
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    net = DLNet.from_pretrained(tmp_path / "dl" / "model")
    assert net.config.steps == 2 and net.config.reference_config["image_size"] == 32
    rows = train_dlnet.evaluate(train_dlnet.parse_args(["evaluate", "--model", str(tmp_path / "dl" / "model"),
                                                        "--image_size", "32", "--masks", "2", "--data", str(photos)]))
    assert [r["level"] for r in rows] == [0.15, 0.45, 0.75, "mean"]
    assert rows[0]["psnr_in"] > rows[2]["psnr_in"]  # more missing pixels, lower input PSNR
