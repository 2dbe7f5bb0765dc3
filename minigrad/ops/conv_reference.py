"""Convolution and pooling the obvious way: read this before ops/conv.py and ops/pool.py.

Every output pixel (i, j) looks at a window of the (padded) input. Fix one kernel offset
(kh, kw): the input pixel that *every* output pixel reads at that offset is a strided slice,
    x_padded[:, :, kh*d : ... : s, kw*d : ... : s]          # (N, C, OH, OW)
so each op below is a short loop over the KH*KW offsets, each step one whole-tensor operation:
    conv2d:      out = b + sum over offsets of (the slice, weighted by w[:, :, kh, kw])
    max_pool2d:  out = the running max over the offsets' slices (PyTorch's scan order)
    avg_pool2d:  out = (sum over offsets of the slices) / (KH*KW)
They are built only from minigrad's own differentiable ops (slicing, pad, *, sum, where),
so autograd derives their backward: there is no backward to read here, and none to get wrong.

They are slow and memory-hungry (conv2d materialises an (N, g, O/g, C/g, OH, OW) product per
offset) and check no arguments. ops/conv.py and ops/pool.py compute the same values with
fast kernels; the tests check those against this module and against PyTorch.

Read next: ``ops/conv.py`` and ``ops/pool.py`` (the same math, evaluated fast).
"""
from __future__ import annotations

from .. import backend
from .elementwise import where
from .layout import kernel_offsets, output_size, pair
from .shape import pad


def offset_slice(x_padded, kh, kw, out_hw, stride, dilation):
    """The (N, C, OH, OW) slice of input pixels that kernel offset (kh, kw) reads."""
    top, left = kh * dilation[0], kw * dilation[1]
    bottom = top + stride[0] * (out_hw[0] - 1) + 1
    right = left + stride[1] * (out_hw[1] - 1) + 1
    return x_padded[:, :, top:bottom:stride[0], left:right:stride[1]]


def pad_spatial(x, padding, value=0.0):
    """Pad the H and W axes of an (N, C, H, W) tensor (differentiable: minigrad's ``pad``)."""
    return pad(x, ((0, 0), (0, 0), (padding[0], padding[0]), (padding[1], padding[1])), value)


def spatial_output(x, kernel, stride, padding, dilation):
    return (output_size(x.shape[2], kernel[0], stride[0], padding[0], dilation[0]),
            output_size(x.shape[3], kernel[1], stride[1], padding[1], dilation[1]))


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """out[n, o, i, j] = b[o] + sum_{c,kh,kw} w[o, c, kh, kw] * x_padded[n, c, i*s + kh*d, j*s + kw*d]."""
    stride, padding, dilation = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
    batch, channels = x.shape[:2]
    out_channels, _, kernel_h, kernel_w = weight.shape
    out_hw = spatial_output(x, (kernel_h, kernel_w), stride, padding, dilation)
    x_padded = pad_spatial(x, padding)
    # Group g's outputs read only group g's input channels: split both channel axes by group.
    weight = weight.reshape(1, groups, out_channels // groups, channels // groups, kernel_h, kernel_w)
    out = 0
    for kh, kw in kernel_offsets((kernel_h, kernel_w)):
        pixels = offset_slice(x_padded, kh, kw, out_hw, stride, dilation)     # (N, C, OH, OW)
        pixels = pixels.reshape(batch, groups, 1, channels // groups, *out_hw)
        weight_at_offset = weight[:, :, :, :, kh:kh + 1, kw:kw + 1]            # (1, g, O/g, C/g, 1, 1)
        out = out + (weight_at_offset * pixels).sum(axis=3)                  # (N, g, O/g, OH, OW)
    out = out.reshape(batch, out_channels, *out_hw)
    return out if bias is None else out + bias.reshape(1, out_channels, 1, 1)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """out[n, c, i, j] = max over the window; the gradient goes to the pixel PyTorch's scan keeps."""
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    padding = pair(padding, "padding")
    out_hw = spatial_output(x, kernel, stride, padding, (1, 1))
    x_padded = pad_spatial(x, padding, value=float("-inf"))                  # padding never wins
    on_image = backend.xp_of(x.array).zeros(x_padded.shape, dtype=bool)     # True on the image, False on the padding
    on_image[:, :, padding[0]:padding[0] + x.shape[2], padding[1]:padding[1] + x.shape[3]] = True
    out = held_by_padding = None
    for kh, kw in kernel_offsets(kernel):
        pixels = offset_slice(x_padded, kh, kw, out_hw, stride, (1, 1))
        image_pixel = offset_slice(on_image, kh, kw, out_hw, stride, (1, 1))
        if out is None:
            out, held_by_padding = pixels, ~image_pixel
            continue
        # PyTorch's scan over the window's image pixels: a pixel takes over if it is larger (so
        # ties keep the first maximum) or if it is NaN (so a window with NaNs keeps its last NaN).
        # Padding never takes over, and an image pixel takes over from it even on a tie (-inf).
        takes_over = image_pixel & ((pixels > out).array | (pixels != pixels).array | held_by_padding)
        held_by_padding = held_by_padding & ~takes_over
        out = where(takes_over, pixels, out)
    return out


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """out[n, c, i, j] = mean over the window; padded zeros count (PyTorch's count_include_pad)."""
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else pair(stride, "stride")
    padding = pair(padding, "padding")
    out_hw = spatial_output(x, kernel, stride, padding, (1, 1))
    x_padded = pad_spatial(x, padding)
    total = 0
    for kh, kw in kernel_offsets(kernel):
        total = total + offset_slice(x_padded, kh, kw, out_hw, stride, (1, 1))
    return total / (kernel[0] * kernel[1])

