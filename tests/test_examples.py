"""The example scripts behave like the command line: clean messages instead of tracebacks
for expected failures (no camera, a bad file), each file named once, rounded numbers,
docstrings that tell the truth. (examples/ray_batch.py is tested in test_ray.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLE_IMAGE, ROOT

EXAMPLES = ROOT / "examples"
NO_SUCH_CAMERA = "97"  # a camera index no test machine has


def run(script: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True,
                          text=True, timeout=120, check=False, cwd=cwd)


def long_floats(text: str) -> list[str]:
    return re.findall(r"\d+\.\d{4,}", text)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    (root / "face.jpg").write_bytes(EXAMPLE_IMAGE.read_bytes())
    (root / "bad.jpg").write_bytes(b"not a picture")
    (root / "notes.txt").write_text("not an image either, and not a failure")
    (root / "sub").mkdir()
    (root / "sub" / "deeper.jpg").write_bytes(EXAMPLE_IMAGE.read_bytes())
    return root


def test_quickstart_prints_rounded_numbers(tmp_path: Path) -> None:
    result = run("quickstart.py", "-o", str(tmp_path / "q.png"))
    assert result.returncode == 0, result.stderr
    assert "1 face(s)" in result.stdout and "Face(68 points 300w68, box=(" in result.stdout
    assert not long_floats(result.stdout), result.stdout
    assert (tmp_path / "q.png").is_file()


@pytest.mark.parametrize("script", ["head_pose.py", "video_tracking.py"])
def test_no_camera_is_a_clean_message(script: str) -> None:
    result = run(script, NO_SUCH_CAMERA)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "WARN" not in result.stderr, result.stderr
    assert f"camera {NO_SUCH_CAMERA}" in result.stderr and "no camera here?" in result.stderr


@pytest.mark.parametrize("script", ["head_pose.py", "video_tracking.py"])
def test_a_bad_file_is_a_clean_message_naming_it_once(script: str, folder: Path) -> None:
    bad = folder / "bad.jpg"
    result = run(script, str(bad))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count(str(bad)) == 1, result.stderr


def test_head_pose_prints_rounded_angles() -> None:
    result = run("head_pose.py", str(EXAMPLE_IMAGE))
    assert result.returncode == 0, result.stderr
    assert re.search(r"face 0: yaw +-?\d+\.\d  pitch +-?\d+\.\d  roll +-?\d+\.\d  EAR \d\.\d\d",
                     result.stdout), result.stdout
    assert not long_floats(result.stdout)


def test_folder_example_reads_images_as_the_cli_does(folder: Path, tmp_path: Path) -> None:
    result = run("folder.py", str(folder), "-o", str(tmp_path / "out"))
    assert result.returncode == 1  # bad.jpg
    assert "1 images, 1 faces, 1 unreadable" in result.stdout  # not notes.txt, not sub/
    assert result.stderr.count("bad.jpg") == 1 and "notes.txt" not in result.stderr


def test_video_tracking_docstring_describes_the_smoother_it_uses() -> None:
    doc = (EXAMPLES / "video_tracking.py").read_text().split('"""')[1]
    assert "FaceSmoother" in doc and "pose" in doc and "shape" in doc
    assert "per coordinate" not in doc
