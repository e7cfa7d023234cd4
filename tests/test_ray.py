"""pipdetect.integrations.ray: on a local Ray instance started here, and in-process.

Ray must be installed (CI installs it with the test extra): these tests are never
skipped. One local Ray instance (2 CPUs, no dashboard, small object store) serves
the whole module and is shut down at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import ray.data

from conftest import ROOT, load_script
from hubserver import HubStandIn
from modelfactory import make_spec, random_model
from pipdetect import LandmarkDetector
from pipdetect.integrations.ray import PipdetectPredictor, detect_landmarks, output_schema
from pipdetect.results import image_record
from raylocal import LOOPBACK_ENV, listening_addresses

pytestmark = pytest.mark.timeout(120)

CORRUPT = "corrupt.jpg"
NO_FACE = "gradient.png"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A fresh local Ray instance with 2 CPUs, as light as Ray allows, on 127.0.0.1 only."""
    assert all(os.environ.get(k) == v for k, v in LOOPBACK_ENV.items())  # conftest.py
    ray.init(
        address="local",
        num_cpus=2,
        _node_ip_address="127.0.0.1",  # listen on loopback only
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=100 * 1024**2,
        logging_level="warning",
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_listens_on_loopback_only(ray_local: None) -> None:
    """The node reports 127.0.0.1 and no Ray process listens on any other address."""
    assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
    listening = listening_addresses()
    if sys.platform.startswith("linux"):
        assert {"gcs_server", "raylet"} <= set().union(*listening.values()), listening
    assert set(listening) <= {"127.0.0.1", "::1"}, listening


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory, wflw_meanface: np.ndarray) -> Path:
    """A 98-point model with random heads: its landmarks depend on the pixels, so a
    result written to the wrong row, a colour swap or a different decode shows."""
    # A calibration that trusts every face (probability ~1, threshold 0): the random heads'
    # faces are never dropped nor tried turned. (Their random eye lines can still make a
    # face look rolled, so the turned picture may be searched and add faces; the tests
    # compare Ray with the single-process API face by face, whatever their number.)
    trusting = {"type": "logistic", "features": ["logit_mean", "logit_low_quartile"],
                "coef": [20.0, 0.0, 0.0], "threshold": 0.0, "fitted_on": "test"}
    spec = make_spec(wflw_meanface, name="ray-test", scheme="wflw98", confidence=trusting)
    return random_model(tmp_path_factory.mktemp("model") / "random.onnx", spec, seed=3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """Six face images made from the astronaut, one without a face, one corrupt file."""
    root = tmp_path_factory.mktemp("images")
    a = astronaut
    canvas = np.full((700, 640, 3), 90, np.uint8)
    canvas[150:662, 100:612] = a
    images = {
        "original.jpg": a,
        "flipped.png": a[:, ::-1],
        "small.png": cv2.resize(a, (300, 300), interpolation=cv2.INTER_AREA),
        "large.jpg": cv2.resize(a, (800, 800), interpolation=cv2.INTER_LINEAR),
        "two_faces.png": np.hstack([a, a[:, ::-1]]),
        "padded.png": canvas,
        NO_FACE: np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3)),
    }
    for name, img in images.items():
        assert cv2.imwrite(str(root / name), np.ascontiguousarray(img))
    (root / CORRUPT).write_bytes((root / "original.jpg").read_bytes()[:300] + b"\0" * 64)
    return root


@pytest.fixture(scope="module")
def expected(folder: Path, model_path: Path) -> dict[str, list[dict[str, Any]]]:
    """Per file name: the single-process API's faces, as the CLI writes them."""
    det = LandmarkDetector(model_path, threads=1)
    out = {}
    for path in sorted(folder.iterdir()):
        if path.name != CORRUPT:
            out[path.name] = [f.to_dict() for f in det.detect(path)]
    assert out[NO_FACE] == []
    assert len(out["two_faces.png"]) >= 2  # random heads: the orientation search may add more
    assert all(len(out[name]) >= 1 for name in out if name not in (NO_FACE,))
    return out


