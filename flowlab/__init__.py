"""flowlab: normalizing flows for teaching and research."""
from .transforms.base import Compose, Inverse, Transform
from .distributions import (
    BaseDistribution,
    DiagonalGaussian,
    StandardLogistic,
    StandardNormal,
    UniformBox,
)
from .flow import Flow

__version__ = "0.1.0"
