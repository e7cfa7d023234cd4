"""Every error pipdetect raises is a PipdetectError, and also the built-in a caller expects.

The modules a program calls at run time raise only pipdetect's own error types: a scan of
their source for ``raise ValueError(`` and friends keeps it so.
"""

from __future__ import annotations

import ast

import pytest

import pipdetect
from conftest import ROOT
from pipdetect import errors

RUNTIME_MODULES = ["detector", "image", "stages", "schemes", "track", "draw", "faces", "video",
                   "model", "presets", "decode", "crop", "integrations/ray"]
BUILTINS = {"ValueError", "TypeError", "KeyError", "LookupError", "IndexError"}
ALLOWED = {
    ("schemes", "ValueError"),  # the scheme tables' own consistency check, at import
    ("crop", "KeyError"),  # preset_crop_policy, used by the converter with a preset it checked
    ("image", "ValueError"),  # header parsing (_u), caught inside image.py: never escapes
}


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_is_a_pipdetect_error_and_exported(name: str) -> None:
    cls = getattr(errors, name)
    assert issubclass(cls, errors.PipdetectError)
    assert getattr(pipdetect, name) is cls
    if cls is not errors.PipdetectError:
        assert set(cls.__mro__) & {ValueError, LookupError, OSError, RuntimeError}, name


def test_argument_errors_are_what_callers_already_catch() -> None:
    exc = errors.InvalidArgumentError("x must be 1")
    assert isinstance(exc, ValueError) and isinstance(exc, TypeError)
    name = errors.UnknownNameError("unknown scheme 'x'; known schemes: a, b")
    assert isinstance(name, KeyError) and isinstance(name, errors.InvalidArgumentError)
    assert str(name) == "unknown scheme 'x'; known schemes: a, b"  # not quoted as KeyError does


@pytest.mark.parametrize("module", RUNTIME_MODULES)
def test_runtime_modules_raise_only_pipdetect_errors(module: str) -> None:
    path = ROOT / "src" / "pipdetect" / f"{module}.py"
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            func = node.exc.func
            if (isinstance(func, ast.Name) and func.id in BUILTINS
                    and (module, func.id) not in ALLOWED):
                bad.append(f"line {node.lineno}: raise {func.id}")
    assert not bad, f"{module}.py raises built-in errors: {bad}"
