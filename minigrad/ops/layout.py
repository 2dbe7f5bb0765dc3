"""How the fast conv and pool kernels lay out and walk their arrays (read ops/conv_reference.py first).

Nothing here is math: these helpers only choose where values sit in memory and in what order
the kernels of ops/conv.py and ops/pool.py visit them.

- Geometry: ``pair`` and ``output_size``, shared with the reference module.
- Batch-last layout. The kernels work on (C, H, W, N) arrays: a window's row is then one
  contiguous run of (width * N) values, so building columns and adding gradients back are
  long memory copies instead of gathers, and a matrix product lands directly in (O, OH, OW, N)
  with no transpose. The public API stays NCHW: ops return an (N, C, H, W) *view* of their
  batch-last result (``batch_first``), so the next conv or pool gets its batch-last array
  back for free (``batch_last``), while every other op just sees an NCHW array.
- Windows: ``offset_pixels`` is the strided slice of pixels that one kernel offset reads for
  a block of output pixels (pooling's loop).
- Bands: convolution gathers input rows along the width only (``gather_width``), then takes
  each window's KH rows as an overlapping band of them (``bands``, a strided view), so the
  rows shared by vertically overlapping windows are copied once.
- Blocks: ``band_blocks`` cuts the output into blocks of rows x columns small enough for their
  gathered rows to stay in cache between the copy that writes them and the product that reads them.

Read next: ``parallel.py`` (the threads that split big conv kernels), then ``backend.py``.
"""
from __future__ import annotations

import numbers

from .. import backend, parallel


# ----------------------------------------------------------------------------- geometry
def is_integer(value):
    """A Python or NumPy integer (``np.int64(3)`` too), but not a bool."""
    if type(value) is int:   # the common case, without the ABC check (each conv and pool makes ~7)
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def pair(value, argument):
    """``3`` -> ``(3, 3)``; ``(2, 3)`` stays; NumPy integers become ints; anything else is a clear error."""
    if is_integer(value):
        return (int(value), int(value))
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(is_integer(v) for v in value):
        return tuple(int(v) for v in value)
    raise TypeError(f"{argument}: expected an int or a pair of ints, got {value!r}")


