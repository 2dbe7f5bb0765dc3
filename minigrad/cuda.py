"""``mg.cuda.is_available()`` and ``mg.cuda.device_count()``, without importing CuPy eagerly.

Read next: ``memory/__init__.py`` (the memory budget of a training step).
"""
from .backend import cuda_device_count as device_count  # noqa: F401
from .backend import cuda_is_available as is_available  # noqa: F401
