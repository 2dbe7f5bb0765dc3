"""The array backend: NumPy on the CPU, CuPy on CUDA.

This is the only module of minigrad that imports numpy or cupy. Every op asks it for the
array module of its inputs (``xp_of``) and writes ``xp.exp(x)`` instead of ``np.exp(x)``, so
the same op runs on both devices. Host-side code (data loading, checkpoints) uses the plain
NumPy re-exported here as ``np``.

CuPy is imported lazily, the first time a CUDA device is asked for: ``import minigrad`` works
on a machine without it. With ``MINIGRAD_FAKE_CUDA=1`` and no CuPy installed, the test suite's
strict CPU stand-in (``tests/fake_cupy.py``, importable as ``fake_cupy``) takes CuPy's place,
so the CUDA path runs in CI under CuPy's rules; the real CuPy always wins when it is present.

Read next: ``cuda.py``, then ``memory/`` (where training memory goes).
"""
from __future__ import annotations

import ctypes
import importlib
import os

import numpy

np = numpy  # host arrays: data files, checkpoints, anything that never lives on a GPU

CUPY_INSTALL_HINT = (
    "install the CuPy wheel that matches your CUDA toolkit, e.g. "
    "`pip install cupy-cuda12x` (CUDA 12) or `pip install cupy-cuda13x` (CUDA 13), "
    "or `pip install minigrad[cuda12]`"
)

_cupy = None  # the cupy module once imported; None until a CUDA device is first used
FAKE_CUDA_MODULE = "fake_cupy"  # the test suite's stand-in for CuPy (tests/fake_cupy.py)
DEVICE_ARRAY_MODULES = ("cupy", FAKE_CUDA_MODULE)


def _import_cupy():
    """Import CuPy on first use, with an error that says how to get it."""
    global _cupy
    if _cupy is None:
        try:
            _cupy = importlib.import_module("cupy")
        except ImportError as error:
            if os.environ.get("MINIGRAD_FAKE_CUDA") != "1":
                raise RuntimeError(f"device 'cuda' needs CuPy, which is not installed: "
                                   f"{CUPY_INSTALL_HINT}") from error
            _cupy = importlib.import_module(FAKE_CUDA_MODULE)  # needs tests/ on sys.path
    return _cupy


def cuda_is_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        cupy = _import_cupy()
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, no device: all mean "not available"
        return False


def cuda_device_count() -> int:
    return _import_cupy().cuda.runtime.getDeviceCount() if cuda_is_available() else 0


# ----------------------------------------------------------------------------- devices
def parse_device(device) -> str:
    """Normalise a device spec to ``"cpu"`` or ``"cuda:N"``; reject anything else."""
    if device is None:
        return "cpu"
    if not isinstance(device, str):
        device = str(device)  # accepts torch.device-like objects that print as "cuda:0"
    name = device.strip().lower()
    if name == "cpu":
        return "cpu"
    if name == "cuda":
        name = "cuda:0"
    if name.startswith("cuda:") and name[5:].isdigit():
        index = int(name[5:])
        if not cuda_is_available():
            _import_cupy()  # raises the install hint when CuPy itself is missing
            raise RuntimeError(f"device {device!r} was asked for, but CuPy sees no CUDA GPU "
                               f"(check the driver with nvidia-smi); {CUPY_INSTALL_HINT}")
        count = cuda_device_count()
        if index >= count:
            raise ValueError(f"device: expected a CUDA index below {count}, got {device!r}")
        return name
    raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")


class device:
    """PyTorch's ``torch.device``: ``mg.device("cuda" if mg.cuda.is_available() else "cpu")``.

    Anything that takes a device (``Tensor.to``, ``Module.to``, factories) accepts one; it names
    the same device as its string (``str(mg.device("cuda", 1)) == "cuda:1"``).
    """

    def __init__(self, type, index=None):
        if index is not None and ":" not in str(type):
            type = f"{type}:{index}"
        name = str(type).strip().lower()
        kind, _, number = name.partition(":")
        if kind not in ("cpu", "cuda") or (number and not number.isdigit()) or (kind == "cpu" and number):
            raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {type!r}")
        self.type, self.index = kind, int(number) if number else None

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{index})"

    def __eq__(self, other):
        return isinstance(other, device) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


def is_cupy_array(array) -> bool:
    # Checked by module name so that a CPU-only process never imports CuPy.
    return type(array).__module__.split(".")[0] in DEVICE_ARRAY_MODULES


def xp_of(array):
    """The array module (numpy or cupy) that owns ``array``.

    Imports CuPy if minigrad has not yet: the array may come from the user's own CuPy code.
    """
    if type(array) is numpy.ndarray:                  # the common case, asked ~100 times a step
        return numpy
    return _import_cupy() if is_cupy_array(array) else numpy


def xp_for(device: str):
    """The array module for a normalised device string."""
    return numpy if device == "cpu" else _import_cupy()


