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
- Windows: ``windows`` is a strided view of every window; ``offset_pixels`` is the strided
  slice of pixels that one kernel offset reads for a block of output pixels.
- Blocks: ``pixel_blocks`` cuts the output pixels into blocks small enough for their columns
  to stay in cache between the copy that writes them and the matrix product that reads them.
"""
from __future__ import annotations

import numbers

from .. import backend


# ----------------------------------------------------------------------------- geometry
def is_integer(value):
    """A Python or NumPy integer (``np.int64(3)`` too), but not a bool."""
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
IMAGES_PER_TRANSPOSE = 8


def batch_last(x):
    """(N, C, H, W) -> contiguous (C, H, W, N); no copy when ``x`` came from ``batch_first``."""
    view = x.transpose(1, 2, 3, 0)
    if view.flags.c_contiguous:
        return view
    out = backend.xp_of(x).empty(view.shape, dtype=x.dtype)
    # 8 images at a time: each cache line of ``out`` is filled before it is evicted
    # (4x faster than one big transposing copy of a (512, 3, 32, 32) batch).
    for start in range(0, x.shape[0], IMAGES_PER_TRANSPOSE):
        out[..., start:start + IMAGES_PER_TRANSPOSE] = view[..., start:start + IMAGES_PER_TRANSPOSE]
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
def windows(x_padded, kernel, stride, dilation, out_hw):
    """Strided view (no copy) of every window: (C, Hp, Wp, N) -> (C, KH, KW, OH, OW, N)."""
    sc, sh, sw, sn = x_padded.strides
    shape = (x_padded.shape[0], kernel[0], kernel[1], out_hw[0], out_hw[1], x_padded.shape[3])
    strides = (sc, sh * dilation[0], sw * dilation[1], sh * stride[0], sw * stride[1], sn)
    return backend.as_strided(x_padded, shape, strides)


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


# ----------------------------------------------------------------------------- blocks
def pixel_blocks(out_hw, elements_per_pixel, block_elements):
    """Split the output pixels into (rows, cols) blocks of about ``block_elements`` values.

    Whole rows when a row fits; otherwise a run of columns within one row.
    """
    out_h, out_w = out_hw
    pixels = max(1, block_elements // max(1, elements_per_pixel))  # an empty batch has 0 per pixel
    num_rows, num_cols = (pixels // out_w, out_w) if pixels >= out_w else (1, pixels)
    for top in range(0, out_h, num_rows):
        for left in range(0, out_w, num_cols):
            yield slice(top, min(top + num_rows, out_h)), slice(left, min(left + num_cols, out_w))


def im2col(window_view, rows, cols, groups):
    """Copy one block of windows into columns: -> (g, C/g*KH*KW, rows*cols*N)."""
    block = window_view[:, :, :, rows, cols]                         # (C, KH, KW, r, c, N) view
    channels, kernel_h, kernel_w, num_rows, num_cols, n = block.shape
    return block.reshape(groups, channels // groups * kernel_h * kernel_w, num_rows * num_cols * n)


def output_block(grad_out, rows, cols, groups):
    """One block of the output's gradient as matrices: (O, OH, OW, N) -> (g, O/g, rows*cols*N)."""
    block = grad_out[:, rows, cols]
    return block.reshape(groups, block.shape[0] // groups, block[0].size)


def add_windows_back(grad_cols, grad_padded, rows, cols, stride, dilation):
    """The adjoint of ``im2col``: add each column's gradient to the pixel it was read from.

    grad_cols: (C, KH, KW, r, c, N). One strided ``+=`` per kernel offset (KH*KW in all, each
    over the whole batch; not ``add.at``); offsets that read the same pixel accumulate
    because each ``+=`` runs on its own.
    """
    for kh in range(grad_cols.shape[1]):
        for kw in range(grad_cols.shape[2]):
            grad_padded[offset_pixels(kh, kw, rows, cols, stride, dilation)] += grad_cols[:, kh, kw]
