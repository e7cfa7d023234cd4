"""What the command line writes when things go wrong (issue 20) and how outputs are
laid out (issue 19): each input fails alone, outputs never destroy inputs, result files
are replaced whole or not at all, short videos are reported, inputs keep their order."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT
from pipdetect.cli import main
from pipdetect.video import open_writer
from test_video import truncated_avi


def run(args: list, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def header_bomb(path: Path, side: int = 100_000) -> Path:
    """A 69-byte PNG whose header claims side x side pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    return path


def gray_avi(path: Path, frames: int = 4) -> Path:
    writer = open_writer(path, 10, (64, 48))
    for _ in range(frames):
        writer.write(np.full((48, 64, 3), 128, np.uint8))
    writer.release()
    return path


@pytest.fixture
def photos(tmp_path, astronaut) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), astronaut)
    cv2.imwrite(str(folder / "b.png"), cv2.resize(astronaut, (400, 400)))
    return folder


# ----------------------------------------------------------------- each input fails alone
def test_each_input_fails_alone_whatever_it_does(known_model, photos, tmp_path, capsys,
                                                 monkeypatch):
    import pipdetect.detector as detector
    import pipdetect.image as image
    import pipdetect.track  # noqa: F401  (imported before load_image is replaced)

    header_bomb(photos / "bomb.png")
    with open(photos / "huge.jpg", "wb") as f:  # over 2 GiB, sparse: no disk used
        f.write((photos / "a.jpg").read_bytes()[:2000])
        f.truncate(2**31 + 100)
    (photos / "cut.jpg").write_bytes((photos / "a.jpg").read_bytes()[:600])
    for name in ("cv2.jpg", "memory.jpg", "detect.jpg"):
        (photos / name).write_bytes((photos / "a.jpg").read_bytes())
    real_load = image.load_image

    def load(path, *args, **kwargs):
        if not isinstance(path, (str, os.PathLike)):
            return real_load(path, *args, **kwargs)
        if Path(path).name == "cv2.jpg":
            raise cv2.error("OpenCV(4.10.0) loadsave.cpp:77: error: (-215:Assertion failed)\n"
                            "pixels <= CV_IO_MAX_IMAGE_PIXELS")
        if Path(path).name == "memory.jpg":
            raise MemoryError("Unable to allocate 37.3 GiB")
        img = real_load(path, *args, **kwargs)
        return cv2.resize(img, (333, 333)) if Path(path).name == "detect.jpg" else img

    def detect_batch(self, images, *args, **kwargs):
        if any(img.shape == (333, 333, 3) for img in images):
            raise RuntimeError("something deep inside went wrong")
        return real_batch(self, images, *args, **kwargs)

    real_batch = detector.LandmarkDetector.detect_batch
    monkeypatch.setattr(image, "load_image", load)
    monkeypatch.setattr(detector.LandmarkDetector, "detect_batch", detect_batch)
    out = tmp_path / "out"
    code, stdout, err = run([photos, "-o", f"{out}/", "-m", known_model], capsys)
    assert code == 1 and stdout == ""
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json"]
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert all(line.startswith("pipdetect: ") for line in lines)
    for bad in ("bomb.png", "huge.jpg", "cut.jpg", "cv2.jpg", "memory.jpg", "detect.jpg"):
        assert sum(bad in line for line in lines) == 1, (bad, err)
    assert "not enough memory" in err and "cv2.error" in err and "RuntimeError" in err
    assert lines[-1].startswith("pipdetect: 2 images, 2 faces, 6 failed")


