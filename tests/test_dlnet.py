"""DL-Net: the unrolled likelihood steps (eq. 4-5), gradient flow, splits, round trips, script."""


import pytest
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from uir.degradations.operators import MaskOperator, SISROperator, fill_missing
from uir.models import NAFNet
from uir.dlnet import VDSR, ContextEncoder, DLNet, variant_settings
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


def test_the_authors_variant_returns_h_of_z_after_k_minus_1_adam_updates():
    torch.manual_seed(0)
    reference = TwoConv().eval()
    operator, y = masked()
    assert variant_settings("paper", 5) == {"steps": 5, "bias_correction": "paper"}
    net = DLNet.wrap(reference, step_size=0.05, **variant_settings("authors", 3)).eval()
    # the authors' loop, literally: K rounds of (output from z, gradient, update); the output kept
    # is the last round's, so the K-th update never reaches it
    z = torch.tanh(reference.first(y)).detach()
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    for k in range(1, 4):
        z.requires_grad_(True)
        output = reference.last(z)
        (grad,) = torch.autograd.grad(0.5 * (operator(output) - y).pow(2).sum(), z)
        m, v = 0.9 * m + 0.1 * grad, 0.999 * v + 0.001 * grad**2
        z = (z - 0.05 * (m / (1 - 0.9**k)) / (v / (1 - 0.999**k)).clamp_min(1e-16).sqrt()).detach()
    torch.testing.assert_close(net(y, operator), output.detach())
    with pytest.raises(ValueError, match="variant"):
        variant_settings("tf", 5)


def test_centred_holes_stay_within_the_shift_of_the_centre():
    generator = torch.Generator().manual_seed(0)
    mask = MaskOperator.square_hole((200, 64, 64), 20, generator, max_shift=10).mask
    rows = (mask[:, 0] == 0).any(2).float().argmax(1)  # the first missing row of each sample
    cols = (mask[:, 0] == 0).any(1).float().argmax(1)
    assert ((rows - 22).abs() <= 10).all() and ((cols - 22).abs() <= 10).all()
    assert len(set(rows.tolist())) == 21  # every shift in -10..10 drawn
    assert (mask[:, 0].sum((1, 2)) == 64 * 64 - 400).all()
    exact = MaskOperator.square_hole((1, 64, 64), 20, generator, max_shift=0).mask
    assert (exact[0, 0, 22:42, 22:42] == 0).all() and exact.sum() == 64 * 64 - 400
    anywhere = MaskOperator.square_hole((200, 64, 64), 20, generator).mask
    assert ((anywhere[:, 0] == 0).any(2).float().argmax(1) - 22).abs().max() > 10


def test_the_non_learned_fill_is_normalised_convolution():
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(1, 2, 12, 12, generator=generator, dtype=torch.float64)
    mask = (torch.rand(1, 1, 12, 12, generator=generator) > 0.5).double()
    filled = fill_missing(image * mask, mask, sigmas=(1.0,))
    # by hand, pixel by pixel: the Gaussian-weighted mean of the observed neighbours
    offsets = range(-3, 4)
    for i in range(12):
        for j in range(12):
            if mask[0, 0, i, j]:
                torch.testing.assert_close(filled[0, :, i, j], image[0, :, i, j])  # observed pixels kept
                continue
            total, weight = torch.zeros(2, dtype=torch.float64), 0.0
            for di in offsets:
                for dj in offsets:
                    a, b = i + di, j + dj
                    if 0 <= a < 12 and 0 <= b < 12 and mask[0, 0, a, b]:
                        w = torch.exp(torch.tensor(-(di**2 + dj**2) / 2.0, dtype=torch.float64)).item()
                        total, weight = total + w * image[0, :, a, b], weight + w
            torch.testing.assert_close(filled[0, :, i, j], total / weight)
    # a hole wider than the smallest window is filled from wider ones; a flat image stays flat
    hole = MaskOperator.square_hole((1, 32, 32), 20, generator, max_shift=0)
    flat = fill_missing(hole(torch.full((1, 3, 32, 32), 0.3)), hole.mask)
    torch.testing.assert_close(flat, torch.full_like(flat, 0.3))


