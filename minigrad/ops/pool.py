"""2-d max and average pooling: the math, then its fast evaluation (read ops/conv_reference.py first).

The math, for a window of kernel offsets (kh, kw) at output pixel (i, j):
    max:  out[n, c, i, j] = max_{kh,kw} x[n, c, i*s + kh, j*s + kw]    (padding never wins)
    avg:  out[n, c, i, j] = mean_{kh,kw} x[n, c, i*s + kh, j*s + kw]   (padded zeros count)
    d(max)/dx = 1 at the pixel PyTorch's scan picks (the first maximum, or the last NaN), else 0
    d(avg)/dx = 1/(KH*KW) at every pixel of the window

The fast evaluation works, like convolution, on batch-last (C, H, W, N) arrays and returns an
NCHW view (ops/layout.py). It loops over the KH*KW kernel offsets, not over pixels: for one
offset, the pixel that every window reads is a strided slice of the input (``offset_pixels``),
so each step is one vectorised operation over the whole batch (4 of them for a 2x2 pool).
Max pool's backward visits the offsets in scan order and gives each window's gradient to the
first that holds its max (``route_to_first_match``); windows that tile the input, as LeNet's
2x2, do it in fewer passes by routing what each window has left (``route_remainder``). Both
work on chunks small enough for cache, shared by the threads (``cut_into_chunks``).

Read next: ``ops/layout.py`` (batch-last views, window views, cache-sized blocks).
"""
from __future__ import annotations

from .. import backend, parallel
from ..autograd import Function
from ..tensor import check_floating_input, check_is_tensor
from .elementwise import keep_where
from .layout import batch_first, batch_last, kernel_offsets, offset_pixels, output_size, pad_spatial, pair, unpad_spatial

NO_DILATION = (1, 1)


def pool_geometry(x_padded, kernel, stride):
    """Output rows and columns (as whole slices) of a pool over a padded (C, Hp, Wp, N) array."""
    out_h = output_size(x_padded.shape[1], kernel[0], stride[0], 0, 1)
    out_w = output_size(x_padded.shape[2], kernel[1], stride[1], 0, 1)
    return slice(0, out_h), slice(0, out_w)


class MaxPool2d(Function):
    def forward(self, x, kernel, stride, padding):
        xp = backend.xp_of(x)
        x_padded = pad_spatial(batch_last(x), padding, value=-xp.inf)         # padding never wins the max
        rows, cols = pool_geometry(x_padded, kernel, stride)
        out = xp.empty((x_padded.shape[0], rows.stop, cols.stop, x_padded.shape[3]), dtype=x.dtype)
        (x_chunked,), (out_chunked,), chunks = cut_into_chunks(kernel, stride, padding, (x_padded,), (out,),
                                                               written=(out,))

        def max_over_offsets(part):
            for in_index, out_index in (chunks[i] for i in part):
                x_chunk, out_chunk = x_chunked[in_index], out_chunked[out_index]
                rows, cols = slice(0, out_chunk.shape[1]), slice(0, out_chunk.shape[2])
                for index, (kh, kw) in enumerate(kernel_offsets(kernel)):
                    candidate = x_chunk[offset_pixels(kh, kw, rows, cols, stride, NO_DILATION)]
                    if index == 0:
                        out_chunk[...] = candidate
                    else:
                        xp.maximum(out_chunk, candidate, out=out_chunk)
        # Chunks split between threads: memory-bound, but each core brings its own cache.
        parallel.run_split(max_over_offsets, len(chunks), x_padded.size, xp, uses_blas=False)
        # x_padded is the previous op's output (kept alive by it anyway) unless padding copied it.
        self.save_for_backward(x_padded, out)
        self.geometry = (kernel, stride, padding)
        return batch_first(out)

    def backward(self, grad):  # d(max)/dx = 1 at the window's first arg-max (or last NaN), 0 elsewhere
        xp = backend.xp_of(grad)
        x_padded, out = self.saved
        kernel, stride, padding = self.geometry
        windows_tile_input = windows_tile(x_padded.shape, out.shape, kernel, stride)
        # Windows that tile the input write every pixel below: no zero-fill needed.
        grad_padded = (xp.empty if windows_tile_input else xp.zeros)(x_padded.shape, dtype=x_padded.dtype)
        windows_overlap = stride[0] < kernel[0] or stride[1] < kernel[1]
        (x_chunked, grad_in), (out_chunked, grad_out), chunks = cut_into_chunks(
            kernel, stride, padding, (x_padded, grad_padded), (out, batch_last(grad)), written=(grad_padded,))
        stacked = x_chunked is not x_padded

        def route_parts(part):
            for in_index, out_index in (chunks[i] for i in part):
                route_chunk(x_chunked[in_index], out_chunked[out_index], grad_out[out_index], grad_in[in_index])

        def route_chunk(x_chunk, out_chunk, grad_chunk, grad_in_chunk):       # a few passes, in cache
            # An inf or NaN gradient needs the exact mask (0 * inf is NaN); a finite one, the
            # cheaper product. CuPy always takes the mask (asking would make the host wait).
            finite = backend.surely_finite(grad_chunk)
            if stacked and finite and not backend.may_be_true(xp.isnan(out_chunk)):
                route_remainder(x_chunk, out_chunk, grad_chunk, grad_in_chunk, kernel, stride)
                return
            unclaimed = xp.empty(out_chunk.shape, dtype=bool)  # windows not yet routed: set by the first offset
            route = (grad_chunk, grad_in_chunk, unclaimed, stride, finite)
            # First wins: visiting offsets in row-major order and routing each window's gradient to
            # the first offset that holds its max reproduces PyTorch's tie rule without an argmax.
            route_to_first_match(is_max(x_chunk, out_chunk, padding), kernel_offsets(kernel), *route,
                                 may_overwrite=not windows_overlap, first_pass=True)
            # Still unclaimed: windows whose max is NaN (NaN equals nothing). PyTorch's scan
            # (``val > max || isnan(val)``) keeps the last NaN: first wins again, in reverse order.
            if backend.may_be_true(unclaimed):
                route_to_first_match(lambda region: xp.isnan(x_chunk[region]), kernel_offsets(kernel)[::-1], *route,
                                     may_overwrite=False, first_pass=False)
        parallel.run_split(route_parts, len(chunks), x_padded.size, xp, uses_blas=False)
        return batch_first(unpad_spatial(grad_padded, padding))


