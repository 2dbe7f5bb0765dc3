"""A strict CPU stand-in for CuPy: ``device="cuda"`` on a machine without a GPU, with CuPy's rules.

CI has no GPU, so without this every CUDA test would skip and a broken CUDA path would look
green. With ``MINIGRAD_FAKE_CUDA=1`` (and no real CuPy installed: the real one always wins)
``minigrad.backend`` imports this module in place of ``cupy``. Its arrays compute with NumPy
but follow the rules of CuPy that NumPy code silently breaks, each checked against CuPy's
"Differences between CuPy and NumPy" page and its sources (cupy/_core/core.pyx, _kernel.pyx,
_scalar.pyx, _routines_indexing.pyx):

- a device array is not a ``numpy.ndarray``; ``np.asarray(dev)`` / ``__array__`` raise
  TypeError ("Implicit conversion to a NumPy array is not allowed"), and so does the buffer
  protocol (``memoryview``); only ``.get()`` and ``asnumpy`` copy to the host;
- device functions and ufuncs reject host operands: a ``numpy.ndarray`` (even 0-d) or a list
  raises TypeError ("Unsupported type"); Python and NumPy scalars are allowed. Creating a
  device array from host data (``asarray``/``array``) and assigning host data into one
  (``dev[...] = host``) are explicit copies and allowed, as in CuPy;
- elementwise and freshly allocated outputs are C-contiguous ("the contiguity of a resulting
  ndarray is not guaranteed to match with that of NumPy's output"), except ``*_like``,
  ``copy(order=...)`` and ``astype``, which keep the layout as CuPy's do;
- reductions (and integer indexing down to one element) return 0-d device arrays, never
  host scalars;
- integer-array indices out of bounds wrap around instead of raising (so minigrad must check);
- ``bool()``, ``int()``, ``float()``, ``.item()``, ``.tolist()``, ``.get()``, ``repr()``,
  boolean-mask indexing (CuPy reads the mask's count back) and ``nonzero`` are *host
  synchronisations* and are counted in ``counters.host_syncs``;
- every device function call that reads or writes device memory is counted in
  ``counters.device_calls`` (a proxy for kernel launches); views (reshape of a contiguous
  array, transpose, basic slicing, ``as_strided``) launch nothing and are not counted.

The memory pool and ``cuda.MemoryHook`` behave like CuPy's: the pool's used bytes are the
live device buffers, and registered hooks see ``malloc_postprocess``/``free_postprocess``.
"""
from __future__ import annotations

import contextlib
import types
import weakref

import numpy as _np

# ----------------------------------------------------------------------------- counters


class Counters:
    """How many host synchronisations and device calls happened since ``reset()``."""

    def __init__(self):
        self.host_syncs = 0
        self.device_calls = 0
        self.sync_reasons = {}  # reason -> count, to say where the syncs came from
        self.calls_by_name = {}  # device function -> count, to say where the calls come from

    def reset(self):
        self.__init__()

    def sync(self, reason):
        self.host_syncs += 1
        self.sync_reasons[reason] = self.sync_reasons.get(reason, 0) + 1

    def call(self, name):
        self.device_calls += 1
        self.calls_by_name[name] = self.calls_by_name.get(name, 0) + 1

    def snapshot(self):
        return self.host_syncs, self.device_calls


counters = Counters()


@contextlib.contextmanager
def counting():
    """``with counting() as c:`` -> ``c.host_syncs``, ``c.device_calls`` of the block only."""
    before = Counters()
    before.host_syncs, before.device_calls = counters.snapshot()
    reasons_before, calls_before = dict(counters.sync_reasons), dict(counters.calls_by_name)
    delta = Counters()
    try:
        yield delta
    finally:
        delta.host_syncs = counters.host_syncs - before.host_syncs
        delta.device_calls = counters.device_calls - before.device_calls
        delta.sync_reasons = {k: v - reasons_before.get(k, 0) for k, v in counters.sync_reasons.items()
                              if v - reasons_before.get(k, 0)}
        delta.calls_by_name = {k: v - calls_before.get(k, 0) for k, v in counters.calls_by_name.items()
                               if v - calls_before.get(k, 0)}