def device_of(array) -> str:
    if is_cupy_array(array):
        return f"cuda:{array.device.id}"
    return "cpu"


def to_device(array, device: str):
    """Copy ``array`` to ``device`` (a no-op when it is already there)."""
    if device == "cpu":
        return array.get() if is_cupy_array(array) else array
    cupy = _import_cupy()
    with cupy.cuda.Device(int(device.split(":")[1])):
        return cupy.asarray(array)


def pinned_host_copy(array):
    """A copy of the host ``array`` in page-locked (pinned) memory, which a GPU reads directly
    (no staging copy by the driver; PyTorch's ``pin_memory``). Only for batches bound for CUDA."""
    cupy = _import_cupy()
    memory = cupy.cuda.alloc_pinned_memory(array.nbytes)
    pinned = numpy.frombuffer(memory, dtype=array.dtype, count=array.size).reshape(array.shape)
    pinned[...] = array
    return pinned


def to_host(array):
    """A NumPy array with the same values (a copy when it lives on a GPU)."""
    return array.get() if is_cupy_array(array) else numpy.asarray(array)


def cuda_memory_peak(run):
    """Peak bytes CuPy's memory pool hands out while ``run()`` runs, above what was in use before.

    The pool keeps no peak of its own, and sampling its used bytes misses blocks that an op
    allocates and frees between two samples. A ``cupy.cuda.MemoryHook`` is told of every block
    the pool hands out and takes back, with its rounded size: the running sum's maximum is the
    true peak.
    """
    cupy = _import_cupy()

    class PeakHook(cupy.cuda.MemoryHook):
        name = "minigrad_memory_peak"

        def __init__(self):
            self.in_use = self.peak = 0  # bytes, relative to the start

        def malloc_postprocess(self, mem_size=0, mem_ptr=0, **_):
            if mem_ptr:  # 0: the allocation failed
                self.in_use += mem_size
                self.peak = max(self.peak, self.in_use)

        def free_postprocess(self, mem_size=0, **_):
            self.in_use -= mem_size

    with PeakHook() as hook:
        run()
    return hook.peak


# ----------------------------------------------------------------------------- dtypes
float32 = numpy.dtype("float32")
float64 = numpy.dtype("float64")
int64 = numpy.dtype("int64")
int32 = numpy.dtype("int32")
bool_ = numpy.dtype(bool)


TENSOR_DTYPE_KINDS = "biuf"  # bool, signed and unsigned integers, floating point


def check_tensor_dtype(dtype, argument):
    """Only numbers make tensors: NumPy would happily hold strings or objects, and then
    ``tensor(['1', '2']) + 1`` concatenates text instead of failing."""
    if dtype.kind not in TENSOR_DTYPE_KINDS:
        raise TypeError(f"{argument}: expected bool, integer or floating-point data, got dtype {dtype}")


def parse_dtype(dtype):
    """``"float32"``, ``np.float32`` or ``mg.float32`` -> a NumPy dtype object (numeric only)."""
    try:
        parsed = numpy.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"dtype: expected a NumPy dtype name such as 'float32', got {dtype!r}") from error
    check_tensor_dtype(parsed, "dtype")
    return parsed


def parse_to_arguments(target, dtype, device):
    """``to(target, dtype=, device=)`` of Tensor and Module, parsed: (dtype, device), each None
    when not asked for. ``target``, the one positional argument, is a device (``"cpu"``,
    ``"cuda:1"``, a ``device``) or a dtype, and takes the place of that keyword."""
    if target is not None:
        if not is_dtype_like(target):
            device = target
        else:
            try:
                dtype = parse_dtype(target)
            except TypeError:
                raise TypeError(f"to: expected a device ('cpu', 'cuda' or 'cuda:N') or a numeric dtype such as "
                                f"'float32', got {target!r}") from None
    return (parse_dtype(dtype) if dtype is not None else None,
            parse_device(device) if device is not None else None)


def is_dtype_like(value) -> bool:
    if isinstance(value, str):
        return value not in ("cpu", "cuda") and not value.startswith("cuda:")
    return isinstance(value, (numpy.dtype, type))


# ----------------------------------------------------------------------------- kernels
def as_strided(array, shape, strides):
    """A view with the given shape and strides (no copy): numpy's and cupy's share one signature."""
    xp = xp_of(array)
    return xp.lib.stride_tricks.as_strided(array, shape=shape, strides=strides)


# Kernels that differ per backend: one name here, each backend's choice inside.
def conv_block_elements(xp) -> int:
    """How many values a convolution gathers at a time (see ops/conv.py).

    NumPy: about 1 Mi float32 values (4 MiB), so a block is still in the shared L3 (32 MiB;
    the L2 is 512 KiB per core) from the copy that writes it to the matrix product that reads
    it. Measured on LeNet, steps alternating between sizes in one process: 1 Mi was
    5% faster than 256 Ki at batch 512 and 10% at batch 128, 2 Mi and 4 Mi slower again.
    CuPy: no such cache to fit; big blocks mean fewer kernel launches.
    """
    return 1024 * 1024 if xp is numpy else 64 * 1024 * 1024