def windows_tile(padded_shape, out_shape, kernel, stride):
    """Whether the windows cover the (C, Hp, Wp, N) input exactly, each pixel in one window."""
    return (stride == kernel and out_shape[1] * kernel[0] == padded_shape[1]
            and out_shape[2] * kernel[1] == padded_shape[2])


def cut_into_chunks(kernel, stride, padding, inputs, outputs, written=()):
    """How a max pool cuts its (C, Hp, Wp, N) ``inputs`` and (C, OH, OW, N) ``outputs`` into chunks
    for the threads: (inputs, outputs, [(input index, output index) per chunk]).

    Unpadded windows that tile the input still tile it with the channels stacked on top of each
    other: the arrays are then viewed as one channel of C*OH output rows (inputs KH times as
    many) and cut into chunks of whole rows, as even as the rows allow (``row_chunks``).
    Otherwise, chunks of whole channels (``channel_chunks``), where rows keep their place in
    the padded image. Both are about half ``backend.chunk_elements`` output values, so the few
    passes over one chunk (compare, mask, route) run in cache. The ``written`` arrays must be
    C-contiguous (a fresh output or gradient): their stacked reshapes are then views, where a
    copy would lose the writes; an array only read may be copied.
    """
    if padding != (0, 0) or not windows_tile(inputs[0].shape, outputs[0].shape, kernel, stride):
        return inputs, outputs, [(c, c) for c in channel_chunks(outputs[0])]
    assert all(array.flags.c_contiguous for array in written), "written through views"
    stacked_inputs, stacked_outputs = ([array.reshape(1, array.shape[0] * array.shape[1], *array.shape[2:])
                                        for array in arrays] for arrays in (inputs, outputs))
    return stacked_inputs, stacked_outputs, row_chunks(stacked_outputs[0], kernel[0])


def is_max(x_padded, out, padding):
    """``matches`` for ``route_to_first_match``: where a region's pixels equal their window's max.

    A window of -inf in a padded input: its padding (-inf too) must not win it. PyTorch's scan
    starts at the window's first pixel of the image, which then keeps the gradient; so, only
    then, pixels of the padding never match (``real_pixels``).
    """
    xp = backend.xp_of(out)
    if padding == (0, 0) or not backend.may_be_true(xp.isneginf(out)):
        return lambda region: xp.equal(x_padded[region], out)
    return lambda region: xp.equal(x_padded[region], out) & real_pixels(region, x_padded.shape, padding, xp)