# ----------------------------------------------------------------------------- memory pool
class _MemoryPool:
    """Used bytes = the live device buffers (each NumPy buffer counted once, by its owner)."""

    def __init__(self):
        self._used = 0
        self._tracked = {}  # id(owner buffer) -> size, while it is alive

    def used_bytes(self):
        return self._used

    def total_bytes(self):
        return self._used

    def free_all_blocks(self):
        pass

    def _track(self, array):
        owner = array
        while isinstance(owner.base, _np.ndarray):
            owner = owner.base
        key = id(owner)
        if key in self._tracked or owner.base is not None:  # already counted, or foreign memory
            return
        size = owner.nbytes
        self._tracked[key] = size
        self._used += size
        _call_hooks("malloc_postprocess", device_id=0, size=size, mem_size=size, mem_ptr=key, pmem_id=key)
        weakref.finalize(owner, self._release, key, size)

    def _release(self, key, size):
        self._used -= size
        self._tracked.pop(key, None)
        _call_hooks("free_postprocess", device_id=0, mem_size=size, mem_ptr=key, pmem_id=key)


_pool = _MemoryPool()
_hooks = {}


def _call_hooks(method, **kwargs):
    for hook in list(_hooks.values()):
        getattr(hook, method)(**kwargs)


def get_default_memory_pool():
    return _pool


class MemoryHook:
    """CuPy's ``cuda.MemoryHook``: subclass it, then ``with hook:`` registers it (by name)."""

    name = "MemoryHook"

    def __enter__(self):
        if self.name in _hooks:
            raise KeyError(f"memory hook {self.name} already exists")
        _hooks[self.name] = self
        return self

    def __exit__(self, *_):
        del _hooks[self.name]

    def alloc_preprocess(self, **kwargs):
        pass

    def alloc_postprocess(self, **kwargs):
        pass

    def malloc_preprocess(self, **kwargs):
        pass

    def malloc_postprocess(self, **kwargs):
        pass

    def free_preprocess(self, **kwargs):
        pass

    def free_postprocess(self, **kwargs):
        pass


# ----------------------------------------------------------------------------- cuda namespace
class _Device:
    def __init__(self, device_id=0):
        self.id = int(device_id)

    def __enter__(self):
        if self.id != 0:
            raise RuntimeError(f"fake_cupy: only device 0 exists, got {self.id}")
        return self

    def __exit__(self, *_):
        pass

    def synchronize(self):
        counters.sync("Device.synchronize")

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def runtimeGetVersion():
        return 0


class _Stream:
    def synchronize(self):
        counters.sync("Stream.synchronize")


def _alloc_pinned_memory(size):
    """Page-locked host memory in CuPy; plain host memory here (it has the buffer protocol too)."""
    return bytearray(size)


cuda = types.SimpleNamespace(Device=_Device, runtime=_Runtime, MemoryHook=MemoryHook,
                             alloc_pinned_memory=_alloc_pinned_memory,
                             get_current_stream=lambda: _Stream(), is_available=lambda: True)
__version__ = "0.0-fake"


# ----------------------------------------------------------------------------- host operands
def _reject_host(value, allow_lists):
    if isinstance(value, _np.ndarray):
        raise TypeError(f"Unsupported type {type(value)}")
    if isinstance(value, (list, tuple)) and not allow_lists:
        raise TypeError(f"Unsupported type {type(value)}")


def _unwrap(value, allow_lists=True):
    """Device arrays -> their NumPy storage; host arrays refused (CuPy's 'Unsupported type')."""
    if isinstance(value, ndarray):
        return value._array
    _reject_host(value, allow_lists)
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, allow_lists) for v in value)
    return value


def _device_arrays(values):
    """Every device array among (possibly nested) arguments."""
    for value in values:
        if isinstance(value, ndarray):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from _device_arrays(value)


def _viewed_input(result, inputs):
    """The device-array argument ``result`` is a view of, or None for fresh memory."""
    if result.base is None:
        return None
    return next((source for source in inputs if _np.may_share_memory(result, source._array)), None)


def _wrap(result, contiguous=True):
    """NumPy results -> device arrays: scalars become 0-d arrays, fresh memory is C-ordered."""
    if isinstance(result, _np.generic):
        result = _np.asarray(result)
    if isinstance(result, _np.ndarray):
        if contiguous and not result.flags.c_contiguous:
            result = _np.ascontiguousarray(result)
        _pool._track(result)
        return ndarray._from_storage(result)
    if isinstance(result, (tuple, list)):
        return type(result)(_wrap(r, contiguous) for r in result)
    return result


KEEP_LAYOUT = {"empty_like", "zeros_like", "ones_like", "full_like", "copy"}  # CuPy's order='K' default
NO_KERNEL = {"empty", "empty_like", "shape", "ndim", "result_type", "can_cast", "iinfo", "finfo", "dtype"}
SYNCING = {"nonzero", "argwhere", "flatnonzero", "unique"}


