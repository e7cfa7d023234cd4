"""The models that ship inside the package, the int8 default and the fp32 network it was
quantised from: offline, 68 points, and as accurate as docs/accuracy-and-speed.md (and the
README's copy of its table) says.

The accuracy test reads the LFPW test photos in place (../shared/data/lfpw_test,
research-only data) and is skipped with a reason where that folder is absent.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLE_IMAGE, LFPW, ROOT, load_script
from pipdetect import LandmarkDetector, list_models
from pipdetect.zoo import DEFAULT_MODEL, bundled_path

README = ROOT / "README.md"
ACCURACY_PAGE = ROOT / "docs" / "accuracy-and-speed.md"
TOLERANCE = 0.3
"""NME points the shipped model may drift from the documented figure (another CPU, onnxruntime)."""


def test_the_model_file_is_in_the_package_and_small() -> None:
    path = bundled_path()
    assert path.is_relative_to(Path(__import__("pipdetect").__file__).parent)
    assert path.stat().st_size <= 25_000_000


def test_loads_offline_with_an_empty_cache_and_finds_68_landmarks(tmp_path: Path) -> None:
    """A fresh process, HF_HUB_OFFLINE=1, an empty cache and a Hub address that refuses."""
    code = textwrap.dedent(f"""
        import json, cv2
        from pipdetect import LandmarkDetector
        det = LandmarkDetector()
        faces = det.detect(cv2.imread({str(EXAMPLE_IMAGE)!r}))
        print(json.dumps({{"name": det.spec.name, "faces": len(faces),
                           "shape": list(faces[0].landmarks.shape),
                           "box": list(faces[0].box),
                           "points": faces[0].landmarks.tolist()}}))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"),
               HF_ENDPOINT="http://127.0.0.1:9")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["name"] == DEFAULT_MODEL
    assert out["faces"] == 1 and out["shape"] == [68, 2]
    assert not (tmp_path / "hf").exists()
    # the landmarks sit on the face: inside its box, eyes above the mouth
    pts = np.array(out["points"])
    x1, y1, x2, y2 = out["box"]
    assert np.mean((pts[:, 0] > x1) & (pts[:, 0] < x2) & (pts[:, 1] > y1 - 0.2 * (y2 - y1))
                   & (pts[:, 1] < y2 + 0.1 * (y2 - y1))) > 0.9
    assert pts[36:48, 1].mean() < pts[48:68, 1].mean()
    assert pts[36:42, 0].mean() < pts[42:48, 0].mean()  # subject's right eye on image left


def test_metadata_says_what_the_model_is() -> None:
    assert DEFAULT_MODEL == INT8  # issue 21: the int8 copy is the default
    spec = LandmarkDetector().spec
    assert spec.name == DEFAULT_MODEL and spec.provenance["quantization"]["type"] == "int8"
    assert spec.scheme == "300w68" and spec.num_landmarks == 68
    assert spec.backbone == "efficientnet_lite0"
    assert "2,009 faces" in (spec.dataset or "")
    assert "research use only" in spec.license.lower()
    assert spec.accuracy["end_to_end"] > 0 and spec.accuracy["gt_crops"] > 0
    training = spec.provenance["training"]
    assert "training/train.py" in training["command"] and len(training["commit"]) == 40
    assert spec.crop_policy["fitted_on"].startswith("YuNet")
    info = list_models()[0]
    assert info.bundled and info.name == DEFAULT_MODEL
    assert info.nme == spec.accuracy["end_to_end"]


INT8 = "pipnet-lite0-300w-int8"
FP32 = "pipnet-lite0-300w"
ROWS = {INT8: r"pipdetect default \(`pipnet-lite0-300w-int8`\)",
        FP32: r"pipdetect fp32 \(`pipnet-lite0-300w`\)"}
"""Each bundled model's row in the accuracy tables."""


