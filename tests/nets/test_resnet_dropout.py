"""Dropout in the convolutional conditioners: off in eval mode, structure-preserving in
training mode, and invisible to checkpoints."""

from __future__ import annotations

import pytest
import torch

from flowlab.models import Glow, MultiScaleFlow
from flowlab.nets.resnet import ResNet
from flowlab.transforms.glow import GlowCoupling
from flowlab.transforms.image import MaskedAffineCoupling, checkerboard_mask


def _randomise(module: torch.nn.Module) -> None:
    """Move the zero-initialised output layers away from zero, so dropout has an effect."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))


def test_dropout_is_off_in_eval_mode_and_on_in_training_mode():
    torch.manual_seed(0)
    plain, dropped = ResNet(2, 4, hidden_channels=16, blocks=1), ResNet(
        2, 4, hidden_channels=16, blocks=1, dropout=0.5)
    _randomise(plain)
    dropped.load_state_dict(plain.state_dict())  # no parameters of its own
    x = torch.randn(3, 2, 5, 5)
    plain.eval(), dropped.eval()
    assert torch.equal(plain(x), dropped(x))
    dropped.train()
    assert not torch.allclose(dropped(x), plain(x))


@pytest.mark.parametrize("make", [
    lambda: MaskedAffineCoupling(checkerboard_mask(6, 6), 2, hidden_channels=8, blocks=1,
                                 dropout=0.4),
    lambda: GlowCoupling(4, hidden_channels=8, dropout=0.4),
], ids=["masked-affine", "glow"])
def test_a_training_mode_pass_is_still_an_invertible_coupling(make):
    """With the same dropout draw (same seed), inverse(forward(x)) = x and the log-dets cancel:
    dropout changes the conditioner, not the coupling's structure."""
    torch.manual_seed(0)
    layer = make().double().train()
    _randomise(layer)
    layer.double()
    x = torch.randn(3, layer.channels, 6, 6, dtype=torch.float64)
    torch.manual_seed(7)
    z, ld = layer(x)
    torch.manual_seed(7)
    x_back, ld_inv = layer.inverse(z)
    torch.testing.assert_close(x_back, x)
    torch.testing.assert_close(ld + ld_inv, torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("model", ["glow", "multiscale"])
def test_models_with_dropout_load_checkpoints_without_it(model):
    torch.manual_seed(0)
    if model == "glow":
        def make(p):
            return Glow((1, 8, 8), 17, steps=2, hidden_channels=8, dropout=p)
    else:
        def make(p):
            return MultiScaleFlow((1, 8, 8), 17, hidden_channels=8, blocks=1, dropout=p)
    source, target = make(0.0), make(0.3)
    target.load_state_dict(source.state_dict())
    x = torch.randint(0, 17, (4, 1, 8, 8)).float()
    source.eval(), target.eval()
    torch.manual_seed(3)
    a = source.log_prob(x)
    torch.manual_seed(3)
    torch.testing.assert_close(target.log_prob(x), a)


def test_bad_dropout_says_what_is_allowed():
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\)"):
        ResNet(2, 4, dropout=1.0)