def _call(name, function, args, kwargs, elementwise, bound=False):
    """Run one device function: check operands, count it, wrap its result.

    ``bound``: ``function`` is a method of ``args[0]``'s storage, which is passed only to find views.
    """
    host_args = [_unwrap(a, allow_lists=not elementwise) for a in args[1 if bound else 0:]]
    host_kwargs = {k: _unwrap(v, allow_lists=not elementwise or k != "out") for k, v in kwargs.items()}
    inputs = list(_device_arrays(args)) + list(_device_arrays(kwargs.values()))
    if name in SYNCING:
        counters.sync(name)
    result = function(*host_args, **host_kwargs)
    writes_out = "out" in kwargs
    viewed = None if writes_out or not isinstance(result, _np.ndarray) else _viewed_input(result, inputs)
    if viewed is not None:
        return viewed._view(result)  # a view: no kernel, no new memory
    if name not in NO_KERNEL:
        counters.call(name)
    if writes_out:
        out = kwargs["out"]
        return out[0] if isinstance(out, tuple) and len(out) == 1 else out
    return _wrap(result, contiguous=name not in KEEP_LAYOUT)


class ufunc:
    """A CuPy ufunc: device arrays and scalars only (no lists, no host arrays)."""

    def __init__(self, name):
        self.__name__ = name
        self._ufunc = getattr(_np, name)

    def __call__(self, *args, **kwargs):
        return _call(self.__name__, self._ufunc, args, kwargs, elementwise=True)

    def at(self, a, indices, b=None):
        """``ufunc.at``: unbuffered, repeated indices accumulate; out-of-bounds indices wrap."""
        counters.call(self.__name__ + ".at")
        storage = _unwrap(a)
        index = _wrap_indices(storage.shape, _unwrap_index(indices))
        args = () if b is None else (_unwrap(b, allow_lists=False),)
        self._ufunc.at(storage, index, *args)

    def reduce(self, array, axis=0, dtype=None, out=None, keepdims=False):
        return _call(self.__name__ + ".reduce", self._ufunc.reduce, (array,),
                     dict(axis=axis, dtype=dtype, keepdims=keepdims), elementwise=True)


def asarray(value, dtype=None, order=None):
    """Host -> device (an explicit copy, as ``cupy.asarray``); a device array stays itself."""
    if isinstance(value, ndarray):
        if (dtype is None or _np.dtype(dtype) == value.dtype) and order in (None, "K", "A"):
            return value
        return value.astype(dtype if dtype is not None else value.dtype, order=order or "K")
    counters.call("asarray (host to device)")
    host = _np.array(value, dtype=dtype, order=order or "K", copy=True)
    _pool._track(host)
    return ndarray._from_storage(host)


def array(value, dtype=None, copy=True, order="K"):
    if isinstance(value, ndarray):
        return value.astype(dtype if dtype is not None else value.dtype, order=order, copy=copy)
    return asarray(value, dtype=dtype, order=order)


def asnumpy(value):
    return value.get() if isinstance(value, ndarray) else _np.asarray(value)


def _strided_view(x, shape=None, strides=None):
    if not isinstance(x, ndarray):
        _reject_host(x, allow_lists=False)
        raise TypeError(f"as_strided: expected a device array, got {type(x)}")
    return x._view(_np.lib.stride_tricks.as_strided(x._array, shape=shape, strides=strides))


lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(as_strided=_strided_view))


_functions = {}  # not globals(): a cached ``sum`` there would shadow the builtin in this module


def __getattr__(name):
    """Every other NumPy name: functions become counted device functions, dtypes stay as they are."""
    if name in _functions:
        return _functions[name]
    attribute = getattr(_np, name)
    if isinstance(attribute, _np.ufunc):
        wrapped = ufunc(name)
    elif callable(attribute) and not isinstance(attribute, type):
        def wrapped(*args, **kwargs):
            return _call(name, attribute, args, kwargs, elementwise=False)
        wrapped.__name__ = name
    else:
        return attribute  # dtypes, constants (inf, nan, newaxis)
    _functions[name] = wrapped
    return wrapped


# ----------------------------------------------------------------------------- indexing
def _unwrap_index(index):
    """Indices may be device arrays or host arrays (CuPy copies those to the device)."""
    if isinstance(index, ndarray):
        return index._array
    if isinstance(index, tuple):
        return tuple(_unwrap_index(i) for i in index)
    if isinstance(index, list):
        return _np.asarray([_unwrap_index(i) for i in index])
    return index


def _is_array_index(part):
    return isinstance(part, _np.ndarray)