def readme_figures(page: Path = ACCURACY_PAGE, model: str = DEFAULT_MODEL
                   ) -> tuple[float, float]:
    """(true-landmark crops, end to end) NME of a bundled model as ``page`` states them."""
    text = page.read_text()
    m = re.search(r"\| " + ROWS[model] + r"[^|]*\|[^|]*\|\s*\*?\*?"
                  r"([\d.]+) %\*?\*?\s*\|\s*\*?\*?([\d.]+) %", text)
    assert m, f"{page.name}: the accuracy table lost its {model} row"
    return float(m.group(1)), float(m.group(2))


@pytest.mark.parametrize(("page", "model"), [(ACCURACY_PAGE, DEFAULT_MODEL),
                                             (README, DEFAULT_MODEL), (ACCURACY_PAGE, FP32),
                                             (README, FP32)],
                         ids=["docs", "README", "docs-fp32", "README-fp32"])
def test_documented_figures_are_the_metadata_figures(page: Path, model: str) -> None:
    spec = LandmarkDetector(model).spec
    gt, e2e = readme_figures(page, model)
    assert gt == pytest.approx(spec.accuracy["gt_crops"], abs=0.005)
    assert e2e == pytest.approx(spec.accuracy["end_to_end"], abs=0.005)


def test_the_default_is_the_int8_copy_of_the_bundled_fp32_model() -> None:
    """The default is the fp32 model quantised (training/release_int8.py): both bundled,
    offline, research only, 7-bit weights that no x86 CPU saturates, the first three
    convolutions and the heads in float, calibrated on training photos, with its own
    measured figures and confidence fit, within the issue's 0.05-point bar of the fp32 one."""
    det, int8 = LandmarkDetector(FP32), LandmarkDetector()
    spec = int8.spec
    assert spec.name == INT8 and det.spec.name == FP32 and "quantization" not in det.spec.provenance
    assert bundled_path(FP32).is_relative_to(bundled_path().parent)
    assert bundled_path().stat().st_size < 0.6 * bundled_path(FP32).stat().st_size
    for name, detector in ((INT8, int8), (FP32, det)):
        info = next(m for m in list_models() if m.name == name)
        assert info.bundled and info.published
        assert info.nme == detector.spec.accuracy["end_to_end"]
    assert spec.accuracy["end_to_end"] - det.spec.accuracy["end_to_end"] <= 0.05
    assert spec.accuracy["missed"] == 0
    q = spec.provenance["quantization"]
    assert q["type"] == "int8" and q["reduce_range"] is True and q["heads"] == "fp32"
    assert len(q["fp32_first_convolutions"]) == 3
    assert "300w_train" in q["calibration_photos"] and q["recipe"] == "training/release_int8.py"
    assert spec.license == det.spec.license and "research use only" in spec.license.lower()
    assert spec.provenance["training"] == det.spec.provenance["training"]
    assert spec.confidence != det.spec.confidence  # fitted again on the int8 network's scores
    image = __import__("cv2").imread(str(EXAMPLE_IMAGE))
    a, b = det(image), int8(image)
    assert a.shape == b.shape == (68, 2)
    iod = float(np.linalg.norm(a[36] - a[45]))
    assert 0 < float(np.abs(a - b).max()) < 0.1 * iod  # a copy, not the same file


@pytest.mark.skipif(not LFPW.is_dir(), reason=f"LFPW test photos not found at {LFPW} "
                    "(research data, read in place; only on the developers' machines)")
@pytest.mark.parametrize("model", [DEFAULT_MODEL, FP32])
def test_accuracy_on_lfpw_stays_within_0_3_points_of_the_docs(model: str) -> None:
    evaluate = load_script(ROOT / "training" / "evaluate.py", "evaluate")
    measured = evaluate.evaluate_model(LandmarkDetector(model, threads=2), LFPW)
    gt, e2e = readme_figures(model=model)
    assert measured["photos"] == 224 and measured["missed"] == 0
    assert abs(measured["gt_crops_nme_pct"] - gt) <= TOLERANCE, measured
    assert abs(measured["end_to_end_nme_pct"] - e2e) <= TOLERANCE, measured


@pytest.mark.skipif(not LFPW.is_dir(), reason=f"LFPW test photos not found at {LFPW} "
                    "(research data, read in place; only on the developers' machines)")
