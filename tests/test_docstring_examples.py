"""The worked examples in minigrad's docstrings run, and print what the docstrings say.

Every module of the package is searched; each one with ``>>>`` examples is one test, run by
the standard library's doctest (the examples use fixed values, no random draws).
"""
import doctest
import importlib
import pathlib

import pytest

import minigrad

PACKAGE = pathlib.Path(minigrad.__file__).parent


def modules_with_examples():
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>>" in path.read_text():
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_the_core_ops_have_examples():
    assert {"minigrad.ops.elementwise", "minigrad.ops.reduce", "minigrad.ops.linalg", "minigrad.ops.shape",
            "minigrad.ops.softmax", "minigrad.ops.loss", "minigrad.ops.conv", "minigrad.ops.pool"} <= set(
        modules_with_examples())


@pytest.mark.parametrize("module_name", modules_with_examples())
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {module_name} failed (see stdout)"
