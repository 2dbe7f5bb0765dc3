"""The differentiable ops, one family per module; each op's backward sits beside its forward.

Read next: ``ops/elementwise.py``, the first family on the path.
"""
