"""Datasets held in memory as tensors: MNIST, CIFAR-10 and folders of images.

Training batches are taken by indexing these tensors, so no per-sample Python runs in the
training loop. With --val_size N, N training images are held out as a validation set, the
same ones for every seed and run. Images are normalised per channel with the statistics of
the images trained on.
"""

import math
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import datasets

from .errors import ClustNetError
from .layout import output_root

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


# Seeds the draw of the validation images: a constant, not --seed, so that every net and
# every run of a study holds out the same images.
VALIDATION_SEED = 20260101


@dataclass
class ImageData:
    """Normalised float images (n, C, H, W) and their 10-class labels (n,): train, validation
    (none without --val_size) and test."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list
    mean: torch.Tensor  # per channel, to show images again in their own colours
    std: torch.Tensor

    @property
    def image_shape(self):
        return tuple(self.train_x.shape[1:])

    @property
    def splits(self):
        """The sets scored after each epoch: train, val (when held out), test."""
        return ["train"] + (["val"] if len(self.val_y) else []) + ["test"]

    def split(self, name):
        """(images, labels) of the set `name` (train, val or test)."""
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")

    def to(self, device):
        for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def unnormalise(self, images):
        """Back to [0, 1] pixel values, for pictures."""
        shape = (1, -1, 1, 1)
        return (images.cpu() * self.std.view(shape) + self.mean.view(shape)).clamp(0, 1)


def binary_targets(labels, pos_classes):
    """1 for images of the positive group, 0 for the others."""
    return torch.isin(labels, torch.as_tensor(pos_classes, device=labels.device)).long()


def resolve_data_dir(data_dir):
    """Relative paths are relative to the working folder; the default is data/ at the root."""
    return (output_root() / "data" if data_dir is None else Path(data_dir)).resolve()


def load_dataset(name, data_dir, val_size=0):
    """MNIST, CIFAR10 (torchvision, under `data_dir`) or a folder of images, as ImageData,
    `val_size` of its training images held out (validation_indices)."""
    if name in ("MNIST", "CIFAR10"):
        train_u8, train_y, test_u8, test_y, classes = load_torchvision(name, resolve_data_dir(data_dir))
    elif Path(name).is_dir():
        train_u8, train_y, test_u8, test_y, classes = load_image_folder(Path(name))
    else:
        raise ClustNetError(f"unknown dataset {name!r}: expected MNIST, CIFAR10, or a folder "
                            "holding train/<class>/ and test/<class>/ images")
    if val_size >= len(train_y):
        raise ClustNetError(f"--val_size {val_size}: the training set has {len(train_y)} images; hold out "
                            "fewer, so that some are left to train on")
    held_out = torch.zeros(len(train_y), dtype=torch.bool)
    held_out[validation_indices(len(train_y), val_size)] = True
    train_x = train_u8[~held_out].float().div_(255)
    mean = train_x.mean(dim=(0, 2, 3))
    std = train_x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    shape = (1, -1, 1, 1)
    normalise = lambda x: x.sub_(mean.view(shape)).div_(std.view(shape))
    return ImageData(normalise(train_x), train_y[~held_out], normalise(train_u8[held_out].float().div_(255)),
                     train_y[held_out], normalise(test_u8.float().div_(255)), test_y, classes, mean, std)


def validation_indices(n_train, val_size):
    """The positions, in increasing order, of the `val_size` training images held out of
    `n_train`: the first `val_size` of one permutation drawn from VALIDATION_SEED, so the
    same images whatever --seed, and a larger split holds a smaller one. Both sets keep the
    dataset's order."""
    permutation = torch.randperm(n_train, generator=torch.Generator().manual_seed(VALIDATION_SEED))
    return permutation[:val_size].sort().values


# The MNIST files of each split (torchvision's layout), with the number of dimensions of each.
MNIST_FILES = {True: {"train-images-idx3-ubyte": 3, "train-labels-idx1-ubyte": 1},
               False: {"t10k-images-idx3-ubyte": 3, "t10k-labels-idx1-ubyte": 1}}
IDX_ITEM_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}  # IDX type code -> bytes


