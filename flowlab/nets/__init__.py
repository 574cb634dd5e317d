"""Conditioner networks :math:`\\theta(x_A)` for coupling layers (never inverted)."""

from .made import MADE
from .mlp import MLP
from .resnet import ResidualBlock, ResNet

__all__ = ["MLP", "MADE", "ResNet", "ResidualBlock"]
