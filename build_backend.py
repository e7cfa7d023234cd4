"""pipdetect's build backend: setuptools, building in a temporary folder.

``pip install .`` runs setuptools in the checkout, and setuptools leaves a ``build/``
folder (a copy of the package, bundled models included) and ``src/pipdetect.egg-info``
behind. This wrapper points both at a temporary folder (through setuptools'
``DIST_EXTRA_CONFIG`` file) that is deleted after the build, so the checkout stays as
it was. Everything
else is setuptools' own backend, unchanged. (pyproject.toml: ``backend-path = ["."]``.)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401  (the rest of the backend interface)
    build_editable,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
)


@contextmanager
def _build_elsewhere() -> Iterator[None]:
    with tempfile.TemporaryDirectory(prefix="pipdetect-build-") as tmp:
        config = os.path.join(tmp, "setup.cfg")
        with open(config, "w", encoding="utf-8") as f:
            f.write(f"[build]\nbuild_base = {os.path.join(tmp, 'build')}\n"
                    f"[egg_info]\negg_base = {tmp}\n")
        old = os.environ.get("DIST_EXTRA_CONFIG")
        os.environ["DIST_EXTRA_CONFIG"] = config
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("DIST_EXTRA_CONFIG", None)
            else:
                os.environ["DIST_EXTRA_CONFIG"] = old


def build_wheel(wheel_directory: str, config_settings: Any = None,
                metadata_directory: str | None = None) -> str:
    with _build_elsewhere():
        return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory: str, config_settings: Any = None) -> str:
    with _build_elsewhere():
        return _setuptools.build_sdist(sdist_directory, config_settings)


def prepare_metadata_for_build_wheel(metadata_directory: str,
                                     config_settings: Any = None) -> str:
    with _build_elsewhere():
        return _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)
