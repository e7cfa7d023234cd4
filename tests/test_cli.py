"""The command line end to end: folders with good and bad files, a video it writes itself,
every output format checked against the documented schema (pipdetect.results)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from conftest import ROOT
from modelfactory import known_answer_model, make_spec
from modelfactory_dots import dots_face, dots_model, write_clip
from pipdetect import LandmarkDetector
from pipdetect.cli import build_parser, main
from pipdetect.crop import preset_crop_policy
from pipdetect.results import FORMAT
from pipdetect.schemes import WFLW98_TO_300W68

FACE_KEYS = {"box", "crop", "score", "confidence", "pose", "landmarks", "scores"}


# ----------------------------------------------------------------- schema validator
def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_face(face: dict[str, Any], n: int, tracked: bool) -> None:
    assert set(face) == FACE_KEYS | ({"track_id"} if tracked else set()), set(face)
    for key, size in (("box", 4), ("crop", 5)):
        box = face[key]
        assert len(box) == size and all(map(_number, box)) and box[2] > box[0] and box[3] > box[1]
    assert -180 <= face["crop"][4] <= 180
    assert _number(face["score"]) and 0 <= face["score"] <= 1
    assert _number(face["confidence"]) and 0 <= face["confidence"] <= 1
    assert face["pose"] is None or (len(face["pose"]) == 3 and all(map(_number, face["pose"])))
    assert len(face["landmarks"]) == n and len(face["scores"]) == n
    assert all(len(p) == 2 and all(map(_number, p)) for p in face["landmarks"])
    assert all(map(_number, face["scores"]))
    if tracked:
        assert isinstance(face["track_id"], int) and face["track_id"] >= 0


def check_document(doc: dict[str, Any], *, tracked: bool = True) -> None:
    """Validate one JSON document against the schema documented in pipdetect.results."""
    common = {"format", "kind", "source", "width", "height", "model", "scheme", "num_landmarks"}
    assert doc["format"] == FORMAT
    assert doc["kind"] in ("image", "video", "camera", "error")
    assert doc["source"] is None or isinstance(doc["source"], str)
    if doc["kind"] == "error":  # a failed input: why, in one line
        assert set(doc) == {"format", "kind", "source", "error"}
        assert isinstance(doc["error"], str) and doc["error"] and "\n" not in doc["error"]
        return
    for key in ("width", "height", "num_landmarks"):
        assert isinstance(doc[key], int) and doc[key] > 0
    assert isinstance(doc["model"], str) and isinstance(doc["scheme"], str)
    n = doc["num_landmarks"]
    if doc["kind"] == "image":
        assert set(doc) == common | {"faces"}
        for face in doc["faces"]:
            check_face(face, n, tracked=False)
        return
    assert set(doc) == common | {"fps", "frames"}
    assert _number(doc["fps"]) and doc["fps"] > 0
    for i, frame in enumerate(doc["frames"]):
        assert set(frame) == {"frame", "time", "detected", "faces"}
        assert frame["frame"] == i and _number(frame["time"])
        assert isinstance(frame["detected"], bool)
        for face in frame["faces"]:
            check_face(face, n, tracked)


def test_the_validator_rejects_broken_documents():
    good = {"format": FORMAT, "kind": "image", "source": None, "width": 4, "height": 4,
            "model": "m", "scheme": "custom", "num_landmarks": 2,
            "faces": [{"box": [0, 0, 1, 1], "crop": [0, 0, 1, 1, 0.0], "score": 1.0,
                       "confidence": 0.5, "pose": None,
                       "landmarks": [[0, 0], [1, 1]], "scores": [0.5, 0.5]}]}
    check_document(good)
    for breakage in ({"num_landmarks": 3}, {"format": "other"}, {"width": 0},
                     {"faces": [{"box": [0, 0, 1, 1]}]}, {"extra": 1}, {"kind": "error"}):
        with pytest.raises(AssertionError):
            check_document({**good, **breakage})
    failed = {"format": FORMAT, "kind": "error", "source": "x.jpg", "error": "broken"}
    check_document(failed)
    for breakage in ({"error": ""}, {"error": "two\nlines"}, {"faces": []}, {"kind": "image"}):
        with pytest.raises((AssertionError, KeyError)):
            check_document({**failed, **breakage})


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def model98(tmp_path_factory, wflw_meanface) -> Path:
    """Known-answer WFLW model (98 points, scheme wflw98, the WFLW crop policy)."""
    spec = make_spec(wflw_meanface, scheme="wflw98", name="known98",
                     crop_policy=preset_crop_policy("WFLW").to_dict())
    return known_answer_model(tmp_path_factory.mktemp("m") / "known98.onnx", wflw_meanface, spec)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut) -> Path:
    """A folder with good images, bad ones, and a file that is not an image at all."""
    root = tmp_path_factory.mktemp("photos")
    cv2.imwrite(str(root / "a.jpg"), astronaut)
    cv2.imwrite(str(root / "b.png"), cv2.copyMakeBorder(astronaut, 40, 0, 80, 0,
                                                         cv2.BORDER_CONSTANT))
    (root / "bad.jpg").write_bytes(b"\xff\xd8 this is not really a JPEG")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image, and not claiming to be one")
    (root / "sub").mkdir()
    cv2.imwrite(str(root / "sub" / "c.jpg"), cv2.resize(astronaut, (300, 300)))
    return root


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def analytic(meanface: np.ndarray, crop) -> np.ndarray:
    from pipdetect.crop import crops_to_image

    return crops_to_image(meanface[None], np.asarray(crop, dtype=np.float64)[None])[0]


# ----------------------------------------------------------------- images
def test_one_image_prints_json(model98, photos, capsys, wflw_meanface):
    code, out, err = run([photos / "a.jpg", "-m", model98], capsys)
    assert code == 0, err
    doc = json.loads(out)
    check_document(doc)
    assert (doc["width"], doc["height"], doc["model"]) == (512, 512, "known98")
    assert doc["scheme"] == "wflw98" and doc["num_landmarks"] == 98
    assert doc["source"] == str(photos / "a.jpg") and len(doc["faces"]) == 1
    face = doc["faces"][0]
    np.testing.assert_allclose(face["landmarks"], analytic(wflw_meanface, face["crop"]),
                               atol=2e-3)
    assert "1 image, 1 face" in err


def test_folder_with_bad_files(model98, photos, tmp_path, capsys):
    out_dir = tmp_path / "results"
    code, out, err = run([photos, "-o", f"{out_dir}/", "--draw", "-m", model98], capsys)
    assert code == 1  # something failed
    assert out == ""
    assert "bad.jpg" in err and "empty.png" in err and "notes.txt" not in err
    assert "2 images, 2 faces, 2 failed" in err
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == ["a.json", "a_landmarks.jpg", "b.json", "b_landmarks.png"]
    a = json.loads((out_dir / "a.json").read_text())
    b = json.loads((out_dir / "b.json").read_text())
    check_document(a)
    check_document(b)
    # b is a shifted by (80, 40): same face, moved
    np.testing.assert_allclose(np.array(b["faces"][0]["landmarks"]),
                               np.array(a["faces"][0]["landmarks"]) + [80, 40], atol=4.0)
    drawn = cv2.imread(str(out_dir / "a_landmarks.jpg"))
    original = cv2.imread(str(photos / "a.jpg"))
    assert drawn.shape == original.shape and np.abs(drawn.astype(int) - original).max() > 100
    # recursive: the sub-folder's image too, into the same tree
    code, _, err = run([photos, "-r", "-o", out_dir, "-m", model98, "-q"], capsys)
    assert code == 1 and "3 images" not in err  # quiet: no summary, errors only
    assert "bad.jpg" in err
    check_document(json.loads((out_dir / "sub" / "c.json").read_text()))


def test_points_68_as_csv(model98, photos, capsys):
    code, out, _ = run([photos / "a.jpg", "--points", "68", "--format", "csv", "-m", model98],
                       capsys)
    assert code == 0
    lines = out.strip().splitlines()
    header = lines[0].split(",")
    assert header[:7] == ["source", "frame", "time", "face", "track_id", "score", "confidence"]
    assert header[11:20] == ["crop_x1", "crop_y1", "crop_x2", "crop_y2", "crop_angle",
                             "roll", "yaw", "pitch", "x0"]
    assert header[19 + 67] == "x67" and header[-2:] == ["s67", "error"]
    assert len(header) == 19 + 3 * 68 + 1 and len(lines) == 2
    row = dict(zip(header, lines[1].split(","), strict=True))
    _, full, _ = run([photos / "a.jpg", "-m", model98], capsys)
    lm98 = json.loads(full)["faces"][0]["landmarks"]
    for k in (0, 30, 67):
        assert float(row[f"x{k}"]) == pytest.approx(lm98[WFLW98_TO_300W68[k]][0])
        assert float(row[f"y{k}"]) == pytest.approx(lm98[WFLW98_TO_300W68[k]][1])
    code, out, _ = run([photos / "a.jpg", "--points", "68", "-m", model98], capsys)
    doc = json.loads(out)
    check_document(doc)
    assert doc["scheme"] == "300w68" and doc["num_landmarks"] == 68


def test_npy_and_a_json_array_for_several_files(model98, photos, tmp_path, capsys):
    npy = tmp_path / "a.npy"
    assert run([photos / "a.jpg", "-o", npy, "-m", model98], capsys)[0] == 0
    arr = np.load(npy)
    _, out, _ = run([photos / "a.jpg", "-m", model98], capsys)
    assert arr.shape == (1, 98, 2) and arr.dtype == np.float32
    np.testing.assert_allclose(arr[0], json.loads(out)["faces"][0]["landmarks"], atol=1e-3)
    both = tmp_path / "both.json"
    code, _, _ = run([photos / "a.jpg", photos / "b.png", "-o", both, "-m", model98], capsys)
    docs = json.loads(both.read_text())
    assert code == 0 and isinstance(docs, list) and len(docs) == 2
    for doc in docs:
        check_document(doc)
    code, _, err = run([photos / "a.jpg", "--format", "npy", "-m", model98], capsys)
    assert code == 2 and "-o" in err
    code, _, err = run([photos, "-o", tmp_path / "all.npy", "-m", model98], capsys)
    assert code == 2 and "FOLDER" in err


def test_box_and_draw_path(model98, photos, tmp_path, capsys, wflw_meanface):
    target = tmp_path / "drawn" / "out.png"
    code, out, _ = run([photos / "a.jpg", "--box", "180,70,300,240", "--draw", target,
                        "-m", model98], capsys)
    face = json.loads(out)["faces"][0]
    assert code == 0 and face["box"] == [180, 70, 300, 240] and face["score"] == 1
    assert cv2.imread(str(target)).shape == (512, 512, 3)
    code, _, err = run([photos / "a.jpg", "--draw", photos / "a.jpg", "-m", model98], capsys)
    assert code == 2 and "refusing to overwrite an input" in err


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "nothing to do"),
        (["x.jpg", "--score-threshold", "2"], "score-threshold"),
        (["x.jpg", "--box", "1,2,3"], "X1,Y1,X2,Y2"),
        (["x.jpg", "--max-faces", "0"], "positive integer"),
        (["x.jpg", "--format", "xml"], "invalid choice"),
        # contradictions (issue 19)
        (["x.jpg", "--format", "csv", "-o", "x.json"], "--format csv contradicts -o x.json"),
        (["x.mp4", "--no-smooth", "--smoothing", "responsive"], "--no-smooth contradicts"),
        (["x.mp4", "--no-smooth", "--beta", "3"], "--no-smooth contradicts"),
        (["x.mp4", "--smoothing", "smooth", "--min-cutoff", "1"], "give one or the other"),
        (["x.mp4", "--no-track", "--redetect-interval", "3"], "--redetect-interval only apply"),
        (["x.mp4", "--no-track", "--smoothing", "smooth"], "--smoothing only apply"),
        (["x.jpg", "--camera", "0"], "--camera runs alone"),
        (["x.jpg", "--draw-boxes"], "add --draw"),
        (["x.jpg", "-o", "-", "--format", "npy"], "--format npy writes files"),
    ],
)
def test_usage_errors_exit_2(args, message, capsys):
    code, _, err = run(args, capsys)
    assert code == 2 and message in err


def test_unconvertible_points_and_missing_inputs(model98, photos, capsys):
    code, _, err = run([photos / "a.jpg", "--points", "29", "-m", model98], capsys)
    assert code == 2 and "--points 29" in err
    code, out, err = run([photos / "missing.jpg", photos / "a.jpg", "-m", model98], capsys)
    assert code == 1 and "missing.jpg" in err and "no such file" in err
    docs = json.loads(out)  # the good one is still done, the missing one says why
    assert [(d["kind"], d["source"]) for d in docs] == [
        ("error", str(photos / "missing.jpg")), ("image", str(photos / "a.jpg"))]
    assert docs[0]["error"] == "no such file or folder" and len(docs[1]["faces"]) == 1


def test_empty_folder_is_a_failure(model98, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out, err = run([tmp_path / "empty", "-m", model98], capsys)
    assert code == 1 and "no images" in err
    [doc] = json.loads(out)
    check_document(doc)
    assert doc["kind"] == "error" and doc["source"] == str(tmp_path / "empty")
    assert doc["error"].startswith("no images in this folder")


def test_bad_files_among_good_ones_are_reported_in_json_and_csv_alike(model98, photos,
                                                                      tmp_path, capsys):
    """Every input has its place, in the order given: the good results whole, each bad
    file with the reason stderr gave; the same in a JSON array, a JSON file and CSV."""
    inputs = [photos / "a.jpg", photos / "bad.jpg", photos / "b.png", photos / "empty.png"]
    code, out, err = run([*inputs, "-m", model98], capsys)
    assert code == 1
    docs = json.loads(out)
    for doc in docs:
        check_document(doc)
    assert [(d["kind"], d["source"]) for d in docs] == [
        ("image", str(inputs[0])), ("error", str(inputs[1])), ("image", str(inputs[2])),
        ("error", str(inputs[3]))]
    assert [len(docs[k]["faces"]) for k in (0, 2)] == [1, 1]
    for doc in (docs[1], docs[3]):  # the reason is the one stderr gave
        assert f"skipping {doc['source']}: {doc['error']}" in err
    alone = json.loads(run([inputs[0], "-m", model98], capsys)[1])
    assert docs[0] == alone  # a bad neighbour changes nothing in a good result
    saved = tmp_path / "r.json"
    assert run([*inputs, "-o", saved, "-m", model98, "-q"], capsys)[0] == 1
    assert json.loads(saved.read_text()) == docs
    code, out, _ = run([*inputs, "--format", "csv", "-m", model98, "-q"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 1
    assert [(r["source"], r["face"], r["error"]) for r in rows] == [
        (d["source"], "" if d["kind"] == "error" else "0", d.get("error", "")) for d in docs]
    assert float(rows[0]["x0"]) == pytest.approx(docs[0]["faces"][0]["landmarks"][0][0])
    # one input that failed: its error document is the whole output
    code, out, _ = run([inputs[1], "-m", model98, "-q"], capsys)
    assert code == 1 and json.loads(out) == docs[1]


def test_help_version_and_convert_dispatch(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for option in ("--model", "--threads", "--score-threshold", "--max-faces", "--points",
                   "--format", "--draw", "--camera", "--quiet", "--redetect-interval",
                   "--no-smooth", "--beta", "--min-cutoff", "--batch-size", "exit status",
                   "pipdetect convert"):
        assert option in out, option
    documented = {a for action in build_parser()._actions for a in action.option_strings}
    assert all(opt in out for opt in documented)
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.startswith("pipdetect ")
    try:
        code = main(["convert", "--help"])
    except SystemExit as exc:
        code = exc.code
    assert code == 0 and "checkpoint" in capsys.readouterr().out


def test_camera_without_a_display_is_a_clear_error(model98, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    code, _, err = run(["--camera", "0", "-m", model98], capsys)
    assert code == 2 and "display" in err


# ----------------------------------------------------------------- video
@pytest.fixture(scope="module")
def video(tmp_path_factory, astronaut) -> tuple[Path, Path, list[np.ndarray]]:
    """An mp4 the test writes itself: the dotted astronaut moved and scaled over 20 frames."""
    folder = tmp_path_factory.mktemp("clip")
    model = dots_model(folder / "dots.onnx")
    base = (astronaut, dots_face(LandmarkDetector(model).detect(astronaut)[0].crop))
    path = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (640, 480))
    assert writer.isOpened()
    truths = write_clip(writer, base, 20, (0.8, 0.015), (30, 8.0, 15, 4.0))
    return path, model, truths


def test_video_tracked_to_json_and_drawn(video, tmp_path, capsys):
    path, model, truths = video
    out, drawn = tmp_path / "clip.json", tmp_path / "clip_out.mp4"
    code, stdout, err = run([path, "-o", out, "--draw", drawn, "-m", model, "--no-smooth"],
                            capsys)
    assert code == 0, err
    assert stdout == "" and "20 frames, face detector on 2" in err
    doc = json.loads(out.read_text())
    check_document(doc)
    assert doc["kind"] == "video" and doc["fps"] == 15.0 and (doc["width"], doc["height"]) == (
        640, 480)
    frames = doc["frames"]
    assert [f["frame"] for f in frames if f["detected"]] == [0, 10]
    for frame, truth in zip(frames, truths, strict=True):
        assert [f["track_id"] for f in frame["faces"]] == [0]
        np.testing.assert_allclose(frame["faces"][0]["landmarks"], truth, atol=2.0)
    cap = cv2.VideoCapture(str(drawn))
    count = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (480, 640, 3)
        count += 1
    cap.release()
    assert count == 20


def test_video_options_and_arrays(video, tmp_path, capsys):
    path, model, truths = video
    code, out, _ = run([path, "-m", model, "--no-track", "-q"], capsys)
    doc = json.loads(out)
    check_document(doc, tracked=False)
    assert code == 0 and all(f["detected"] for f in doc["frames"])
    assert all("track_id" not in face for f in doc["frames"] for face in f["faces"])
    npy = tmp_path / "clip.npy"
    code, _, _ = run([path, "-m", model, "-o", npy, "--redetect-interval", "0", "-q"], capsys)
    arr = np.load(npy)
    assert code == 0 and arr.shape == (20, 1, 6, 2)
    # smoothed: a few pixels behind while the filter learns the speed, then close
    np.testing.assert_allclose(arr[:, 0], np.array(truths), atol=5.0)
    np.testing.assert_allclose(arr[4:, 0], np.array(truths)[4:], atol=2.5)
    code, out, _ = run([path, "-m", model, "--format", "csv", "-q"], capsys)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 21 and lines[1].split(",")[1:5] == ["0", "0.0", "0", "0"]
    # the presets and the legacy One Euro filter: all run, and differ from each other
    tracks = {}
    for extra in ([], ["--smoothing", "responsive"], ["--min-cutoff", "1", "--beta", "5"],
                  ["--no-smooth"]):
        out_npy = tmp_path / f"clip{len(tracks)}.npy"
        code, _, _ = run([path, "-m", model, "-o", out_npy, "-q", *extra], capsys)
        assert code == 0
        tracks[" ".join(extra)] = np.load(out_npy)
        np.testing.assert_allclose(tracks[" ".join(extra)][6:, 0], np.array(truths)[6:], atol=3.0)
    keys = list(tracks)
    assert all(not np.array_equal(tracks[a], tracks[b]) for a in keys for b in keys if a < b)


# ----------------------------------------------------------------- as a program
def _subprocess(args: list[str], env: dict[str, str] | None = None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "pipdetect", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env=full_env)


def test_python_dash_m_pipdetect(model98, photos):
    result = _subprocess([str(photos / "a.jpg"), "-m", str(model98)])
    assert result.returncode == 0, result.stderr
    check_document(json.loads(result.stdout))


def test_without_model_the_bundled_default_runs_offline(photos, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_ENDPOINT": "http://127.0.0.1:9"}
    result = _subprocess([str(photos / "a.jpg")], env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    check_document(doc)
    assert doc["model"] == "pipnet-lite0-300w-int8"  # the int8 default (issue 21)
    assert doc["num_landmarks"] == 68 and doc["scheme"] == "300w68"
    assert not (tmp_path / "hf").exists()  # no cache touched


def test_unpublished_zoo_model_offline_says_how_to_get_one(photos, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = _subprocess([str(photos / "a.jpg"), "-m", "pipnet-r18-wflw"], env)
    assert result.returncode == 2
    assert "pipdetect convert" in result.stderr and "--model" in result.stderr
    first_line = result.stderr.splitlines()[0]  # first: the zoo is not published; then: convert
    assert "which is not published yet" in first_line, result.stderr
    assert first_line.index("not published") < first_line.index("pipdetect convert CHECKPOINT")
    assert "--backbone resnet18 --dataset WFLW" in first_line
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_failed_input_is_named_once(tmp_path, capsys):
    (tmp_path / "bad.jpg").write_bytes(b"not a picture")
    missing = tmp_path / "missing.jpg"
    assert main([str(tmp_path / "bad.jpg"), str(missing), "-o", str(tmp_path / "r.json")]) == 1
    err = capsys.readouterr().err.splitlines()
    for name in ("bad.jpg", "missing.jpg"):
        (line,) = [e for e in err if name in e]
        assert line.count(name) == 1, line


def test_list_models_has_a_header_and_hides_the_unpublished_zoo(capsys):
    assert main(["--list-models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["name", "points"] and "status" in lines[0]
    assert lines[1].startswith("pipnet-lite0-300w-int8 ")
    assert lines[1].endswith("bundled, the default")
    assert lines[2].startswith("pipnet-lite0-300w ") and lines[2].endswith("  bundled")
    shown = (ROOT / "docs" / "cli.md").read_text()  # the page shows what it prints
    assert all(line in shown for line in lines[:3]), "docs/cli.md: update the --list-models output"
    assert not [line for line in lines if line.startswith("pipnet-r")]
    assert any("not published yet" in line for line in lines)
    assert main(["--list-models", "--all"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("pipnet-")]
    assert len(rows) == 19 and rows[0].startswith("pipnet-lite0-300w-int8 ")
    assert all(row.endswith("unpublished") for row in rows[2:])
    assert main(["--all"]) == 2
    assert "--list-models" in capsys.readouterr().err


def test_camera_preview_and_recording(video, tmp_path, monkeypatch, capsys):
    """The --camera loop, with a fake camera (frames of the test video) and a fake window."""
    import pipdetect.cli as cli
    import pipdetect.video as video_module

    path, model, truths = video
    real_open = video_module.open_frames
    shown: list[tuple[int, int]] = []

    def fake_open(source):
        if not isinstance(source, int):
            return real_open(source)
        assert source == 3
        frames, info = real_open(path)
        return frames, video_module.VideoInfo(fps=info.fps)  # cameras report little

    monkeypatch.setattr(cli, "_no_display", lambda: None)
    monkeypatch.setattr(video_module, "open_frames", fake_open)
    monkeypatch.setattr(cv2, "imshow", lambda name, img: shown.append(img.shape[:2]))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: ord("q") if len(shown) == 8 else -1)
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    out = tmp_path / "cam.json"
    code, _, err = run(["--camera", "3", "-m", model, "-o", out, "--no-smooth"], capsys)
    assert code == 0, err
    doc = json.loads(out.read_text())
    check_document(doc)
    assert doc["kind"] == "camera" and doc["source"] == "camera:3"
    assert len(doc["frames"]) == 8 == len(shown)  # q pressed on the 8th frame
    for frame, truth in zip(doc["frames"], truths, strict=False):
        np.testing.assert_allclose(frame["faces"][0]["landmarks"], truth, atol=2.0)


def test_progress_bar_on_a_terminal():
    import io

    from pipdetect.cli import _Console

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    console = _Console(quiet=False, stream=term)
    console.progress(3, 10, "images")
    console.progress(10, 10, "images", "5 faces")
    console.error("skipping x.jpg: broken")
    text = term.getvalue()
    assert "\r[#########" in text and "3/10 images" in text and "10/10 images  5 faces" in text
    assert text.endswith("pipdetect: skipping x.jpg: broken\n")
    quiet = Terminal()
    _Console(quiet=True, stream=quiet).progress(1, 2, "images")
    assert quiet.getvalue() == ""
    piped = io.StringIO()  # not a terminal: no bar
    _Console(quiet=False, stream=piped).progress(1, 2, "images")
    assert piped.getvalue() == ""


def test_the_command_line_is_made_of_small_parts():
    """Each function and class of pipdetect/cli.py does one thing: none over 80 lines."""
    import ast

    import pipdetect.cli as cli

    tree = ast.parse(Path(cli.__file__).read_text())
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))
            and node.end_lineno - node.lineno + 1 > 80]
    assert long == []


def test_images_go_in_groups_of_bounded_pixels(model98, tmp_path, astronaut, monkeypatch, capsys):
    """A folder of images is sent through the network in groups that hold at most
    GROUP_PIXELS pixels (one bigger image alone), and the results keep the input order."""
    from pipdetect import cli
    from pipdetect.detector import LandmarkDetector

    for k in range(5):
        cv2.imwrite(str(tmp_path / f"{k}.png"), astronaut)  # 512 x 512 each
    groups: list[int] = []
    original = LandmarkDetector.detect_batch

    def spy(self, images, **kw):
        images = list(images)
        groups.append(sum(im.shape[0] * im.shape[1] for im in images))
        return original(self, images, **kw)

    monkeypatch.setattr(LandmarkDetector, "detect_batch", spy)
    monkeypatch.setattr(cli, "GROUP_PIXELS", 2 * 512 * 512)
    code, out, err = run([*sorted(tmp_path.glob("*.png")), "-m", model98], capsys)
    assert code == 0, err
    assert groups == [2 * 512 * 512, 2 * 512 * 512, 512 * 512]
    docs = json.loads(out)
    assert [Path(d["source"]).name for d in docs] == [f"{k}.png" for k in range(5)]
