"""Downloads of the data files, verified and atomic; where data sets live on disk.

``download(url, destination, checksum)`` streams the file into a temporary file beside the
destination (``files.atomic_write``), hashing it as it arrives, and renames it into place only
when the md5 or sha256 matches: an interrupted or corrupt download never leaves a file that
looks complete. ``download_named`` picks the address (argument, environment variable, or the
official one) and the published checksum. Reading the files is ``datasets.py``'s job.

Read next: ``train.py`` (the loop that consumes the batches).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request

from ..files import atomic_write

# The official addresses and the md5 of each gzipped file as published (torchvision uses the same).
MNIST_SOURCES = {
    "fashion": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}),
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}),
}
CIFAR10_SOURCE = ("https://www.cs.toronto.edu/~kriz/", {
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"})

# Tests (and mirrors) point downloads elsewhere with these, or with the base_url argument.
BASE_URL_ENV = {"fashion": "MINIGRAD_FASHION_MNIST_URL", "mnist": "MINIGRAD_MNIST_URL",
                "cifar10": "MINIGRAD_CIFAR10_URL"}
SYSTEM_DATA_DIRS = {"fashion": "/usr/share/datasets/fashion-mnist", "mnist": "/usr/share/datasets/mnist"}


class DownloadError(OSError):
    """A download failed or did not match its checksum; nothing was left on disk."""


def default_data_dir(kind):
    """Where a data set is looked for when no directory is given: the Debian location when it
    exists, otherwise ~/.cache/minigrad/<kind> (where downloads go)."""
    system = SYSTEM_DATA_DIRS.get(kind)
    if system and os.path.isdir(system):
        return system
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "minigrad", kind)


def download_named(root, file_name, kind, base_url, checksums):
    """Download ``file_name`` into ``root`` from, in order of precedence: ``base_url``, the
    environment variable BASE_URL_ENV[kind], the official address."""
    official_url, official_checksums = CIFAR10_SOURCE if kind == "cifar10" else MNIST_SOURCES[kind]
    base_url = base_url or os.environ.get(BASE_URL_ENV[kind]) or official_url
    checksums = checksums or official_checksums
    if file_name not in checksums:
        raise ValueError(f"checksums: expected an entry for {file_name!r}, got keys {sorted(checksums)}")
    url = base_url.rstrip("/") + "/" + file_name
    destination = os.path.join(root, file_name)
    download(url, destination, checksums[file_name])
    return destination


def checksum_algorithm(expected_hex):
    """md5 for a 32-digit hex digest, sha256 for a 64-digit one."""
    algorithms = {32: "md5", 64: "sha256"}
    if not isinstance(expected_hex, str) or len(expected_hex) not in algorithms:
        raise ValueError(f"checksum: expected a 32-digit md5 or 64-digit sha256 hex string, got {expected_hex!r}")
    return algorithms[len(expected_hex)]


def download(url, destination, expected_checksum, timeout=60, chunk_size=1 << 20):
    """Fetch ``url`` to ``destination`` atomically: a temporary file in the same directory,
    hashed while it is written, renamed into place only when the checksum matches.
    On any failure the temporary file is removed and ``DownloadError`` says why."""
    algorithm = checksum_algorithm(expected_checksum)
    with atomic_write(destination, suffix=".part") as file:
        actual = _stream_to(url, file, hashlib.new(algorithm), timeout, chunk_size)
        if actual != expected_checksum.lower():  # raised inside: the temporary file is removed
            raise DownloadError(f"{url}: checksum mismatch: expected {algorithm} {expected_checksum}, got "
                                f"{actual}; the download was discarded")
    return destination


def _stream_to(url, file, digest, timeout, chunk_size):
    """Copy the response body into ``file``, updating ``digest``; returns its hex digest."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            announced = response.headers.get("Content-Length")
            received = 0
            while chunk := response.read(chunk_size):
                file.write(chunk)
                digest.update(chunk)
                received += len(chunk)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: download failed: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:  # refused, reset, cut short
        raise DownloadError(f"{url}: download failed: {getattr(error, 'reason', error)}") from error
    if announced is not None and received != int(announced):
        raise DownloadError(f"{url}: download truncated: expected {announced} bytes, got {received}")
    return digest.hexdigest()