def output_size(size, kernel, stride, padding, dilation):
    """Output length along one axis: floor((size + 2p - d(k-1) - 1) / s) + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


# ----------------------------------------------------------------------------- batch-last layout
def batch_last(x):
    """(N, C, H, W) -> contiguous (C, H, W, N); no copy when ``x`` came from ``batch_first``.

    The copy is a transpose of the (N, K) matrix of images (K = C*H*W values each) to (K, N).
    Done directly, NumPy's copy moves one value at a time along strides of K values. On NumPy it
    goes through (K/g, N, g) instead, g values (at most 64) at a time: first runs of g values
    are moved into a scratch slab, then each slab of (N, g) is transposed while it is in cache.
    A (512, 3, 32, 32) batch: 3.4-3.9 ms -> 1.2-1.5 ms on two threads (benchmarks/RESULTS.md).
    """
    view = x.transpose(1, 2, 3, 0)
    if view.flags.c_contiguous:
        return view
    xp = backend.xp_of(x)
    out = xp.empty(view.shape, dtype=x.dtype)
    if not backend.transposes_through_slabs(xp) or not x.flags.c_contiguous:
        out[...] = view                                       # one copy (CuPy: one kernel)
        return out
    n, k = x.shape[0], x.size // x.shape[0]                  # x is not empty: empty views are contiguous
    g = next(size for size in range(min(64, k), 0, -1) if k % size == 0)  # g divides K
    runs = x.reshape(n, k // g, g)
    out_slabs = out.reshape(k // g, g, n)
    # Slabs per part: ~64 Ki values (in cache), and no more slabs than there are.
    per_part = max(1, min(k // g, (64 * 1024) // (n * g)))

    def copy_slabs(parts):
        scratch = xp.empty((per_part, n, g), dtype=x.dtype)  # one per thread, reused: stays in cache
        for part in parts:
            j = slice(part * per_part, min((part + 1) * per_part, k // g))
            slabs = scratch[:j.stop - j.start]
            slabs[...] = runs[:, j].transpose(1, 0, 2)        # runs of g values: (N, J, g) -> (J, N, g)
            out_slabs[j] = slabs.transpose(0, 2, 1)           # each slab (N, g) -> (g, N), from cache
    parallel.run_split(copy_slabs, -(-(k // g) // per_part), x.size, xp, uses_blas=False)
    return out


def batch_first(x):
    """(C, H, W, N) -> an (N, C, H, W) view of the same memory (no copy)."""
    return x.transpose(3, 0, 1, 2)


def pad_spatial(x, padding, value=0.0):
    """Pad the H and W axes of a batch-last (C, H, W, N) array."""
    if padding == (0, 0):
        return x
    width = ((0, 0), (padding[0], padding[0]), (padding[1], padding[1]), (0, 0))
    return backend.xp_of(x).pad(x, width, constant_values=value)


def unpad_spatial(x, padding):
    """The inverse of ``pad_spatial``: the view of the original (C, H, W, N) region."""
    return x[:, padding[0]:x.shape[1] - padding[0], padding[1]:x.shape[2] - padding[1]]


# ----------------------------------------------------------------------------- windows
def offset_pixels(kh, kw, rows, cols, stride, dilation):
    """Index of the input pixels that kernel offset (kh, kw) reads for output ``rows`` x ``cols``.

    Two strided slices: for a fixed offset, distinct output pixels read distinct input pixels,
    so one ``+=`` through this index adds every output pixel's share without collisions.
    """
    top = rows.start * stride[0] + kh * dilation[0]
    left = cols.start * stride[1] + kw * dilation[1]
    bottom = top + stride[0] * (rows.stop - rows.start - 1) + 1
    right = left + stride[1] * (cols.stop - cols.start - 1) + 1
    return slice(None), slice(top, bottom, stride[0]), slice(left, right, stride[1])


def kernel_offsets(kernel):
    """(kh, kw) in row-major order: the order in which PyTorch scans a window."""
    return [(kh, kw) for kh in range(kernel[0]) for kw in range(kernel[1])]


# ----------------------------------------------------------------------------- bands
def gather_width(x_grouped, in_rows, cols, kernel_w, stride_w, dilation_w, out):
    """Copy what output columns ``cols`` read along the width: (g, C/g, Hp, Wp, N) -> out, a
    (g, rows, C/g, KW, c, N) array. Each input row is copied KW times, not KH*KW: the KH rows
    of a window are taken later as a band of these rows (``bands``), shared by overlapping windows.

    One copy from a strided view of the input in out's shape, whose KW axis steps ``dilation_w``
    columns (the windows overlap, so the view does too): each input row is then read once from
    memory and KW times from cache, where KW separate copies read it KW times from memory
    (1.3-2x faster on LeNet's convs, benchmarks/RESULTS.md).
    """
    first = x_grouped[:, :, in_rows, cols.start * stride_w:]            # from the first column read
    last_column = (cols.stop - 1) * stride_w + (kernel_w - 1) * dilation_w
    assert first.shape[2] == out.shape[1] and last_column < x_grouped.shape[3], "the view stays inside x"
    g_step, c_step, row_step, col_step, n_step = first.strides
    windows = backend.as_strided(first, out.shape,
                                 (g_step, row_step, c_step, dilation_w * col_step, stride_w * col_step, n_step))
    out[...] = windows
    return out


def add_width_back(grad_gathered, grad_grouped, in_rows, cols, kernel_w, stride_w, dilation_w):
    """The adjoint of ``gather_width``: add (g, rows, C/g, KW, c, N) back into (g, C/g, Hp, Wp, N)."""
    for kw in range(kernel_w):
        left = cols.start * stride_w + kw * dilation_w
        right = left + stride_w * (cols.stop - cols.start - 1) + 1
        grad_grouped[:, :, in_rows, left:right:stride_w] += grad_gathered[:, :, :, kw].transpose(0, 2, 1, 3, 4)


def bands(rows_array, num_bands, band_rows, step):
    """Overlapping bands of rows as one strided view (no copy): (g, T, M, L) -> (g, bands, band_rows*M, L).

    Band b stacks rows b*step ... b*step + band_rows - 1; its (band_rows*M, L) matrix is evenly
    strided because the rows are, so one ``matmul`` multiplies every band at once.
    """
    stride_g, stride_row, stride_m, stride_l = rows_array.strides
    size_m = rows_array.shape[2]
    assert size_m == 1 or stride_row == size_m * stride_m, "rows must be stacked evenly"
    shape = (rows_array.shape[0], num_bands, band_rows * size_m, rows_array.shape[3])
    if num_bands == 1:  # one band is a plain reshape of its rows (as_strided costs ~8 us a call)
        return rows_array[:, :band_rows].reshape(shape)
    return backend.as_strided(rows_array, shape, (stride_g, step * stride_row, stride_row // size_m, stride_l))


def grouped_rows(array, groups, rows, cols):
    """(O, OH, OW, N) -> the (g, r, O/g, c*N) view of output ``rows`` x ``cols``, one matrix per row."""
    block = array.reshape(groups, array.shape[0] // groups, *array.shape[1:])[:, :, rows, cols]  # (g, O/g, r, c, N)
    _, out_per_group, num_rows, num_cols, n = block.shape
    return block.transpose(0, 2, 1, 3, 4).reshape(groups, num_rows, out_per_group, num_cols * n)  # a view: c, N merge


# ----------------------------------------------------------------------------- blocks
BAND_ROWS_WANTED = 8   # output rows per block when they fit: KH-1 of every KH+7 gathered rows are shared
def band_blocks(out_hw, values_per_row_column, band_rows, row_step, block_elements, min_row_blocks=1,
                row_multiple=1):
    """Cut the output into blocks of rows x columns whose gathered rows hold about ``block_elements``.

    Rows first: a block aims at ``BAND_ROWS_WANTED`` output rows, so that overlapping bands share
    their gathered rows; columns are cut to make that fit, then rows fill what is left (at least
    ``min_row_blocks`` row blocks), a multiple of ``row_multiple`` rows when there is room for
    one. The cut depends only on the sizes, never on the thread count.
    Returns the row slices and the column slices.
    """
    out_h, out_w = out_hw
    per_column = max(1, values_per_row_column)                           # an empty batch has 0
    rows_wanted = (min(out_h, BAND_ROWS_WANTED) - 1) * row_step + band_rows
    num_cols = min(out_w, max(1, block_elements // (rows_wanted * per_column)))
    rows_in = block_elements // (num_cols * per_column)
    num_rows = min(-(-out_h // min_row_blocks), max(1, (rows_in - band_rows) // row_step + 1))
    if num_rows < out_h:
        num_rows = max(num_rows // row_multiple * row_multiple, min(num_rows, row_multiple))
    row_blocks = [slice(top, min(top + num_rows, out_h)) for top in range(0, out_h, num_rows)]
    col_blocks = [slice(left, min(left + num_cols, out_w)) for left in range(0, out_w, num_cols)]
    return row_blocks, col_blocks