def min_conv_blocks(xp) -> int:
    """The fewest blocks a convolution is cut into when it has the rows for them (ops/conv.py).

    NumPy: 2, so that two threads share a conv that fits one block (LeNet's conv2 at batch
    128: a 3% faster step). CuPy: 1; no threads, and each block is more kernel launches.
    """
    return 2 if xp is numpy else 1


def chunk_elements(xp):
    """Values per chunk of a memory-bound pass made of several calls (ReLU's backward, max pool's
    routing; parallel.elementwise and ops/pool.py), or None for one chunk: the whole array.

    NumPy: 2^18, so a chunk is still in cache for the pass's next call (measured best on
    LeNet's first activation; 2^14: 3x slower, from the calls' fixed cost and the GIL). CuPy:
    one kernel per call over the whole array is best.
    """
    return 1 << 18 if xp is numpy else None


def stacks_conv_rows(xp) -> bool:
    """Whether a convolution with few output channels multiplies two output rows per product
    (ops/conv.py). NumPy: yes, OpenBLAS runs LeNet's 6-row products at about a third of its
    speed and the stacked 12-row ones 1.6x faster. CuPy: no; never measured on a GPU, and each
    stacked block costs one more kernel launch (the copy into place).
    """
    return xp is numpy


def matmul(a, b, out=None):
    """``a @ b`` (stacked), into ``out`` if given; operands may be overlapping strided views.

    NumPy hands each matrix of such a view to BLAS as it is (no copy). CuPy's batched
    products want plain arrays, so views are copied to contiguous memory first.
    """
    xp = xp_of(a)
    if xp is numpy:
        return numpy.matmul(a, b, out=out)
    product = xp.matmul(xp.ascontiguousarray(a), xp.ascontiguousarray(b))
    if out is None:
        return product
    out[...] = product
    return out


def maximum_with_zero(array, out):
    """out = max(array, 0), NaN kept (ReLU). NumPy 2.4 runs maximum with a scalar operand in a
    loop about 4x slower than with an array one (LeNet's first activation, batch 128: 0.50 vs
    0.13 ms), so on NumPy ``out`` is zeroed first and is the second operand: the same values
    and bits, 2x faster with the zero-fill. CuPy: one kernel with the scalar.
    """
    if xp_of(array) is numpy:
        out[...] = 0
        return numpy.maximum(array, out, out=out)
    return xp_of(array).maximum(array, 0, out=out)


def may_be_true(mask) -> bool:
    """Whether a bool array may hold a True, to skip work that only such arrays need.

    NumPy: the exact answer (one cheap pass). CuPy: "maybe" without looking, since reading the
    answer would make the host wait for the GPU (a synchronisation per call).
    """
    return bool(mask.any()) if xp_of(mask) is numpy else True


def surely_finite(array) -> bool:
    """Whether ``array`` holds no inf or NaN, to take a cheaper path that only such arrays allow.

    NumPy: the exact answer (one cheap pass). CuPy: "maybe not" without looking, for the same
    reason as ``may_be_true``.
    """
    return bool(numpy.isfinite(array).all()) if xp_of(array) is numpy else False


def transposes_through_slabs(xp) -> bool:
    """Whether an (N, C, H, W) batch turns batch-last through cache-sized slabs (ops/layout.py).

    NumPy: yes; a copy of runs of values, then a transpose of each slab while it is in cache,
    beat one copy that moves one value at a time (a (512, 3, 32, 32) batch about 2x faster).
    CuPy: no, one kernel; more would cost more launches.
    """
    return xp is numpy


def keep_freed_host_memory_for_reuse() -> bool:
    """Ask glibc's malloc to keep large freed blocks for reuse instead of unmapping them.

    Training allocates and frees the same activation-sized arrays every step. By default glibc
    serves big blocks with mmap and hands them back to the OS on free, so each step pays for
    fresh zeroed pages again (LeNet, batch 512: ~10k page faults, a quarter of a CPU step).
    CuPy's memory pool does this job on the GPU. A no-op where malloc is not glibc's, and
    when the environment sets MINIGRAD_KEEP_FREED_MEMORY=0.

    The setting is process-wide (it also applies to the rest of the program), so importing
    minigrad never makes it: the entry points that want it call this, ``python -m minigrad
    train`` (cli.py) and the benchmarks. A program of your own can call it too.
    """
    if os.environ.get("MINIGRAD_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, 32 * 1024 * 1024)  # glibc's maximum
                and mallopt(m_trim_threshold, 256 * 1024 * 1024))