def test_photos_turned_90_and_180_degrees_are_as_good_as_upright() -> None:
    """The first 12 LFPW test photos, upright and turned 90 and 180 degrees, end to end with
    default settings (benchmarks/rotation_bench.py has the full table)."""
    bench = load_script(ROOT / "benchmarks" / "rotation_bench.py", "rotation_bench")
    pairs = bench.load_pairs(LFPW, 12)
    rows = bench.accuracy(LandmarkDetector(threads=2), pairs, [0, 90, 180])
    upright = rows["0"]["nme_mean"]
    for angle in ("90", "180"):
        assert rows[angle]["found"] == 12, rows
        assert rows[angle]["nme_mean"] <= 1.15 * upright, rows
        assert rows[angle]["over_10_pct"] == 0, rows
        assert rows[angle]["roll_error_median_deg"] <= 3, rows


@pytest.mark.skipif(not LFPW.is_dir(), reason=f"LFPW test photos not found at {LFPW} "
                    "(research data, read in place; only on the developers' machines)")
@pytest.mark.parametrize(("angle", "index"), [(60, 58), (60, 205), (90, 58)])
def test_a_rolled_face_beside_another_person_is_found(angle: int, index: int) -> None:
    """The three LFPW faces benchmarks/rotation_bench.py used to miss: photo 58 at 60
    degrees (the face detector finds it, beside a confident upright person, but the network
    was unsure of its first crop and it got no more passes), photo 205 at 60 and photo 58
    at 90 degrees (the face detector misses it, and the other person, rolled 31-43 degrees,
    made the picture count as upright, so it was not searched turned)."""
    bench = load_script(ROOT / "benchmarks" / "rotation_bench.py", "rotation_bench")
    image, points = bench.rotate(*bench.load_pairs(LFPW, index + 1)[index], angle)
    found, nme, _ = bench.score(LandmarkDetector(threads=2).detect(image), points)
    assert found and nme < 8, (found, nme)


@pytest.mark.skipif(not LFPW.is_dir(), reason=f"LFPW test photos not found at {LFPW} "
                    "(research data, read in place; only on the developers' machines)")
def test_confidence_keeps_right_faces_and_drops_boxes_on_no_face() -> None:
    """On 24 LFPW test photos: every upright face found is kept by the default threshold,
    and a face-sized box away from the face (nothing but background) is not."""
    import cv2

    calibrate = load_script(ROOT / "training" / "calibrate.py", "calibrate")
    evaluate = load_script(ROOT / "training" / "evaluate.py", "evaluate")
    det = LandmarkDetector(threads=2)
    rng = np.random.default_rng(0)
    kept, away = [], []
    for image_path, pts_path in evaluate.D.find_pairs(LFPW)[:24]:
        image = cv2.imread(str(image_path))
        truth = evaluate.D.read_pts(pts_path)
        face = evaluate.nearest_face(det.detect(image), truth)
        kept.append(face.confidence >= det.min_confidence)
        box = calibrate.away_box(rng, image.shape, truth)
        if box is not None:
            away.append(det.detect(image, boxes=[box])[0].confidence < det.min_confidence)
    assert all(kept) and len(away) >= 10 and np.mean(away) >= 0.8, (kept, away)


def test_the_angles_page_shows_the_measured_tables() -> None:
    """docs/angles.md's tables are those benchmarks/rotation_bench.py --tables prints from
    benchmarks/rotation_results.json and the default model's calibration report."""
    bench = load_script(ROOT / "benchmarks" / "rotation_bench.py", "rotation_bench")
    report = json.loads((ROOT / "benchmarks" / "rotation_results.json").read_text())
    calibration = bench.calibration_report()  # the default model's
    page = (ROOT / "docs" / "angles.md").read_text()
    for key, text in bench.tables(report, calibration).items():
        assert text in page, f"docs/angles.md: {key} differs from the benchmark files"
    assert calibration["calibration"] == LandmarkDetector().spec.confidence