def test_vdsr_starts_as_bicubic_and_its_dl_net_fits_the_observation_better():
    torch.manual_seed(0)
    low = torch.rand(2, 1, 8, 8)
    vdsr = VDSR(scale=2, width=8, depth=3).eval()
    expected = torch.nn.functional.interpolate(low, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(vdsr(low), expected)  # the zero-initialised tail adds nothing yet
    with torch.no_grad():
        vdsr.tail[1].weight.normal_(0, 0.05)
    sisr = SISROperator(2, blur_sigma=1.0)
    net = DLNet.wrap(vdsr, steps=5, step_size=0.05).eval()
    assert net.split_name == "tail"
    before = (sisr(vdsr(low)) - low).pow(2).sum()
    after = (sisr(net(low, sisr)) - low).pow(2).sum()
    assert after < before


def test_script_trains_and_evaluates(tmp_path):
    from accelerate.state import AcceleratorState, GradientState

    photos = save_sample_crops(tmp_path / "photos", 2, 100, 120, step=(30, 0))
    common = ["--width", "4", "--image_size", "32", "--train_batch_size", "2", "--max_train_steps", "2",
              "--checkpointing_steps", "2", "--train_data_dir", str(photos)]
    try:
        train_dlnet.main(["train", "--model", "reference", "--task", "inpainting", *common,  # centred holes
                          "--output_dir", str(tmp_path / "ref")])
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
    fill = train_dlnet.evaluate(train_dlnet.parse_args(["evaluate", "--model", "fill", "--image_size", "32",
                                                        "--masks", "2", "--data", str(photos)]))
    assert all(r["psnr_out"] > r["psnr_in"] + 3 for r in fill)  # normalised convolution beats zero-filled pixels
    assert all(r["psnr_kept"] == pytest.approx(r["psnr_out"]) for r in fill)  # the fill keeps observed pixels
    assert all(r["psnr_kept"] > r["psnr_out"] for r in rows)  # a blurry network loses the observed ones
    assert [r["psnr_in"] for r in fill] == [r["psnr_in"] for r in rows]  # the same masks for every model


def test_script_trains_and_evaluates_super_resolution_with_the_authors_variant(tmp_path):
    from accelerate.state import AcceleratorState, GradientState

    photos = save_sample_crops(tmp_path / "photos", 2, 100, 120, step=(30, 0))
    common = ["--task", "sisr", "--scale", "2", "--image_size", "24", "--width", "4", "--depth", "3",
              "--train_batch_size", "2", "--max_train_steps", "2", "--checkpointing_steps", "2",
              "--train_data_dir", str(photos)]
    try:
        train_dlnet.main(["train", "--model", "dlnet", "--variant", "authors", "--steps", "3", *common,
                          "--output_dir", str(tmp_path / "dl")])
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    net = DLNet.from_pretrained(tmp_path / "dl" / "model")
    assert net.config.steps == 2 and net.config.bias_correction == "adam"
    assert net.config.reference_class.endswith("VDSR") and net.config.reference_config["scale"] == 2
    evaluate = ["evaluate", "--task", "sisr", "--scale", "2", "--image_size", "24", "--data", str(photos)]
    rows = train_dlnet.evaluate(train_dlnet.parse_args([*evaluate, "--model", str(tmp_path / "dl" / "model")]))
    bicubic = train_dlnet.evaluate(train_dlnet.parse_args([*evaluate, "--model", "fill"]))
    assert [r["level"] for r in rows] == [0.0, 1.3, 2.6, "mean"]
    assert all(r["psnr_out"] == pytest.approx(r["psnr_in"]) for r in bicubic)  # sisr's input row is bicubic's
    assert [r["psnr_in"] for r in rows] == [r["psnr_in"] for r in bicubic]
    assert rows[0]["psnr_in"] > rows[2]["psnr_in"]  # more blur, lower PSNR
    with pytest.raises(SystemExit):
        train_dlnet.parse_args(["evaluate", "--task", "sisr", "--scale", "3", "--image_size", "32", "--model", "fill"])
    with pytest.raises(SystemExit, match="does not fit"):
        train_dlnet.build_reference(train_dlnet.parse_args(["train", "--task", "sisr", "--reference", "nafnet",
                                                            "--output_dir", str(tmp_path)]))


def test_a_resumed_run_keeps_the_batch_norm_statistics(tmp_path):
    """Resuming from the last checkpoint (nothing left to train) saves the same network, running
    statistics included; before checkpoints held buffers, it saved fresh ones (PSNR 8 dB)."""
    from accelerate.state import AcceleratorState, GradientState
    from safetensors.torch import load_file

    photos = save_sample_crops(tmp_path / "photos", 2, 100, 120, step=(30, 0))
    argv = ["train", "--model", "reference", "--width", "4", "--image_size", "32", "--train_batch_size", "2",
            "--max_train_steps", "2", "--checkpointing_steps", "2", "--train_data_dir", str(photos),
            "--output_dir", str(tmp_path / "ref"), "--resume_from_checkpoint", "latest"]
    weights = tmp_path / "ref" / "model" / "diffusion_pytorch_model.safetensors"
    saved = []
    try:
        for _ in range(2):
            train_dlnet.main(argv)
            AcceleratorState._reset_state(True)
            GradientState._reset_state()
            saved.append(load_file(weights))
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    statistics = [k for k in saved[0] if k.endswith("running_mean")]
    assert statistics and saved[0][statistics[0]].abs().sum() > 0
    for key in saved[0]:
        assert torch.equal(saved[0][key], saved[1][key]), key
