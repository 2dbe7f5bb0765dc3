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
  copies run over long contiguous rows and the product lands in the output layout.
- Gather along the width only: each input row is copied KW times (not KH*KW) into rows of
  (C*KW, OW*N) values; the columns of output row i are then the KH gathered rows i*s ... i*s+KH-1,
  one evenly strided band, and one ``matmul`` over a strided view of the overlapping bands
  multiplies a whole block of output rows. Blocks are sized to stay in cache.
- Few output channels (LeNet's first conv has 6): a product with 6 rows runs at a third of
  BLAS's speed, so two output rows share one product. Their weights, shifted by the stride
  along a band one row longer, make a matrix of 2*O/g rows (a sixth of it zeros for 5x5), and
  the product runs about 1.6x faster (``rows_per_product``; on NumPy only, see
  ``backend.stacks_conv_rows``; RESULTS.md has the measurement). One known difference: an inf
  in the input also turns the neighbouring output row into NaN (0 * inf in the zeros), where
  PyTorch's stays finite; dilated kernels have always had the same property.
- Input gradient by the same trick: the rows of dout that input row h fed form one band of
  dout (with zero rows between them when the stride is > 1), so dx row h is one product,
  W_flipped @ band, cut to the rows that exist at the borders; then the adjoint of the width
  gather (KW strided adds). Threads split the input rows, so their writes never meet.
- Two threads (minigrad/parallel.py): blocks of rows are split between the cores, the writes
  of the parts never overlap, and the weight gradient sums per-block partials in block order,
  so results do not depend on the thread count. Backward deals out the blocks of both
  gradients in one split (one hand-off; RESULTS.md has the measurement).
- Nothing large saved: backward gathers again from the saved input, which the previous op
  keeps alive anyway, instead of holding columns between forward and backward.

Read next: ``ops/pool.py``, then ``ops/layout.py`` (the memory layout both rely on).
"""
from __future__ import annotations

from collections import namedtuple
from functools import cached_property

from .. import backend, parallel
from ..autograd import Function
from ..tensor import check_is_tensor
from .layout import (add_width_back, band_blocks, bands, batch_first, batch_last, gather_width, grouped_rows,
                     output_size, pad_spatial, pair, unpad_spatial)


# Stack output rows in one product when a group has at most this many output channels
# (LeNet's first conv, 6: 1.6x faster products; its second, 16: no gain measured).
STACK_ROWS_UP_TO_CHANNELS = 8
# The input gradient is cut into at least this many blocks of whole rows (threads take whole rows).
INPUT_ROW_BLOCKS = 2
# A gradient as blocks: how many, the work on block i (blocks write disjoint memory or their own
# partial sums), and the gradient once every block is done.
BlockWork = namedtuple("BlockWork", ["count", "work", "result"])


class ConvShape:
    """The sizes of one conv2d call (batch-last padded input, weight) and the moves they allow."""

    def __init__(self, padded_shape, weight_shape, stride, dilation, groups, xp):
        self.xp = xp
        self.channels, self.padded_h, self.padded_w, self.batch = padded_shape
        self.out_channels, self.group_channels, self.kernel_h, self.kernel_w = weight_shape
        self.stride, self.dilation, self.groups = stride, dilation, groups
        # Height dilation as a kernel with zero rows between its rows: every window is then a band
        # of ``reach`` consecutive gathered rows (the zeros cost products only when dilation > 1).
        self.reach = dilation[0] * (self.kernel_h - 1) + 1
        self.out_hw = (output_size(self.padded_h, self.kernel_h, stride[0], 0, dilation[0]),
                       output_size(self.padded_w, self.kernel_w, stride[1], 0, dilation[1]))
        # Output rows per product: at stride 1, R rows' bands are one band of reach + R - 1 rows.
        # Worth it only for few output channels and when the longer band is mostly the R rows' own.
        few_channels = self.out_channels // groups <= STACK_ROWS_UP_TO_CHANNELS
        stack = backend.stacks_conv_rows(xp) and few_channels and stride[0] == 1 and self.reach >= 3
        self.rows_per_product = 2 if stack else 1
        self.stacked_rows = self.rows_per_product - 1 + self.reach             # stride 1 when stacked

    def multiply_adds(self):
        """Multiply-adds of the forward product (and of each gradient's): what decides threads."""
        out_values = self.out_channels * self.out_hw[0] * self.out_hw[1] * self.batch
        return out_values * self.group_channels * self.kernel_h * self.kernel_w

    @cached_property
    def output_blocks(self):
        """(rows, cols) blocks of the output, each gathering about a cache's worth of input; when
        the conv is big enough for threads, at least ``backend.min_conv_blocks`` if there are the
        rows for them (on NumPy two, so that two threads share a conv that fits one block). Like
        the rest of the cut, this depends only on the sizes, never on the thread count. Made once:
        forward and the weight gradient walk the same blocks."""
        def cut(min_row_blocks):
            return band_blocks(self.out_hw, self.channels * self.kernel_w * self.batch, self.reach, self.stride[0],
                               backend.conv_block_elements(self.xp), min_row_blocks=min_row_blocks,
                               row_multiple=self.rows_per_product)
        row_blocks, col_blocks = cut(1)
        fewest = backend.min_conv_blocks(self.xp)
        if len(row_blocks) * len(col_blocks) < fewest and self.multiply_adds() >= parallel.PARALLEL_MIN_PRODUCT:
            row_blocks, col_blocks = cut(fewest)
        return [(rows, cols) for rows in row_blocks for cols in col_blocks]

    def grouped(self, x_padded):
        """(C, Hp, Wp, N) -> (g, C/g, Hp, Wp, N), a view."""
        return x_padded.reshape(self.groups, self.group_channels, *x_padded.shape[1:])

    def gather(self, x_grouped, rows, cols):
        """Gathered input rows for output ``rows`` x ``cols``: (g, rows_in, C/g*KW, c*N)."""
        in_rows = slice(rows.start * self.stride[0], (rows.stop - 1) * self.stride[0] + self.reach)
        num_in, num_cols = in_rows.stop - in_rows.start, cols.stop - cols.start
        out = backend.xp_of(x_grouped).empty((self.groups, num_in, self.group_channels, self.kernel_w, num_cols,
                                              self.batch), dtype=x_grouped.dtype)     # fully written: no zero-fill
        gather_width(x_grouped, in_rows, cols, self.kernel_w, self.stride[1], self.dilation[1], out)
        return out.reshape(self.groups, num_in, self.group_channels * self.kernel_w, num_cols * self.batch)

    def band_runs(self, rows, last_dout_row):
        """Runs of input ``rows`` whose bands keep the same rows m_start ... m_stop-1 once cut to
        dout_rows' rows 0 ... last_dout_row: (first, stop, (m_start, m_stop)); the middle rows are one run."""
        runs = []
        for h in range(rows.start, rows.stop):
            band = (max(0, self.reach - 1 - h), min(self.reach, last_dout_row + self.reach - h))
            if runs and runs[-1][2] == band:
                runs[-1][1] = h + 1
            else:
                runs.append([h, h + 1, band])
        return runs

    def dilated_weight(self, w):
        """(O, C/g, KH, KW) -> (g, O/g, C/g, reach, KW), zero rows between the kernel's rows."""
        w = w.reshape(self.groups, self.out_channels // self.groups, *w.shape[1:])
        if self.dilation[0] == 1:
            return w
        dilated = backend.xp_of(w).zeros((*w.shape[:3], self.reach, self.kernel_w), dtype=w.dtype)
        dilated[:, :, :, ::self.dilation[0]] = w
        return dilated

    def band_weights(self, w):
        """W as one matrix per group whose columns follow a band's rows: (g, 1, R*O/g, stacked_rows*C/g*KW).
        With R stacked rows (stride 1), row block r holds W shifted by r band rows and zeros
        elsewhere; its first O/g rows and reach*C/g*KW columns are the plain band weights."""
        dilated = self.dilated_weight(w).transpose(0, 1, 3, 2, 4)              # (g, O/g, reach, C/g, KW)
        rows = self.rows_per_product
        if rows == 1:
            return dilated.reshape(self.groups, 1, dilated.shape[1], -1)
        stacked = backend.xp_of(w).zeros((self.groups, rows, dilated.shape[1], self.stacked_rows,
                                          *dilated.shape[3:]), dtype=w.dtype)
        for r in range(rows):
            stacked[:, r, :, r:r + self.reach] = dilated
        return stacked.reshape(self.groups, 1, rows * dilated.shape[1], -1)

    def stacked_part(self, num_rows):
        """How many of a block's ``num_rows`` output rows the stacked products cover (0 unstacked)."""
        rows = self.rows_per_product
        return num_rows // rows * rows if rows > 1 else 0

    def plain_weights(self, weights):
        """The one-row band weights inside ``band_weights``' result: (g, 1, O/g, reach*C/g*KW)."""
        return weights[:, :, :self.out_channels // self.groups, :self.reach * self.group_channels * self.kernel_w]

    def multiply_bands(self, weights, gathered, target, bias_column):
        """target = weights @ band + bias for each output row of a block, R rows per product.

        gathered: (g, rows_in, C/g*KW, c*N); target: the (g, r, O/g, c*N) view of out. A stacked
        product lands as (R, O/g) rows, copied into target with the bias added on the way; the
        last r mod R rows (all of them when R = 1) get the plain product.
        """
        xp, rows, stride = backend.xp_of(target), self.rows_per_product, self.stride[0]
        num_rows, out_per_group, width = target.shape[1:]
        stacked = self.stacked_part(num_rows)
        if stacked:                                                             # stride 1: bands step by R rows
            product = backend.matmul(weights, bands(gathered, stacked // rows, self.stacked_rows, rows))
            product = product.reshape(self.groups, stacked // rows, rows, out_per_group, width)
            split = target[:, :stacked].reshape(product.shape)                   # a view of out
            if bias_column is None:
                split[...] = product
            else:
                xp.add(product, bias_column[:, None], out=split)
        if stacked < num_rows:
            left = target[:, stacked:]
            backend.matmul(self.plain_weights(weights),
                           bands(gathered[:, stacked * stride:], num_rows - stacked, self.reach, stride), out=left)
            if bias_column is not None:
                left += bias_column                                              # while the block is in cache

    def band_gradient(self, gathered, grad_rows):
        """sum over a block's output rows of band @ dout^T, R rows per product: (g, reach*C/g*KW, O/g).

        A stacked product pairs the stacked band with R rows of dout; row block r's gradient is
        the part of it where row r's weights sit (shifted by r band rows), summed over r.
        """
        rows, stride = self.rows_per_product, self.stride[0]
        num_rows, out_per_group = grad_rows.shape[1], grad_rows.shape[2]
        band_row = self.group_channels * self.kernel_w                       # values per gathered row
        stacked = self.stacked_part(num_rows)
        total = None
        # A stacked product has few rows of dout (R*O/g): dout @ bands^T runs faster than
        # bands @ dout^T (LeNet's conv1, batch 128: 45 vs 29 GF/s); the plain product, with more
        # channels, runs faster the other way round (conv2: 47 vs 43 GF/s).
        if stacked:                                                             # stride 1: bands step by R rows
            dout = grad_rows[:, :stacked].reshape(self.groups, stacked // rows, rows * out_per_group, -1)  # a copy
            band_matrices = bands(gathered, stacked // rows, self.stacked_rows, rows)  # (g, b, stacked_rows*M, c*N)
            product = backend.matmul(dout, band_matrices.transpose(0, 1, 3, 2)).sum(axis=1)  # (g, R*O/g, band)
            total = sum(product[:, r * out_per_group:(r + 1) * out_per_group, r * band_row:(r + self.reach) * band_row]
                        for r in range(rows)).transpose(0, 2, 1)
        if stacked < num_rows:
            plain = backend.matmul(bands(gathered[:, stacked * stride:], num_rows - stacked, self.reach, stride),
                                   grad_rows[:, stacked:].transpose(0, 1, 3, 2)).sum(axis=1)
            total = plain if total is None else total + plain
        return total

    def weight_from_bands(self, grad_band_weights):
        """The adjoint of ``plain_weights(band_weights(w))``: (g, reach*C/g*KW, O/g) -> (O, C/g, KH, KW)."""
        grad = grad_band_weights.reshape(self.groups, self.reach, self.group_channels, self.kernel_w, -1)
        grad = grad[:, ::self.dilation[0]].transpose(0, 4, 2, 1, 3)                    # (g, O/g, C/g, KH, KW)
        return grad.reshape(self.out_channels, self.group_channels, self.kernel_h, self.kernel_w)


class Conv2d(Function):
    def forward(self, x, w, *bias, stride, padding, dilation, groups):
        xp = backend.xp_of(x)
        x_padded = pad_spatial(batch_last(x), padding)                          # (C, Hp, Wp, N)
        shape = ConvShape(x_padded.shape, w.shape, stride, dilation, groups, xp)
        x_grouped = shape.grouped(x_padded)                                     # (g, C/g, Hp, Wp, N)
        weights = shape.band_weights(w)                                   # (g, 1, R*O/g, stacked_rows*C/g*KW)
        bias_column = bias[0].reshape(groups, 1, -1, 1) if bias else None
        out = xp.empty((w.shape[0], *shape.out_hw, shape.batch), dtype=x.dtype)  # (O, OH, OW, N): all written
        blocks = shape.output_blocks

        def forward_blocks(part):
            for rows, cols in (blocks[i] for i in part):
                gathered = shape.gather(x_grouped, rows, cols)
                target = grouped_rows(out, groups, rows, cols)                    # (g, r, O/g, c*N) view of out
                shape.multiply_bands(weights, gathered, target, bias_column)
        parallel.run_products(forward_blocks, len(blocks), shape.multiply_adds(), xp)
        self.save_for_backward(x_padded, w)
        self.shape, self.padding = shape, padding
        return batch_first(out)

    def backward(self, grad):
        # out = W @ cols + b  =>  dW = dout @ cols^T,  dcols = W^T @ dout,  dx = col2im(dcols),  db = sum(dout)
        x_padded, w = self.saved
        grad_out = batch_last(grad)                                             # (O, OH, OW, N)
        needs_x, needs_w = self.needs_input_grad[:2]
        needs_b = len(self.needs_input_grad) > 2 and self.needs_input_grad[2]
        grad_x = grad_w = grad_b = None
        input_grad = self.input_gradient(grad_out, w) if needs_x else None  # None for the first layer: data
        weight_grad = self.weight_gradient(grad_out, x_padded, needs_b) if needs_w else None
        # One split for both gradients: their blocks are dealt out to the threads together, so
        # the threads meet once, not after each gradient.
        gradients = [gradient for gradient in (input_grad, weight_grad) if gradient is not None]
        blocks = [(gradient.work, i) for gradient in gradients for i in range(gradient.count)]

        def gradient_blocks(part):
            for work, i in (blocks[k] for k in part):
                work(i)
        parallel.run_products(gradient_blocks, len(blocks), len(gradients) * self.shape.multiply_adds(),
                              backend.xp_of(grad_out))
        if input_grad is not None:
            grad_x = batch_first(unpad_spatial(input_grad.result(), self.padding))
        if weight_grad is not None:
            grad_w, grad_b = weight_grad.result()
        if needs_b and grad_b is None:
            grad_b = grad_out.reshape(grad_out.shape[0], -1).sum(axis=1)  # d(out)/d(b[o]) = 1 wherever o is
        return grad_x, grad_w, grad_b

    def weight_gradient(self, grad_out, x_padded, with_bias):
        """dW = sum over blocks of rows of bands @ dout^T, gathering the bands again block by block;
        with ``with_bias`` also db = sum(dout), block by block while each block is in cache.

        Returns its ``BlockWork``: backward hands the blocks to the threads; the result is (dW, db)."""
        xp, shape = backend.xp_of(grad_out), self.shape
        x_grouped = shape.grouped(x_padded)
        blocks = shape.output_blocks
        out_per_group = shape.out_channels // shape.groups
        band_size = shape.reach * shape.group_channels * shape.kernel_w
        # Every block writes its own partial sums: no zero-fill, no two threads on one sum.
        partials = xp.empty((len(blocks), shape.groups, band_size, out_per_group), dtype=grad_out.dtype)
        bias_partials = xp.empty((len(blocks), shape.groups, out_per_group), dtype=grad_out.dtype)

        def weight_block(i):
            rows, cols = blocks[i]
            gathered = shape.gather(x_grouped, rows, cols)
            grad_rows = grouped_rows(grad_out, shape.groups, rows, cols)                      # (g, r, O/g, c*N)
            partials[i] = shape.band_gradient(gathered, grad_rows)                            # (g, K, O/g)
            if with_bias:
                grad_rows.sum(axis=(1, 3), out=bias_partials[i])

        def result():
            # Summed in block order, never in thread order: the same bits with any number of threads.
            grad_b = bias_partials.sum(axis=0).reshape(-1) if with_bias else None
            return shape.weight_from_bands(partials.sum(axis=0)), grad_b
        return BlockWork(len(blocks), weight_block, result)

    def input_gradient(self, grad_out, w):
        """dx (padded, batch-last): row h = sum_m W_flipped[m] @ dout_rows[h + m - (reach-1)], then the
        width adjoint.

        Input row h fed output row i through kernel row reach-1-m where i*s = h + m - (reach-1).
        ``dout_rows`` holds dout's row i at row i*s (zero rows between when s > 1), so those rows
        are one band of it and a block of input rows is one product. Bands are cut to the rows
        that exist, so border rows multiply no zeros.

        Returns its ``BlockWork``, as ``weight_gradient``; the result is dx.
        """
        xp, shape = backend.xp_of(grad_out), self.shape
        groups, reach, stride = shape.groups, shape.reach, shape.stride
        out_h, out_w = shape.out_hw
        out_per_group = shape.out_channels // groups
        dout_rows = (xp.zeros if stride[0] > 1 else xp.empty)(                  # (g, (OH-1)*s+1, O/g, OW, N)
            (groups, (out_h - 1) * stride[0] + 1, out_per_group, out_w, shape.batch), dtype=grad_out.dtype)
        by_group = grad_out.reshape(groups, out_per_group, *grad_out.shape[1:])                  # (g, O/g, OH, OW, N)
        dout_rows[:, ::stride[0]] = by_group.transpose(0, 2, 1, 3, 4)
        flipped = shape.dilated_weight(w)[:, :, :, ::-1].transpose(0, 2, 4, 3, 1)       # (g, C/g, KW, reach, O/g)
        flipped = flipped.reshape(groups, 1, shape.group_channels * shape.kernel_w, reach * out_per_group)
        grad_padded = xp.empty((shape.channels, shape.padded_h, shape.padded_w, shape.batch), dtype=grad_out.dtype)
        grad_grouped = shape.grouped(grad_padded)
        top = self.padding[0]  # padding rows get no gradient: only rows top ... Hp-top-1 are computed
        # Whole rows per thread (their width adds overlap between column blocks).
        row_blocks, col_blocks = band_blocks((shape.padded_h - 2 * top, out_w),
                                             (shape.channels * shape.kernel_w + shape.out_channels) * shape.batch,
                                             reach, 1, backend.conv_block_elements(xp), min_row_blocks=INPUT_ROW_BLOCKS)

        def input_block(i):                                                   # one block of whole rows
            block = row_blocks[i]
            rows = slice(block.start + top, block.stop + top)
            grad_grouped[:, :, rows] = 0                                  # zeroed while in cache; adds follow
            for cols in col_blocks:
                dout_cols = dout_rows[:, :, :, cols]                                   # (g, T, O/g, c, N)
                dout_cols = dout_cols.reshape(*dout_cols.shape[:3], -1)
                grad_bands = xp.empty((groups, rows.stop - rows.start, flipped.shape[2], dout_cols.shape[3]),
                                      dtype=grad_out.dtype)                           # (g, r, C/g*KW, c*N)
                for first, stop, (m_start, m_stop) in shape.band_runs(rows, (out_h - 1) * stride[0]):
                    target = grad_bands[:, first - rows.start:stop - rows.start]
                    if m_stop <= m_start:  # rows that fed no output (beyond the last window)
                        target[...] = 0
                        continue
                    band = bands(dout_cols[:, first + m_start - (reach - 1):], stop - first, m_stop - m_start, 1)
                    backend.matmul(flipped[..., m_start * out_per_group:m_stop * out_per_group], band, out=target)
                add_width_back(grad_bands.reshape(groups, rows.stop - rows.start, shape.group_channels,
                                                  shape.kernel_w, cols.stop - cols.start, shape.batch),
                               grad_grouped, rows, cols, shape.kernel_w, stride[1], shape.dilation[1])
        return BlockWork(len(row_blocks), input_block, lambda: grad_padded)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlation of ``x`` (N, C, H, W) with ``weight`` (O, C/groups, KH, KW), as PyTorch.

    >>> import minigrad as mg, minigrad.nn.functional as F
    >>> x = mg.arange(9.0).reshape(1, 1, 3, 3)
    >>> w = mg.ones(1, 1, 2, 2, requires_grad=True)   # sums each 2x2 window
    >>> y = F.conv2d(x, w)
    >>> y.sum().backward()   # dW[kh, kw] = sum of the pixels that offset (kh, kw) reads
    >>> y
    tensor([[[[ 8., 12.],
              [20., 24.]]]], grad_fn=<Conv2dBackward>)
    >>> w.grad
    tensor([[[[ 8., 12.],
              [20., 24.]]]])
    """
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
