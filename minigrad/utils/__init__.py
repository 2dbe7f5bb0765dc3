"""``minigrad.utils.data`` is ``minigrad.data`` under PyTorch's path (``torch.utils.data``), so a
program that writes ``torch.utils.data.DataLoader`` runs with ``import minigrad as torch``.

Read next: ``data/`` (this package only re-exports it under PyTorch's path).
"""
from .. import data  # noqa: F401
