"""2-d convolution: the math, then its fast evaluation (read ops/conv_reference.py first).

The math:
    out[n, o, i, j] = b[o] + sum_{c,kh,kw} w[o, c, kh, kw] * x[n, c, i*s + kh*d, j*s + kw*d]
ops/conv_reference.py computes exactly this as a loop over the kernel offsets (kh, kw) and
lets autograd find the backward. Gathering every window into columns (im2col) turns the same
sum into one matrix product per group, and gives the backward as two more products:
    out = W @ cols + b:   (O/g, C/g*KH*KW) @ (C/g*KH*KW, pixels*N)
    dW = dout @ cols^T,   dcols = W^T @ dout,   dx = col2im(dcols),   db = sum(dout)

The fast evaluation (layout helpers in ops/layout.py):
- Batch-last layout: the kernels work on (C, H, W, N) arrays and return an NCHW view, so
  columns are long contiguous copies and the product lands in the output layout.
- Blocks: columns are built for a block of output pixels at a time, small enough to stay in
  cache; the whole (C*KH*KW, OH*OW*N) matrix never exists (LeNet conv1 at N=512: 120 MB).
- Nothing large saved: backward rebuilds the columns from the saved input, which the
  previous op keeps alive anyway, instead of holding them between forward and backward.
"""
from __future__ import annotations

from .. import backend
from ..autograd import Function
from ..tensor import check_is_tensor
from .layout import (add_windows_back, batch_first, batch_last, im2col, output_block, output_size,
                     pad_spatial, pair, pixel_blocks, unpad_spatial, windows)


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
