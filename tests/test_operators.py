import pytest
import torch

from uir.degradations.operators import MaskOperator, SISROperator

from .conftest import seeded


def _adjoint_gap(op, x_shape, **adjoint_kwargs):
    g = seeded(1)
    x = torch.randn(x_shape, generator=g, dtype=torch.float64)
    ax = op.forward(x)
    y = torch.randn(ax.shape, generator=g, dtype=torch.float64)
    lhs = (ax * y).sum()
    rhs = (x * op.adjoint(y, **adjoint_kwargs)).sum()
    return abs(lhs - rhs).item() / abs(lhs).item()


@pytest.mark.parametrize("h, w, scale", [(32, 32, 4), (33, 30, 3), (17, 19, 2), (24, 24, 1)])
def test_sisr_adjoint_and_size(h, w, scale):
    op = SISROperator(scale, blur_sigma=1.2)
    assert _adjoint_gap(op, (2, 3, h, w), size=(h, w)) < 1e-12
    assert op.forward(torch.zeros(1, 3, h, w)).shape[-2:] == (-(-h // scale), -(-w // scale))


def test_mask_operators_adjoint_and_coverage():
    hole = MaskOperator.square_hole((2, 40, 48), 16, seeded())
    assert _adjoint_gap(hole, (2, 3, 40, 48)) < 1e-12
    assert (hole.mask == 0).sum(dim=(1, 2, 3)).tolist() == [256, 256]
    interp = MaskOperator.bernoulli((1, 100, 100), 0.75, seeded())
    assert _adjoint_gap(interp, (1, 3, 100, 100)) < 1e-12
    assert abs((interp.mask == 0).float().mean().item() - 0.75) < 0.02


def test_observe_adds_noise_of_the_given_level():
    op = SISROperator(2, blur_sigma=1.0, noise_sigma=0.05)
    x = torch.full((1, 3, 128, 128), 0.5)
    y = op.observe(x, seeded())
    assert abs((y - op.forward(x)).std().item() - 0.05) < 0.003
    assert torch.equal(op.observe(x, seeded(4)), op.observe(x, seeded(4)))


def test_operator_errors():
    with pytest.raises(ValueError, match="hole size"):
        MaskOperator.square_hole((1, 10, 10), 11, seeded())
    with pytest.raises(ValueError, match="missing ratio"):
        MaskOperator.bernoulli((1, 10, 10), 1.0, seeded())
    with pytest.raises(ValueError, match="odd sides"):
        SISROperator(2, kernel=torch.ones(4, 4) / 16)
    with pytest.raises(ValueError, match="does not match"):
        SISROperator(2).adjoint(torch.zeros(1, 3, 8, 8), size=(40, 40))