# ----------------------------------------------------------------- outputs never destroy inputs
def _links(tmp: Path, photos: Path) -> dict[str, list[str]]:
    """Command lines whose outputs are, or link to, an input."""
    a = photos / "a.jpg"
    os.link(a, tmp / "hard.json")
    (tmp / "sym.json").symlink_to(a)
    (tmp / "res").mkdir()
    (tmp / "res" / "a.json").symlink_to(a)
    (tmp / "drawn").mkdir()
    os.link(a, tmp / "drawn" / "a_landmarks.jpg")
    clip = gray_avi(tmp / "clip.avi")
    return {
        "-o the input": [a, "-o", a],
        "csv into the input": [a, "--format", "csv", "-o", a],
        "-o a hard link": [a, "-o", tmp / "hard.json"],
        "-o a symbolic link": [a, "-o", tmp / "sym.json"],
        "-o DIR/ member links": [a, "-o", f"{tmp / 'res'}/"],
        "drawing hard link": [a, "-o", f"{tmp / 'drawn'}/", "--draw"],
        "video -o itself": [clip, "-o", clip],
        "video drawn over itself": [clip, "--draw", clip],
        "a drawing given as an input": [a, tmp / "drawn" / "a_landmarks.jpg", "--draw",
                                        tmp / "drawn"],
    }


def test_outputs_never_destroy_inputs(photos, tmp_path, capsys, monkeypatch):
    cases = _links(tmp_path, photos)
    before = {p: digest(p) for p in [*photos.iterdir(), *tmp_path.rglob("*")] if p.is_file()}
    monkeypatch.setattr("pipdetect.cli._load_detector", lambda *a: pytest.fail("loaded"))
    for name, args in cases.items():
        code, out, err = run(args, capsys)
        assert code == 2 and "refusing to overwrite an input" in err, (name, err)
        assert out == ""
    after = {p: digest(p) for p in before}
    assert after == before
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temporary file left


def test_a_rerun_never_takes_its_own_drawings_as_inputs(known_model, photos, capsys):
    for _ in range(2):
        code, _, err = run([photos, "-o", photos, "--draw", "-m", known_model], capsys)
        assert code == 0 and "2 images, 2 faces" in err, err
    assert sorted(p.name for p in photos.iterdir()) == [
        "a.jpg", "a.json", "a_landmarks.jpg", "b.json", "b.png", "b_landmarks.png"]


# ----------------------------------------------------------------- whole files or none
def test_a_run_whose_only_input_fails_keeps_the_old_results(known_model, photos, tmp_path,
                                                           capsys):
    (photos / "bad.jpg").write_bytes(b"not a JPEG")
    for fmt in ("json", "csv"):
        results = tmp_path / f"results.{fmt}"
        results.write_text("the previous results\n")
        code, _, err = run([photos / "bad.jpg", "-o", results, "-m", known_model], capsys)
        assert code == 1 and "bad.jpg" in err and "left as it was" in err
        assert results.read_text() == "the previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "results.csv",
                                                          "results.json"]


def test_dev_null_and_standard_output(known_model, photos, capsys):
    code, out, err = run([photos / "a.jpg", "-o", os.devnull, "-m", known_model], capsys)
    assert code == 0 and out == "" and "1 image" in err
    assert Path(os.devnull).exists() and not Path(os.devnull).is_file()
    for fmt in ("json", "csv"):
        _, plain, _ = run([photos, "--format", fmt, "-m", known_model], capsys)
        code, dash, _ = run([photos, "--format", fmt, "-o", "-", "-m", known_model], capsys)
        assert code == 0 and dash == plain and len(plain) > 1000


_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes beyond the limit fail with EFBIG
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from pipdetect.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _run_limited(limit: int, args: list) -> subprocess.CompletedProcess[str]:
    """The command line in a process that cannot write files beyond ``limit`` bytes:
    a full disk, without root and on any POSIX machine."""
    pytest.importorskip("resource")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", _LIMITED, str(limit), *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=env)


