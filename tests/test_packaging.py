"""The project's own files: dependencies, packaged assets, README and CI in sync."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from importlib import resources

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
    for name in ("LICENSE-yunet.txt", "LICENSE-meanface.txt", "crop_policies.json"):
        assert (assets / name).is_file(), name
    meanfaces = {p.name for p in (assets / "meanface").iterdir()}
    assert {"WFLW.txt", "data_300W.txt", "COFW.txt", "AFLW.txt", "LaPa.txt"} <= meanfaces
    assert (assets / "pipnet-lite0-300w.onnx").is_file()
    assert (assets / "pipnet-lite0-300w.json").is_file()


def test_wheel_holds_the_default_model_and_stays_small(tmp_path):
    """The wheel ships the default model (<= 25 MB) and stays under 40 MB, without photos."""
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path)], check=True,
                   capture_output=True)
    (wheel,) = tmp_path.glob("pipdetect-*.whl")
    assert wheel.stat().st_size <= 40_000_000
    with zipfile.ZipFile(wheel) as z:
        sizes = {i.filename: i.file_size for i in z.infolist()}
    assert sizes["pipdetect/assets/pipnet-lite0-300w.onnx"] <= 25_000_000
    assert "pipdetect/assets/pipnet-lite0-300w.json" in sizes
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
