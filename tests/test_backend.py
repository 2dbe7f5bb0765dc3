"""The NumPy/CuPy backend: one module owns the array libraries, devices never mix silently."""
import ast
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn as nn
from minigrad import backend, cli
from minigrad.tensor import check_same_device

from conftest import CUDA_SKIP_REASON

PACKAGE = pathlib.Path(mg.__file__).parent
ARRAY_LIBRARIES = {"numpy", "cupy"}


def array_library_imports(path):
    """(line, module) for every import of numpy/cupy (or a submodule) in one source file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names = [str(node.args[0].value)]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] in ARRAY_LIBRARIES]
    return found


def test_only_backend_imports_numpy_or_cupy():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "backend.py" and path.parent == PACKAGE:
            continue
        imports = array_library_imports(path)
        if imports:
            offenders[str(path.relative_to(PACKAGE))] = imports
    assert offenders == {}, f"only minigrad/backend.py may import numpy/cupy; found {offenders}"


def test_the_import_scan_catches_each_import_form(tmp_path):
    source = tmp_path / "offender.py"
    source.write_text("import numpy as np\nfrom cupy import asarray\nimport importlib\n"
                      "importlib.import_module('cupy')\nimport os\n")
    assert [name for _, name in array_library_imports(source)] == ["numpy", "cupy", "cupy"]


def test_importing_minigrad_does_not_import_cupy():
    code = "import sys, minigrad, minigrad.nn, minigrad.nn.functional; print('cupy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.fixture
def without_cupy(monkeypatch):
    """Pretend CuPy is not installed (an import of it fails), whatever this machine has."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(backend, "_cupy", None)


def test_cuda_without_cupy_says_how_to_install_it(without_cupy):
    assert mg.cuda.is_available() is False
    with pytest.raises(RuntimeError, match=r"CuPy, which is not installed.*pip install cupy-cuda12x"):
        mg.tensor([1.0], device="cuda")
    model = nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match=r"pip install cupy-cuda1\dx"):
        model.to("cuda:0")


def test_cuda_with_cupy_but_no_gpu_names_the_problem(monkeypatch):
    class NoDevices:
        class cuda:
            class runtime:
                @staticmethod
                def getDeviceCount():
                    raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    monkeypatch.setattr(backend, "_cupy", NoDevices)
    assert mg.cuda.is_available() is False
    with pytest.raises(RuntimeError, match=r"device 'cuda' was asked for, but CuPy sees no CUDA GPU"):
        backend.parse_device("cuda")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cuda:-1", "tpu:0", ""])
def test_unknown_device_strings_are_rejected(bad):
    with pytest.raises(ValueError, match=r"device: expected 'cpu', 'cuda' or 'cuda:N', got"):
        backend.parse_device(bad)


def test_device_strings_normalise():
    assert backend.parse_device(None) == "cpu"
    assert backend.parse_device("CPU") == "cpu"
    assert mg.tensor([1.0], device="cpu").device == "cpu"


def test_mixing_devices_names_both():
    class OnGpu:
        device = "cuda:0"

    with pytest.raises(RuntimeError, match=r"add: inputs are on different devices, cpu and cuda:0"):
        check_same_device("add", (mg.tensor([1.0]), OnGpu()))


def test_numpy_on_cpu_gives_the_values():
    t = mg.tensor([[1.0, 2.0]])
    assert isinstance(t.numpy(), np.ndarray)
    np.testing.assert_array_equal(t.numpy(), [[1.0, 2.0]])


def test_to_dtype_is_recorded_in_the_graph():
    x = mg.tensor([1.0, 2.0], requires_grad=True)  # float32
    y = x.to("float64")
    assert y.dtype == np.float64
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])


# ----------------------------------------------------------------------------- on a GPU
@pytest.mark.cuda  # selected with the device tests' CUDA half (-m cuda): on a GPU or the stand-in
@pytest.mark.skipif(not mg.cuda.is_available(), reason=CUDA_SKIP_REASON)
def test_op_on_mixed_devices_raises():
    a, b = mg.tensor([1.0]), mg.tensor([1.0], device="cuda")
    with pytest.raises(RuntimeError, match=r"different devices, cpu and cuda:0"):
        a + b
    with pytest.raises(RuntimeError, match=r"different devices, cuda:0 and cpu"):
        b @ a


def test_tensor_moves_between_devices_and_back(device):
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = mg.tensor(values, device=device, requires_grad=True)
    assert x.device == backend.parse_device(device)
    host = x.numpy()
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, values)
    y = x.to("cpu")
    (y * 3.0).sum().backward()
    assert x.grad.device == x.device
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 3.0, dtype=np.float32))


def test_module_to_device_keeps_parameters_and_matches_cpu(device):
    mg.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3, 2))
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(np.float32)
    expected = model(mg.tensor(x)).numpy()
    parameters_before = list(model.parameters())
    model.to(device)
    assert list(model.parameters()) == parameters_before
    assert all(p.device == backend.parse_device(device) for p in model.parameters())
    out = model(mg.tensor(x, device=device))
    assert out.device == backend.parse_device(device)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_keeping_freed_host_memory_can_be_turned_off(monkeypatch):
    """The malloc setting is process-wide, so a program embedding minigrad can refuse it."""
    monkeypatch.setenv("MINIGRAD_KEEP_FREED_MEMORY", "0")
    assert backend.keep_freed_host_memory_for_reuse() is False


def test_importing_minigrad_leaves_malloc_alone():
    """The process-wide malloc setting is an entry point's choice, never a side effect of import."""
    script = ("import ctypes\n"
              "opened = []\n"
              "real_cdll = ctypes.CDLL\n"
              "ctypes.CDLL = lambda name, *a, **k: opened.append(name) or real_cdll(name, *a, **k)\n"
              "import minigrad, minigrad.nn, minigrad.optim, minigrad.data, minigrad.train, minigrad.memory\n"
              "assert 'libc.so.6' not in opened, opened\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_train_command_keeps_freed_memory_for_reuse(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(backend, "keep_freed_host_memory_for_reuse", lambda: calls.append(True))
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert calls == [True]