def test_a_full_disk_cuts_no_file_and_keeps_the_finished_work(known_model, photos, tmp_path,
                                                               astronaut, capsys):
    for k in range(2):
        cv2.imwrite(str(photos / f"c{k}.png"), cv2.resize(astronaut, (300 + 20 * k,) * 2))
    whole = tmp_path / "whole.json"
    assert run([photos, "-o", whole, "-m", known_model, "-q"], capsys)[0] == 0
    docs = json.loads(whole.read_text())
    assert len(docs) == 4
    results = tmp_path / "results.json"
    results.write_text("[]\n" + " " * 100_000)  # the previous file: bigger than the limit
    previous = digest(results)
    limit = int(len(whole.read_bytes()) * 0.6)  # room for two documents and a half
    done = _run_limited(limit, [photos, "-o", results, "-m", known_model])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert digest(results) == previous
    [line] = [x for x in done.stderr.splitlines() if "cannot write" in x]
    assert f"{results} is left as it was" in line and "results.json.partial" in line
    kept = json.loads((tmp_path / "results.json.partial").read_text())
    assert kept == docs[:2]
    # one file per input: each that does not fit fails alone, none is left cut or empty
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.json").write_text("the previous results\n")
    done = _run_limited(1000, [photos, "-o", f"{out}/", "-m", known_model])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert [p.name for p in out.iterdir()] == ["a.json"]
    assert (out / "a.json").read_text() == "the previous results\n"
    assert done.stderr.count("cannot write") == 4 and "4 failed" in done.stderr


# ----------------------------------------------------------------- videos, order, CSV
def test_a_video_that_ends_early_is_a_failure_with_its_frames_kept(known_model, tmp_path,
                                                                   capsys):
    cut = truncated_avi(tmp_path / "cut.avi")
    out = tmp_path / "cut.json"
    code, _, err = run([cut, "-o", out, "-m", known_model], capsys)
    assert code == 1 and "ended after 9 of its 20 frames" in err
    assert len(json.loads(out.read_text())["frames"]) == 9
    whole = truncated_avi(tmp_path / "whole.avi", cut=False)
    code, _, err = run([whole, "-o", out, "-m", known_model], capsys)
    assert code == 0 and "ended" not in err


def test_results_keep_the_order_of_the_inputs_and_csv_has_a_row_for_each(
        known_model, photos, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((64, 64, 3), 90, np.uint8))
    clip = gray_avi(tmp_path / "clip.avi", frames=3)
    inputs = [photos / "b.png", clip, tmp_path / "missing.jpg", blank, photos / "a.jpg"]
    code, out, _ = run([*inputs, "-m", known_model, "-q"], capsys)
    assert code == 1
    docs = json.loads(out)  # the missing input too, in its place
    assert [d["source"] for d in docs] == [str(p) for p in inputs]
    assert [d["kind"] for d in docs] == ["image", "video", "error", "image", "image"]
    assert docs[2]["error"] == "no such file or folder"
    code, out, _ = run([*inputs, "-m", known_model, "-q", "--format", "csv"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["source"], r["frame"], r["face"], r["error"]) for r in rows] == [
        (str(inputs[0]), "", "0", ""),
        (str(clip), "0", "", ""), (str(clip), "1", "", ""), (str(clip), "2", "", ""),
        (str(inputs[2]), "", "", "no such file or folder"),
        (str(blank), "", "", ""),
        (str(inputs[4]), "", "0", ""),
    ]
    assert rows[0]["x0"] and not rows[1]["x0"] and not rows[4]["score"]


def test_an_interrupted_run_keeps_its_finished_work(known_model, photos, tmp_path, capsys,
                                                    monkeypatch):
    import pipdetect.image as image

    (photos / "c.jpg").write_bytes((photos / "a.jpg").read_bytes())
    real_load = image.load_image

    def load(path, *args, **kwargs):
        if isinstance(path, (str, os.PathLike)) and Path(path).name == "c.jpg":
            raise KeyboardInterrupt  # Ctrl-C while the third image loads
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(image, "load_image", load)
    results = tmp_path / "results.json"
    code, _, err = run([photos, "-o", results, "--batch-size", "1", "-m", known_model], capsys)
    assert code == 130 and "interrupted" in err and not results.exists()
    kept = json.loads((tmp_path / "results.json.partial").read_text())
    assert [Path(d["source"]).name for d in kept] == ["a.jpg", "b.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "results.json.partial"]
