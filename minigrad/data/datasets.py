"""Real data sets as NumPy arrays: digits, MNIST / Fashion-MNIST, CIFAR-10.

Every loader returns a ``DatasetSplit``: images float32 in [0, 1], shaped (N, C, H, W),
labels int64 in [0, num_classes), a fixed train/test split and the class names.

- ``load_digits()``: scikit-learn's 8x8 digits, embedded in the package (no network).
- ``load_mnist(root, kind)``: the four IDX files, gzipped or not (Debian's
  ``apt-get install dataset-fashion-mnist`` puts Fashion-MNIST in /usr/share/datasets).
- ``load_cifar10(root)``: the python batches, from their directory or straight from the tarball.

With ``download=True`` missing files are fetched, verified and put in place by
``data/downloads.py``; this module only reads them. A file that is on disk but broken (wrong
magic number, truncated, wrong size) raises ``ValueError`` naming the file.

Read next: ``data/downloads.py`` (how missing files are fetched), then ``train.py``.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import math
import os
import pickle
import tarfile

from ..backend import np
from .downloads import MNIST_SOURCES, default_data_dir, download_named

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGIT_CLASSES = tuple(str(digit) for digit in range(10))

MNIST_FILES = {  # split -> (images file, labels file), without the .gz suffix
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))


@dataclasses.dataclass
class DatasetSplit:
    """Train and test arrays of one data set; images (N, C, H, W) float32, labels (N,) int64."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple

    def __post_init__(self):
        """One image shape for both halves: a model built for the training images cannot
        evaluate others, and that should be found when the data is read, not after an epoch."""
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError(f"{self.name}: test images are {tuple(self.test_images.shape[1:])} but train images "
                             f"are {tuple(self.train_images.shape[1:])}; both halves of a data set must match")

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def image_shape(self):
        return tuple(self.train_images.shape[1:])  # (C, H, W)

    def limited(self, train=None, test=None):
        """The first ``train`` / ``test`` samples only (tiny smoke runs); None keeps all."""
        return dataclasses.replace(self, train_images=self.train_images[:train],
                                   train_labels=self.train_labels[:train],
                                   test_images=self.test_images[:test], test_labels=self.test_labels[:test])


    def standardized(self):
        """Images shifted and scaled by the TRAINING set's per-channel mean and std (torchvision's
        ``Normalize``): inputs centred near 0 with unit spread train faster. The test set is
        scaled with the same numbers, so no test statistics leak into training."""
        mean = self.train_images.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)  # (1, C, 1, 1)
        std = self.train_images.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
        std[std == 0] = 1.0  # a constant channel carries no information: leave it centred, unscaled

        def scale(images):
            return ((images - mean) / std).astype(images.dtype)
        return dataclasses.replace(self, train_images=scale(self.train_images), test_images=scale(self.test_images))


# ----------------------------------------------------------------------------- digits
def load_digits(test_size=360, seed=0):
    """scikit-learn's 1797 8x8 digits, split once with a seeded permutation (1437 / 360)."""
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as error:
        raise RuntimeError("load_digits needs scikit-learn: `pip install scikit-learn`") from error
    if not isinstance(test_size, int) or not 0 < test_size < 1797:
        raise ValueError(f"test_size: expected an int in (0, 1797), got {test_size!r}")
    bunch = sklearn_load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]  # pixels are 0..16 -> (N, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    test, train = order[:test_size], order[test_size:]
    return DatasetSplit("digits", images[train], labels[train], images[test], labels[test], DIGIT_CLASSES)


# ----------------------------------------------------------------------------- IDX (MNIST family)
IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 0x00000803, 0x00000801  # unsigned bytes, 3 or 1 dimensions


