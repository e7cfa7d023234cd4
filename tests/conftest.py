from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

# Any Ray a test starts is a loopback-only node: Ray reads this when it is imported
# (tests/raylocal.py; test_ray checks the listening sockets).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))

EXAMPLE_IMAGE = ROOT / "examples" / "astronaut.jpg"
SHARED_DATA = ROOT.parent / "shared" / "data"
LFPW = SHARED_DATA / "lfpw_test"
"""Annotated research data, read in place; tests that need it skip where it is absent."""


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """Import a script of the repository (models/, benchmarks/: not a package) by path,
    registered in ``sys.modules`` under ``name`` (default: the file's stem), as
    dataclasses defined in it need."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """The bundled public-domain NASA photo (skimage.data.astronaut), 512x512 BGR."""
    image = cv2.imread(str(EXAMPLE_IMAGE))
    assert image is not None, EXAMPLE_IMAGE
    return image


@pytest.fixture(scope="session")
def wflw_meanface() -> np.ndarray:
    from pipdetect.presets import load_meanface

    return load_meanface("WFLW")


@pytest.fixture(scope="session")
def known_model(tmp_path_factory: pytest.TempPathFactory, wflw_meanface: np.ndarray) -> Path:
    """A 98-point known-answer model whose landmarks are the WFLW mean face."""
    from modelfactory import known_answer_model

    return known_answer_model(tmp_path_factory.mktemp("models") / "known.onnx", wflw_meanface)
