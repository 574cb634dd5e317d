"""Conditioner networks :math:`\\theta(x_A)` for coupling layers (never inverted)."""

from .mlp import MLP
from .resnet import ResidualBlock, ResNet

__all__ = ["MLP", "ResNet", "ResidualBlock"]
