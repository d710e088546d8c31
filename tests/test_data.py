"""Data: generated IDX and image-folder datasets, binary targets, the real MNIST if present."""

import re

import pytest
import torch

from conftest import TINY, needs_shared_data, run_cli
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


def cut(path, size):
    path.write_bytes(path.read_bytes()[:size])


def extend(path, extra):
    path.write_bytes(path.read_bytes() + extra)


# (damaged file, how, why it is reported); the generated files: 200 train, 80 test images.
DAMAGED = [
    ("train-images-idx3-ubyte", lambda p: cut(p, 156716), r"156716 bytes, 156816 expected from its header: cut short"),
    ("t10k-labels-idx1-ubyte", lambda p: cut(p, 6), r"6 bytes: its header is cut"),
    ("train-labels-idx1-ubyte", lambda p: extend(p, b"\0\0\0"), r"211 bytes, 208 expected from its header\)"),
    ("t10k-images-idx3-ubyte", lambda p: p.write_bytes(b"<html>not found</html>"),
     r"not an IDX file: its magic number is wrong"),
]


@pytest.mark.parametrize("name, damage, why", DAMAGED, ids=[case[0] for case in DAMAGED])
def test_a_damaged_mnist_file_is_named(name, damage, why, mnist_dir):
    path = mnist_dir / "MNIST" / "raw" / name
    damage(path)
    with pytest.raises(ClustNetError) as error:
        load_dataset("MNIST", mnist_dir)
    assert re.fullmatch(rf"MNIST file {re.escape(str(path))} is incomplete or corrupt \({why}.*", str(error.value))


def test_a_truncated_mnist_file_stops_the_cli_with_one_line(mnist_dir, output_root):
    path = mnist_dir / "MNIST" / "raw" / "train-images-idx3-ubyte"
    cut(path, 100000)
    result = run_cli("trainVal.py", "-c", "clust.config", "--exp_id", "x", "--data_dir", mnist_dir, *TINY)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"error: MNIST file {path} is incomplete or corrupt (100000 bytes, 156816 expected "
                             "from its header: cut short); copy it again, or delete it to have MNIST downloaded "
                             "again\n")
    assert list(output_root.iterdir()) == [] and sorted(p.name for p in path.parent.iterdir()) == sorted(
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