def _wrap_indices(shape, index):
    """CuPy wraps out-of-bounds integer-array indices around (``x[[1, 3]]`` of 3 values reads x[1], x[0])."""
    parts = index if isinstance(index, tuple) else (index,)
    consuming = sum(p.ndim if _is_array_index(p) and p.dtype == bool else 1
                    for p in parts if p is not None and p is not Ellipsis)
    axis, wrapped = 0, []
    for part in parts:
        if part is None:
            wrapped.append(part)
            continue
        if part is Ellipsis:
            axis += len(shape) - consuming
            wrapped.append(part)
            continue
        if _is_array_index(part) and part.dtype.kind in "iu" and axis < len(shape) and shape[axis]:
            part = part % shape[axis]
        wrapped.append(part)
        axis += part.ndim if _is_array_index(part) and part.dtype == bool else 1
    return tuple(wrapped) if isinstance(index, tuple) else wrapped[0]


def _index_kind(index):
    """'mask' (boolean array: CuPy syncs for the count), 'advanced' (a gather kernel) or 'basic' (a view)."""
    parts = index if isinstance(index, tuple) else (index,)
    if any(_is_array_index(p) and p.dtype == bool for p in parts):
        return "mask"
    if any(_is_array_index(p) for p in parts):
        return "advanced"
    return "basic"


# ----------------------------------------------------------------------------- the array
def _binary(name, reflected=False):
    function = getattr(_np, name)

    def method(self, other):
        if not isinstance(other, ndarray) and getattr(other, "__array_priority__", 0) > self.__array_priority__:
            return NotImplemented  # e.g. a minigrad Tensor: let its reflected operator run
        operands = (other, self) if reflected else (self, other)
        return _call(name, function, operands, {}, elementwise=True)
    return method


def _inplace(name):
    function = getattr(_np, name)

    def method(self, other):
        _call(name, function, (self, other), {"out": self}, elementwise=True)
        return self
    return method