def idx_problem(path, n_dims):
    """Why the IDX file `path` (`n_dims` dimensions expected) cannot be read whole, or None."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        header = file.read(4 + 4 * n_dims)
    if len(header) < 4 or header[:2] != b"\0\0" or header[2] not in IDX_ITEM_BYTES:
        return "not an IDX file: its magic number is wrong"
    if header[3] != n_dims:
        return f"{header[3]} dimensions, {n_dims} expected"
    if len(header) < 4 + 4 * n_dims:
        return f"{size} bytes: its header is cut"
    expected = len(header) + IDX_ITEM_BYTES[header[2]] * math.prod(
        int.from_bytes(header[4 + 4 * i:8 + 4 * i], "big") for i in range(n_dims))
    if size != expected:
        return f"{size} bytes, {expected} expected from its header{': cut short' if size < expected else ''}"
    return None


def check_mnist_files(root, train):
    """Raise a ClustNetError naming the first MNIST file of the split that is present but not
    whole; return quietly when the files are whole or when some are missing (to download)."""
    raw = root / "MNIST" / "raw"
    files = MNIST_FILES[train]
    if not all((raw / name).is_file() for name in files):
        return
    for name, n_dims in files.items():
        problem = idx_problem(raw / name, n_dims)
        if problem:
            raise ClustNetError(f"MNIST file {raw / name} is incomplete or corrupt ({problem}); copy it "
                                "again, or delete it to have MNIST downloaded again")


def load_torchvision(name, root):
    """Images as uint8 (n, C, H, W); downloads only when the files are missing."""
    dataset_class = getattr(datasets, name)
    splits = []
    for train in (True, False):
        try:
            try:
                dataset = dataset_class(root=str(root), train=train, download=False)
            except Exception as error:
                if name == "MNIST":
                    check_mnist_files(root, train)  # there but damaged: say which file
                if not isinstance(error, RuntimeError):
                    raise
                # not there yet: try the network
                dataset = download_or_leave_nothing(lambda: dataset_class(root=str(root), train=train,
                                                                          download=True), root)
        except ClustNetError:
            raise
        except Exception as error:  # torchvision raises many kinds when offline or corrupt
            raise ClustNetError(f"{name} is not in {root} and could not be downloaded "
                                f"({type(error).__name__}: {str(error).splitlines()[0][:120]}); "
                                f"put it there or pass --data_dir") from None
        images = torch.as_tensor(np.asarray(dataset.data))
        images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
        splits += [images.contiguous(), torch.as_tensor(np.asarray(dataset.targets), dtype=torch.long)]
    return (*splits, list(dataset.classes))


DOWNLOAD_TIMEOUT_S = 30  # a network that drops packets fails in seconds, not hours


def download_or_leave_nothing(download, root):
    """Run `download()`; if it fails, remove what it created under `root` (folders, partial
    files) before re-raising, so that a failed download leaves the disk as it was."""
    highest_missing = None
    for folder in (root, *root.parents):
        if folder.exists():
            break
        highest_missing = folder
    before = set(root.iterdir()) if highest_missing is None else set()
    timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return download()
    except BaseException:
        created = [highest_missing] if highest_missing is not None else set(root.iterdir()) - before
        for path in created:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        raise
    finally:
        socket.setdefaulttimeout(timeout)


def load_image_folder(root):
    """`root/train/<class>/*` and `root/test/<class>/*`, classes in sorted order, one size."""
    class_sets = {}
    for split in ("train", "test"):
        folder = root / split
        if not folder.is_dir():
            raise ClustNetError(f"image folder {root} has no {split}/ folder")
        class_sets[split] = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if class_sets["train"] != class_sets["test"]:
        raise ClustNetError(f"image folder {root}: train/ and test/ have different classes "
                            f"({' '.join(class_sets['train'])} vs {' '.join(class_sets['test'])})")
    classes = class_sets["train"]
    splits = []
    for split in ("train", "test"):
        files, labels = [], []
        for label, name in enumerate(classes):
            found = sorted(p for p in (root / split / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            files += found
            labels += [label] * len(found)
        if not files:
            raise ClustNetError(f"image folder {root / split} holds no images")
        splits += [decode_images(files), torch.tensor(labels, dtype=torch.long)]
    if splits[0].shape[1:] != splits[2].shape[1:]:
        raise ClustNetError(f"image folder {root}: train and test images differ in size")
    return (*splits, classes)


def decode_image(path, mode):
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode))
    except (OSError, ValueError) as error:
        raise ClustNetError(f"cannot decode image {path}: {error}") from None


def decode_images(files):
    """Decode image files into one uint8 tensor (n, C, H, W); all must share one size.
    Grey images stay one channel; anything else becomes RGB."""
    with Image.open(files[0]) as first:
        mode = "L" if first.mode in ("L", "1", "I", "I;16") else "RGB"
    with ThreadPoolExecutor() as pool:  # PIL decodes outside the GIL
        arrays = list(pool.map(decode_image, files, [mode] * len(files)))
    sizes = {array.shape for array in arrays}
    if len(sizes) > 1:
        odd, shape = next((path, array.shape) for path, array in zip(files, arrays) if array.shape != arrays[0].shape)
        raise ClustNetError(f"image {odd} is {shape[1]}x{shape[0]}, {files[0]} is {arrays[0].shape[1]}x"
                            f"{arrays[0].shape[0]}: all images must have one size")
    images = torch.from_numpy(np.stack(arrays))
    return images.unsqueeze(1) if mode == "L" else images.permute(0, 3, 1, 2).contiguous()
