"""The project's own files: dependencies, packaged assets, README and CI in sync."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import tomllib

from conftest import ROOT

YUNET_SHA256 = "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0"


def test_runtime_dependencies_are_exactly_the_four():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = sorted(re.split(r"[<>=!~ ;\[]", d)[0] for d in project["dependencies"])
    assert names == ["huggingface-hub", "numpy", "onnxruntime", "opencv-python-headless"]


def test_installed_package_ships_its_assets():
    assets = resources.files("pipdetect") / "assets"
    yunet = (assets / "face_detection_yunet.onnx").read_bytes()
    assert hashlib.sha256(yunet).hexdigest() == YUNET_SHA256
    for name in ("LICENSE-yunet.txt", "LICENSE-meanface.txt", "LICENSE-pipnet-lite0-300w.txt",
                 "crop_policies.json"):
        assert (assets / name).is_file(), name
    meanfaces = {p.name for p in (assets / "meanface").iterdir()}
    assert {"WFLW.txt", "data_300W.txt", "COFW.txt", "AFLW.txt", "LaPa.txt"} <= meanfaces
    for model in ("pipnet-lite0-300w", "pipnet-lite0-300w-int8"):
        assert (assets / f"{model}.onnx").is_file() and (assets / f"{model}.json").is_file()
    assert "pipnet-lite0-300w-int8.onnx" in (assets / "LICENSE-pipnet-lite0-300w.txt").read_text()


LEFTOVERS = [ROOT / "build", ROOT / "src" / "pipdetect.egg-info"]
"""What setuptools leaves in a checkout unless told to build elsewhere (build_backend.py)."""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip install .` builds from this checkout (built once per module)."""
    before = {p for p in LEFTOVERS if p.exists()}
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(out)], check=True,
                   capture_output=True)
    created = {p for p in LEFTOVERS if p.exists()} - before
    assert not created, f"building left {sorted(map(str, created))} in the checkout"
    (path,) = out.glob("pipdetect-*.whl")
    return path


def test_building_leaves_no_build_folder_in_the_checkout(wheel: Path) -> None:
    """The check is in the fixture (it runs once, before any test uses the wheel)."""
    assert wheel.is_file()
    assert 'backend-path = ["."]' in (ROOT / "pyproject.toml").read_text()
    assert "include build_backend.py" in (ROOT / "MANIFEST.in").read_text()


def test_pip_show_tells_the_licences_and_what_it_is(wheel: Path, tmp_path: Path) -> None:
    """`pip show -v pipdetect` of the installed wheel: licence, weights note, classifiers,
    real URLs only; the wheel ships the weights' licence next to the model."""
    import zipfile

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    "--target", str(target), str(wheel)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    shown = subprocess.run([sys.executable, "-m", "pip", "show", "-v", "pipdetect"], env=env,
                           capture_output=True, text=True, check=True).stdout
    assert f"Location: {target}" in shown, shown
    pip_version = tuple(int(v) for v in importlib.metadata.version("pip").split(".")[:2])
    if pip_version >= (25, 1):  # pip shows PEP 639 licence expressions since 25.1
        assert "License-Expression: MIT" in shown
    assert "research use only" in shown  # the summary's note on the weights
    for classifier in ("Intended Audience :: Science/Research", "Typing :: Typed",
                       "Topic :: Scientific/Engineering :: Image Recognition"):
        assert classifier in shown, classifier
    urls = re.findall(r"https?://\S+", shown)
    assert urls and all("pipdetect" not in u for u in urls), "no invented project pages"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        weights = z.read("pipdetect/assets/LICENSE-pipnet-lite0-300w.txt").decode()
    assert "Description-Content-Type: text/markdown" in meta
    assert "License-Expression: MIT" in meta  # what any pip shows or, if older, stores
    assert "RESEARCH USE ONLY" in weights and "LICENSE-pipnet-lite0-300w.txt" in meta


def test_wheel_holds_the_default_model_and_stays_small(wheel: Path) -> None:
    """The wheel ships both bundled models, the default (int8) first, each <= 25 MB, and
    stays under 40 MB, without photos."""
    import zipfile

    from pipdetect.zoo import BUNDLED, DEFAULT_MODEL

    assert BUNDLED[0] == DEFAULT_MODEL == "pipnet-lite0-300w-int8"
    assert wheel.stat().st_size <= 40_000_000
    with zipfile.ZipFile(wheel) as z:
        sizes = {i.filename: i.file_size for i in z.infolist()}
    for name in BUNDLED:
        assert sizes[f"pipdetect/assets/{name}.onnx"] <= 25_000_000
        assert f"pipdetect/assets/{name}.json" in sizes
    assert not [n for n in sizes if n.endswith((".jpg", ".png", ".pts"))]


def test_readme_commands_and_ci_agree():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", readme, re.S)
    assert blocks, "README must start with a code block holding the two commands"
    commands = [line for line in blocks[0].splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2, commands
    install_and_run, test = commands
    assert "pip install" in install_and_run and "astronaut" in install_and_run
    assert "pytest" in test
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci_lines, "the README's test command must be the last step of .ci/run"


def test_import_does_not_load_heavy_modules():
    code = (
        "import sys, pipdetect; "
        "heavy = [m for m in ('onnxruntime', 'cv2', 'huggingface_hub', 'onnx', 'torch') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