class ndarray:
    """A device array: NumPy storage behind CuPy's interface and rules."""

    __array_priority__ = 100  # CuPy's value
    __slots__ = ("_array", "_base", "__weakref__")

    def __init__(self, shape, dtype=float, order="C"):
        self._array = _np.empty(shape, dtype=dtype, order=order)
        self._base = None
        _pool._track(self._array)

    @classmethod
    def _from_storage(cls, storage, base=None):
        array = cls.__new__(cls)
        array._array, array._base = storage, base
        return array

    def _view(self, storage):
        """A view of this array's memory: ``.base`` is the owner, as in CuPy (never a chain)."""
        return ndarray._from_storage(storage, self._base if self._base is not None else self)

    # ------------------------------------------------------------------ description
    shape = property(lambda self: self._array.shape)
    dtype = property(lambda self: self._array.dtype)
    ndim = property(lambda self: self._array.ndim)
    size = property(lambda self: self._array.size)
    nbytes = property(lambda self: self._array.nbytes)
    itemsize = property(lambda self: self._array.itemsize)
    strides = property(lambda self: self._array.strides)
    flags = property(lambda self: self._array.flags)
    device = property(lambda self: _Device(0))
    T = property(lambda self: self._view(self._array.T))
    base = property(lambda self: self._base)

    def __len__(self):
        return len(self._array)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # ------------------------------------------------------------------ the host boundary
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def get(self, stream=None, order="C", out=None):
        counters.sync("get")
        return _np.array(self._array, order=order, copy=True)

    def item(self, *args):
        counters.sync("item")
        return self._array.item(*args)

    def tolist(self):
        counters.sync("tolist")
        return self._array.tolist()

    def __bool__(self):
        counters.sync("bool")
        return bool(self._array)

    def __int__(self):
        counters.sync("int")
        return int(self._array)

    def __float__(self):
        counters.sync("float")
        return float(self._array)

    def __complex__(self):
        counters.sync("complex")
        return complex(self._array)

    def __repr__(self):
        counters.sync("repr")
        return repr(self._array)

    def __str__(self):
        counters.sync("str")
        return str(self._array)

    def __format__(self, spec):
        counters.sync("format")
        return format(self._array.item() if self._array.ndim == 0 else self._array, spec)

    __hash__ = None  # unhashable, as numpy.ndarray and cupy.ndarray

    # ------------------------------------------------------------------ NumPy protocol dispatch
    def __array_ufunc__(self, numpy_ufunc, method, *inputs, **kwargs):
        """``np.exp(dev)`` runs CuPy's ufunc on the device (host operands still refused)."""
        device_ufunc = ufunc(numpy_ufunc.__name__)
        if method == "__call__":
            return device_ufunc(*inputs, **kwargs)
        if method == "at":
            return device_ufunc.at(*inputs, **kwargs)
        if method == "reduce":
            return device_ufunc.reduce(*inputs, **kwargs)
        return NotImplemented

    def __array_function__(self, function, types_, args, kwargs):
        """``np.sum(dev)`` calls ``cupy.sum`` as CuPy does; NumPy's own helpers (np.testing) get no
        dispatch and so hit ``__array__``'s TypeError."""
        if function.__module__.split(".")[0] != "numpy" or function.__module__.startswith("numpy.testing"):
            return NotImplemented
        name = function.__name__
        if not hasattr(_np, name):
            return NotImplemented
        return __getattr__(name)(*args, **kwargs)

    # ------------------------------------------------------------------ methods
    def __getattr__(self, name):
        """Array methods (sum, reshape, astype, ...): counted unless they return a view."""
        if name.startswith("__"):
            raise AttributeError(name)
        attribute = getattr(self._array, name)
        if not callable(attribute):
            return attribute
        def method(*args, **kwargs):
            if name in ("astype", "copy"):
                return self._keep_layout_call(attribute, args, kwargs)
            return _call(name, attribute, (self, *args), kwargs, elementwise=False, bound=True)
        method.__name__ = name
        return method

    def __getitem__(self, index):
        index = _unwrap_index(index)
        kind = _index_kind(index)
        if kind == "mask":
            counters.sync("boolean mask indexing")
        if kind != "basic":
            counters.call("getitem (" + kind + ")")
            return _wrap(self._array[_wrap_indices(self.shape, index)])
        result = self._array[index]
        if isinstance(result, _np.generic):  # one element: a 0-d view, as CuPy (not a host scalar)
            parts = index if isinstance(index, tuple) else (index,)
            result = self._array[parts + (Ellipsis,)]
        return self._view(result)

    def __setitem__(self, index, value):
        index = _unwrap_index(index)
        if _index_kind(index) == "mask":
            counters.sync("boolean mask assignment")
        counters.call("setitem")
        if isinstance(value, ndarray):
            value = value._array
        self._array[_wrap_indices(self.shape, index)] = value  # host values are copied over, as CuPy

    def _keep_layout_call(self, method, args, kwargs):
        """``astype``/``copy``: CuPy's default order is 'K' for astype, 'C' for copy; a no-op
        astype (``copy=False``, same dtype) returns the array itself and launches nothing."""
        result = method(*[_unwrap(a) for a in args], **kwargs)
        if result is self._array:
            return self
        counters.call(method.__name__)
        return _wrap(result, contiguous=False)

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def __reduce__(self):
        return (asarray, (self.get(),))

    # ------------------------------------------------------------------ operators
    __add__, __radd__ = _binary("add"), _binary("add", True)
    __sub__, __rsub__ = _binary("subtract"), _binary("subtract", True)
    __mul__, __rmul__ = _binary("multiply"), _binary("multiply", True)
    __truediv__, __rtruediv__ = _binary("true_divide"), _binary("true_divide", True)
    __floordiv__, __rfloordiv__ = _binary("floor_divide"), _binary("floor_divide", True)
    __mod__, __rmod__ = _binary("remainder"), _binary("remainder", True)
    __pow__, __rpow__ = _binary("power"), _binary("power", True)
    __matmul__, __rmatmul__ = _binary("matmul"), _binary("matmul", True)
    __and__, __rand__ = _binary("bitwise_and"), _binary("bitwise_and", True)
    __or__, __ror__ = _binary("bitwise_or"), _binary("bitwise_or", True)
    __xor__, __rxor__ = _binary("bitwise_xor"), _binary("bitwise_xor", True)
    __lshift__, __rshift__ = _binary("left_shift"), _binary("right_shift")
    __eq__, __ne__ = _binary("equal"), _binary("not_equal")
    __lt__, __le__ = _binary("less"), _binary("less_equal")
    __gt__, __ge__ = _binary("greater"), _binary("greater_equal")
    __iadd__, __isub__ = _inplace("add"), _inplace("subtract")
    __imul__, __itruediv__ = _inplace("multiply"), _inplace("true_divide")
    __ipow__, __imod__ = _inplace("power"), _inplace("remainder")
    __iand__, __ior__, __ixor__ = _inplace("bitwise_and"), _inplace("bitwise_or"), _inplace("bitwise_xor")

    def __neg__(self):
        return _call("negative", _np.negative, (self,), {}, elementwise=True)

    def __pos__(self):
        return _call("positive", _np.positive, (self,), {}, elementwise=True)

    def __abs__(self):
        return _call("absolute", _np.absolute, (self,), {}, elementwise=True)

    def __invert__(self):
        return _call("invert", _np.invert, (self,), {}, elementwise=True)



