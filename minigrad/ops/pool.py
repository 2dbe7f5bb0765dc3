"""2-d max and average pooling (NCHW) over strided windows, matching PyTorch's defaults.

Both read the windows of ``conv.windows`` (a view, no copy) and send gradients back with
``conv.add_windows_back`` (one strided add per kernel offset).
"""
from __future__ import annotations

from .. import backend
from ..autograd import Function
from .conv import add_windows_back, output_size, pad_spatial, pair, windows


class MaxPool2d(Function):
    def forward(self, x, kernel, stride, padding):
        xp = backend.xp_of(x)
        out_hw = tuple(output_size(x.shape[2 + i], kernel[i], stride[i], padding[i], 1) for i in range(2))
        x_padded = pad_spatial(x, padding, value=-xp.inf)  # padding never wins the max
        window = windows(x_padded, kernel, stride, (1, 1), out_hw)
        flat = window.reshape(*window.shape[:4], -1)                 # (N, C, OH, OW, KH*KW)
        # argmax returns the first maximum in row-major window order: PyTorch's tie rule.
        self.winner = flat.argmax(axis=-1)
        self.geometry = (x_padded.shape, kernel, stride, padding)
        return xp.take_along_axis(flat, self.winner[..., None], axis=-1)[..., 0]

    def backward(self, grad):  # d(max)/dx = 1 at the window's (first) arg-max, 0 elsewhere
        xp = backend.xp_of(grad)
        padded_shape, kernel, stride, padding = self.geometry
        offsets = xp.arange(kernel[0] * kernel[1]).reshape(kernel)    # offset id of each (kh, kw)
        grad_windows = (self.winner[..., None, None] == offsets) * grad[..., None, None]
        return add_windows_back(grad_windows.astype(grad.dtype, copy=False), padded_shape, padding, stride, (1, 1))


class AvgPool2d(Function):
    def forward(self, x, kernel, stride, padding):
        out_hw = tuple(output_size(x.shape[2 + i], kernel[i], stride[i], padding[i], 1) for i in range(2))
        x_padded = pad_spatial(x, padding)
        # Padded zeros count in the divisor (PyTorch's default count_include_pad=True).
        self.geometry = (x_padded.shape, kernel, stride, padding)
        return windows(x_padded, kernel, stride, (1, 1), out_hw).mean(axis=(4, 5))

    def backward(self, grad):  # d(mean)/dx = 1/(KH*KW) for every pixel of the window
        xp = backend.xp_of(grad)
        padded_shape, kernel, stride, padding = self.geometry
        share = grad / (kernel[0] * kernel[1])
        grad_windows = xp.broadcast_to(share[..., None, None], share.shape + kernel)
        return add_windows_back(grad_windows, padded_shape, padding, stride, (1, 1))


def _pool_arguments(name, x, kernel_size, stride, padding):
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
    kernel, stride, padding = _pool_arguments("max_pool2d", x, kernel_size, stride, padding)
    return MaxPool2d.apply(x, kernel=kernel, stride=stride, padding=padding)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    kernel, stride, padding = _pool_arguments("avg_pool2d", x, kernel_size, stride, padding)
    return AvgPool2d.apply(x, kernel=kernel, stride=stride, padding=padding)
