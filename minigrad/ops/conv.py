"""2-d convolution (NCHW) as one matrix product over im2col windows.

Forward:  out[n, o, i, j] = b[o] + sum_{c,kh,kw} w[o, c, kh, kw] * x[n, c, i*s + kh*d, j*s + kw*d]
Gathering every window into columns (im2col) turns that sum into one matrix product per group:
    (O/g, C/g*KH*KW) @ (C/g*KH*KW, N*OH*OW).
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


def windows(x_padded, kernel, stride, dilation, out_hw):
    """Strided view (no copy) of every window: (N, C, H, W) -> (N, C, OH, OW, KH, KW)."""
    n, c = x_padded.shape[:2]
    sn, sc, sh, sw = x_padded.strides
    shape = (n, c, out_hw[0], out_hw[1], kernel[0], kernel[1])
    strides = (sn, sc, sh * stride[0], sw * stride[1], sh * dilation[0], sw * dilation[1])
    return backend.as_strided(x_padded, shape, strides)


def add_windows_back(grad_windows, padded_shape, padding, stride, dilation):
    """The adjoint of ``windows``: add each window's gradient back to the pixels it read.

    grad_windows: (N, C, OH, OW, KH, KW). One strided ``+=`` per kernel offset (KH*KW adds in
    all, each over the whole batch) instead of a loop over output pixels; offsets that read
    the same pixel accumulate because each ``+=`` runs separately.
    """
    xp = backend.xp_of(grad_windows)
    _, _, out_h, out_w, kernel_h, kernel_w = grad_windows.shape
    grad_padded = xp.zeros(padded_shape, dtype=grad_windows.dtype)
    for kh in range(kernel_h):
        for kw in range(kernel_w):
            top, left = kh * dilation[0], kw * dilation[1]
            grad_padded[:, :, top:top + stride[0] * (out_h - 1) + 1:stride[0],
                        left:left + stride[1] * (out_w - 1) + 1:stride[1]] += grad_windows[..., kh, kw]
    height, width = padded_shape[2], padded_shape[3]
    return grad_padded[:, :, padding[0]:height - padding[0], padding[1]:width - padding[1]]


def pad_spatial(x, padding, value=0.0):
    if padding == (0, 0):
        return x
    xp = backend.xp_of(x)
    width = ((0, 0), (0, 0), (padding[0], padding[0]), (padding[1], padding[1]))
    return xp.pad(x, width, constant_values=value)


class Conv2d(Function):
    def forward(self, x, w, *bias, stride, padding, dilation, groups):
        xp = backend.xp_of(x)
        n, c, h, w_in = x.shape
        out_c, c_per_group, kernel_h, kernel_w = w.shape
        out_hw = (output_size(h, kernel_h, stride[0], padding[0], dilation[0]),
                  output_size(w_in, kernel_w, stride[1], padding[1], dilation[1]))
        x_padded = pad_spatial(x, padding)
        # (N, C, OH, OW, KH, KW) -> (C, KH, KW, N, OH, OW) -> (g, C/g*KH*KW, N*OH*OW)
        cols = windows(x_padded, (kernel_h, kernel_w), stride, dilation, out_hw)
        cols = cols.transpose(1, 4, 5, 0, 2, 3).reshape(groups, c_per_group * kernel_h * kernel_w, -1)
        weight_matrix = w.reshape(groups, out_c // groups, -1)              # (g, O/g, C/g*KH*KW)
        out = xp.matmul(weight_matrix, cols)                                  # (g, O/g, N*OH*OW)
        out = out.reshape(out_c, n, *out_hw).transpose(1, 0, 2, 3)            # (N, O, OH, OW)
        if bias:
            out = out + bias[0].reshape(1, -1, 1, 1)
        self.save_for_backward(cols, weight_matrix)
        self.geometry = (x.shape, x_padded.shape, w.shape, out_hw, stride, padding, dilation, groups)
        return xp.ascontiguousarray(out)

    def backward(self, grad):
        # out = W @ cols  =>  dW = dout @ cols^T,  dcols = W^T @ dout,  dx = col2im(dcols)
        cols, weight_matrix = self.saved
        xp = backend.xp_of(grad)
        x_shape, padded_shape, w_shape, out_hw, stride, padding, dilation, groups = self.geometry
        n, c = x_shape[:2]
        _, _, kernel_h, kernel_w = w_shape
        grad_matrix = grad.transpose(1, 0, 2, 3).reshape(groups, w_shape[0] // groups, -1)  # (g, O/g, N*OH*OW)
        grad_x = grad_w = grad_b = None
        if self.needs_input_grad[0]:
            grad_cols = xp.matmul(weight_matrix.transpose(0, 2, 1), grad_matrix)  # (g, C/g*KH*KW, N*OH*OW)
            grad_windows = grad_cols.reshape(c, kernel_h, kernel_w, n, *out_hw).transpose(3, 0, 4, 5, 1, 2)
            grad_x = add_windows_back(grad_windows, padded_shape, padding, stride, dilation)
        if self.needs_input_grad[1]:
            grad_w = xp.matmul(grad_matrix, cols.transpose(0, 2, 1)).reshape(w_shape)
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            grad_b = grad.sum(axis=(0, 2, 3))  # d(out)/d(b[o]) = 1 at every position of channel o
        return grad_x, grad_w, grad_b


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlation of ``x`` (N, C, H, W) with ``weight`` (O, C/groups, KH, KW), as PyTorch."""
    stride, padding, dilation = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
    check_conv_arguments(x, weight, bias, stride, padding, dilation, groups)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Conv2d.apply(*inputs, stride=stride, padding=padding, dilation=dilation, groups=groups)


def check_conv_arguments(x, weight, bias, stride, padding, dilation, groups):
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
    for axis, name in ((2, "height"), (3, "width")):
        size = output_size(x.shape[axis], weight.shape[axis], stride[axis - 2], padding[axis - 2], dilation[axis - 2])
        if size < 1:
            raise ValueError(f"conv2d: input {name} {x.shape[axis]} (padding {padding[axis - 2]}) is too small "
                             f"for kernel {weight.shape[axis]} with dilation {dilation[axis - 2]}")