def read_idx(path, expected_magic):
    """Read an IDX file (gzipped when its name ends in .gz) into a uint8 array, checking it."""
    raw = _read_maybe_gzipped(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file: {len(raw)} bytes, not even a header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise ValueError(f"{path}: bad IDX magic number: expected {expected_magic:#010x}, got {magic:#010x}")
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"{path}: truncated IDX header: expected {header_size} bytes, got {len(raw)}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected_size = header_size + math.prod(shape)  # Python ints: np.prod would overflow int64 and wrap
    if len(raw) != expected_size:
        raise ValueError(f"{path}: IDX size mismatch: header says shape {shape}, i.e. {expected_size} "
                         f"bytes, but the file has {len(raw)} (truncated or corrupt)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _read_maybe_gzipped(path):
    if not str(path).endswith(".gz"):
        with open(path, "rb") as file:
            return file.read()
    try:
        with gzip.open(path, "rb") as file:
            return file.read()
    except (EOFError, OSError, gzip.BadGzipFile) as error:  # truncated stream, bad CRC, not gzip
        raise ValueError(f"{path}: corrupt or truncated gzip file ({error})") from error


def load_mnist(root=None, kind="fashion", download=False, base_url=None, checksums=None):
    """MNIST (``kind="mnist"``) or Fashion-MNIST (``kind="fashion"``) from the IDX files in ``root``.

    Each file may be plain or gzipped. ``download=True`` fetches missing files (gzipped) from
    ``base_url`` (default: the official address, or the environment variable in downloads.BASE_URL_ENV),
    verified against ``checksums`` ({file name: md5 or sha256 hex}, default: the published md5).
    """
    if kind not in MNIST_SOURCES:
        raise ValueError(f"kind: expected one of {sorted(MNIST_SOURCES)}, got {kind!r}")
    root = str(root) if root is not None else default_data_dir(kind)
    arrays = {}
    for split, (images_name, labels_name) in MNIST_FILES.items():
        images_path = _find_or_download(root, images_name, kind, download, base_url, checksums)
        labels_path = _find_or_download(root, labels_name, kind, download, base_url, checksums)
        images = read_idx(images_path, IDX_IMAGES_MAGIC)
        labels = read_idx(labels_path, IDX_LABELS_MAGIC).astype(np.int64)
        if len(images) != len(labels):
            raise ValueError(f"{labels_path}: expected one label per image of {images_path} "
                             f"({len(images)}), got {len(labels)}")
        _check_label_range(labels, 10, labels_path)
        arrays[split] = ((images.astype(np.float32) / 255.0)[:, None], labels)  # (N, 1, 28, 28)
    names = FASHION_MNIST_CLASSES if kind == "fashion" else DIGIT_CLASSES
    return DatasetSplit("fashion-mnist" if kind == "fashion" else "mnist",
                        *arrays["train"], *arrays["test"], names)


def _find_or_download(root, name, kind, download, base_url, checksums):
    """The path of ``name`` or ``name.gz`` in ``root``; downloaded (gzipped) when asked."""
    for candidate in (name, name + ".gz"):
        path = os.path.join(root, candidate)
        if os.path.exists(path):
            return path
    if not download:
        raise FileNotFoundError(f"{kind} data: neither {name} nor {name}.gz is in {root!r}; pass "
                                f"download=True (--download) or point root (--data-dir) at the IDX files"
                                + (" (Debian: apt-get install dataset-fashion-mnist)" if kind == "fashion" else ""))
    return download_named(root, name + ".gz", kind, base_url, checksums)


def _check_label_range(labels, num_classes, path):
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{path}: labels must lie in [0, {num_classes}), got range "
                         f"[{labels.min()}, {labels.max()}]")


# ----------------------------------------------------------------------------- CIFAR-10
def load_cifar10(root=None, download=False, base_url=None, checksums=None):
    """CIFAR-10 from ``root``: its ``cifar-10-batches-py`` directory, that directory itself, or
    the ``cifar-10-python.tar.gz`` tarball (read in place, nothing is extracted).

    The batches are Python pickles, so only files you trust should be read: a downloaded
    tarball is checked against the published md5 before it is ever opened.
    """
    root = str(root) if root is not None else default_data_dir("cifar10")
    read_member = _cifar10_reader(root, download, base_url, checksums)
    train = [_read_cifar_batch(read_member, name) for name in CIFAR10_TRAIN_BATCHES]
    test_images, test_labels = _read_cifar_batch(read_member, "test_batch")
    train_images = np.concatenate([images for images, _ in train])
    train_labels = np.concatenate([labels for _, labels in train])
    return DatasetSplit("cifar10", train_images, train_labels, test_images, test_labels, CIFAR10_CLASSES)


def _cifar10_reader(root, download, base_url, checksums):
    """A function ``name -> (bytes, where)`` reading one batch from a directory or the tarball."""
    for folder in (os.path.join(root, CIFAR10_FOLDER), root):
        if os.path.exists(os.path.join(folder, "test_batch")):
            return lambda name: _read_file_bytes(os.path.join(folder, name))
    tarball = os.path.join(root, "cifar-10-python.tar.gz")
    if not os.path.exists(tarball):
        if not download:
            raise FileNotFoundError(f"cifar10 data: no {CIFAR10_FOLDER}/ directory and no "
                                    f"cifar-10-python.tar.gz in {root!r}; pass download=True (--download) "
                                    f"or point root (--data-dir) at them")
        tarball = download_named(root, "cifar-10-python.tar.gz", "cifar10", base_url, checksums)
    members = _read_tarball(tarball)
    return lambda name: _tar_member(members, tarball, name)


def _read_file_bytes(path):
    with open(path, "rb") as file:
        return file.read(), path


def _read_tarball(path):
    """{member name: bytes} of every regular file in a .tar.gz, with a clear error when broken."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            return {member.name: archive.extractfile(member).read() for member in archive if member.isfile()}
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ValueError(f"{path}: corrupt or truncated tar.gz archive ({error})") from error


def _tar_member(members, tarball, name):
    member = f"{CIFAR10_FOLDER}/{name}"
    if member not in members:
        raise ValueError(f"{tarball}: the archive has no member {member!r}")
    return members[member], f"{tarball}:{member}"


def _read_cifar_batch(read_member, name):
    """One pickled batch -> images (N, 3, 32, 32) float32 in [0, 1] and labels (N,) int64."""
    raw, where = read_member(name)
    try:
        batch = pickle.load(io.BytesIO(raw), encoding="bytes")
        data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as error:  # unpickling errors come in many types; all mean "not a batch"
        raise ValueError(f"{where}: not a readable CIFAR-10 batch ({type(error).__name__}: {error})") from error
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        raise ValueError(f"{where}: expected uint8 data of shape (N, 3072), got {data.dtype} {data.shape}")
    if len(labels) != len(data):
        raise ValueError(f"{where}: expected one label per image ({len(data)}), got {len(labels)}")
    _check_label_range(labels, 10, where)
    # Each row is the red plane, then green, then blue, each 32x32 row-major: (N, 3, 32, 32).
    return (data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0), labels


# ----------------------------------------------------------------------------- by name
DATASET_NAMES = ("digits", "fashion-mnist", "mnist", "cifar10")


def load_dataset(name, data_dir=None, download=False):
    """Load one of DATASET_NAMES (the command line's ``--dataset``)."""
    if name == "digits":
        return load_digits()
    if name in ("fashion-mnist", "mnist"):
        return load_mnist(data_dir, kind="fashion" if name == "fashion-mnist" else "mnist", download=download)
    if name == "cifar10":
        return load_cifar10(data_dir, download=download)
    raise ValueError(f"dataset: expected one of {DATASET_NAMES}, got {name!r}")
