"""The reading path: every module's docstring names the next stop, and the stops exist.

minigrad is read more than it is run; the README's tour, the package docstring and the
module docstrings give one path through the code (see STYLE.md and the README).
"""
import ast
import pathlib
import re

import pytest

import minigrad

PACKAGE = pathlib.Path(minigrad.__file__).parent
MODULES = sorted(path for path in PACKAGE.rglob("*.py") if path != PACKAGE / "__init__.py")


def docstring(path):
    return ast.get_docstring(ast.parse(path.read_text())) or ""


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_every_module_says_where_to_read_next(path):
    text = docstring(path)
    assert "Read next:" in text, f"{path.relative_to(PACKAGE)}: end the module docstring with 'Read next: ...'"
    for target in re.findall(r"``([\w/]+(?:\.py|/))``", text.split("Read next:", 1)[1]):
        assert (PACKAGE / target).exists(), f"{path.relative_to(PACKAGE)}: Read next names {target}, which is missing"


def test_the_package_docstring_lays_out_the_path_and_its_stops_exist():
    text = docstring(PACKAGE / "__init__.py")
    stops = re.findall(r"``([\w/]+\.py|[\w]+/)``", text)
    assert "autograd.py" in stops and "tensor.py" in stops
    for stop in stops:
        assert (PACKAGE / stop).exists() or (PACKAGE.parent / stop).exists(), stop
