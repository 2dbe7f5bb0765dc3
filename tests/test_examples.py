"""Each example runs, with tiny settings, as a learner would run it, and prints what it promises."""
import os
import re
import subprocess
import sys

import pytest

from test_datasets import make_cifar_batches, write_cifar_tarball

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name, *args, cwd):
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                       MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "examples", name), *args], cwd=cwd,
                            env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_y_equals_2x_has_four_batches_per_epoch_the_last_with_one_sample(tmp_path):
    output = run_example("y_equals_2x.py", "--epochs", "2", cwd=tmp_path)
    assert "10 samples, batch size 3 -> 4 iterations per epoch" in output
    for epoch in (1, 2):
        batches = re.findall(rf"^epoch {epoch} iteration (\d): batch size (\d), x = \[([\d, ]+)\]", output, re.M)
        assert [(int(i), int(size)) for i, size, _ in batches] == [(1, 3), (2, 3), (3, 3), (4, 1)]
        seen = sorted(int(x) for _, _, xs in batches for x in xs.split(","))
        assert seen == list(range(1, 11))  # every sample exactly once per epoch
        assert re.search(rf"^epoch {epoch}: mean loss \d+\.\d+", output, re.M)
    assert "learned y = " in output


def test_batch_size_sweep_counts_steps_and_writes_the_plot(tmp_path):
    output = run_example("batch_size_sweep.py", "--epochs", "1", "--plot", "curves.png", cwd=tmp_path)
    steps = {int(batch): int(count) for batch, count in
             re.findall(r"batch (\d+), lr [\d.]+:\s+(\d+) steps", output)}
    assert steps == {1: 1000, 32: 32, 1024: 1}  # ceil(1000 / batch size) steps per epoch
    assert "linear scaling rule" in output
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_accumulation_equals_full_batch_and_the_naive_recipe_does_not(tmp_path):
    output = run_example("accumulation_equals_full_batch.py", "--epochs", "2", cwd=tmp_path)
    accumulated = float(re.search(r"max \|plain - accumulated\| = (\S+)", output).group(1))
    naive = float(re.search(r"max \|plain - naive\|\s+= (\S+)", output).group(1))
    assert accumulated < 1e-12
    assert naive > 1e-4


def test_lenet_falls_back_to_digits_when_no_image_data_is_on_disk(tmp_path):
    empty = str(tmp_path)
    output = run_example("lenet_cifar10.py", "--quick", "--cifar-dir", empty, "--fashion-dir", empty, cwd=tmp_path)
    assert "CIFAR-10 is not on disk" in output and "falling back to scikit-learn's 8x8 digits" in output
    assert "digits: 200 training and 100 test images of shape (1, 8, 8)" in output
    assert "Finished training" in output
    assert re.search(r"Accuracy of the network on the 100 test images: \d+\.\d %", output)
    assert len(re.findall(r"^Accuracy for class \d ", output, re.M)) == 10


def test_lenet_reads_cifar10_and_reports_each_class(tmp_path):
    write_cifar_tarball(tmp_path / "cifar-10-python.tar.gz", make_cifar_batches(per_batch=4))
    output = run_example("lenet_cifar10.py", "--quick", "--cifar-dir", str(tmp_path), cwd=tmp_path)
    assert "cifar10: 20 training and 4 test images of shape (3, 32, 32)" in output
    assert "falling back" not in output.lower()
    names = re.findall(r"^Accuracy for class (\w+)", output, re.M)
    assert names == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.mark.parametrize("name", ["y_equals_2x.py", "batch_size_sweep.py", "accumulation_equals_full_batch.py",
                                  "lenet_cifar10.py", "data_parallel.py"])
def test_examples_use_only_the_public_api(name):
    source = open(os.path.join(REPO_ROOT, "examples", name)).read()
    imports = re.findall(r"^(?:from|import) (minigrad\S*)", source, re.M)
    assert imports and all(module in {"minigrad", "minigrad.nn", "minigrad.data", "minigrad.models"}
                           for module in imports), imports
    assert not re.search(r"\._\w+", source.replace("__name__", "").replace("__doc__", ""))  # no private names
