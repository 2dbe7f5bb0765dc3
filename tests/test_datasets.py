"""Data set loaders: digits, IDX files (MNIST family) and CIFAR-10 batches, with broken files.

Expected arrays come from files the tests write themselves, so every value is known.
"""
import gzip
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from minigrad.data import datasets

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


# ----------------------------------------------------------------------------- file makers
def idx_bytes(array, magic=None):
    """The IDX encoding of a uint8 array: magic (0x0000 08 ndim), big-endian sizes, bytes."""
    magic = 0x0800 + array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist_files(directory, train_count=6, test_count=4, gzipped=True, seed=0):
    """Four small IDX files in ``directory``; returns (train images, train labels, test ...) as uint8."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, count in (("train", train_count), ("t10k", test_count)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=count, dtype=np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = os.path.join(directory, f"{prefix}-{kind}-ubyte")
            data = idx_bytes(array)
            if gzipped:
                with gzip.open(name + ".gz", "wb") as file:
                    file.write(data)
            else:
                with open(name, "wb") as file:
                    file.write(data)
        arrays[prefix] = (images, labels)
    return (*arrays["train"], *arrays["t10k"])


def cifar_batch_bytes(data, labels):
    return pickle.dumps({b"data": data, b"labels": list(int(label) for label in labels)})


def make_cifar_batches(per_batch=3, seed=0):
    """{batch name: (uint8 data (N, 3072), labels)} for the five train batches and the test batch."""
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]
    return {name: (rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
                   rng.integers(0, 10, size=per_batch)) for name in names}


def write_cifar_tarball(path, batches):
    with tarfile.open(path, "w:gz") as archive:
        for name, (data, labels) in batches.items():
            payload = cifar_batch_bytes(data, labels)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))


def cifar_pixel(row, channel, y, x):
    """The documented layout of a CIFAR row: 1024 red values, then green, then blue, row-major."""
    return row[channel * 1024 + y * 32 + x]


# ----------------------------------------------------------------------------- digits
def test_digits_split_is_fixed_disjoint_and_covers_every_sample():
    from sklearn.datasets import load_digits as sklearn_digits
    split = datasets.load_digits()
    reference = sklearn_digits()
    assert split.train_images.shape == (1437, 1, 8, 8) and split.test_images.shape == (360, 1, 8, 8)
    assert split.train_images.dtype == np.float32 and split.train_labels.dtype == np.int64
    assert 0.0 <= split.train_images.min() and split.train_images.max() == 1.0
    # Together the two halves are exactly sklearn's samples (as multisets of label counts and pixel sums).
    labels = np.concatenate([split.train_labels, split.test_labels])
    np.testing.assert_array_equal(np.bincount(labels), np.bincount(reference.target))
    pixel_total = split.train_images.sum(dtype=np.float64) + split.test_images.sum(dtype=np.float64)
    assert pixel_total == pytest.approx(reference.images.sum() / 16.0, rel=1e-12)
    again = datasets.load_digits()
    np.testing.assert_array_equal(again.test_labels, split.test_labels)
    assert split.class_names == tuple("0123456789")


def test_digits_rejects_a_bad_test_size():
    with pytest.raises(ValueError, match=r"test_size: expected an int in \(0, 1797\), got 0"):
        datasets.load_digits(test_size=0)


def test_limited_keeps_the_first_samples():
    split = datasets.load_digits().limited(train=10, test=5)
    assert len(split.train_images) == 10 and len(split.test_labels) == 5


def test_standardized_scales_both_sets_by_training_statistics():
    rng = np.random.default_rng(0)
    train = rng.uniform(size=(5, 2, 3, 3)).astype(np.float32)
    train[:, 1] = 0.25  # a constant channel: centred, not divided by zero
    test = rng.uniform(size=(4, 2, 3, 3)).astype(np.float32)
    labels = np.zeros(5, np.int64)
    split = datasets.DatasetSplit("toy", train, labels, test, labels[:4], ("a",)).standardized()
    red = train[:, 0].astype(np.float64)
    red_mean, red_std = red.sum() / red.size, np.sqrt(((red - red.sum() / red.size) ** 2).sum() / red.size)
    np.testing.assert_allclose(split.test_images[:, 0], (test[:, 0] - red_mean) / red_std, rtol=1e-6)
    np.testing.assert_allclose(split.train_images[:, 0].mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(split.train_images[:, 0].std(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(split.test_images[:, 1], test[:, 1] - 0.25, rtol=1e-6)
    assert split.train_images.dtype == np.float32 and split.test_labels.shape == (4,)


# ----------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("gzipped", [True, False])
def test_idx_files_load_scaled_to_unit_range(tmp_path, gzipped):
    train_images, train_labels, test_images, test_labels = write_mnist_files(tmp_path, gzipped=gzipped)
    split = datasets.load_mnist(tmp_path, kind="fashion")
    assert split.train_images.shape == (6, 1, 28, 28) and split.train_images.dtype == np.float32
    np.testing.assert_array_equal(split.train_images[:, 0], train_images.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(split.test_labels, test_labels.astype(np.int64))
    assert split.train_labels.dtype == np.int64
    assert split.class_names[9] == "Ankle boot" and split.name == "fashion-mnist"
    assert datasets.load_mnist(tmp_path, kind="mnist").class_names[3] == "3"


def test_idx_bad_magic_number_names_the_file(tmp_path):
    write_mnist_files(tmp_path, gzipped=False)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(6, np.uint8), magic=0x0803))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: bad IDX magic number: "
                                         r"expected 0x00000801, got 0x00000803"):
        datasets.load_mnist(tmp_path)


def test_idx_truncated_file_reports_size_mismatch(tmp_path):
    write_mnist_files(tmp_path, gzipped=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: IDX size mismatch: header says shape "
                                         r"\(4, 28, 28\), i\.e\. 3152 bytes, but the file has 3052"):
        datasets.load_mnist(tmp_path)


def test_idx_truncated_header(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(b"\x00\x00\x08")
    with pytest.raises(ValueError, match="short: truncated IDX file: 3 bytes"):
        datasets.read_idx(str(path), datasets.IDX_IMAGES_MAGIC)


def test_truncated_gzip_names_the_file(tmp_path):
    write_mnist_files(tmp_path, gzipped=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: corrupt or truncated gzip file"):
        datasets.load_mnist(tmp_path)


def test_label_count_must_match_image_count(tmp_path):
    write_mnist_files(tmp_path, gzipped=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(ValueError, match=r"expected one label per image .*\(6\), got 5"):
        datasets.load_mnist(tmp_path)


def test_labels_out_of_range_are_rejected(tmp_path):
    write_mnist_files(tmp_path, gzipped=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(6, 12, np.uint8)))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\), got range \[12, 12\]"):
        datasets.load_mnist(tmp_path)


def test_missing_files_say_where_they_were_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"neither train-images-idx3-ubyte nor "
                                                r"train-images-idx3-ubyte\.gz is in .*download=True"):
        datasets.load_mnist(tmp_path, kind="mnist")


def test_unknown_kind_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"kind: expected one of \['fashion', 'mnist'\], got 'kmnist'"):
        datasets.load_mnist(tmp_path, kind="kmnist")


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_the_debian_package():
    split = datasets.load_mnist(FASHION_DIR, kind="fashion")
    assert split.train_images.shape == (60000, 1, 28, 28) and split.test_images.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(split.train_labels), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(split.test_labels), np.full(10, 1000))


# ----------------------------------------------------------------------------- CIFAR-10
def check_cifar_split(split, batches):
    train_data = np.concatenate([batches[f"data_batch_{index}"][0] for index in range(1, 6)])
    assert split.train_images.shape == (15, 3, 32, 32) and split.test_images.shape == (3, 3, 32, 32)
    for sample, channel, y, x in [(0, 0, 0, 0), (4, 1, 5, 31), (14, 2, 31, 7)]:
        expected = np.float32(cifar_pixel(train_data[sample], channel, y, x)) / np.float32(255)
        assert split.train_images[sample, channel, y, x] == expected
    np.testing.assert_array_equal(split.test_labels, batches["test_batch"][1])
    assert split.class_names[0] == "airplane" and split.train_labels.dtype == np.int64


def test_cifar10_reads_the_tarball_in_place(tmp_path):
    batches = make_cifar_batches()
    write_cifar_tarball(tmp_path / "cifar-10-python.tar.gz", batches)
    check_cifar_split(datasets.load_cifar10(tmp_path), batches)
    assert os.listdir(tmp_path) == ["cifar-10-python.tar.gz"]  # nothing extracted


def test_cifar10_reads_the_batches_directory(tmp_path):
    batches = make_cifar_batches()
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, (data, labels) in batches.items():
        (folder / name).write_bytes(cifar_batch_bytes(data, labels))
    check_cifar_split(datasets.load_cifar10(tmp_path), batches)
    check_cifar_split(datasets.load_cifar10(folder), batches)


def test_cifar10_corrupt_batch_names_the_member(tmp_path):
    batches = make_cifar_batches()
    write_cifar_tarball(tmp_path / "cifar-10-python.tar.gz", batches)
    folder = tmp_path / "other"
    folder.mkdir()
    for name, (data, labels) in batches.items():
        (folder / name).write_bytes(cifar_batch_bytes(data, labels))
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"data_batch_3: not a readable CIFAR-10 batch"):
        datasets.load_cifar10(folder)


def test_cifar10_wrong_row_length_is_rejected(tmp_path):
    batches = make_cifar_batches()
    batches["test_batch"] = (np.zeros((3, 100), np.uint8), [0, 1, 2])
    write_cifar_tarball(tmp_path / "cifar-10-python.tar.gz", batches)
    with pytest.raises(ValueError, match=r"test_batch: expected uint8 data of shape \(N, 3072\), "
                                         r"got uint8 \(3, 100\)"):
        datasets.load_cifar10(tmp_path)


def test_cifar10_truncated_tarball_names_the_file(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    write_cifar_tarball(path, make_cifar_batches())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cifar-10-python\.tar\.gz: corrupt or truncated tar\.gz archive"):
        datasets.load_cifar10(tmp_path)


def test_cifar10_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no cifar-10-batches-py/ directory and no "
                                                r"cifar-10-python\.tar\.gz in"):
        datasets.load_cifar10(tmp_path)


def test_load_dataset_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"dataset: expected one of .*'cifar10'\), got 'imagenet'"):
        datasets.load_dataset("imagenet")