def _faces_equal(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w)
        for key in w:
            np.testing.assert_array_equal(np.asarray(g[key]), np.asarray(w[key]), err_msg=key)


def _objects(values: list[Any]) -> np.ndarray:
    """A 1-D object array holding ``values`` as they are (as Ray's numpy batches do)."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


# --------------------------------------------------------------------------- on Ray


def test_folder_to_parquet_matches_single_process(
    ray_local: None, folder: Path, model_path: Path, expected: dict[str, Any], tmp_path: Path
) -> None:
    # Read and write tasks reserve 1 CPU each by default: with both CPUs held by the two
    # actors they would wait forever (the job stalls). They only move bytes: 0 CPUs.
    ds = ray.data.read_binary_files(str(folder), include_paths=True, num_cpus=0)
    out = tmp_path / "parquet"
    landmarks = detect_landmarks(ds, str(model_path), actors=2, threads=1, batch_size=3)
    landmarks.write_parquet(str(out), ray_remote_args={"num_cpus": 0})
    table = pq.read_table(out)
    assert table.schema.equals(output_schema("images"), check_metadata=False)
    rows = {Path(r["source"]).name: r for r in table.to_pylist()}
    assert sorted(rows) == sorted([*expected, CORRUPT])

    bad = rows.pop(CORRUPT)
    assert bad["error"].startswith("InvalidImageError")
    assert bad["faces"] is None and bad["width"] is None
    det = LandmarkDetector(model_path, threads=1)
    for name, row in rows.items():
        assert row.pop("error") is None, name
        # The row is the CLI's JSON document of the image (pipdetect.results).
        image = cv2.imread(str(folder / name))
        h, w = image.shape[:2]
        want = image_record(det, det.detect(image), size=(w, h), source=row["source"])
        assert set(row) == set(want)
        _faces_equal(row.pop("faces"), want.pop("faces"))
        assert row == want


def test_read_images_rgb_one_row_per_face(
    ray_local: None, folder: Path, model_path: Path, expected: dict[str, Any]
) -> None:
    # PNG only: PIL's and OpenCV's JPEG decoders may differ by a grey level.
    pngs = sorted(str(p) for p in folder.glob("*.png"))
    ds = ray.data.read_images(pngs, include_paths=True, num_cpus=0)
    out = ds.map_batches(
        PipdetectPredictor,
        fn_constructor_kwargs={"model": str(model_path), "rows": "faces"},
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=1,
        batch_size=4,
        batch_format="numpy",
    )
    rows = out.take_all()
    by_image: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_image.setdefault(Path(r["source"]).name, []).append(r)
    assert sorted(by_image) == sorted(Path(p).name for p in pngs)
    face_keys = ("box", "crop", "score", "confidence", "pose", "landmarks", "scores")
    for name, group in by_image.items():
        assert all(r["error"] is None for r in group), name
        if not expected[name]:
            assert len(group) == 1 and group[0]["face"] is None and group[0]["landmarks"] is None
            continue
        group.sort(key=lambda r: r["face"])
        assert [r["face"] for r in group] == list(range(len(expected[name])))
        _faces_equal([{k: r[k] for k in face_keys} for r in group], expected[name])


def test_zoo_name_is_downloaded_once_for_two_actors(
    ray_local: None, folder: Path, model_path: Path, expected: dict[str, Any], tmp_path: Path
) -> None:
    from pipdetect.zoo import get_model_info

    zoo_name = "pipnet-r18-wflw"  # a zoo name (the default model is bundled, never fetched)
    data = model_path.read_bytes()
    file = get_model_info(zoo_name).file
    manifest = {
        "manifest_version": 1,
        "files": {file: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}},
    }
    with HubStandIn() as hub:
        hub.body_delay = 0.5  # both actors ask while the first download is under way
        hub.put("pipdetect/pipnet", file, data)
        hub.put("pipdetect/pipnet", "manifest.json", json.dumps(manifest).encode())
        env = {
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_OFFLINE": "0",
            "PIPDETECT_REPO": "pipdetect/pipnet",
            "PIPDETECT_REVISION": "main",
        }
        ds = ray.data.read_binary_files(str(folder / "small.png"), include_paths=True, num_cpus=0)
        out = ds.map_batches(
            PipdetectPredictor,
            fn_constructor_kwargs={"model": zoo_name},
            compute=ray.data.ActorPoolStrategy(size=2),
            num_cpus=1,
            batch_format="numpy",
            runtime_env={"env_vars": env},
        )
        rows = out.take_all()
        assert hub.count("HEAD", "manifest.json") == 2  # both actors resolved the name
        assert hub.count("GET", file) == 1  # one download
    assert len(rows) == 1 and rows[0]["error"] is None
    _faces_equal(rows[0]["faces"], expected["small.png"])


# --------------------------------------------------------------------------- in-process


@pytest.fixture(scope="module")
def predictor(model_path: Path) -> PipdetectPredictor:
    return PipdetectPredictor(str(model_path), keep_columns=["id"])


def test_paths_boxes_and_kept_columns(
    predictor: PipdetectPredictor, folder: Path, model_path: Path, expected: dict[str, Any]
) -> None:
    det = LandmarkDetector(model_path, threads=1)
    box = [180.0, 60.0, 300.0, 220.0]
    want_box = [f.to_dict() for f in det.detect(folder / "original.jpg", boxes=[box])]
    batch = {
        "path": _objects(
            [str(folder / n) for n in ("original.jpg",) * 4 + ("missing.jpg", "flipped.png")]
        ),
        "boxes": _objects(
            [None, np.array([box]), [[10.0, 10.0, 5.0, 20.0]], [[2e3, 2e3, 2.1e3, 2.1e3]], None, []]
        ),
        "id": np.arange(6),
    }
    table = predictor(batch)
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == [0, 1, 2, 3, 4, 5]
    # A box outside its image fails the whole detect_batch call: only its row is an error.
    outside = rows.pop(3)
    assert outside["error"].startswith("InvalidBoxError") and outside["faces"] is None
    _faces_equal(rows[0]["faces"], expected["original.jpg"])
    _faces_equal(rows[1]["faces"], want_box)
    assert rows[1]["faces"][0]["score"] == 1.0
    assert rows[2]["error"].startswith("InvalidBoxError") and rows[2]["faces"] is None
    assert rows[3]["error"].startswith("FileNotFoundError")
    assert rows[4]["error"] is None and rows[4]["faces"] == []  # boxes given: none


def test_pandas_batches_and_bgr_arrays(
    model_path: Path, astronaut: np.ndarray, expected: dict[str, Any]
) -> None:
    import pandas as pd  # installed with ray[data]

    pred = PipdetectPredictor(str(model_path), color="bgr", rows="faces")
    flipped = np.ascontiguousarray(astronaut[:, ::-1])
    frame = pd.DataFrame({"image": [flipped, None], "path": ["flipped.png", "empty"]})
    rows = pred(frame).to_pylist()
    n = len(expected["flipped.png"])
    assert [r["source"] for r in rows] == ["flipped.png"] * n + ["empty"]
    got = [{k: r[k] for k in ("box", "crop", "score", "confidence", "pose", "landmarks",
                              "scores")} for r in rows[:n]]
    _faces_equal(got, expected["flipped.png"])
    assert rows[n]["error"].startswith("InvalidImageError") and rows[n]["face"] is None


def test_empty_batch_and_bad_batches(predictor: PipdetectPredictor) -> None:
    table = predictor({"bytes": np.array([], dtype=object), "id": np.array([], np.int64)})
    assert table.num_rows == 0
    assert table.schema.equals(output_schema("images").append(pa.field("id", pa.int64())))
    with pytest.raises(ValueError, match="keep_columns"):
        predictor({"bytes": np.array([], dtype=object)})
    with pytest.raises(ValueError, match="read_binary_files"):
        predictor({"pixels": np.zeros((1, 4, 4, 3), np.uint8)})
    with pytest.raises(TypeError, match="batch_format"):
        predictor([b"abc"])


def test_points_68_and_the_scheme_follow_the_detector(
    model_path: Path, folder: Path, astronaut: np.ndarray
) -> None:
    pred = PipdetectPredictor(str(model_path), points=68)
    rows = pred({"path": _objects([str(folder / "two_faces.png"), str(folder / NO_FACE)])})
    det = LandmarkDetector(model_path, threads=1)
    for row, name in zip(rows.to_pylist(), ("two_faces.png", NO_FACE), strict=True):
        assert (row["scheme"], row["num_landmarks"]) == ("300w68", 68)
        want = [f.to_dict() for f in det.detect(folder / name, points=68)]
        _faces_equal(row["faces"], want)
        assert all(len(f["landmarks"]) == 68 for f in row["faces"])


@pytest.mark.parametrize(
    "kwargs",
    [{"points": 5}, {"rows": "image"}, {"color": "RGB"}, {"threads": 0}, {"threads": True}],
)
def test_options_are_checked(model_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises((ValueError, KeyError)):
        PipdetectPredictor(str(model_path), **kwargs)


# --------------------------------------------------------------------------- imports


def test_ray_is_imported_only_by_the_integration() -> None:
    code = (
        "import pkgutil, importlib, sys, pipdetect\n"
        "for m in pkgutil.walk_packages(pipdetect.__path__, 'pipdetect.'):\n"
        "    if m.name not in ('pipdetect.__main__', 'pipdetect.integrations.ray'):\n"
        "        importlib.import_module(m.name)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('ray', 'pyarrow')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_missing_ray_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "try:\n"
        "    import pipdetect.integrations.ray\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install ".[ray]"' in out.stdout, out.stdout + out.stderr


# --------------------------------------------------------------------------- examples/ray_batch.py
def test_ray_batch_example_reads_the_folder_as_the_cli_does(
    ray_local: None, folder: Path, model_path: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Images only (notes.txt is not a failure), sub-folders only with -r, and the Ray
    instance already running is used, not restarted."""
    batch = load_script(ROOT / "examples" / "ray_batch.py", "ray_batch_example")
    work = tmp_path / "photos"
    work.mkdir()
    for name in ("original.jpg", NO_FACE):
        (work / name).write_bytes((folder / name).read_bytes())
    (work / "notes.txt").write_text("not an image")
    (work / "sub").mkdir()
    (work / "sub" / "inner.png").write_bytes((folder / "small.png").read_bytes())
    args = [str(work), "--model", str(model_path), "--actors", "1"]
    assert batch.main([*args, "-o", str(tmp_path / "flat")]) == 0
    assert "2 images" in capsys.readouterr().out and ray.is_initialized()
    names = sorted(Path(s).name for s in pq.read_table(tmp_path / "flat")["source"].to_pylist())
    assert names == sorted(["original.jpg", NO_FACE])
    assert batch.main([*args, "-r", "-o", str(tmp_path / "deep")]) == 0
    assert "3 images, " in capsys.readouterr().out


def test_ray_batch_example_starts_a_quiet_ray_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = load_script(ROOT / "examples" / "ray_batch.py", "ray_batch_example")
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    assert batch.start_ray(num_cpus=1) is True
    (kwargs,) = calls
    assert kwargs["_node_ip_address"] == "127.0.0.1" and kwargs["address"] == "local"
    assert kwargs["log_to_driver"] is False and kwargs["logging_level"] in ("error", "warning")
    assert kwargs["include_dashboard"] is False
