"""Data (``minigrad.data``): datasets and the batching ``DataLoader``."""
from .dataset import Dataset, TensorDataset  # noqa: F401
from .loader import DataLoader  # noqa: F401
