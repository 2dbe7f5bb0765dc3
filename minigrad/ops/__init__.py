"""The differentiable ops, one family per module; each op's backward sits beside its forward."""
