"""2-d convolution as matrix products over im2col columns, built one cache-sized block at a time.

Forward:  out[n, o, i, j] = b[o] + sum_{c,kh,kw} w[o, c, kh, kw] * x[n, c, i*s + kh*d, j*s + kw*d]
Gathering every window into columns (im2col) turns that sum into one matrix product per group:
    (O/g, C/g*KH*KW) @ (C/g*KH*KW, pixels*N).

Three choices make it fast; each is explained where it is made:
- Batch-last layout. The kernels work on (C, H, W, N) arrays: a window's row is then one
  contiguous run of (width * N) values, so building columns and adding gradients back are
  long memory copies instead of gathers, and the product lands directly in (O, OH, OW, N)
  with no transpose. The public API stays NCHW: ops return an (N, C, H, W) *view* of their
  batch-last result (``batch_first``), so the next conv or pool gets its batch-last array
  back for free (``batch_last``), while every other op just sees an NCHW array.
- Blocks. Columns are built for a block of output pixels at a time (``pixel_blocks``), small
  enough to stay in cache between the copy that writes them and the matrix product that reads
  them; the whole (C*KH*KW, OH*OW*N) matrix never exists (LeNet conv1 at N=512: 120 MB).
- Nothing large saved. Backward rebuilds the columns from the saved input, which the
  previous op keeps alive anyway, instead of holding them between forward and backward.
"""
from __future__ import annotations

from .. import backend
from ..autograd import Function


def pair(value, argument):
    """``3`` -> ``(3, 3)``; ``(2, 3)`` stays; anything else is a clear error."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return tuple(value)
    raise TypeError(f"{argument}: expected an int or a pair of ints, got {value!r}")


def output_size(size, kernel, stride, padding, dilation):
    """Output length along one axis: floor((size + 2p - d(k-1) - 1) / s) + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


# ----------------------------------------------------------------------------- layout
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


