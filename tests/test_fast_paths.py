"""The fast conv/pool kernels against PyTorch and against the plain reference (ops/conv_reference.py),
float64, rtol 1e-10, one test per trick they use.

The tricks (see ops/conv.py, ops/pool.py, ops/layout.py and parallel.py): input rows gathered
along the width only and multiplied as overlapping bands, block by block (blocks of a few
columns, or of one column, when rows are too big), the input gradient as bands of the
zero-padded output gradient, batch-last (C, H, W, N) arrays passed between consecutive conv/pool
ops as NCHW views, the input gradient skipped for data, blocks split between two threads, and
max-pool as strided slices with a first-wins mask.
"""
import os
import signal
import threading
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import backend, parallel
from minigrad.ops import conv_reference as reference
from minigrad.ops import layout as layout_module
from minigrad.ops import pool as pool_module

from strategies import allow_device_fixture, conv_shapes
from torch_check import assert_close, check_against_reference, check_against_torch, upstream_gradient


def check_conv(options, *arrays, device):
    """conv2d's fast kernel against PyTorch and against the reference loop over kernel offsets."""
    fast = partial(F.conv2d, **options)
    check_against_torch(fast, partial(torch_F.conv2d, **options), *arrays, device=device)
    check_against_reference(fast, partial(reference.conv2d, **options), *arrays, device=device)


def check_pool(pool, geometry, x, device, **options):
    """A pool's fast kernel against PyTorch and against the reference; returns the fast output."""
    fast = partial(getattr(F, pool), **geometry)
    out = check_against_torch(fast, partial(getattr(torch_F, pool), **geometry), x, device=device, **options)
    check_against_reference(fast, partial(getattr(reference, pool), **geometry), x, device=device, **options)
    return out

# (batch, in_channels, out_channels, height, width, kernel, stride, padding, dilation, groups)
CONV_GEOMETRIES = [
    pytest.param((1, 1, 1, 7, 5, (3, 3), (1, 1), (0, 0), (1, 1), 1), id="batch-1-odd-sizes"),
    pytest.param((3, 3, 6, 11, 13, (5, 5), (1, 1), (0, 0), (1, 1), 1), id="lenet-conv1-like"),
    pytest.param((2, 4, 6, 9, 8, (3, 2), (2, 3), (1, 2), (1, 1), 2), id="strides-padding-groups"),
    pytest.param((2, 6, 3, 10, 9, (3, 3), (1, 2), (2, 1), (2, 3), 3), id="dilation-groups"),
    pytest.param((5, 2, 4, 6, 6, (1, 1), (3, 2), (0, 0), (1, 1), 1), id="1x1-gapped-stride"),
    pytest.param((2, 3, 2, 4, 3, (4, 3), (1, 1), (0, 0), (1, 1), 1), id="kernel-as-big-as-input"),
    pytest.param((0, 2, 4, 6, 5, (3, 3), (1, 1), (1, 1), (1, 1), 2), id="empty-batch"),
    pytest.param((19, 2, 3, 5, 4, (2, 2), (1, 1), (0, 0), (1, 1), 1), id="batch-19-spans-transpose-chunks"),
]

# Values gathered per block: 1 forces one output pixel per block (many column blocks, ragged
# last block); 200 gives a few pixels; the default gives whole rows or everything.
BLOCK_SIZES = [1, 200, None]


