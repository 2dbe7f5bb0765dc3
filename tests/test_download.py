"""Downloads against a local HTTP server on 127.0.0.1 serving files the tests make.

A good download lands in place and loads; a checksum mismatch, an HTTP error or a transfer cut
short leaves nothing behind (not even the temporary file) and the error says why.
"""
import functools
import gzip
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from minigrad.data import datasets, downloads
from test_datasets import check_cifar_split, make_cifar_batches, write_cifar_tarball, write_mnist_files


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; ``/cut/NAME`` announces NAME's full length but sends only half of it."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if not self.path.startswith("/cut/"):
            return super().do_GET()
        body = open(os.path.join(self.directory, self.path[len("/cut/"):]), "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True


@pytest.fixture
def served(tmp_path):
    """(directory the server serves, base URL)."""
    directory = tmp_path / "served"
    directory.mkdir()
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield directory, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def sha256_of(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def checksums_of(directory):
    return {name: sha256_of(os.path.join(directory, name)) for name in os.listdir(directory)}


def test_mnist_download_verifies_and_loads(served, tmp_path):
    directory, url = served
    train_images, _, _, test_labels = write_mnist_files(directory, gzipped=True)
    target = tmp_path / "data"
    split = datasets.load_mnist(target, kind="mnist", download=True, base_url=url,
                                checksums=checksums_of(directory))
    np.testing.assert_array_equal(split.train_images[:, 0], train_images.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(split.test_labels, test_labels)
    assert sorted(os.listdir(target)) == sorted(os.listdir(directory))  # no leftover temporary files


def test_base_url_comes_from_the_environment(served, tmp_path, monkeypatch):
    directory, url = served
    write_mnist_files(directory, gzipped=True)
    monkeypatch.setenv("MINIGRAD_FASHION_MNIST_URL", url)
    split = datasets.load_mnist(tmp_path / "data", kind="fashion", download=True, checksums=checksums_of(directory))
    assert split.train_images.shape == (6, 1, 28, 28)


def test_md5_checksums_are_accepted(served, tmp_path):
    directory, url = served
    (directory / "file.bin").write_bytes(b"minigrad" * 100)
    md5 = hashlib.md5(b"minigrad" * 100).hexdigest()
    downloads.download(url + "file.bin", str(tmp_path / "file.bin"), md5)
    assert (tmp_path / "file.bin").read_bytes() == b"minigrad" * 100


def test_checksum_mismatch_leaves_no_file(served, tmp_path):
    directory, url = served
    (directory / "file.bin").write_bytes(b"tampered")
    wrong = "0" * 64
    actual = hashlib.sha256(b"tampered").hexdigest()
    target = tmp_path / "data"
    with pytest.raises(downloads.DownloadError, match=rf"{url}file\.bin: checksum mismatch: expected sha256 "
                                                     rf"{wrong}, got {actual}"):
        downloads.download(url + "file.bin", str(target / "file.bin"), wrong)
    assert os.listdir(target) == []


def test_http_404_leaves_no_file(served, tmp_path):
    _, url = served
    target = tmp_path / "data"
    with pytest.raises(downloads.DownloadError, match=rf"{url}missing\.gz: download failed: HTTP 404"):
        downloads.download(url + "missing.gz", str(target / "missing.gz"), "0" * 32)
    assert os.listdir(target) == []


def test_transfer_cut_short_leaves_no_file(served, tmp_path):
    directory, url = served
    (directory / "big.bin").write_bytes(bytes(range(256)) * 64)
    target = tmp_path / "data"
    with pytest.raises(downloads.DownloadError, match=r"cut/big\.bin: download"):
        downloads.download(url + "cut/big.bin", str(target / "big.bin"), sha256_of(directory / "big.bin"))
    assert os.listdir(target) == []


def test_unreachable_server_is_a_download_error(tmp_path):
    with pytest.raises(downloads.DownloadError, match=r"http://127\.0\.0\.1:9/x: download failed"):
        downloads.download("http://127.0.0.1:9/x", str(tmp_path / "x"), "0" * 32, timeout=5)
    assert os.listdir(tmp_path) == []


def test_a_downloaded_but_truncated_gzip_is_named_when_read(served, tmp_path):
    directory, url = served
    write_mnist_files(directory, gzipped=True)
    broken = directory / "train-images-idx3-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:50])  # the published checksum matches this broken file
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: corrupt or truncated gzip file"):
        datasets.load_mnist(tmp_path / "data", download=True, base_url=url, checksums=checksums_of(directory))


def test_cifar10_download_verifies_and_reads_the_tarball(served, tmp_path):
    directory, url = served
    batches = make_cifar_batches()
    write_cifar_tarball(directory / "cifar-10-python.tar.gz", batches)
    md5 = hashlib.md5((directory / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    split = datasets.load_cifar10(tmp_path / "data", download=True, base_url=url,
                                  checksums={"cifar-10-python.tar.gz": md5})
    check_cifar_split(split, batches)


def test_cifar10_download_with_wrong_checksum_leaves_nothing(served, tmp_path):
    directory, url = served
    write_cifar_tarball(directory / "cifar-10-python.tar.gz", make_cifar_batches())
    with pytest.raises(downloads.DownloadError, match="checksum mismatch: expected md5 " + "1" * 32):
        datasets.load_cifar10(tmp_path / "data", download=True, base_url=url,
                              checksums={"cifar-10-python.tar.gz": "1" * 32})
    assert os.listdir(tmp_path / "data") == []


def test_malformed_checksum_is_rejected_before_any_request(tmp_path):
    with pytest.raises(ValueError, match=r"checksum: expected a 32-digit md5 or 64-digit sha256 hex string, "
                                         r"got 'abc'"):
        downloads.download("http://127.0.0.1:9/x", str(tmp_path / "x"), "abc")


def test_official_checksums_are_well_formed():
    for _, checksums in list(downloads.MNIST_SOURCES.values()) + [downloads.CIFAR10_SOURCE]:
        for digest in checksums.values():
            assert downloads.checksum_algorithm(digest) == "md5"
            int(digest, 16)


def test_gzip_roundtrip_helper_really_compresses(tmp_path):
    # Guards the helpers above: a .gz file they write is a real gzip stream.
    write_mnist_files(tmp_path, gzipped=True)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz") as file:
        assert file.read(4) == b"\x00\x00\x08\x01"
