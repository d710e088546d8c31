"""Shared fixtures: generated datasets (MNIST IDX files, image folders) and an isolated
output root, so no test writes into the project's nets/, results/ or vis/."""

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CODE = REPO / "code"
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(CODE))

# Options that keep a real run tiny: small nets, no progress bar.
TINY = ["--encnbfilters", "4", "--enchidd_repr_size", "16", "--clhidd_repr_size", "16",
        "--test_batch_size", "64", "--progress", "False", "--num_threads", "1"]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test that trains several epochs or several runs (ten seconds "
                                       "or more); -m 'not slow' leaves these out")


@pytest.fixture(autouse=True)
def output_root(tmp_path, monkeypatch):
    """Every test writes its nets/, results/, vis/ under its own temporary folder."""
    root = tmp_path / "out"
    root.mkdir()
    monkeypatch.setenv("CLUSTNET_ROOT", str(root))
    return root


def class_images(n_per_class, n_classes=10, size=28, channels=1, seed=0):
    """Images whose class is visible (a bright square at a class-specific place), uint8
    (n, C, H, W), and their labels."""
    generator = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    images = generator.integers(0, 60, size=(len(labels), channels, size, size), dtype=np.uint8)
    for i, label in enumerate(labels):
        row, column = divmod(int(label), 4)
        images[i, :, 2 + 6 * row:7 + 6 * row, 2 + 6 * column:7 + 6 * column] = 255
    return images, labels


def write_idx(path, array):
    """An IDX file as in the original MNIST distribution (uint8 data)."""
    header = struct.pack(">HBB", 0, 8, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root):
    """A torchvision-layout MNIST (MNIST/raw/*-ubyte) under `root` with 20 train and 8 test
    images a class; returns {'train'|'test': (uint8 images (n, 28, 28), labels)} as written."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    written = {}
    for split, prefix, n, seed in (("train", "train", 20, 0), ("test", "t10k", 8, 1)):
        images, labels = class_images(n, seed=seed)
        order = np.random.default_rng(seed).permutation(len(labels))
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images[order, 0])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels[order])
        written[split] = images[order, 0], labels[order]
    return written


@pytest.fixture
def mnist_dir(tmp_path):
    """A generated MNIST (see write_mnist) in a temporary folder."""
    root = tmp_path / "mnist_data"
    write_mnist(root)
    return root


@pytest.fixture
def folder_dataset(tmp_path):
    """An image-folder dataset of 32x32 RGB PNGs: train/<class>/, test/<class>/."""
    root = tmp_path / "folder_data"
    for split, n, seed in (("train", 12, 0), ("test", 4, 1)):
        images, labels = class_images(n, size=32, channels=3, seed=seed)
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{i}.png")
    return root


def run_cli(script, *args, cwd=CODE, env=None):
    """Run an entry script in a subprocess; returns the CompletedProcess."""
    return subprocess.run([sys.executable, str(CODE / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env)


def needs_shared_data():
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real data absent: {SHARED_DATA} not found (a fresh clone has none)")
    return SHARED_DATA
