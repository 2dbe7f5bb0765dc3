"""The seed articles' PyTorch programs, run on minigrad with only their import lines changed
(and their data made small and local): each runs to the end and its loss falls.

The programs live in ``tests/seed_programs/``; each file's header says what differs from the
article. They run in this process (``runpy``), seeded, so their output is repeatable.
"""
import pathlib
import re
import runpy

import pytest

import minigrad as mg

PROGRAMS = pathlib.Path(__file__).parent / "seed_programs"


def run_program(name, capsys):
    mg.manual_seed(0)
    runpy.run_path(str(PROGRAMS / name), run_name="__main__")
    return capsys.readouterr().out


def numbers_after(pattern, text):
    return [float(value) for value in re.findall(pattern, text)]


def test_000_cifar_lenet_with_per_class_accuracy(capsys):
    out = run_program("cifar_lenet_000.py", capsys)
    losses = numbers_after(r"\] loss: ([\d.]+)", out)
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert "Finished Training" in out
    assert re.search(r"Accuracy of the network on the 40 test images: \d+ %", out)
    assert len(re.findall(r"Accuracy of +\w+ : +\d+ %", out)) == 10  # labels[i] indexed the lists


def test_001_accumulation_loop(capsys):
    losses = numbers_after(r"Epoch \d Loss: ([\d.]+)", run_program("accumulation_001.py", capsys))
    assert len(losses) == 3 and losses[2] < losses[1] < losses[0]


def test_003_batch_size_loop(capsys):
    out = run_program("batch_size_003.py", capsys)
    runs = re.split(r"Batch Size: (\d+)", out)[1:]
    per_batch_size = {int(size): numbers_after(r"Epoch \d Loss: ([\d.]+)", text)
                      for size, text in zip(runs[::2], runs[1::2])}
    assert sorted(per_batch_size) == [1, 32, 1024]
    for losses in per_batch_size.values():
        assert len(losses) == 3 and losses[-1] < losses[0]
    full_batch = per_batch_size[1024]  # one gradient step per epoch on the whole data: steadily down
    assert full_batch[2] < full_batch[1] < full_batch[0]


def test_004_y_equals_2x(capsys):
    out = run_program("y_equals_2x_004.py", capsys)
    losses = numbers_after(r"Epoch \d+/10, Loss: ([\d.]+)", out)
    assert len(losses) == 10 and losses[-1] < losses[0] / 10
    epochs = out.split("Epoch ")
    assert all(chunk.count("inputs:") == 4 for chunk in epochs[:-1])  # 4 iterations per epoch
    assert out.count("inputs:") == 40


@pytest.mark.parametrize("name", sorted(p.name for p in PROGRAMS.glob("*.py")))
def test_seed_programs_import_minigrad_not_torch(name):
    source = (PROGRAMS / name).read_text()
    assert "import torch" not in source.replace("import minigrad as torch", "")
    assert re.search(r"^import minigrad as torch$", source, re.M) or "from minigrad" in source