# ----------------------------------------------------------------------------- the op
class Conv2d(Function):
    def forward(self, x, w, *bias, stride, padding, dilation, groups):
        xp = backend.xp_of(x)
        out_c, _, kernel_h, kernel_w = w.shape
        x_padded = pad_spatial(batch_last(x), padding)                        # (C, Hp, Wp, N)
        channels, padded_h, padded_w, n = x_padded.shape
        out_hw = (output_size(padded_h, kernel_h, stride[0], 0, dilation[0]),
                  output_size(padded_w, kernel_w, stride[1], 0, dilation[1]))
        view = windows(x_padded, (kernel_h, kernel_w), stride, dilation, out_hw)
        weight_matrix = w.reshape(groups, out_c // groups, -1)                # (g, O/g, C/g*KH*KW)
        bias_column = bias[0].reshape(-1, 1, 1, 1) if bias else 0
        out = xp.empty((out_c, *out_hw, n), dtype=x.dtype)                    # (O, OH, OW, N)
        elements_per_pixel = channels * kernel_h * kernel_w * n                # one pixel's columns, whole batch
        for rows, cols in pixel_blocks(out_hw, elements_per_pixel, backend.im2col_block_elements(xp)):
            block_out = xp.matmul(weight_matrix, im2col(view, rows, cols, groups))   # (g, O/g, r*c*N)
            target = out[:, rows, cols]
            xp.add(block_out.reshape(target.shape), bias_column, out=target)
        self.save_for_backward(x_padded, w)
        self.geometry = (out_hw, stride, padding, dilation, groups)
        return batch_first(out)

    def backward(self, grad):
        # out = W @ cols + b  =>  dW = dout @ cols^T,  dcols = W^T @ dout,  dx = col2im(dcols),  db = sum(dout)
        x_padded, w = self.saved
        grad_out = batch_last(grad)                                           # (O, OH, OW, N)
        grad_x = grad_w = grad_b = None
        if self.needs_input_grad[0]:  # skipped for the first layer: its input is data
            grad_padded = self.input_gradient(grad_out, w, x_padded.shape)
            grad_x = batch_first(unpad_spatial(grad_padded, self.geometry[2]))
        if self.needs_input_grad[1]:
            grad_w = self.weight_gradient(grad_out, x_padded, w.shape)
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            grad_b = grad_out.reshape(grad_out.shape[0], -1).sum(axis=1)  # d(out)/d(b[o]) = 1 wherever o is
        return grad_x, grad_w, grad_b

    def weight_gradient(self, grad_out, x_padded, w_shape):
        """dW = sum over pixel blocks of cols_block @ dout_block^T, rebuilding cols block by block."""
        xp = backend.xp_of(grad_out)
        out_hw, stride, _, dilation, groups = self.geometry
        view = windows(x_padded, w_shape[2:], stride, dilation, out_hw)
        # Accumulated as (C/g*KH*KW, O/g), cols @ dout^T: OpenBLAS runs this orientation of the
        # long, thin product faster than dout @ cols^T.
        rows_per_group = w_shape[1] * w_shape[2] * w_shape[3]                  # C/g*KH*KW
        grad_w_t = xp.zeros((groups, rows_per_group, w_shape[0] // groups), dtype=grad_out.dtype)
        elements_per_pixel = x_padded.shape[0] * w_shape[2] * w_shape[3] * x_padded.shape[3]
        for rows, cols in pixel_blocks(out_hw, elements_per_pixel, backend.im2col_block_elements(xp)):
            grad_block = output_block(grad_out, rows, cols, groups)                       # (g, O/g, r*c*N)
            grad_w_t += xp.matmul(im2col(view, rows, cols, groups), grad_block.transpose(0, 2, 1))
        return grad_w_t.transpose(0, 2, 1).reshape(w_shape)

    def input_gradient(self, grad_out, w, padded_shape):
        """dx (padded, batch-last) = col2im(W^T @ dout), one pixel block at a time."""
        xp = backend.xp_of(grad_out)
        out_hw, stride, padding, dilation, groups = self.geometry
        out_c, _, kernel_h, kernel_w = w.shape
        channels, n = padded_shape[0], padded_shape[3]
        weight_matrix_t = w.reshape(groups, out_c // groups, -1).transpose(0, 2, 1)   # (g, C/g*KH*KW, O/g)
        grad_padded = xp.zeros(padded_shape, dtype=grad_out.dtype)
        # Bigger blocks than im2col's: here the cost is the KH*KW adds per block, not cache misses.
        block_elements = 8 * backend.im2col_block_elements(xp)
        for rows, cols in pixel_blocks(out_hw, channels * kernel_h * kernel_w * n, block_elements):
            grad_block = output_block(grad_out, rows, cols, groups)                     # (g, O/g, r*c*N)
            grad_cols = xp.matmul(weight_matrix_t, grad_block)                        # (g, C/g*KH*KW, r*c*N)
            grad_cols = grad_cols.reshape(channels, kernel_h, kernel_w, rows.stop - rows.start,
                                          cols.stop - cols.start, n)
            add_windows_back(grad_cols, grad_padded, rows, cols, stride, dilation)
        return grad_padded


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlation of ``x`` (N, C, H, W) with ``weight`` (O, C/groups, KH, KW), as PyTorch."""
    stride, padding, dilation = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
    check_conv_arguments(x, weight, bias, stride, padding, dilation, groups)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Conv2d.apply(*inputs, stride=stride, padding=padding, dilation=dilation, groups=groups)


def check_conv_arguments(x, weight, bias, stride, padding, dilation, groups):
    from ..tensor import check_is_tensor
    check_is_tensor(x, "input")
    check_is_tensor(weight, "weight")
    if bias is not None:
        check_is_tensor(bias, "bias")
    if x.ndim != 4:
        raise ValueError(f"conv2d: input must be 4-d (N, C, H, W), got shape {x.shape}")
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4-d (O, C/groups, KH, KW), got shape {weight.shape}")
    if any(s <= 0 for s in stride):
        raise ValueError(f"conv2d: stride must be positive, got {stride}")
    if any(p < 0 for p in padding):
        raise ValueError(f"conv2d: padding must be non-negative, got {padding}")
    if any(d <= 0 for d in dilation):
        raise ValueError(f"conv2d: dilation must be positive, got {dilation}")
    if not isinstance(groups, int) or groups <= 0 or x.shape[1] % groups or weight.shape[0] % groups:
        raise ValueError(f"conv2d: groups must be a positive int dividing in_channels {x.shape[1]} and "
                         f"out_channels {weight.shape[0]}, got {groups}")
    if x.shape[1] != weight.shape[1] * groups:
        raise ValueError(f"conv2d: input channels: expected {weight.shape[1] * groups} "
                         f"(weight {weight.shape}, groups={groups}), got {x.shape[1]} (input {x.shape})")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"conv2d: bias: expected shape ({weight.shape[0]},), got {bias.shape}")
    if x.dtype != weight.dtype:
        raise TypeError(f"conv2d: input dtype {x.dtype} differs from weight dtype {weight.dtype}")
    if bias is not None and bias.dtype != weight.dtype:
        raise TypeError(f"conv2d: bias dtype {bias.dtype} differs from weight dtype {weight.dtype}")
    for axis, name in ((2, "height"), (3, "width")):
        size = output_size(x.shape[axis], weight.shape[axis], stride[axis - 2], padding[axis - 2], dilation[axis - 2])
        if size < 1:
            raise ValueError(f"conv2d: input {name} {x.shape[axis]} (padding {padding[axis - 2]}) is too small "
                             f"for kernel {weight.shape[axis]} with dilation {dilation[axis - 2]}")
