"""Hypothesis strategies, each named for what it draws. Shapes stay small: the suite must stay fast."""
import numpy as np
import hypothesis.extra.numpy as hnp
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# The `device` fixture only names a device ("cpu"/"cuda"), so sharing it between examples is safe.
allow_device_fixture = settings(suppress_health_check=list(settings.default.suppress_health_check)
                                + [HealthCheck.function_scoped_fixture])


def small_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def float64_arrays(shape, low=-3.0, high=3.0):
    """float64 arrays with values in [low, high] (Hypothesis likes 0.0 and repeated values: ties)."""
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False, allow_infinity=False,
                                                            allow_subnormal=False))


def away_from_zero_arrays(shape, low=0.5, high=3.0):
    """Values with |x| in [low, high] and either sign: safe denominators and negative powers."""
    magnitudes = st.floats(low, high)
    return hnp.arrays(np.float64, shape, elements=magnitudes | magnitudes.map(lambda m: -m))


def positive_arrays(shape, low=0.5, high=3.0):
    """Values in [low, high]: the domain of log, sqrt and fractional powers."""
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high))


def broadcastable_shape_pairs(max_dims=3, max_side=4):
    """Two shapes that broadcast together, e.g. (3, 1, 2) and (4, 1)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=max_dims,
                                             max_side=max_side).map(lambda shapes: shapes.input_shapes)


@st.composite
def matmul_shape_pairs(draw):
    """Shapes for a @ b: 1-d or n-d on either side, batch dims that broadcast against each other."""
    rows, inner, cols = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    batch_a, batch_b = draw(broadcastable_shape_pairs(max_dims=2, max_side=3))
    a_is_vector, b_is_vector = draw(st.booleans()), draw(st.booleans())
    shape_a = (inner,) if a_is_vector else (*batch_a, rows, inner)
    shape_b = (inner,) if b_is_vector else (*batch_b, inner, cols)
    return shape_a, shape_b


@st.composite
def reduction_cases(draw):
    """(shape, axis, keepdims) with axis None, an int (maybe negative) or a tuple of distinct axes."""
    shape = draw(small_shapes(min_dims=0, max_dims=3))
    axes = max(len(shape), 1)  # a 0-d tensor accepts axis 0 / -1, as in PyTorch
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        axis = None
    elif kind == "int":
        axis = draw(st.integers(-axes, axes - 1))
    else:
        axis = tuple(draw(st.lists(st.integers(0, axes - 1), min_size=1, max_size=axes, unique=True)))
    return shape, axis, draw(st.booleans())


@st.composite
def reshape_cases(draw):
    """(shape, new_shape): the same number of elements, possibly with one -1."""
    factors = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    shape = tuple(draw(st.permutations(factors)))
    new_shape = list(draw(st.permutations(factors)))
    if draw(st.booleans()) and len(new_shape) > 1:  # merge two neighbours into one axis
        i = draw(st.integers(0, len(new_shape) - 2))
        new_shape[i:i + 2] = [new_shape[i] * new_shape[i + 1]]
    if draw(st.booleans()):
        new_shape[draw(st.integers(0, len(new_shape) - 1))] = -1
    return shape, tuple(new_shape)


@st.composite
def flatten_cases(draw):
    shape = draw(small_shapes(min_dims=1, max_dims=4))
    start = draw(st.integers(-len(shape), len(shape) - 1))
    start_index = start % len(shape)
    end = draw(st.integers(start_index, len(shape) - 1))
    return shape, start, end


@st.composite
def basic_indices(draw, shape):
    """A tuple of ints and positive-step slices (PyTorch has no negative steps), maybe with None,
    indexing either the leading axes or, after an Ellipsis, the trailing ones."""
    count = draw(st.integers(0, len(shape)))
    from_the_end = draw(st.booleans())
    indexed_sizes = shape[len(shape) - count:] if from_the_end else shape[:count]
    parts = []
    for size in indexed_sizes:
        if draw(st.booleans()):
            parts.append(draw(st.integers(-size, size - 1)))
        else:
            start = draw(st.none() | st.integers(-size - 1, size + 1))
            stop = draw(st.none() | st.integers(-size - 1, size + 1))
            parts.append(slice(start, stop, draw(st.none() | st.integers(1, 3))))
    if from_the_end:
        parts.insert(0, Ellipsis)
    if draw(st.booleans()):  # a new axis consumes no input axis, so it may go anywhere
        parts.insert(draw(st.integers(0, len(parts))), None)
    return tuple(parts)


@st.composite
def integer_array_indices(draw, size):
    """Positions along an axis of ``size``, repeats allowed (their gradients must add up)."""
    positions = draw(st.lists(st.integers(-size, size - 1), min_size=1, max_size=6))
    return np.array(positions, dtype=np.int64)


@st.composite
def pad_widths(draw, ndim):
    return tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(ndim))


@st.composite
def conv_shapes(draw):
    """A conv2d problem: batch, channels, groups, kernel, stride, padding, dilation, bias."""
    groups = draw(st.integers(1, 3))
    in_channels = groups * draw(st.integers(1, 2))
    out_channels = groups * draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    spatial = []
    for k, p, d in zip(kernel, padding, dilation):
        reach = d * (k - 1) + 1  # how many input pixels one window spans
        spatial.append(draw(st.integers(max(1, reach - 2 * p), reach + 4)))
    return dict(batch=draw(st.integers(1, 2)), in_channels=in_channels, out_channels=out_channels,
                height=spatial[0], width=spatial[1], kernel=kernel, stride=stride, padding=padding,
                dilation=dilation, groups=groups, bias=draw(st.booleans()))


@st.composite
def pool_configs(draw):
    """A pooling problem; stride may differ from the kernel (overlapping or gapped windows)."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.none() | st.tuples(st.integers(1, 3), st.integers(1, 3)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    height, width = (draw(st.integers(max(1, k - 2 * p), k + 4)) for k, p in zip(kernel, padding))
    return dict(batch=draw(st.integers(1, 2)), channels=draw(st.integers(1, 3)), height=height, width=width,
                kernel=kernel, stride=stride, padding=padding)


@st.composite
def cross_entropy_cases(draw):
    """Logits, targets (some ignored), optional class weights, reduction and label smoothing."""
    batch, num_classes = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    logits = draw(float64_arrays((batch, num_classes), -4, 4))
    target = np.array(draw(st.lists(st.integers(0, num_classes - 1), min_size=batch, max_size=batch)),
                      dtype=np.int64)
    ignore_index = draw(st.sampled_from([-100, 0]))
    ignored = np.array(draw(st.lists(st.booleans(), min_size=batch, max_size=batch)))
    target[ignored] = ignore_index
    if (target == ignore_index).all():  # keep a counted target; all-ignored has its own test
        target[target == -100] = 0
        ignore_index = -100
    weight = draw(st.none() | positive_arrays((num_classes,), 0.1, 2.0))
    return dict(logits=logits, target=target, weight=weight, ignore_index=ignore_index,
                reduction=draw(st.sampled_from(["none", "sum", "mean"])),
                label_smoothing=draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]) | st.floats(0.0, 1.0)))