def real_pixels(region, padded_shape, padding, xp):
    """Which pixels of ``region`` (an ``offset_pixels`` index into a (C, Hp, Wp, N) array) are
    the image's, not its padding: a (1, r, c, 1) mask."""
    _, rows, cols = region
    row_index = xp.arange(rows.start, rows.stop, rows.step)
    col_index = xp.arange(cols.start, cols.stop, cols.step)
    real_rows = (row_index >= padding[0]) & (row_index < padded_shape[1] - padding[0])
    real_cols = (col_index >= padding[1]) & (col_index < padded_shape[2] - padding[1])
    return (real_rows[:, None] & real_cols[None, :])[None, :, :, None]


def chunk_bounds(count, item_size, xp):
    """Bounds cutting ``count`` items of ``item_size`` values each (channels or output rows) into
    chunks of about half ``backend.chunk_elements`` values, evenly (``parallel.even_cut``: pool1
    at batch 512 is 6 chunks of 14 rows, 3 for each thread); one chunk on CuPy."""
    chunk = backend.chunk_elements(xp)
    return [0, count] if chunk is None else parallel.even_cut(count, chunk // 2 // max(1, item_size))


def channel_chunks(out):
    """Slices of channels of the (C, OH, OW, N) output (``chunk_bounds``)."""
    bounds = chunk_bounds(out.shape[0], out[0].size, backend.xp_of(out))
    return [slice(first, stop) for first, stop in zip(bounds, bounds[1:])]


def row_chunks(out, kernel_h):
    """(input rows, output rows) index pairs cutting the (1, R, OW, N) output of tiling windows
    (and its input, ``kernel_h`` rows per output row) into chunks of whole rows (``chunk_bounds``)."""
    bounds = chunk_bounds(out.shape[1], out[0, 0].size, backend.xp_of(out))
    return [((slice(None), slice(top * kernel_h, bottom * kernel_h)), (slice(None), slice(top, bottom)))
            for top, bottom in zip(bounds, bounds[1:])]


def route_remainder(x_padded, out, grad_out, grad_padded, kernel, stride):
    """Windows that tile the input, a finite gradient and no NaN max: the same routing as
    ``route_to_first_match`` in fewer passes. ``remaining`` is what each window has yet to
    route: its gradient, then exactly 0 once an offset took it (g - g = 0). Each offset takes
    ``remaining`` where its pixel equals the max (0 elsewhere: -0.0 where the gradient is
    negative, as in ``route_to_first_match``), and the last offset takes what remains: with no
    NaN, a window not routed before has its max there. Needs unpadded windows (padding's -inf
    would tie with an image of -inf, see ``real_pixels``).
    """
    xp = backend.xp_of(grad_out)
    rows, cols = slice(0, out.shape[1]), slice(0, out.shape[2])
    offsets = [offset_pixels(kh, kw, rows, cols, stride, NO_DILATION) for kh, kw in kernel_offsets(kernel)]
    remaining, match = grad_out, xp.empty(out.shape, dtype=bool)
    for region in offsets[:-1]:
        routed = xp.multiply(remaining, xp.equal(x_padded[region], out, out=match), out=grad_padded[region])
        # The first subtraction makes ``remaining`` (the caller's gradient is not written); later ones update it.
        remaining = xp.subtract(remaining, routed, out=None if remaining is grad_out else remaining)
    grad_padded[offsets[-1]] = remaining


def route_to_first_match(matches, offsets, grad_out, grad_padded, unclaimed, stride, finite, may_overwrite,
                         first_pass):
    """Send each unclaimed window's gradient to the first of ``offsets`` whose pixel ``matches``
    (``matches(region)``: a bool (C, OH, OW, N) array for the pixels of ``offset_pixels``' region).

    grad_out and unclaimed are (C, OH, OW, N); unclaimed is updated in place (on the
    ``first_pass`` it is written, not read: every window is unclaimed before the first offset). With
    ``may_overwrite`` (each pixel in one window at most, nothing routed yet) the gradient is
    written in place instead of added through a temporary. Pixels that did not win get exactly
    0 (as PyTorch): ``grad * winner`` when the gradient is ``finite`` (-0.0 where the gradient
    was negative: equal to PyTorch's +0.0, not the same bits), else an exact mask.
    """
    xp = backend.xp_of(grad_out)
    rows, cols = slice(0, grad_out.shape[1]), slice(0, grad_out.shape[2])
    scratch = None if may_overwrite else xp.empty_like(grad_out)              # one temporary for all offsets
    for index, (kh, kw) in enumerate(offsets):
        region = offset_pixels(kh, kw, rows, cols, stride, NO_DILATION)
        winner = matches(region)
        if first_pass and index == 0:
            xp.logical_not(winner, out=unclaimed)
        else:
            winner &= unclaimed
            unclaimed ^= winner                                                # winner is within unclaimed
        routed = grad_padded[region] if may_overwrite else scratch
        if finite:
            xp.multiply(grad_out, winner, out=routed)
        else:
            keep_where(grad_out, winner, out=routed)
        if not may_overwrite:
            grad_padded[region] += routed


class AvgPool2d(Function):
    def forward(self, x, kernel, stride, padding):
        x_padded = pad_spatial(batch_last(x), padding)
        rows, cols = pool_geometry(x_padded, kernel, stride)
        total = None
        for kh, kw in kernel_offsets(kernel):
            candidate = x_padded[offset_pixels(kh, kw, rows, cols, stride, NO_DILATION)]
            total = candidate.copy() if total is None else backend.xp_of(x).add(total, candidate, out=total)
        # Padded zeros count in the divisor (PyTorch's default count_include_pad=True).
        self.geometry = (x_padded.shape, kernel, stride, padding)
        return batch_first(total / (kernel[0] * kernel[1]))

    def backward(self, grad):  # d(mean)/dx = 1/(KH*KW) for every pixel of the window
        xp = backend.xp_of(grad)
        padded_shape, kernel, stride, padding = self.geometry
        share = batch_last(grad) / (kernel[0] * kernel[1])                      # (C, OH, OW, N)
        rows, cols = slice(0, share.shape[1]), slice(0, share.shape[2])
        grad_padded = xp.zeros(padded_shape, dtype=grad.dtype)
        for kh, kw in kernel_offsets(kernel):
            grad_padded[offset_pixels(kh, kw, rows, cols, stride, NO_DILATION)] += share
        return batch_first(unpad_spatial(grad_padded, padding))


def _pool_arguments(name, x, kernel_size, stride, padding):
    check_is_tensor(x, "input")
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    padding = pair(padding, "padding")
    if x.ndim != 4:
        raise ValueError(f"{name}: input must be 4-d (N, C, H, W), got shape {x.shape}")
    if any(k <= 0 for k in kernel):
        raise ValueError(f"{name}: kernel_size must be positive, got {kernel}")
    if any(s <= 0 for s in stride):
        raise ValueError(f"{name}: stride must be positive, got {stride}")
    if any(p < 0 or p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{name}: padding must be between 0 and half the kernel {kernel}, got {padding}")
    for i, axis_name in enumerate(("height", "width")):
        if output_size(x.shape[2 + i], kernel[i], stride[i], padding[i], 1) < 1:
            raise ValueError(f"{name}: input {axis_name} {x.shape[2 + i]} is smaller than kernel {kernel[i]}")
    return kernel, stride, padding


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """The largest value of each window; its gradient goes to that value's pixel.

    >>> import minigrad as mg, minigrad.nn.functional as F
    >>> x = mg.tensor([[[[1.0, 2.0], [4.0, 3.0]]]], requires_grad=True)
    >>> y = F.max_pool2d(x, 2)
    >>> y.sum().backward()
    >>> y
    tensor([[[[4.]]]], grad_fn=<MaxPool2dBackward>)
    >>> x.grad
    tensor([[[[0., 0.],
              [1., 0.]]]])
    """
    kernel, stride, padding = _pool_arguments("max_pool2d", x, kernel_size, stride, padding)
    return MaxPool2d.apply(x, kernel=kernel, stride=stride, padding=padding)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """The mean of each window; every pixel of it gets 1/(KH*KW) of the gradient.

    >>> import minigrad as mg, minigrad.nn.functional as F
    >>> x = mg.arange(8.0).reshape(1, 1, 2, 4).requires_grad_()
    >>> F.avg_pool2d(x, 2)             # two 2x2 windows
    tensor([[[[2.5000, 4.5000]]]], grad_fn=<AvgPool2dBackward>)
    >>> F.avg_pool2d(x, 2).sum().backward()
    >>> x.grad                         # a quarter to every pixel of each window
    tensor([[[[0.2500, 0.2500, 0.2500, 0.2500],
              [0.2500, 0.2500, 0.2500, 0.2500]]]])
    """
    kernel, stride, padding = _pool_arguments("avg_pool2d", x, kernel_size, stride, padding)
    check_floating_input("avg_pool2d", x)  # an integer window sum wraps around (4 x 200 in uint8 is 32)
    return AvgPool2d.apply(x, kernel=kernel, stride=stride, padding=padding)
