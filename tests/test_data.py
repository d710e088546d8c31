"""Data: generated IDX and image-folder datasets, binary targets, the real MNIST if present."""

import pytest
import torch

from conftest import needs_shared_data
from clustnet.data import binary_targets, load_dataset
from clustnet.errors import ClustNetError


def test_generated_mnist(mnist_dir):
    data = load_dataset("MNIST", mnist_dir)
    assert data.train_x.shape == (200, 1, 28, 28) and data.test_x.shape == (80, 1, 28, 28)
    assert data.train_y.bincount().tolist() == [20] * 10
    assert abs(float(data.train_x.mean())) < 1e-4 and abs(float(data.train_x.std()) - 1) < 1e-3


def test_image_folder(folder_dataset):
    data = load_dataset(str(folder_dataset), None)
    assert data.image_shape == (3, 32, 32)
    assert data.classes == [f"class{i}" for i in range(10)]
    assert len(data.train_x) == 120 and len(data.test_x) == 40


def test_binary_targets():
    labels = torch.tensor([0, 4, 5, 9, 2, 7])
    assert binary_targets(labels, [0, 1, 2, 3, 4]).tolist() == [1, 1, 0, 0, 1, 0]
    assert binary_targets(labels, [5, 7]).tolist() == [0, 0, 1, 0, 0, 1]


def test_unknown_dataset_and_missing_data(tmp_path):
    with pytest.raises(ClustNetError, match="unknown dataset 'SVHN'"):
        load_dataset("SVHN", tmp_path)


def test_unequal_class_sets(folder_dataset):
    (folder_dataset / "test" / "class9").rename(folder_dataset / "test" / "other")
    with pytest.raises(ClustNetError, match="different classes"):
        load_dataset(str(folder_dataset), None)


def test_real_mnist():
    data = load_dataset("MNIST", needs_shared_data())
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert binary_targets(data.test_y, range(5)).sum() == 5139  # MNIST test images of digits 0-4