def conv_problem(geometry, seed=0):
    batch, in_c, out_c, height, width, kernel, stride, padding, dilation, groups = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, in_c, height, width))
    weight = rng.standard_normal((out_c, in_c // groups, *kernel))
    bias = rng.standard_normal(out_c)
    return (x, weight, bias), dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def use_block_size(monkeypatch, block_elements):
    if block_elements is not None:
        monkeypatch.setattr(backend, "conv_block_elements", lambda xp: block_elements)


@pytest.mark.parametrize("block_elements", BLOCK_SIZES)
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
def test_conv2d_in_pixel_blocks_matches_torch(device, monkeypatch, geometry, block_elements):
    use_block_size(monkeypatch, block_elements)
    arrays, options = conv_problem(geometry)
    check_conv(options, *arrays, device=device)


@settings(allow_device_fixture, max_examples=15)
@given(config=conv_shapes(), block_elements=st.integers(1, 400), seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_torch_for_any_block_size(device, config, block_elements, seed):
    """Every drawn geometry, cut into blocks of a drawn size, still gives PyTorch's result."""
    geometry = (config["batch"], config["in_channels"], config["out_channels"], config["height"],
                config["width"], config["kernel"], config["stride"], config["padding"], config["dilation"],
                config["groups"])
    arrays, options = conv_problem(geometry, seed)
    with pytest.MonkeyPatch.context() as patch:  # Hypothesis reruns the body: patch per example
        use_block_size(patch, block_elements)
        check_conv(options, *arrays, device=device)


@pytest.mark.parametrize("out_h, block_elements, min_row_blocks", [
    (28, 40 * 300 * 7, 1), (27, 9000, 1), (28, 256 * 1024, 3), (13, 6 * 300 * 7, 1), (5, 1, 1), (1, 10, 1)])
def test_row_blocks_cover_the_output_in_multiples_of_the_stacked_rows(out_h, block_elements, min_row_blocks):
    from minigrad.ops.layout import band_blocks
    row_blocks, _ = band_blocks((out_h, 7), 300, 5, 1, block_elements, min_row_blocks, row_multiple=2)
    assert [r for block in row_blocks for r in range(block.start, block.stop)] == list(range(out_h))
    sizes = [block.stop - block.start for block in row_blocks]
    assert len(sizes) >= min_row_blocks
    assert all(size % 2 == 0 for size in sizes[:-1]) or sizes[0] == 1 == block_elements, sizes


def test_two_output_rows_share_a_product_only_for_few_channels_at_stride_one_on_numpy():
    from minigrad.ops.conv import ConvShape
    lenet_conv1 = ConvShape((3, 32, 32, 8), (6, 3, 5, 5), (1, 1), (1, 1), 1, np)
    assert lenet_conv1.rows_per_product == 2 and lenet_conv1.stacked_rows == 6
    assert ConvShape((6, 14, 14, 8), (16, 6, 5, 5), (1, 1), (1, 1), 1, np).rows_per_product == 1   # 16 channels
    assert ConvShape((3, 32, 32, 8), (6, 3, 5, 5), (2, 1), (1, 1), 1, np).rows_per_product == 1    # stride 2
    assert ConvShape((3, 32, 32, 8), (6, 3, 5, 5), (1, 1), (1, 1), 1, object()).rows_per_product == 1  # not NumPy


def test_conv2d_of_data_computes_no_input_gradient_and_right_weight_gradient(device):
    """The first layer's input is data: its gradient is skipped, the weight's still matches."""
    (x, weight, bias), options = conv_problem(CONV_GEOMETRIES[2].values[0])
    data = mg.tensor(x, device=device)
    w, b = (mg.tensor(a, requires_grad=True, device=device) for a in (weight, bias))
    F.conv2d(data, w, b, **options).sum().backward()
    torch_w, torch_b = torch.tensor(weight, requires_grad=True), torch.tensor(bias, requires_grad=True)
    torch_F.conv2d(torch.tensor(x), torch_w, torch_b, **options).sum().backward()
    assert data.grad is None
    assert_close(w.grad.numpy(), torch_w.grad.numpy(), "weight gradient")
    assert_close(b.grad.numpy(), torch_b.grad.numpy(), "bias gradient")


# ----------------------------------------------------------------------------- threads
@pytest.fixture
def two_threads_always(monkeypatch):
    """Every conv kernel split between two threads, however small."""
    monkeypatch.setattr(parallel, "num_threads", 2)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_PRODUCT", 0)


@pytest.fixture
def thread_splits(monkeypatch):
    """The names of the kernels that were split between threads, one entry per split."""
    splits, submit = [], parallel._Worker.submit

    def recording_submit(worker, work, part):
        splits.append(work.__name__)
        return submit(worker, work, part)
    monkeypatch.setattr(parallel._Worker, "submit", recording_submit)
    return splits


@pytest.mark.parametrize("block_elements", BLOCK_SIZES)
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
def test_conv2d_split_between_threads_matches_torch_and_reference(device, monkeypatch, two_threads_always,
                                                                  geometry, block_elements):
    use_block_size(monkeypatch, block_elements)
    arrays, options = conv_problem(geometry)
    check_conv(options, *arrays, device=device)


def conv_results(arrays, options, dtype):
    x, w, b = (mg.tensor(a.astype(dtype), requires_grad=True) for a in arrays)
    out = F.conv2d(x, w, b, **options)
    out.backward(mg.tensor(upstream_gradient(out.shape), dtype=dtype))
    return {"forward": out.numpy(), "input grad": x.grad.numpy(), "weight grad": w.grad.numpy(),
            "bias grad": b.grad.numpy()}


# Big enough for the default threshold: (batch, in, out, height, width, kernel, stride, padding, dilation, groups)
THREADED_GEOMETRIES = [
    pytest.param((64, 8, 6, 24, 24, (5, 5), (1, 1), (0, 0), (1, 1), 1), id="lenet-conv2-like"),
    pytest.param((211, 6, 8, 23, 25, (3, 4), (2, 1), (2, 1), (2, 1), 2), id="odd-strided-dilated-groups"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", THREADED_GEOMETRIES)
def test_conv2d_gives_the_same_bits_with_one_and_two_threads(monkeypatch, thread_splits, geometry, dtype):
    arrays, options = conv_problem(geometry)
    monkeypatch.setattr(parallel, "num_threads", 1)
    one = conv_results(arrays, options, dtype)
    assert not thread_splits
    monkeypatch.setattr(parallel, "num_threads", 2)
    two = conv_results(arrays, options, dtype)
    assert sorted(name for name in thread_splits if name != "copy_slabs") == \
        ["forward_blocks", "gradient_blocks"], "the forward, and the blocks of both gradients together, split in two"
    for name in one:
        np.testing.assert_array_equal(two[name], one[name], err_msg=name)


@pytest.mark.parametrize("geometry", THREADED_GEOMETRIES)
def test_conv2d_above_the_threshold_on_two_threads_matches_torch_and_reference(monkeypatch, thread_splits, geometry):
    monkeypatch.setattr(parallel, "num_threads", 2)
    arrays, options = conv_problem(geometry)
    check_conv(options, *arrays, device="cpu")
    assert thread_splits


def test_small_convolutions_stay_on_one_thread(monkeypatch, thread_splits):
    monkeypatch.setattr(parallel, "num_threads", 2)
    arrays, options = conv_problem(CONV_GEOMETRIES[1].values[0])
    check_conv(options, *arrays, device="cpu")
    assert not thread_splits


def blas_threads():
    """Threads of the BLAS libraries minigrad's kernels use (NumPy's; torch may have loaded its own)."""
    from threadpoolctl import threadpool_info
    used = {library.filepath for library in parallel._blas_libraries()}
    return [library["num_threads"] for library in threadpool_info() if library["filepath"] in used]


@pytest.mark.parametrize("threads, threshold", [(2, 0), (2, 10**9), (1, 0)], ids=["split", "small", "one-thread"])
def test_blas_is_held_to_one_thread_only_inside_minigrad_kernels(monkeypatch, threads, threshold):
    from threadpoolctl import threadpool_limits
    monkeypatch.setattr(parallel, "num_threads", threads)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_ELEMENTS", threshold)
    seen = []
    with threadpool_limits(limits=2, user_api="blas"):
        parallel.run_split(lambda part: seen.append(blas_threads()), 2, size=1, xp=np)
        after = blas_threads()
    assert seen and all(inside == [1] * len(after) for inside in seen)
    assert after == [2] * len(after), "the user's BLAS setting is back after the kernel"


def linear_results(x, w, b, dtype, layout="rows"):
    """F.linear forward and gradients; ``layout="columns"`` feeds x stored column by column (an
    F-ordered view, as a flattened batch-last conv or pool output)."""
    w, b = (mg.tensor(a.astype(dtype), requires_grad=True) for a in (w, b))
    leaf = mg.tensor((x.T if layout == "columns" else x).astype(dtype), requires_grad=True)
    x = leaf.T if layout == "columns" else leaf
    assert x.numpy().flags.c_contiguous == (layout == "rows")
    out = F.linear(x, w, b)
    out.backward(mg.tensor(upstream_gradient(out.shape), dtype=dtype))
    input_grad = leaf.grad.numpy().T if layout == "columns" else leaf.grad.numpy()
    return {"forward": out.numpy(), "input grad": input_grad, "weight grad": w.grad.numpy()}


@pytest.mark.parametrize("layout", ["rows", "columns"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_layer_products_split_between_threads_give_the_same_bits_and_match_torch(monkeypatch, thread_splits,
                                                                                       dtype, layout):
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((301, 403)), rng.standard_normal((121, 403)), rng.standard_normal(121)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_PRODUCT", 0)
    monkeypatch.setattr(parallel, "num_threads", 1)
    one = linear_results(x, w, b, dtype, layout)
    assert not thread_splits
    monkeypatch.setattr(parallel, "num_threads", 2)
    two = linear_results(x, w, b, dtype, layout)
    assert thread_splits == ["product_blocks"] * 2, "forward; then the blocks of both gradients in one split"
    for name in one:
        np.testing.assert_array_equal(two[name], one[name], err_msg=name)
    tx, tw, tb = (torch.tensor(a.astype(dtype), requires_grad=True) for a in (x, w, b))
    out = torch_F.linear(tx, tw, tb)
    out.backward(torch.tensor(upstream_gradient(out.shape), dtype=out.dtype))
    tolerance = {} if dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-4}   # float32 sums in another order
    for name, expected in (("forward", out), ("input grad", tx.grad), ("weight grad", tw.grad)):
        assert_close(two[name], expected.detach().numpy(), name, **tolerance)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("min_product", [0, 10**9], ids=["cut-into-rows", "whole"])
def test_products_together_give_the_bits_of_each_product_alone(monkeypatch, thread_splits, min_product, dtype):
    """A linear layer's two gradients, computed together on two threads, are bit for bit what
    ``matmul`` gives for each alone on one thread; the threads start at PARALLEL_MIN_PRODUCTS_TOGETHER."""
    rng = np.random.default_rng(11)
    grad = rng.standard_normal((130, 70)).astype(dtype)
    weight, x = rng.standard_normal((70, 90)).astype(dtype), rng.standard_normal((130, 90)).astype(dtype)
    pairs = [(grad, weight), (grad.T, x)]
    total = 2 * 130 * 70 * 90
    monkeypatch.setattr(parallel, "PARALLEL_MIN_PRODUCT", min_product)
    monkeypatch.setattr(parallel, "num_threads", 1)
    alone = [parallel.matmul(a, b) for a, b in pairs]
    monkeypatch.setattr(parallel, "num_threads", 2)
    thread_splits.clear()
    monkeypatch.setattr(parallel, "PARALLEL_MIN_PRODUCTS_TOGETHER", total)
    together = parallel.matmuls_together(pairs)
    assert thread_splits == ["product_blocks"], "at the threshold: one split for both products"
    for mine, theirs, plain in zip(together, alone, (grad @ weight, grad.T @ x)):
        np.testing.assert_array_equal(mine, theirs)
        np.testing.assert_allclose(mine, plain, **({"rtol": 1e-5, "atol": 1e-4} if dtype == np.float32 else {}))
    thread_splits.clear()
    monkeypatch.setattr(parallel, "PARALLEL_MIN_PRODUCTS_TOGETHER", total + 1)
    below = parallel.matmuls_together(pairs)
    expected_splits = ["product_blocks"] * 2 if min_product == 0 else []     # each cut alone, or none
    assert thread_splits == expected_splits, "below the threshold each product goes through matmul"
    for mine, theirs in zip(below, alone):
        np.testing.assert_array_equal(mine, theirs)


def test_a_linear_layers_big_uncut_input_gradient_keeps_blas_threads(monkeypatch, thread_splits):
    """dx of a big layer at a batch too small to cut into rows keeps BLAS's own threads, as a
    big uncut product alone does, even though dW beside it is cut and split."""
    from threadpoolctl import threadpool_limits
    monkeypatch.setattr(parallel, "num_threads", 2)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_PRODUCT", 1000)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_PRODUCTS_TOGETHER", 1000)
    x = mg.tensor(np.ones((3, 50)), requires_grad=True)
    w = mg.tensor(np.ones((400, 50)), requires_grad=True)
    out = F.linear(x, w)
    seen, matmul = [], np.matmul
    monkeypatch.setattr(np, "matmul", lambda a, b, **kwargs: seen.append((a.shape, blas_threads()))
                        or matmul(a, b, **kwargs))
    with threadpool_limits(limits=2, user_api="blas"):
        out.backward(mg.tensor(np.ones(out.shape)))
    input_gradient = [threads for shape, threads in seen if shape == (3, 400)]
    assert input_gradient and all(threads == [2] * len(threads) for threads in input_gradient)
    assert thread_splits == ["product_blocks"], "dW: 400 rows, cut and split"
    np.testing.assert_array_equal(x.grad.numpy(), np.full((3, 50), 400.0))
    np.testing.assert_array_equal(w.grad.numpy(), np.full((400, 50), 3.0))


@pytest.mark.parametrize("frozen", [False, True], ids=["weights-trained", "weights-frozen"])
def test_a_linear_layer_after_a_pool_returns_its_input_gradient_in_the_pools_layout(device, monkeypatch, frozen):
    """pool -> flatten -> linear: the flattened batch-last pool output is stored column by column,
    and dx comes back in that layout, so the pool's backward gets its batch-last gradient as a view
    (with frozen weights dx is the only product)."""
    from minigrad.ops import linalg
    seen, backward = [], linalg.Linear.backward

    def recording_backward(self, grad):
        grads = backward(self, grad)
        seen.append(grads[0])
        return grads
    monkeypatch.setattr(linalg.Linear, "backward", recording_backward)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4, 6, 6)).astype(np.float32)
    weight, bias = rng.standard_normal((7, 36)).astype(np.float32), rng.standard_normal(7).astype(np.float32)
    mx = mg.tensor(x, device=device, requires_grad=True)
    mw, mb = (mg.tensor(a, device=device, requires_grad=not frozen) for a in (weight, bias))
    out = F.linear(F.max_pool2d(mx, 2).flatten(1), mw, mb)
    out.backward(mg.tensor(upstream_gradient(out.shape).astype(np.float32), device=device))
    assert seen[0].flags.f_contiguous and not seen[0].flags.c_contiguous
    tx = torch.tensor(x, requires_grad=True)
    tw, tb = (torch.tensor(a, requires_grad=not frozen) for a in (weight, bias))
    expected = torch_F.linear(torch_F.max_pool2d(tx, 2).flatten(1), tw, tb)
    expected.backward(torch.tensor(upstream_gradient(expected.shape).astype(np.float32)))
    assert_close(out.numpy(), expected.detach().numpy(), "forward", rtol=1e-5, atol=1e-5)
    trained = [("input", mx, tx)] + ([] if frozen else [("weight", mw, tw), ("bias", mb, tb)])
    for name, mine, theirs in trained:
        assert_close(mine.grad.numpy(), theirs.grad.numpy(), f"{name} gradient", rtol=1e-5, atol=1e-5)
    assert frozen == (mw.grad is None)


def test_linear_layer_products_hold_blas_to_one_thread_and_give_it_back(monkeypatch):
    from threadpoolctl import threadpool_limits
    seen, matmul = [], np.matmul
    monkeypatch.setattr(np, "matmul", lambda *args, **kwargs: seen.append(blas_threads()) or matmul(*args, **kwargs))
    x = mg.tensor(np.ones((4, 3)), requires_grad=True)
    with threadpool_limits(limits=2, user_api="blas"):
        (x @ mg.tensor(np.ones((3, 2)))).sum().backward()
        mg.tensor(np.ones((2, 4, 3))) @ mg.tensor(np.ones((3, 2)))          # batched: not split, still held
        after = blas_threads()
    assert len(seen) == 3 and all(inside == [1] * len(after) for inside in seen)
    assert after == [2] * len(after)


@pytest.mark.parametrize("grad_layout", ["same", "nchw"], ids=["grad-batch-last", "grad-other-layout"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_in_chunks_on_two_threads_is_exactly_torchs(monkeypatch, two_threads_always, thread_splits,
                                                         dtype, grad_layout):
    """ReLU runs chunk by chunk in memory order (parallel.elementwise): many odd-sized chunks on
    two threads, inf and NaN included, must give torch's bits in both directions."""
    monkeypatch.setattr(backend, "chunk_elements", lambda xp: 7)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4, 3, 6)).astype(dtype).transpose(3, 0, 1, 2)      # batch-last memory
    x[0, 0, 0, :3] = [0.0, -1.0, np.nan]
    x[5, 4, 2, :2] = [-0.0, np.inf]
    grad_out = rng.standard_normal(x.shape).astype(dtype)
    grad_out[0, 0, 0, :3] = [np.inf, np.nan, -np.inf]
    grad_out[5, 4, 2, :2] = [np.nan, np.nan]
    leaf = mg.tensor(np.ascontiguousarray(x.transpose(1, 2, 3, 0)), requires_grad=True)
    out = leaf.permute(3, 0, 1, 2).relu()                                        # a batch-last view
    if grad_layout == "same":
        out.backward(mg.tensor(np.ascontiguousarray(grad_out.transpose(1, 2, 3, 0))).permute(3, 0, 1, 2))
    else:
        out.backward(mg.tensor(grad_out))
    theirs = torch.tensor(x, requires_grad=True)
    torch_out = theirs.relu()
    torch_out.backward(torch.tensor(grad_out))
    np.testing.assert_array_equal(out.numpy(), torch_out.detach().numpy())
    np.testing.assert_array_equal(leaf.grad.numpy().transpose(3, 0, 1, 2), theirs.grad.numpy())
    assert thread_splits == ["chunks"] * (2 if grad_layout == "same" else 1), "forward and (same layout) backward split"


@pytest.mark.parametrize("shape", [(37, 3, 32, 32), (5, 1, 28, 28), (9, 1, 1, 67), (6, 2, 3, 5), (2, 7, 1, 1)],
                         ids=["lenet-input", "mnist", "prime-values-per-image", "odd", "one-pixel"])
@pytest.mark.parametrize("layout", ["contiguous", "sliced"])
def test_batch_last_through_slabs_is_the_transpose_on_one_and_two_threads(monkeypatch, thread_splits, shape, layout):
    """The NCHW -> (C, H, W, N) copy goes through slabs of g values (ops/layout.py): any image
    size (g = 1 when C*H*W is prime), threads sharing the slabs, or one plain copy of a strided view."""
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    if layout == "sliced":
        x = np.random.default_rng(4).standard_normal((shape[0] * 2, *shape[1:])).astype(np.float32)[::2]
    monkeypatch.setattr(parallel, "PARALLEL_MIN_ELEMENTS", 0)
    for threads in (1, 2):
        monkeypatch.setattr(parallel, "num_threads", threads)
        out = layout_module.batch_last(x)
        assert out.flags.c_contiguous
        np.testing.assert_array_equal(out, x.transpose(1, 2, 3, 0))
    if layout == "sliced":
        assert not thread_splits, "a strided view is one plain copy"
    elif shape[0] * shape[1] * shape[2] * shape[3] > 64 * 1024:   # more slabs than one part holds
        assert thread_splits == ["copy_slabs"], "the two-thread run split the slabs"


def test_batch_last_of_a_small_batch_takes_scratch_no_bigger_than_the_batch():
    """The slab scratch is ~64 Ki values for a big batch, but never more slabs than there are:
    a tiny batch's transpose (and so memory.budget's measured peak) holds ~its own size, not 256 KiB."""
    import tracemalloc
    x = np.random.default_rng(5).standard_normal((4, 3, 8, 8)).astype(np.float32)
    tracemalloc.start()
    try:
        out = layout_module.batch_last(x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(out, x.transpose(1, 2, 3, 0))
    assert peak <= 2 * x.nbytes + 4096, f"peak {peak} bytes for a {x.nbytes}-byte batch"


@pytest.mark.parametrize("total, most", [(602112, 1 << 18), (84, 18), (84, 73), (7, 7), (10, 3), (3, 1), (1, 5),
                                         (5, 0), (0, 4)])
def test_even_cut_makes_equal_pieces_no_bigger_than_asked_and_an_even_number_of_them(total, most):
    """Chunks dealt out in turn to two threads: 3 chunks went 2 + 1, so the cut makes an even
    number (beyond one) of pieces as equal as they can be, none bigger than ``most``."""
    bounds = parallel.even_cut(total, most)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == total
    assert (sizes > 0).all() or bounds == [0, 0]                           # nothing to cut: one empty piece
    assert sizes.max() <= max(1, most) and sizes.max() - sizes.min() <= 1
    needed = -(-total // max(1, most))
    assert len(sizes) == (1 if needed <= 1 else min(total, needed + needed % 2))   # one more only to make it even


def test_elementwise_chunks_follow_memory_order_and_refuse_mixed_layouts():
    batch_last = np.arange(24.0).reshape(2, 3, 4).transpose(2, 0, 1)
    flat, = parallel.flat_in_memory_order([batch_last])
    np.testing.assert_array_equal(flat, np.arange(24.0))
    assert np.shares_memory(flat, batch_last)
    assert parallel.flat_in_memory_order([batch_last, np.zeros(batch_last.shape)]) is None
    assert parallel.flat_in_memory_order([batch_last[:, :, ::2]]) is None                 # not dense


@pytest.mark.parametrize("a_shape, b_shape", [((3, 500), (500, 400)), ((2, 100, 50), (50, 40))],
                         ids=["too-few-rows-to-cut", "batched"])
def test_big_products_minigrad_does_not_cut_keep_blas_threads(monkeypatch, thread_splits, a_shape, b_shape):
    from threadpoolctl import threadpool_limits
    monkeypatch.setattr(parallel, "num_threads", 2)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_PRODUCT", 1000)
    seen, matmul = [], np.matmul
    monkeypatch.setattr(np, "matmul", lambda *args, **kwargs: seen.append(blas_threads()) or matmul(*args, **kwargs))
    a, b = np.ones(a_shape), np.ones(b_shape)
    with threadpool_limits(limits=2, user_api="blas"):
        out = (mg.tensor(a) @ mg.tensor(b)).numpy()
    np.testing.assert_array_equal(out, a @ b)
    assert seen and all(inside == [2] * len(inside) for inside in seen) and not thread_splits


@pytest.mark.parametrize("a_shape, b_shape", [((3, 50), (50, 400)), ((2, 100, 50), (50, 40))],
                         ids=["too-few-rows-to-cut", "batched"])
def test_big_products_keep_blas_threads_in_backward_too(monkeypatch, thread_splits, a_shape, b_shape):
    """The backward walk holds BLAS to one thread for all its kernels at once; a big product that
    minigrad does not cut gets the caller's threads back inside it."""
    from threadpoolctl import threadpool_limits
    monkeypatch.setattr(parallel, "num_threads", 2)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_PRODUCT", 1000)
    a = mg.tensor(np.ones(a_shape), requires_grad=True)
    b = mg.tensor(np.ones(b_shape), requires_grad=True)
    out = a @ b
    seen, matmul = [], np.matmul
    monkeypatch.setattr(np, "matmul", lambda *args, **kwargs: seen.append(blas_threads()) or matmul(*args, **kwargs))
    with threadpool_limits(limits=2, user_api="blas"):
        out.backward(mg.tensor(np.ones(out.shape)))
        after = blas_threads()
    assert len(seen) == 2, "the gradients of a and of b"
    assert all(inside == [2] * len(inside) for inside in seen) and not thread_splits
    assert after == [2] * len(after)
    np.testing.assert_array_equal(a.grad.numpy(), np.ones(out.shape) @ np.swapaxes(np.ones(b_shape), -1, -2))


def test_one_blas_hold_covers_the_whole_backward_walk(monkeypatch):
    """Holding BLAS costs 20-50 us inside a step: backward holds it once, and the holds of its
    kernels (nested on the same thread) change nothing; the caller's setting is back after."""
    from threadpoolctl import threadpool_limits
    changes, inside_kernels = [], []
    for library in parallel._blas_libraries():
        set_threads = library.set_num_threads
        monkeypatch.setattr(library, "set_num_threads",
                            lambda threads, set_threads=set_threads: changes.append(threads) or set_threads(threads))
    matmul = np.matmul
    monkeypatch.setattr(np, "matmul", lambda *args, **kwargs: inside_kernels.append(blas_threads()) or matmul(*args, **kwargs))
    rng = np.random.default_rng(0)
    model = mg.nn.Sequential(mg.nn.Conv2d(2, 3, 3), mg.nn.ReLU(), mg.nn.Flatten(), mg.nn.Linear(3 * 4 * 4, 5),
                             mg.nn.ReLU(), mg.nn.Linear(5, 2))
    x = mg.tensor(rng.standard_normal((4, 2, 6, 6)), dtype="float32")
    with threadpool_limits(limits=2, user_api="blas"):
        loss = model(x).sum()
        changes.clear(), inside_kernels.clear()
        loss.backward()
        after = blas_threads()
    libraries = len(parallel._blas_libraries())
    assert changes == [1] * libraries + [2] * libraries, "one hold: set to 1 once, given back once"
    assert len(inside_kernels) >= 5 and all(inside == [1] * len(after) for inside in inside_kernels)
    assert after == [2] * len(after)


def test_a_nested_blas_hold_leaves_the_outer_one_in_place():
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=2, user_api="blas"):
        with parallel.one_blas_thread():
            with parallel.one_blas_thread():
                pass
            between = blas_threads()
            with parallel.callers_blas_threads():
                given_back = blas_threads()
            held_again = blas_threads()
        after = blas_threads()
    assert between == held_again == [1] * len(after)
    assert given_back == after == [2] * len(after)


def test_an_op_defined_outside_minigrad_runs_its_backward_with_the_callers_blas_threads():
    from threadpoolctl import threadpool_limits
    seen = []

    class Double(mg.autograd.Function):
        def forward(self, a):
            return 2 * a

        def backward(self, grad):
            seen.append(blas_threads())
            return 2 * grad
    x = mg.tensor(np.ones((3, 4)), requires_grad=True)
    w = mg.tensor(np.ones((4, 2)), requires_grad=True)
    with threadpool_limits(limits=2, user_api="blas"):
        (Double.apply(x) @ w).sum().backward()       # MatMul's backward runs held, Double's is the user's
        after = blas_threads()
    assert seen == [after] and after == [2] * len(after)
    np.testing.assert_array_equal(x.grad.numpy(), np.full((3, 4), 4.0))


def test_minigrad_kernels_inside_a_user_ops_backward_hold_blas_and_give_the_lent_threads_back(monkeypatch):
    """Inside the lent block the thread holds nothing: a small product holds BLAS again and gives
    the user's threads back after, and a big uncut product keeps them."""
    from threadpoolctl import threadpool_limits
    monkeypatch.setattr(parallel, "PARALLEL_MIN_PRODUCT", 1000)
    seen = []

    class ProductsInBackward(mg.autograd.Function):
        def forward(self, a):
            return a.copy()

        def backward(self, grad):
            seen.append(("start", blas_threads()))
            matmul = np.matmul
            monkeypatch.setattr(np, "matmul", lambda *args, **kwargs: seen.append(("in the small product",
                                                                                   blas_threads())) or matmul(*args, **kwargs))
            parallel.matmul(np.ones((2, 3)), np.ones((3, 2)))      # under 1000 multiply-adds: held
            seen.append(("after a small product", blas_threads()))
            monkeypatch.setattr(np, "matmul", lambda *args, **kwargs: seen.append(("in the big product",
                                                                                   blas_threads())) or matmul(*args, **kwargs))
            parallel.matmul(np.ones((3, 50)), np.ones((50, 400)))   # big, too few rows to cut: not held
            monkeypatch.setattr(np, "matmul", matmul)
            seen.append(("after a big product", blas_threads()))
            return grad
    x = mg.tensor(np.ones((3, 4)), requires_grad=True)
    with threadpool_limits(limits=2, user_api="blas"):
        (ProductsInBackward.apply(x) @ mg.tensor(np.ones((4, 2)))).sum().backward()
        after = blas_threads()
    two = [2] * len(after)
    assert seen == [("start", two), ("in the small product", [1] * len(after)), ("after a small product", two),
                    ("in the big product", two), ("after a big product", two)]
    assert after == two


def test_an_error_while_taking_a_blas_hold_leaves_no_hold_behind(monkeypatch):
    from threadpoolctl import threadpool_limits

    def failing():
        raise KeyboardInterrupt
    monkeypatch.setattr(parallel, "_blas_libraries", failing)
    with pytest.raises(KeyboardInterrupt):
        with parallel.one_blas_thread():
            pass
    monkeypatch.undo()
    with threadpool_limits(limits=2, user_api="blas"):
        with parallel.one_blas_thread():
            inside = blas_threads()
        after = blas_threads()
    assert parallel._hold.depth == 0 and inside == [1] * len(after) and after == [2] * len(after)


def blas_threads_another_thread_sets_to_one():
    """What another thread sees inside its own ``threadpool_limits(1)``: [1, ...] unless some
    thread still controls OpenBLAS's process-wide setting (then the limit silently does nothing)."""
    from threadpoolctl import threadpool_limits
    seen = []

    def other_thread():
        with threadpool_limits(limits=1, user_api="blas"):
            seen.append(blas_threads())
    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    return seen[0]


def test_an_interrupt_halfway_through_taking_a_hold_gives_the_setting_back(monkeypatch):
    """Ctrl-C after a library was already set to one thread: the caller's setting comes back,
    no hold is left, and threadpoolctl's count lets another thread limit BLAS afterwards."""
    from threadpoolctl import threadpool_limits
    library = parallel._blas_libraries()[0]
    set_threads = library.set_num_threads

    def set_then_interrupt(threads):
        set_threads(threads)
        if threads == 1:
            raise KeyboardInterrupt
    with threadpool_limits(limits=2, user_api="blas"):
        monkeypatch.setattr(library, "set_num_threads", set_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            with parallel.one_blas_thread():
                pass
        monkeypatch.undo()
        after = blas_threads()
    assert after == [2] * len(after) and parallel._hold.depth == 0
    assert blas_threads_another_thread_sets_to_one() == [1] * len(after), "no control of OpenBLAS kept"


def test_an_interrupt_while_giving_the_setting_back_leaves_no_hold(monkeypatch):
    from threadpoolctl import threadpool_limits
    library = parallel._blas_libraries()[0]
    set_threads = library.set_num_threads

    def interrupt_the_restore(threads):
        if threads != 1:
            raise KeyboardInterrupt
        set_threads(threads)
    with threadpool_limits(limits=2, user_api="blas"):
        with pytest.raises(KeyboardInterrupt):
            with parallel.one_blas_thread():
                monkeypatch.setattr(library, "set_num_threads", interrupt_the_restore)
        monkeypatch.undo()
        assert parallel._hold.depth == 0
        with parallel.one_blas_thread():
            inside = blas_threads()
    assert inside == [1] * len(inside), "a new hold works"
    assert blas_threads_another_thread_sets_to_one() == [1] * len(inside), "no control of OpenBLAS kept"


class SilentLibrary:
    """A BLAS controller that does not say how many threads it runs (its getter returns None)."""
    threading_layer, internal_api, filepath = "pthreads", "silent", None

    def __init__(self):
        self.set_calls = []

    def get_num_threads(self):
        return None

    def set_num_threads(self, threads):
        self.set_calls.append(threads)


def test_a_library_that_does_not_say_its_threads_is_left_alone(monkeypatch):
    from threadpoolctl import threadpool_limits
    silent = SilentLibrary()
    monkeypatch.setattr(parallel, "_blas", [*parallel._blas_libraries(), silent])
    with threadpool_limits(limits=2, user_api="blas"):
        with parallel.one_blas_thread():
            inside = blas_threads()
            with parallel.callers_blas_threads():
                pass
        after = blas_threads()
    with threadpool_limits(limits=1, user_api="blas"):
        with parallel.one_blas_thread():
            pass
    assert silent.set_calls == []
    assert inside == [1] * len(inside) and after == [2] * len(after)


def test_mkl_limits_count_as_per_thread(monkeypatch):
    """threadpoolctl limits MKL with MKL_Set_Num_Threads_Local: the workers must hold their own."""
    mkl = SilentLibrary()
    mkl.threading_layer, mkl.internal_api = "intel", "mkl"
    parallel._blas_limits_are_per_thread.cache_clear()
    try:
        monkeypatch.setattr(parallel, "_blas", [mkl])
        assert parallel._blas_limits_are_per_thread()
        parallel._blas_limits_are_per_thread.cache_clear()
        monkeypatch.setattr(parallel, "_blas", [SilentLibrary()])
        assert not parallel._blas_limits_are_per_thread()
    finally:
        monkeypatch.undo()
        parallel._blas_limits_are_per_thread.cache_clear()


def test_with_per_thread_blas_limits_each_worker_holds_its_own(monkeypatch, two_threads_always):
    """OpenMP builds of OpenBLAS keep the limit per thread: the workers must hold it themselves."""
    import contextlib
    held_on = []

    @contextlib.contextmanager
    def recording_hold():
        held_on.append(threading.get_ident())
        yield
    monkeypatch.setattr(parallel, "one_blas_thread", recording_hold)
    ran_on = []
    for per_thread in (False, True):
        monkeypatch.setattr(parallel, "_blas_limits_are_per_thread", lambda: per_thread)
        held_on.clear(), ran_on.clear()
        parallel.run_split(lambda part: ran_on.append(threading.get_ident()), 2, size=1, xp=np)
        assert len(set(ran_on)) == 2
        assert sorted(held_on) == (sorted(ran_on) if per_thread else [threading.get_ident()])


def test_a_blas_hold_leaves_openblas_free_for_other_threads_to_limit():
    """OpenBLAS's limit is process-wide: threadpoolctl lets one thread at a time change it and
    frees it when that thread's last limit ends. A hold must free it too, else every later
    ``threadpool_limits`` from another thread silently does nothing."""
    from threadpoolctl import threadpool_limits
    default = blas_threads()
    if default == [1] * len(default):
        pytest.skip("BLAS runs one thread here: a hold changes nothing")
    with threadpool_limits(limits=2, user_api="blas"):
        with parallel.one_blas_thread():
            inside = blas_threads()
        after = blas_threads()
    seen = []

    def other_thread():
        with threadpool_limits(limits=1, user_api="blas"):
            seen.append(blas_threads())
        seen.append(blas_threads())
    with parallel.one_blas_thread():
        pass
    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert inside == [1] * len(after) and after == [2] * len(after), "the user's enclosing limit is kept"
    assert seen[0] == [1] * len(after), "another thread could limit BLAS after the hold"
    assert seen[1] == default


def test_a_blas_hold_works_without_threadpoolctls_limit_count(monkeypatch):
    """threadpoolctl before 3.8 keeps no count of nested limits (any thread may set OpenBLAS's)."""
    from threadpoolctl import threadpool_limits
    parallel._blas_libraries()
    monkeypatch.setattr(parallel, "_limit_counter", None)
    with threadpool_limits(limits=2, user_api="blas"):
        with parallel.one_blas_thread():
            inside = blas_threads()
        after = blas_threads()
    assert inside == [1] * len(after) and after == [2] * len(after)


def test_a_blas_hold_changes_nothing_when_blas_already_runs_one_thread(monkeypatch):
    from threadpoolctl import threadpool_limits
    calls = []
    for library in parallel._blas_libraries():
        monkeypatch.setattr(library, "set_num_threads", lambda threads, library=library: calls.append(threads))
    with threadpool_limits(limits=1, user_api="blas"):
        with parallel.one_blas_thread():
            pass
    assert calls == []


def test_kernels_without_products_leave_blas_alone(two_threads_always):
    from threadpoolctl import threadpool_limits
    seen = []
    with threadpool_limits(limits=2, user_api="blas"):
        parallel.run_split(lambda part: seen.append(blas_threads()), 2, size=1, xp=np, uses_blas=False)
        after = blas_threads()
    assert seen == [after, after] and after == [2] * len(after)


def test_an_error_in_a_worker_thread_reaches_the_caller(two_threads_always):
    def work(part):
        if part.start > 0:
            raise RuntimeError("second part failed")
    with pytest.raises(RuntimeError, match="second part failed"):
        parallel.run_split(work, 4, size=1, xp=np)
    parts = []
    parallel.run_split(parts.append, 4, size=1, xp=np)                  # the workers serve the next split
    assert sorted(list(part) for part in parts) == [[0, 2], [1, 3]]


def test_more_threads_than_the_pool_was_made_with_still_runs_every_item(monkeypatch, two_threads_always):
    parallel.run_split(lambda part: None, 2, size=1, xp=np)                 # the pool exists, one worker
    monkeypatch.setattr(parallel, "num_threads", 3)
    parts = []
    parallel.run_split(parts.append, 7, size=1, xp=np)
    assert sorted(list(part) for part in parts) == [[0, 3, 6], [1, 4], [2, 5]]


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
@pytest.mark.parametrize("where", ["in-the-callers-part", "while-waiting"])
def test_an_interrupt_waits_for_the_worker_and_leaves_the_pool_usable(two_threads_always, where):
    """Ctrl-C (a KeyboardInterrupt from a signal handler in the main thread) while a split runs is
    raised only once the worker's part is done: that part still writes into the caller's arrays,
    and the worker must be idle before the next split hands it another part."""
    import time
    finished = []

    def work(part):
        if part.start == 0:
            if where == "in-the-callers-part":
                raise KeyboardInterrupt
            return                                        # the caller goes on to wait for the worker
        time.sleep(0.3)
        finished.append(part.start)

    def interrupt(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)        # fires while the worker sleeps
        with pytest.raises(KeyboardInterrupt):
            parallel.run_split(work, 2, size=1, xp=np, uses_blas=False)
            time.sleep(1)                                 # (reached only if the interrupt was lost)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert finished == [1], "the worker's part was done before the interrupt left run_split"
    parts = []
    parallel.run_split(parts.append, 2, size=1, xp=np, uses_blas=False)
    assert sorted(list(part) for part in parts) == [[0], [1]]


def test_a_split_inside_a_part_runs_on_the_thread_of_that_part(two_threads_always, thread_splits):
    """A worker runs one part at a time: a kernel that splits inside a part must not wait for it."""
    seen = []

    def outer(part):
        inner = []
        parallel.run_split(inner.append, 4, size=1, xp=np)
        seen.append((list(part), [list(p) for p in inner], threading.get_ident()))
    caller = threading.Thread(target=parallel.run_split, args=(outer, 2), kwargs=dict(size=1, xp=np), daemon=True)
    caller.start()
    caller.join(timeout=60)
    assert not caller.is_alive(), "a split inside a part waited for its own worker"
    assert sorted((part, inner) for part, inner, _ in seen) == [([0], [[0, 1, 2, 3]]), ([1], [[0, 1, 2, 3]])]
    assert len({thread for _, _, thread in seen}) == 2 and thread_splits == ["outer"]


def test_splits_from_two_user_threads_at_once_all_finish_with_every_item(two_threads_always):
    """The workers serve one split at a time; a split that finds them busy runs on its own thread."""
    results, barrier = {}, threading.Barrier(2)

    def user(name):
        items = []
        barrier.wait()
        for _ in range(200):
            parallel.run_split(lambda part: items.extend(part), 8, size=1, xp=np, uses_blas=False)
        results[name] = sorted(items)
    threads = [threading.Thread(target=user, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a split waited forever"
    assert results == {name: sorted(list(range(8)) * 200) for name in "ab"}


def test_arrays_of_another_backend_stay_on_the_calling_thread(two_threads_always, thread_splits):
    parts = []
    parallel.run_split(parts.append, 5, size=10**9, xp=object())  # a stand-in for cupy
    assert parts == [range(5)] and not thread_splits


def split_in_a_forked_child(results):
    parts = []
    parallel.run_split(parts.append, 4, size=1, xp=np)
    results.put(sorted(list(part) for part in parts))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_makes_its_own_threads(two_threads_always):
    """The parent's worker threads do not exist in a forked child: it must not wait for them."""
    import multiprocessing
    parallel.run_split(lambda part: None, 2, size=1, xp=np)  # the parent's pool exists now
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=split_in_a_forked_child, args=(results,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung waiting for its parent's threads")
    assert child.exitcode == 0 and results.get(timeout=5) == [[0, 2], [1, 3]]


@pytest.mark.parametrize("value, expected", [("1", 1), ("3", 3), (" 2 ", 2)])
def test_minigrad_num_threads_sets_the_number_of_threads(monkeypatch, value, expected):
    monkeypatch.setenv("MINIGRAD_NUM_THREADS", value)
    assert parallel.default_num_threads() == expected


def test_the_default_number_of_threads_is_the_cores_available(monkeypatch):
    monkeypatch.delenv("MINIGRAD_NUM_THREADS", raising=False)
    assert parallel.default_num_threads() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["0", "-2", "two", ""])
def test_a_bad_minigrad_num_threads_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv("MINIGRAD_NUM_THREADS", value)
    with pytest.raises(ValueError, match=f"MINIGRAD_NUM_THREADS: expected a positive integer, got '{value}'"):
        parallel.default_num_threads()


@pytest.mark.parametrize("trained", ["weight", "bias", "input"])
def test_conv2d_gradient_of_each_input_alone_matches_torch(device, trained):
    """The bias gradient is summed inside the weight gradient's blocks; alone it has its own path."""
    (x, weight, bias), options = conv_problem(CONV_GEOMETRIES[2].values[0])
    names = ("input", "weight", "bias")
    tensors = [mg.tensor(a, requires_grad=name == trained, device=device) for name, a in zip(names, (x, weight, bias))]
    torch_tensors = [torch.tensor(a, requires_grad=name == trained) for name, a in zip(names, (x, weight, bias))]
    F.conv2d(*tensors, **options).sum().backward()
    torch_F.conv2d(*torch_tensors, **options).sum().backward()
    position = names.index(trained)
    assert_close(tensors[position].grad.numpy(), torch_tensors[position].grad.numpy(), f"{trained} gradient")
    assert all(t.grad is None for i, t in enumerate(tensors) if i != position)


# ----------------------------------------------------------------------------- batch-last views between ops
def lenet_features(F_, x, w1, b1, w2, b2, pool):
    """conv, relu, pool, conv, relu, pool, flatten: batch-last views flow from op to op."""
    pool_fn = getattr(F_, pool)
    hidden = pool_fn(F_.relu(F_.conv2d(x, w1, b1)), 2)
    hidden = pool_fn(F_.relu(F_.conv2d(hidden, w2, b2, padding=1)), 3, 2, 1)
    return hidden.reshape(hidden.shape[0], -1)


@pytest.mark.parametrize("pool", ["max_pool2d", "avg_pool2d"])
def test_chained_conv_relu_pool_matches_torch(device, monkeypatch, pool):
    use_block_size(monkeypatch, 300)
    rng = np.random.default_rng(1)
    arrays = (rng.standard_normal((3, 3, 13, 12)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4),
              rng.standard_normal((5, 4, 3, 3)), rng.standard_normal(5))
    check_against_torch(lambda *t: lenet_features(F, *t, pool=pool),
                        lambda *t: lenet_features(torch_F, *t, pool=pool), *arrays, device=device)


def test_conv_output_behaves_as_an_ordinary_nchw_array(device):
    """The batch-last view that conv returns indexes, reshapes and sums like any NCHW tensor."""
    (x, weight, bias), options = conv_problem(CONV_GEOMETRIES[1].values[0])
    out = F.conv2d(mg.tensor(x, device=device), mg.tensor(weight, device=device), mg.tensor(bias, device=device))
    expected = torch_F.conv2d(torch.tensor(x), torch.tensor(weight), torch.tensor(bias)).numpy()
    assert out.shape == expected.shape
    assert_close(out[1, 2].numpy(), expected[1, 2], "one feature map")
    assert_close(out.reshape(out.shape[0], -1).numpy(), expected.reshape(expected.shape[0], -1), "flattened")
    assert_close(out.sum(axis=(0, 2, 3)).numpy(), expected.sum(axis=(0, 2, 3)), "per-channel sums")


@pytest.mark.parametrize("make_input", [
    pytest.param(lambda a: a.transpose(0, 1, 3, 2), id="transposed"),
    pytest.param(lambda a: a[:, :, ::2, 1:], id="strided-slice"),
    pytest.param(lambda a: np.asfortranarray(a), id="fortran-order"),
])
def test_conv_and_pool_accept_inputs_of_any_memory_layout(device, make_input):
    rng = np.random.default_rng(2)
    x = make_input(rng.standard_normal((2, 3, 12, 11)))
    weight = rng.standard_normal((4, 3, 3, 3))
    check_against_torch(lambda x, w: F.max_pool2d(F.conv2d(x, w), 2),
                        lambda x, w: torch_F.max_pool2d(torch_F.conv2d(x, w), 2), x, weight, device=device)


# ----------------------------------------------------------------------------- pooling
POOL_CASES = [  # (geometry, input shape)
    pytest.param(dict(kernel_size=2), (3, 2, 8, 6), id="2x2-non-overlapping"),
    pytest.param(dict(kernel_size=2), (1, 2, 7, 9), id="odd-input-drops-last-row-and-column"),
    pytest.param(dict(kernel_size=3, stride=2, padding=1), (2, 3, 9, 8), id="overlapping-padded"),
    pytest.param(dict(kernel_size=(3, 2), stride=1), (2, 1, 5, 6), id="overlapping-stride-1"),
    pytest.param(dict(kernel_size=2, stride=3), (1, 2, 8, 7), id="gapped"),
]


@pytest.mark.parametrize("pool", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("geometry, shape", POOL_CASES)
def test_pooling_matches_torch(device, pool, geometry, shape):
    x = np.random.default_rng(3).standard_normal(shape)
    check_pool(pool, geometry, x, device)


@pytest.mark.parametrize("geometry, shape", POOL_CASES)
def test_max_pool_ties_send_gradient_to_the_first_maximum_like_torch(device, geometry, shape):
    """Few distinct values make many ties; the first-wins mask must pick PyTorch's pixel."""
    x = np.random.default_rng(4).integers(-1, 2, size=shape).astype(np.float64)
    check_pool("max_pool2d", geometry, x, device, rtol=0, atol=0)


def test_max_pool_window_with_nans_sends_its_gradient_to_the_last_nan_like_torch(device):
    """PyTorch scans a window keeping ``val > max || isnan(val)``: the max is NaN and the last NaN
    in row-major order gets the gradient, whatever the other values or ties."""
    nan = np.nan
    # Left window: NaNs at offsets (0, 0) and (1, 0) -> (1, 0). Right window: tied 5s and one NaN -> the NaN.
    x = np.array([[[[nan, 1.0, nan, 5.0],
                    [nan, 2.0, 5.0, 5.0]]]])
    out = check_pool("max_pool2d", dict(kernel_size=2), x, device, grad_out=np.array([[[[3.0, 4.0]]]]))
    assert np.isnan(out.numpy()).all()
    data = mg.tensor(x, requires_grad=True, device=device)
    F.max_pool2d(data, 2).backward(mg.tensor([[[[3.0, 4.0]]]], dtype=mg.float64, device=device))
    np.testing.assert_array_equal(data.grad.numpy(), [[[[0.0, 0.0, 4.0, 0.0], [3.0, 0.0, 0.0, 0.0]]]])


@pytest.mark.parametrize("geometry, shape", POOL_CASES)
def test_max_pool_with_many_nans_and_ties_matches_torch(device, geometry, shape):
    """NaN windows and tied windows side by side, overlapping and padded windows included."""
    rng = np.random.default_rng(7)
    x = rng.integers(-1, 2, size=shape).astype(np.float64)
    x[rng.random(shape) < 0.25] = np.nan
    check_pool("max_pool2d", geometry, x, device, rtol=0, atol=0)


def test_max_pool_padding_never_wins_even_when_every_value_is_negative(device):
    x = -1.0 - np.random.default_rng(5).random((2, 2, 5, 5))
    check_pool("max_pool2d", dict(kernel_size=3, stride=2, padding=1), x, device)


@pytest.mark.parametrize("chunk_elements", [2, 1 << 18], ids=["chunk-per-channel-or-row", "one-chunk"])
@pytest.mark.parametrize("geometry, shape", POOL_CASES)
def test_max_pool_split_between_threads_matches_torch_and_reference(device, monkeypatch, two_threads_always, geometry,
                                                                    shape, chunk_elements):
    """Chunks split between two threads; NaN windows and ties included. Windows that tile the
    input are cut into chunks of output rows (one row each with 2 values a chunk)."""
    monkeypatch.setattr(backend, "chunk_elements", lambda xp: chunk_elements)
    rng = np.random.default_rng(8)
    x = rng.integers(-1, 2, size=shape).astype(np.float64)
    x[rng.random(shape) < 0.1] = np.nan
    check_pool("max_pool2d", geometry, x, device, rtol=0, atol=0)


@pytest.mark.parametrize("nan_in_first_chunk", [False, True], ids=["finite", "nan-in-first-chunk"])
def test_max_pool_tiling_windows_cut_across_channels_match_torch_on_two_threads(device, monkeypatch, two_threads_always,
                                                                                nan_in_first_chunk):
    """Unpadded windows that tile the input: the channels are stacked and cut into chunks of
    rows. (3, 2, 6, 6) at 36 values a chunk: 6 stacked output rows (3 per channel) cut at 0, 1,
    3, 4, 6, so the chunk of rows 1-2 holds rows of both channels. Values -1, 0, 1 tie in most
    windows. On NumPy, the routing by remainder takes every chunk whose max has no NaN."""
    monkeypatch.setattr(backend, "chunk_elements", lambda xp: 36)
    remainder_calls = []
    route_remainder = pool_module.route_remainder
    monkeypatch.setattr(pool_module, "route_remainder",
                        lambda *args: remainder_calls.append(args[1].shape) or route_remainder(*args))
    x = np.random.default_rng(11).integers(-1, 2, size=(3, 2, 6, 6)).astype(np.float64)
    if nan_in_first_chunk:
        x[1, 0, 0, 1] = np.nan                                    # channel 0, output row 0: the first chunk
    check_pool("max_pool2d", dict(kernel_size=2), x, device, rtol=0, atol=0)
    expected = [(1, 1, 3, 3), (1, 2, 3, 3), (1, 1, 3, 3), (1, 2, 3, 3)][nan_in_first_chunk:]   # output rows per chunk
    assert sorted(remainder_calls) == (sorted(expected * 2) if device == "cpu" else []), "twice: torch and reference"


@pytest.mark.parametrize("geometry, size", [(dict(kernel_size=2, padding=1), 6),
                                           (dict(kernel_size=3, stride=2, padding=1), 7)],
                         ids=["tiling-padded", "overlapping-padded"])
def test_max_pool_window_of_minus_inf_gives_its_gradient_to_its_first_image_pixel_like_torch(device, geometry, size):
    """Padding is -inf, so it tied with a window whose image pixels are all -inf, and the top-left
    windows (padding first in scan order) sent their gradient to the padding, where it was lost.
    PyTorch's scan starts at the window's first image pixel."""
    x = np.random.default_rng(12).standard_normal((2, 2, size, size))
    x[0, 0, :2, :2] = -np.inf                                    # the top-left window's image pixels
    x[1, 1, -1, :] = -np.inf                                     # bottom windows: image row of -inf
    # atol 0 keeps zeros exact; a pixel that wins overlapping windows sums them in another order.
    check_pool("max_pool2d", geometry, x, device, rtol=1e-14, atol=0)


# ----------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("op", ["conv2d", "max_pool2d", "avg_pool2d"])
def test_float32_stays_float32_through_forward_and_backward(device, op):
    rng = np.random.default_rng(6)
    x = mg.tensor(rng.standard_normal((2, 3, 9, 9)).astype(np.float32), requires_grad=True, device=device)
    w = mg.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True, device=device)
    b = mg.tensor(rng.standard_normal(4).astype(np.float32), requires_grad=True, device=device)
    out = F.conv2d(x, w, b, padding=1) if op == "conv2d" else getattr(F, op)(x, 3, 2, 1)
    (out * 0.5).sum().backward()
    assert out.dtype == np.float32
    leaves = (x, w, b) if op == "conv2d" else (x,)
    assert [leaf.grad.dtype for leaf in leaves] == [np.float32] * len(leaves)
