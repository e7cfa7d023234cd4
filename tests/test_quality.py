"""Lint and type checks run as part of the test suite, so CI fails on either."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)


def test_ruff_clean():
    if shutil.which("ruff") is None:
        pytest.fail("ruff is not installed: pip install '.[test]'")
    result = _run("ruff", "check", "src", "tests", "models", "examples", "training")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_clean():
    result = _run(sys.executable, "-m", "mypy", "--no-error-summary", "src/pipdetect")
    assert result.returncode == 0, result.stdout + result.stderr
