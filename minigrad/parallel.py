"""Both CPU cores for the heavy kernels: a small persistent pool of worker threads.

NumPy releases the GIL inside its copies, ufunc loops and BLAS calls on large arrays, so
Python threads running NumPy code run truly in parallel. A kernel that is big enough is split
once into disjoint parts whose writes never overlap, and the parts are dealt out in turn
(``run_split``): ops/conv.py splits its blocks of rows, ops/pool.py its channel chunks,
ops/layout.py the slabs it transposes, ``matmul`` (the linear layers) blocks of 64 rows,
``matmuls_together`` the blocks of a linear layer's two gradients in one split, and
``elementwise`` (ReLU) chunks of memory. "Big enough" is counted in multiply-adds for products
(``PARALLEL_MIN_PRODUCT``, ``PARALLEL_MIN_PRODUCTS_TOGETHER`` for products computed together)
and in values for memory-bound kernels (``PARALLEL_MIN_ELEMENTS``);
below that everything stays on the calling thread. A split costs ~25 us when the worker was
just busy (the hand-off and the GIL going back and forth) and 80-200 us when it idled for a
millisecond or more (its core sleeps; measured on the VM of benchmarks/RESULTS.md), and two
threads making short NumPy calls queue for the GIL: more than small batches gain (LeNet at
batch 32 runs fastest on one thread).

BLAS is held to one thread inside the kernels that multiply, so that two levels of threads
never fight over the cores: after a threaded call OpenBLAS's own workers spin for a while,
holding the core that minigrad's next kernel wants. The limit is scoped to minigrad's kernels
(and to autograd's backward walk as a whole: one hold instead of one per kernel, lent back to
the backward of an op defined outside minigrad); the user's own NumPy calls on the calling
thread keep their BLAS threads. Where the setting is process-wide (OpenBLAS's pthreads builds,
NumPy's wheels), another thread's NumPy calls run on one BLAS thread while a kernel, or a
backward walk, holds it.

``MINIGRAD_NUM_THREADS`` sets the number of threads (default: the cores this process may use;
1 means no threads at all). Only which thread runs a block depends on it, never the blocks,
so results are bit-for-bit the same with any number of threads. Kernels on CuPy arrays run
on the calling thread: the GPU has its own parallelism.

Read next: ``backend.py`` (NumPy or CuPy underneath everything).
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import threading

from . import backend

# Below this many values touched by a memory-bound kernel (pool, relu, transpose), one thread is
# faster than two (hand-off costs; LeNet at batch 128: 2^18 measured 5% faster than 2^20).
PARALLEL_MIN_ELEMENTS = 1 << 18
# Below this many multiply-adds a matrix product or a convolution stays on one thread (~0.5 ms;
# LeNet at batch 32 measured faster on one thread, at batch 128 faster on two); products computed
# together start sharing the threads from PARALLEL_MIN_PRODUCTS_TOGETHER in all.
PARALLEL_MIN_PRODUCT = 1 << 24
PRODUCT_ROWS = 64        # rows per block of a big product (parallel.matmul)
# Independent products computed together (a linear layer's two gradients, ``matmuls_together``)
# share the threads from this many multiply-adds in all, even when each is below
# PARALLEL_MIN_PRODUCT (LeNet's 400->120 layer at batch 128 makes two of 6.1M; benchmarks/RESULTS.md).
PARALLEL_MIN_PRODUCTS_TOGETHER = 1 << 23


def default_num_threads() -> int:
    """``MINIGRAD_NUM_THREADS`` if set, else the cores this process may run on."""
    value = os.environ.get("MINIGRAD_NUM_THREADS")
    if value is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"MINIGRAD_NUM_THREADS: expected a positive integer, got {value!r}")
    return int(value)


num_threads = default_num_threads()
_workers = None          # the worker threads (num_threads - 1 of them), made on first use
_blas = None             # threadpoolctl's controllers of the loaded BLAS libraries, made on first use
_limit_counter = None    # threadpoolctl's count of nested limits (one_blas_thread), found with _blas
_lock = threading.Lock()
_busy = threading.Lock()  # held while the workers run a split: one split at a time


class _Worker:
    """One persistent thread that runs one part at a time, handed over with two locks.

    The whole of the hand-off is a lock released on one side and acquired on the other (~15 us
    here; a ThreadPoolExecutor's futures and queue cost twice that, and a step makes dozens).
    """

    def __init__(self):
        self._start, self._done = threading.Lock(), threading.Lock()
        self._start.acquire()
        self._done.acquire()
        self._job = self._error = None
        threading.Thread(target=self._loop, name="minigrad", daemon=True).start()

    def _loop(self):
        while True:
            self._start.acquire()                     # wait for a part
            work, part = self._job
            try:
                work(part)
            except BaseException as error:            # handed to the caller by result()
                self._error = error
            self._job = None
            self._done.release()

    def submit(self, work, part):
        self._job = (work, part)
        self._start.release()
        return self

    def result(self):
        """Wait for the part; re-raise its exception here. The wait outlasts a KeyboardInterrupt
        (raised again once the part is done): the part is still writing into the caller's
        arrays, and the worker must be idle before the next split hands it another part."""
        interrupted = None
        while True:
            try:
                self._done.acquire()
                break
            except BaseException as interruption:   # a signal handler's exception, in the main thread
                interrupted = interrupted or interruption
        error, self._error = self._error, None
        if interrupted is not None:
            raise interrupted
        if error is not None:
            raise error


def _pool():
    """The worker threads, as many as ``num_threads - 1`` (more are made if it was raised since)."""
    global _workers
    with _lock:
        if _workers is None:
            _workers = []
        _workers.extend(_Worker() for _ in range(num_threads - 1 - len(_workers)))
    return _workers


def _forget_pool_in_child():
    """A forked child has none of its parent's threads: it makes its own pool when it needs one."""
    global _workers, _lock, _busy
    _workers, _lock, _busy = None, threading.Lock(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def _blas_libraries():
    """threadpoolctl's controllers of the loaded BLAS libraries, one per library."""
    global _blas, _limit_counter
    if _blas is None:
        with _lock:
            if _blas is None:
                import threadpoolctl
                # threadpoolctl's per-thread count of the limits that changed OpenBLAS, which its
                # own limit() keeps (3.8 and later; before, any thread may set OpenBLAS's limit).
                _limit_counter = getattr(threadpoolctl, "CONTROLLING_THREAD_OWNERSHIP", None)
                # Scans the loaded libraries once (~ms).
                _blas = threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
    return _blas


class _HoldState(threading.local):
    """This thread's ``one_blas_thread``: how deeply nested, and the setting the outermost found."""
    depth = 0
    changes = False     # whether the outermost hold changed the setting (it was not one thread already)
    before = ()


_hold = _HoldState()


class one_blas_thread:
    """``with one_blas_thread():`` holds the BLAS libraries to one thread inside and gives the
    caller's setting back on the way out.

    What threadpoolctl's ``limit(limits=1)`` does, through the same per-library controllers
    (which know which thread may change OpenBLAS's process-wide setting) and the same count of
    nested limits (so that a user's enclosing ``threadpool_limits`` keeps that right), without
    re-reading every library's description on each call: a LeNet step made 13 holds, which
    cost 0.74 ms of a 12.4 ms step at batch 32 through ``limit()`` (RESULTS.md); now it makes
    six, five in forward and one for the whole backward. Unlike ``limit()`` it changes and
    counts nothing when every library already runs one thread, and leaves alone a library that
    does not say how many threads it runs.

    Holds nest: inside a hold of the same thread (autograd's backward holds BLAS once for its
    whole walk) a hold changes nothing, and only the outermost one gives the setting back.
    ``callers_blas_threads`` lends the caller's setting back inside a hold. What the outermost
    hold finds decides: a backward that starts while another thread holds OpenBLAS's
    process-wide setting at one finds nothing to change and holds nothing for its walk.
    """
    __slots__ = ()

    def __enter__(self):
        if _hold.depth:        # this thread holds BLAS already (a kernel inside the backward walk)
            _hold.depth += 1
            return self
        libraries = _blas_libraries()
        before = [library.get_num_threads() for library in libraries]   # None: the library does not say
        changes = any(threads is not None and threads != 1 for threads in before)   # else nothing to change
        if changes:
            try:
                _set_blas_threads(libraries, _one_each(before))
                if _limit_counter is not None:
                    _limit_counter.increment()
            except BaseException:   # e.g. Ctrl-C halfway: the caller's setting back, and no hold
                _set_blas_threads(libraries, before)
                raise
        _hold.before, _hold.changes, _hold.depth = before, changes, 1
        return self

    def __exit__(self, *exception):
        if _hold.depth > 1:
            _hold.depth -= 1
            return
        try:
            if _hold.changes:
                _set_blas_threads(_blas_libraries(), _hold.before)
        finally:
            _hold.depth = 0
            if _hold.changes and _limit_counter is not None:
                _limit_counter.decrement()   # at zero, OpenBLAS's setting is free for any thread again


def _set_blas_threads(libraries, counts):
    """Set each library's thread count; None leaves that library alone."""
    for library, threads in zip(libraries, counts):
        if threads is not None:
            library.set_num_threads(threads)


def _one_each(counts):
    """One thread for each library that says how many it runs (None stays None: left alone)."""
    return [None if threads is None else 1 for threads in counts]


@contextlib.contextmanager
def callers_blas_threads():
    """Inside a hold, BLAS gets back the threads the caller had, for the ``with`` block only: a
    big product that minigrad does not cut (``matmul``), or a user-defined op's backward. Inside,
    this thread counts as holding nothing, so a minigrad kernel there holds BLAS again and gives
    the lent setting back after."""
    if not _hold.depth:
        yield
        return
    held = (_hold.depth, _hold.before, _hold.changes)
    libraries = _blas_libraries() if _hold.changes else ()       # a hold that changed nothing lends nothing
    _set_blas_threads(libraries, _hold.before)
    _hold.depth = 0          # the next hold here is an outermost one again (and sets before/changes)
    try:
        yield
    finally:
        _hold.depth, _hold.before, _hold.changes = held
        _set_blas_threads(libraries, _one_each(held[1]))


@functools.cache
def _blas_limits_are_per_thread():
    """Whether a BLAS library here takes its thread limit per calling thread (OpenMP builds, and
    MKL, which threadpoolctl limits with ``MKL_Set_Num_Threads_Local``), not for the whole
    process (OpenBLAS's pthreads builds, like NumPy's wheels)."""
    return any(getattr(library, "threading_layer", None) == "openmp" or getattr(library, "internal_api", None) == "mkl"
               for library in _blas_libraries())


def _holding_one_blas_thread(work):
    @functools.wraps(work)
    def held(part):
        with one_blas_thread():
            work(part)
    return held


def run_split(work, count, size, xp, min_size=None, uses_blas=True):
    """Call ``work(part)`` for interleaved ranges ``part`` (0, 2, 4... and 1, 3, 5... for two
    threads) covering ``range(count)``, in parallel when the kernel's ``size`` (values touched,
    or multiply-adds for products) is at least ``min_size`` (default ``PARALLEL_MIN_ELEMENTS``)
    on the CPU.

    The parts must write disjoint memory. The calling thread runs the first part itself.
    When the work ``uses_blas``, BLAS is held to one thread inside, threads or not: these kernels
    make many small products, on which BLAS's own threads only spin (and on a busy machine spin
    for a long time); and a product is then computed the same way, to the bit, with any
    ``num_threads``. Kernels without products skip the hold.
    A split inside a part, or while another thread's split holds the workers, runs on the
    calling thread: the results are the same, and nothing waits for a busy worker.
    """
    if xp is not backend.np:  # the GPU has its own threads
        work(range(count))
        return
    # Scoped: the user's own NumPy calls keep their BLAS threads.
    with one_blas_thread() if uses_blas else contextlib.nullcontext():
        threshold = PARALLEL_MIN_ELEMENTS if min_size is None else min_size
        num_parts = min(count, num_threads) if size >= threshold else 1
        if num_parts < 2 or not _busy.acquire(blocking=False):  # busy: a split inside a part, or another thread's
            work(range(count))
            return
        try:
            # Every num_parts-th item to each thread: blocks of a kernel differ in size (a last,
            # short row block), and interleaving shares them out evenly.
            parts = [range(p, count, num_parts) for p in range(num_parts)]
            # BLAS built on OpenMP keeps a limit per thread: then each worker holds its own as well.
            part_work = _holding_one_blas_thread(work) if uses_blas and _blas_limits_are_per_thread() else work
            started = [worker.submit(part_work, part) for worker, part in zip(_pool(), parts[1:])]
            try:
                work(parts[0])
            finally:
                errors = []
                for worker in started:   # every worker finishes before the arrays can go away
                    try:
                        worker.result()
                    except BaseException as error:
                        errors.append(error)
            if errors:
                raise errors[0]      # a worker's exception, here
        finally:
            _busy.release()


def run_products(work, count, multiply_adds, xp):
    """``run_split`` for a kernel of matrix products, on two threads from ``PARALLEL_MIN_PRODUCT``
    multiply-adds (a convolution's work is its products, not the values it gathers)."""
    run_split(work, count, multiply_adds, xp, min_size=PARALLEL_MIN_PRODUCT)


def matmul(a, b):
    """``a @ b`` for ops/linalg.py (the linear layers): a big 2-d product is cut into blocks of
    ``PRODUCT_ROWS`` rows that minigrad's threads share, with BLAS held to one thread.

    Why not BLAS's own threads: after each threaded call OpenBLAS's workers spin for a while
    waiting for more work, holding the second core that minigrad's next kernel wants (a LeNet
    step at batch 512 took 30% longer). Small products stay on one thread for the same reason.
    A big product that is not cut (batched, or too few rows) keeps BLAS's own threads. Rows of
    a product are independent; the blocks depend only on the sizes (BLAS may round a 150-row
    product differently from a 300-row one), so the bits do not depend on ``num_threads``.
    """
    xp = backend.xp_of(a)
    if xp is not backend.np:
        return xp.matmul(a, b)
    size = multiply_adds(a, b)
    if size < PARALLEL_MIN_PRODUCT:
        with one_blas_thread():
            return xp.matmul(a, b)
    if not cut_into_rows(a, b):
        with callers_blas_threads():      # BLAS's own threads, even inside the backward walk's hold
            return xp.matmul(a, b)
    return products_in_blocks([(a, b)], [True], size, PARALLEL_MIN_PRODUCT)[0]


def matmuls_together(pairs):
    """``[matmul(a, b) for a, b in pairs]`` for independent products (a linear layer's dx and dW),
    their blocks dealt out to the threads in one split: one hand-off instead of one per product,
    and products too small to be cut alone share the threads whole, one each.

    Each product is cut as ``matmul`` cuts it alone (blocks of rows from ``PARALLEL_MIN_PRODUCT``
    multiply-adds, else whole), so it has the same bits either way, with any ``num_threads``;
    together they go to the threads from ``PARALLEL_MIN_PRODUCTS_TOGETHER`` multiply-adds in all.
    When a big product cannot be cut (batched, or ``PRODUCT_ROWS`` rows or fewer), each product
    goes through ``matmul`` on its own, and that one keeps BLAS's own threads.
    """
    xp = backend.xp_of(pairs[0][0]) if pairs else backend.np
    sizes = [multiply_adds(a, b) for a, b in pairs]
    cut = [size >= PARALLEL_MIN_PRODUCT for size in sizes]
    if (xp is not backend.np or len(pairs) < 2 or sum(sizes) < PARALLEL_MIN_PRODUCTS_TOGETHER
            or any(big and not cut_into_rows(a, b) for big, (a, b) in zip(cut, pairs))):
        return [matmul(a, b) for a, b in pairs]
    return products_in_blocks(pairs, cut, sum(sizes), PARALLEL_MIN_PRODUCTS_TOGETHER)


def multiply_adds(a, b):
    """Multiply-adds of ``a @ b`` (batch axes broadcast, 1-d operands count as one row or column)."""
    rows = a.shape[-2] if a.ndim > 1 else 1
    cols = b.shape[-1] if b.ndim > 1 else 1
    matrices = 1 if a.ndim <= 2 and b.ndim <= 2 else math.prod(backend.np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    return matrices * rows * a.shape[-1] * cols


def cut_into_rows(a, b):
    """Whether minigrad can cut ``a @ b`` into blocks of rows: 2-d, more than one block of rows."""
    return a.ndim == 2 and b.ndim == 2 and a.shape[0] > PRODUCT_ROWS


def products_in_blocks(pairs, cut, size, min_size):
    """The products ``a @ b``, those marked in ``cut`` in blocks of ``PRODUCT_ROWS`` rows and the
    others whole, all blocks dealt out to the threads in one split from ``min_size`` multiply-adds."""
    xp = backend.np
    products = [xp.empty((a.shape[0], b.shape[1]), dtype=xp.result_type(a, b)) if big else None
                for big, (a, b) in zip(cut, pairs)]
    blocks = [(i, slice(start, start + PRODUCT_ROWS) if big else None)
              for i, (big, (a, _)) in enumerate(zip(cut, pairs))
              for start in (range(0, a.shape[0], PRODUCT_ROWS) if big else (0,))]

    def product_blocks(part):
        for i, rows in (blocks[k] for k in part):
            a, b = pairs[i]
            if rows is None:
                products[i] = xp.matmul(a, b)                 # whole, on this thread
            else:
                xp.matmul(a[rows], b, out=products[i][rows])
    run_split(product_blocks, len(blocks), size, xp, min_size=min_size)
    return products


def flat_in_memory_order(arrays):
    """1-d views of ``arrays`` in the order their values sit in memory, when they all share one
    dense layout (a contiguous array, or a transposed view of one such as the NCHW view of a
    batch-last array); else None."""
    first = arrays[0]
    order = sorted(range(first.ndim), key=lambda axis: -first.strides[axis])
    views = [array.transpose(order) for array in arrays]
    if any(array.shape != first.shape or not view.flags.c_contiguous for array, view in zip(arrays, views)):
        return None
    return [view.reshape(-1) for view in views]


def elementwise(work, *arrays):
    """Call ``work(*chunks)`` on matching chunks of ``arrays`` (same shape and memory layout; the
    last is usually the output), chunk by chunk in memory order, the chunks shared by the threads.

    A pass of several NumPy calls (ReLU's backward makes three) then mostly reuses what the
    previous call left in cache, and two threads share the passes. Arrays whose layouts differ,
    and CuPy arrays (one kernel each is best there), get one ``work(*arrays)``.
    """
    xp = backend.xp_of(arrays[0])
    chunk = backend.chunk_elements(xp)
    if chunk is None or arrays[0].size <= chunk:    # one chunk: the arrays as they are
        work(*arrays)
        return
    flats = flat_in_memory_order(arrays)
    if flats is None:
        work(*arrays)
        return

    bounds = even_cut(flats[0].size, chunk)

    def chunks(part):
        for index in part:
            window = slice(bounds[index], bounds[index + 1])
            work(*(flat[window] for flat in flats))
    run_split(chunks, len(bounds) - 1, flats[0].size * len(flats), xp, uses_blas=False)


def even_cut(total, most):
    """Bounds that cut ``range(total)`` into pieces of at most ``most`` (at least 1), as equal as they
    can be and, beyond one, an even number of them: dealt out in turn (``run_split``), two
    threads then get equal shares (3 chunks of 2^18 for LeNet's first ReLU at batch 128 went
    2 + 1). Like every cut here it depends only on the sizes, never on the thread count.
    ``total`` 0 is one empty piece."""
    count = max(1, -(-total // max(1, most)))
    count = min(max(1, total), count + count % 2 if count > 1 else count)
    return [total * index // count for index in range(count + 1)]
