"""pipdetect speed benchmark: everything measured side by side in one run.

    python benchmarks/bench.py              # full run (~15-25 min on 2 cores), writes results.json
    python benchmarks/bench.py --quick      # smoke run (ResNet-18 WFLW only, few repeats)

Needs, besides pipdetect: ``torch`` (random-weight PIP-Nets of the real
architectures, converted with ``pipdetect.convert``, and the PyTorch reference)
and, for the dlib comparison, ``dlib-bin`` and ``face-recognition-models``.
Sections whose requirements are missing are reported as skipped, with the reason.
A full run also measures the bundled fp32 model (``pipnet-lite0-300w``, trained
weights, no PyTorch twin) after the random-weight ResNets, unless ``--no-default-model``.
``--model FILE.onnx`` benchmarks existing pipdetect model files instead (no
PyTorch twin: the PyTorch reference is skipped for them).

Method: every timed variant is a zero-argument callable. Each group of variants
that are compared with each other is measured in rounds; in every round the
variants run in a fresh random order, each for a block of about ``--block``
seconds (at least one call), and the time per call is recorded. Reported
numbers are medians over rounds; ratios are medians of the per-round ratios
(paired samples taken seconds apart, so a noisy neighbour on a shared machine
affects both sides alike). Speed does not depend on the weights, so random
weights measure the real models' speed; they say nothing about accuracy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ASTRONAUT = ROOT / "examples" / "astronaut.jpg"
LFPW = ROOT.parent / "shared" / "data" / "lfpw_test"
MODELS = {  # name: (backbone, dataset preset, landmarks)
    "r18-wflw": ("resnet18", "WFLW", 98),
    "r18-300w": ("resnet18", "300W", 68),
    "r101-wflw": ("resnet101", "WFLW", 98),
    "r101-300w": ("resnet101", "300W", 68),
}
BATCHES = (1, 4, 16, 64)
FAST_DETECTION = 320
"""detection_size of the extra 'fast detection' variant of the first model on whole photos."""
REACH_SIZES = (12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 72, 80, 96)
"""Face widths (px) tried for the face-reach table."""
PHOTOS = ("640x480, 1 face", "640x480, 4 faces", "1920x1080, 1 face", "1920x1080, 6 faces")
TARGETS_DOC = {
    "overhead": "pipdetect box given <= 1.10 x onnxruntime session.run, per face",
    "decoder": "decoder <= 1 % of model time (batch 1)",
    "torch": ">= 1.5 x faster per face than the PyTorch reference",
    "dlib": "full photo 640x480, 1 face: faster than dlib (HOG + 68-point predictor)",
    "dlib_fast": ("the same with detection_size=320 (still finds smaller faces than dlib at "
                  "upsample 0: see face reach)"),
    "batch": "batch 16 throughput >= 1.25 x batch 1",
    "import": "import pipdetect adds <= 50 ms beyond numpy",
    "rss": "peak RSS <= 300 MB (ResNet-18, load + one photo)",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- timing
class Timer:
    """Interleaved, repeated timing of groups of zero-argument callables."""

    def __init__(self, rounds: int, block: float, seed: int = 0) -> None:
        self.rounds = rounds
        self.block = block
        self.rng = np.random.default_rng(seed)

    def run(self, variants: dict[str, Callable[[], Any]], rounds: int | None = None,
            ) -> dict[str, list[float]]:
        """Seconds per call of each variant, one sample per round."""
        inner = {}
        for name, fn in variants.items():
            fn()  # warm-up: first calls allocate, load kernels, create per-thread state
            start = time.perf_counter()
            fn()
            once = time.perf_counter() - start
            inner[name] = max(1, min(10_000, math.ceil(self.block / max(once, 1e-7))))
        samples: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for _ in range(rounds or self.rounds):
            for index in self.rng.permutation(len(names)):
                name = names[index]
                fn, n = variants[name], inner[name]
                start = time.perf_counter()
                for _ in range(n):
                    fn()
                samples[name].append((time.perf_counter() - start) / n)
        return samples


def finish(report: dict[str, Any], markdown: Callable[[dict[str, Any]], str],
           out: Path | None) -> int:
    """The end of a side-by-side script: the report's Markdown (stored in it) printed,
    the report written as JSON to ``out`` if given; returns the exit status 0."""
    report["markdown"] = markdown(report)
    print(report["markdown"])
    if out:
        out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


def med(samples: list[float]) -> float:
    return float(np.median(samples))


def ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a / b (paired: both measured in the same round)."""
    return float(np.median(np.asarray(a) / np.asarray(b)))


def ms(samples: list[float]) -> float:
    return round(med(samples) * 1000, 3)


# ----------------------------------------------------------------------------- inputs
def make_photos() -> dict[str, np.ndarray]:
    """Test photos built from the bundled astronaut (512x512, one face), BGR uint8."""
    import cv2

    base = cv2.imread(str(ASTRONAUT))
    if base is None:
        raise SystemExit(f"cannot read {ASTRONAUT}")

    def canvas(tile: int, cols: int, rows: int, width: int, height: int) -> np.ndarray:
        small = cv2.resize(base, (tile, tile), interpolation=cv2.INTER_AREA)
        grid = np.concatenate([np.concatenate([small] * cols, axis=1)] * rows, axis=0)
        left = (width - grid.shape[1]) // 2
        top = (height - grid.shape[0]) // 2
        return cv2.copyMakeBorder(grid, top, height - grid.shape[0] - top, left,
                                  width - grid.shape[1] - left, cv2.BORDER_REPLICATE)

    return {
        PHOTOS[0]: canvas(480, 1, 1, 640, 480),
        PHOTOS[1]: canvas(240, 2, 2, 640, 480),
        PHOTOS[2]: canvas(1080, 1, 1, 1920, 1080),
        PHOTOS[3]: canvas(540, 3, 2, 1920, 1080),
    }


# ----------------------------------------------------------------------------- models
def build_models(names: list[str], workdir: Path) -> dict[str, dict[str, Any]]:
    """Random-weight PIP-Nets of the real architectures, converted by pipdetect.convert."""
    import torch

    sys.path.insert(0, str(HERE))
    from pipnet_torch import random_pipnet

    from pipdetect.convert import convert_checkpoint

    out = {}
    for name in names:
        backbone, dataset, landmarks = MODELS[name]
        net = random_pipnet(backbone, landmarks, seed=list(MODELS).index(name))
        pth = workdir / f"{name}.pth"
        onnx_path = workdir / f"{name}.onnx"
        torch.save(net.state_dict(), pth)
        start = time.perf_counter()
        convert_checkpoint(pth, onnx_path, backbone=backbone, dataset=dataset)
        log(f"  built {name}: {backbone}, {dataset}, {landmarks} landmarks "
            f"(converted in {time.perf_counter() - start:.1f} s)")
        out[name] = {"path": onnx_path, "torch": net, "backbone": backbone,
                     "dataset": dataset}
    return out


def given_models(paths: list[str]) -> dict[str, dict[str, Any]]:
    from pipdetect.model import load_model

    out = {}
    for text in paths:
        path = Path(text)
        spec = load_model(path).spec
        out[path.stem] = {"path": path, "torch": None, "backbone": spec.backbone,
                          "dataset": spec.dataset}
    return out


# ----------------------------------------------------------------------------- PyTorch
class TorchReference:
    """The authors' demo pipeline per face: slice the crop, resize, normalise, net, decode."""

    def __init__(self, net: Any, spec: Any) -> None:
        import torch

        sys.path.insert(0, str(HERE))
        from pipnet_torch import ReferenceDecoder

        self.torch = torch
        self.net = net
        self.decoder = ReferenceDecoder(spec.meanface, spec.num_nb)
        self.mean = torch.tensor(spec.mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(spec.std, dtype=torch.float32).view(3, 1, 1)
        self.size = spec.input_size

    def __call__(self, image: np.ndarray, crop: tuple[float, ...]) -> np.ndarray:
        import cv2

        torch = self.torch
        h, w = image.shape[:2]
        x1, y1 = max(0, round(crop[0])), max(0, round(crop[1]))
        x2, y2 = min(w, round(crop[2])), min(h, round(crop[3]))
        patch = cv2.resize(image[y1:y2, x1:x2], (self.size[1], self.size[0]))
        rgb = cv2.cvtColor(patch, cv2.COLOR_BGR2RGB)
        tensor = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)
        tensor = ((tensor - self.mean) / self.std).unsqueeze(0)
        with torch.inference_mode():
            maps = self.net(tensor)
            points, _ = self.decoder(*maps)
        pts = points[0].numpy().astype(np.float64)
        return pts * [x2 - x1, y2 - y1] + [x1, y1]


class OnePass:
    """A detector that runs each face through the network once, by the stage API:
    ``find_faces`` (or ``given_faces``) -> ``make_crops`` -> ``run_network`` ->
    ``build_faces``. That is what ``detect`` costs for a trained model on an upright face
    whose first pass is confident and level. Random-weight models give noise landmarks,
    which would send every face through levelling passes and the orientation search, so
    the random-weight ResNets are timed this way; the trained default model is timed
    through ``LandmarkDetector.detect`` itself."""

    def __init__(self, det: Any) -> None:
        self.det = det
        self.spec = det.spec
        self.output = det.output_scheme(None)

    def detect(self, image: np.ndarray, boxes: Any = None) -> list[Any]:
        det = self.det
        faces = det.find_faces(image) if boxes is None else det.given_faces(boxes, image)
        crops = det.make_crops(faces)
        (landmarks,) = det.run_network([(image, crops)])
        return list(det.build_faces(landmarks, faces.boxes, faces.scores, crops, self.output))


def _detector(path: Path, one_pass: bool, **options: Any) -> Any:
    from pipdetect import LandmarkDetector

    det = LandmarkDetector(path, **options)
    return OnePass(det) if one_pass else det


# ----------------------------------------------------------------------------- dlib
def dlib_pipeline() -> tuple[Any, str | None]:
    """(callable(image, upsample) -> list of (68, 2) arrays, None) or (None, reason)."""
    if importlib.util.find_spec("dlib") is None:
        return None, "dlib not installed (pip install dlib-bin face-recognition-models)"
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None, "face-recognition-models not installed"
    # located without importing the package (it imports pkg_resources)
    dat = Path(spec.submodule_search_locations[0]) / "models" / (
        "shape_predictor_68_face_landmarks.dat")
    if not dat.is_file():
        return None, f"{dat} missing"
    import cv2
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dat))

    def run(image: np.ndarray, upsample: int) -> list[np.ndarray]:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        faces = []
        for rect in detector(rgb, upsample):
            shape = predictor(rgb, rect)
            faces.append(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32))
        return faces

    return run, None


# ----------------------------------------------------------------------------- sections
def session_variants(path: Path, threads: int | None) -> dict[str, Any]:
    """onnxruntime sessions with different options, for the tuning table."""
    import onnxruntime as ort

    from pipdetect.model import load_model

    level = ort.GraphOptimizationLevel

    def make(**kw: Any) -> Any:
        options = ort.SessionOptions()
        options.graph_optimization_level = kw.get("level", level.ORT_ENABLE_ALL)
        if kw.get("threads"):
            options.intra_op_num_threads = kw["threads"]
        for key, value in kw.get("config", {}).items():
            options.add_session_config_entry(key, value)
        if "arena" in kw:
            options.enable_cpu_mem_arena = kw["arena"]
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    return {
        "pipdetect (load_model)": load_model(path, threads=threads).session,
        "onnxruntime defaults": ort.InferenceSession(str(path),
                                                     providers=["CPUExecutionProvider"]),
        "1 thread": make(threads=1),
        "2 threads": make(threads=2),
        "graph level EXTENDED": make(level=level.ORT_ENABLE_EXTENDED, threads=threads),
        "graph level BASIC": make(level=level.ORT_ENABLE_BASIC, threads=threads),
        # (spinning also between runs is left out: its workers would spin while the
        # other sessions of this process run; threads_bench.py gives each its process)
        "never spinning": make(threads=threads,
                               config={"session.intra_op.allow_spinning": "0"}),
        "no memory arena": make(threads=threads, arena=False),
        "denormals as zero": make(threads=threads,
                                  config={"session.set_denormal_as_zero": "1"}),
    }


def _at_cells(cls: np.ndarray, maps: np.ndarray, ndim: int) -> np.ndarray:
    """``maps`` (B, C, h, w) as a model of ``ndim``-dimensional outputs gives them: as they
    are (4), or neighbour maps read at each landmark's selected cell of ``cls`` (2)."""
    if ndim == 4:
        return maps
    batch, lms = cls.shape[:2]
    cell = cls.reshape(batch, lms, 1, -1).argmax(axis=3)[..., None]  # (B, L, 1, 1)
    values = np.take_along_axis(maps.reshape(batch, lms, -1, cls[0, 0].size), cell, axis=3)
    return values.reshape(batch, -1)


def bench_model(name: str, model: dict[str, Any], photos: dict[str, np.ndarray],
                timer: Timer, args: argparse.Namespace, calib: list[Any],
                drift_photos: list[np.ndarray]) -> dict[str, Any]:
    from pipdetect import PIPDecoder
    from pipdetect.model import load_model

    path = model["path"]
    one_pass = model["torch"] is not None  # random weights: see OnePass
    det = _detector(path, one_pass, threads=args.threads)
    spec = det.spec
    photo = photos[PHOTOS[0]]
    faces = det.detect(photo)
    if not faces:
        raise SystemExit(f"{name}: no face found in the 640x480 test photo")
    box, crop = faces[0].box, faces[0].crop
    from pipdetect.crop import warp_crops

    crop_u8 = warp_crops(photo, np.array([crop]), spec.input_size)
    x1 = _preprocess(crop_u8, spec)
    session = load_model(path, threads=args.threads).session
    import onnxruntime as ort

    defaults = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"image": x1}
    maps1 = session.run(None, feed)
    decoder = PIPDecoder(spec.meanface, num_nb=spec.num_nb)
    maps64 = [np.repeat(m, 64, axis=0) for m in maps1]
    result: dict[str, Any] = {
        "timed_through": "one pass per face (stage API; random weights)" if one_pass
        else "LandmarkDetector.detect",
        "backbone": model["backbone"], "dataset": model["dataset"],
        "landmarks": spec.num_landmarks, "file_mb": round(path.stat().st_size / 1e6, 1),
    }

    # -- per face, batch 1 ---------------------------------------------------------------
    variants: dict[str, Callable[[], Any]] = {
        "raw": lambda: session.run(None, feed),
        "raw_ort_defaults": lambda: defaults.run(None, feed),
        "box": lambda: det.detect(photo, boxes=[box]),
        "decoder_b1": lambda: decoder(*maps1),
        "decoder_b64": lambda: decoder(*maps64),
    }
    ref = None
    if model["torch"] is not None and not args.no_torch:
        import torch

        torch.set_num_threads(args.torch_threads)
        ref = TorchReference(model["torch"], spec)
        variants["torch"] = lambda: ref(photo, crop)
        with torch.inference_mode():
            tmaps = model["torch"](torch.from_numpy(x1))
        result["torch_parity_max_abs"] = float(max(
            np.abs(a - _at_cells(maps1[0], b.numpy(), a.ndim)).max()
            for a, b in zip(maps1, tmaps, strict=True)))
    int8_path, det8 = None, None
    if not args.no_int8:
        int8_path = _quantize(path, calib, args.workdir_path)
        det8 = _detector(int8_path, one_pass, threads=args.threads)
        session8 = load_model(int8_path, threads=args.threads).session
        variants["int8_raw"] = lambda: session8.run(None, feed)
        variants["int8_box"] = lambda: det8.detect(photo, boxes=[box])
    log(f"  {name}: per face (batch 1)")
    s = timer.run(variants)
    per_face = {k: ms(v) for k, v in s.items()}
    per_face["overhead_ratio"] = round(ratio(s["box"], s["raw"]), 3)
    per_face["ort_defaults_ratio"] = round(ratio(s["raw_ort_defaults"], s["raw"]), 3)
    per_face["decoder_per_face_in_b64"] = round(per_face["decoder_b64"] / 64, 4)
    per_face["decoder_pct_of_model"] = round(100 * ratio(s["decoder_b1"], s["raw"]), 3)
    if "torch" in s:
        per_face["torch_speedup"] = round(ratio(s["torch"], s["box"]), 3)
        if int8_path is not None:
            per_face["torch_speedup_int8"] = round(ratio(s["torch"], s["int8_box"]), 3)
    if int8_path is not None:
        per_face["int8_speedup_raw"] = round(ratio(s["raw"], s["int8_raw"]), 3)
        per_face["int8_speedup_box"] = round(ratio(s["box"], s["int8_box"]), 3)
        result["int8_drift"] = _drift(det, session, session8, drift_photos)
        result["int8_file_mb"] = round(int8_path.stat().st_size / 1e6, 1)
        q = load_model(int8_path).spec.provenance["quantization"]
        result["int8_weights"] = {"reduce_range": q.get("reduce_range"),
                                  "weight_range": q.get("weight_range")}
    result["per_face_ms"] = per_face

    # -- batches -----------------------------------------------------------------------
    det64 = _detector(path, one_pass, threads=args.threads, batch_size=64)
    variants = {}
    for b in BATCHES:
        xb = np.repeat(x1, b, axis=0)
        boxes = [box] * b
        variants[f"raw_b{b}"] = (lambda xb=xb: session.run(None, {"image": xb}))
        variants[f"pipdetect_b{b}"] = (lambda boxes=boxes: det64.detect(photo, boxes=boxes))
    log(f"  {name}: batches {BATCHES}")
    s = timer.run(variants, rounds=max(3, timer.rounds // 2))
    batches: dict[str, Any] = {}
    for b in BATCHES:
        batches[str(b)] = {
            "raw_faces_per_s": round(b / med(s[f"raw_b{b}"]), 2),
            "pipdetect_faces_per_s": round(b / med(s[f"pipdetect_b{b}"]), 2),
            "pipdetect_speedup_vs_b1": round(
                ratio([t / b for t in s[f"pipdetect_b{b}"]], s["pipdetect_b1"]) ** -1, 3),
        }
    result["batches"] = batches
    # for the photo group (removed before writing JSON)
    result["_detectors"] = {name: det, **({f"{name} int8": det8} if det8 else {})}
    return result


def _preprocess(crops: np.ndarray, spec: Any) -> np.ndarray:
    """(N, H, W, 3) uint8 BGR crops -> the network's input: pipdetect's reference
    preprocessing (the plain form the quantiser calibrates with)."""
    from pipdetect.convert.quantize import reference_preprocess as reference

    return reference(crops, spec)


def _quantize(path: Path, calib: list[Any], workdir: Path) -> Path:
    import logging

    from pipdetect.convert.quantize import quantize_model

    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization is chatty
    out = workdir / f"{path.stem}-int8.onnx"
    start = time.perf_counter()
    quantize_model(path, out, calib, max_faces=32)
    log(f"  quantised {path.name} -> {out.name} in {time.perf_counter() - start:.1f} s")
    return out


def _drift(det: Any, session: Any, session8: Any, images: list[np.ndarray]) -> dict[str, Any]:
    """fp32 vs int8 on the same photos and the same crops: landmark differences in pixels.

    Besides the drift of the final landmarks, it separates the two ways int8 moves
    a landmark: the selected cell changes (the argmax of the score map flips: a
    jump of about a cell, 1/8 of the crop) or, with the cell unchanged, the
    offsets read there change (``offset_*``: the own prediction, no merging).
    Random weights give nearly flat score maps where flips are common; trained
    models have one clear peak, so the offset drift is the part that carries over.
    """
    from pipdetect import PIPDecoder
    from pipdetect.crop import warp_crops

    spec = det.spec
    full = PIPDecoder(spec.meanface, num_nb=spec.num_nb)
    own = PIPDecoder(spec.meanface, num_nb=spec.num_nb, merge="none")
    mh, mw = spec.map_size
    drift, offset, gaps, score_err = [], [], [], []
    flips = total = faces = 0
    for image in images:
        found = det.detect(image)
        if not found:
            continue
        crops = np.array([f.crop for f in found])
        x = _preprocess(warp_crops(image, crops, spec.input_size), spec)
        a, b = session.run(None, {"image": x}), session8.run(None, {"image": x})
        size = (crops[:, None, 2:4] - crops[:, None, :2])  # (N, 1, 2) crop w, h in px
        drift.append(np.linalg.norm((full(*a)[0] - full(*b)[0]) * size, axis=2).ravel())
        n, num_lms = a[0].shape[:2]
        cells_a = a[0].reshape(n, num_lms, -1).argmax(axis=2)
        cells_b = b[0].reshape(n, num_lms, -1).argmax(axis=2)
        same = cells_a == cells_b
        d_own = np.linalg.norm((own(*a)[0] - own(*b)[0]) * size, axis=2)
        offset.append(d_own[same])
        top2 = np.sort(a[0].reshape(n, num_lms, -1), axis=2)[:, :, -2:]
        gaps.append((top2[:, :, 1] - top2[:, :, 0]).ravel())
        score_err.append(np.abs(a[0] - b[0]).ravel())
        flips += int(np.sum(~same))
        total += same.size
        faces += n
    if not faces:
        return {"faces": 0}
    d, o = np.concatenate(drift), np.concatenate(offset)
    return {
        "faces": faces,
        "median_px": round(float(np.median(d)), 3),
        "p95_px": round(float(np.percentile(d, 95)), 3),
        "max_px": round(float(d.max()), 3),
        "cell_flips_pct": round(100 * flips / total, 2),
        "offset_median_px": round(float(np.median(o)), 3) if o.size else None,
        "offset_p95_px": round(float(np.percentile(o, 95)), 3) if o.size else None,
        "offset_max_px": round(float(o.max()), 3) if o.size else None,
        "score_error_p99": round(float(np.percentile(np.concatenate(score_err), 99)), 4),
        "fp32_top2_gap_median": round(float(np.median(np.concatenate(gaps))), 4),
        "map_size": [mh, mw],
    }


def face_reach(dlib_run: Callable[[np.ndarray, int], Any] | None,
               quick: bool) -> dict[str, int | None]:
    """Smallest face (width of YuNet's box on the full-size astronaut, scaled) that each
    face detector setting finds on a 640x480 grey canvas, trying :data:`REACH_SIZES`;
    ``None`` if it finds none of them. The astronaut scaled down, centred."""
    import cv2

    from pipdetect.faces import FaceFinder

    base = cv2.imread(str(ASTRONAUT))
    width = float(np.diff(FaceFinder().find(base).boxes[0, ::2])[0])

    def canvas(face_px: int) -> np.ndarray:
        small = cv2.resize(base, None, fx=face_px / width, fy=face_px / width,
                           interpolation=cv2.INTER_AREA)
        out = np.full((480, 640, 3), 90, np.uint8)
        h, w = min(small.shape[0], 480), min(small.shape[1], 640)
        y, x = (480 - h) // 2, (640 - w) // 2
        out[y:y + h, x:x + w] = small[:h, :w]
        return out

    yunet = {size: FaceFinder(max_side=size) for size in (640, FAST_DETECTION)}
    finders: dict[str, Callable[[np.ndarray], int]] = {
        f"YuNet, detection_size={size}": (lambda img, f=f: len(f.find(img)))
        for size, f in yunet.items()}
    if dlib_run is not None:
        for up in ((0,) if quick else (0, 1)):
            finders[f"dlib HOG, upsample {up}"] = (lambda img, up=up: len(dlib_run(img, up)))
    reach: dict[str, int | None] = {}
    for name, count in finders.items():
        reach[name] = next((px for px in REACH_SIZES if count(canvas(px)) > 0), None)
    return reach


def bench_photos(models: dict[str, dict[str, Any]], results: dict[str, Any],
                 photos: dict[str, np.ndarray], timer: Timer, args: argparse.Namespace,
                 ) -> dict[str, Any]:
    dlib_run, reason = (None, "--no-dlib") if args.no_dlib else dlib_pipeline()
    variants: dict[str, Callable[[], Any]] = {}
    found: dict[str, dict[str, int]] = {p: {} for p in photos}
    for pname, image in photos.items():
        for mname in models:
            for who, det in results[mname]["_detectors"].items():
                variants[f"{pname}|{who}"] = (lambda det=det, image=image: det.detect(image))
                found[pname][who] = len(det.detect(image))
        if dlib_run is not None:
            ups = (0,) if args.quick else (0, 1)
            for up in ups:
                key = f"dlib (upsample {up})"
                variants[f"{pname}|{key}"] = (lambda image=image, up=up: dlib_run(image, up))
                found[pname][key] = len(dlib_run(image, up))
    log(f"  photos with face detection: {len(variants)} variants")
    s = timer.run(variants, rounds=max(3, (2 * timer.rounds) // 3))
    table: dict[str, Any] = {}
    for key, samples in s.items():
        pname, who = key.split("|")
        table.setdefault(pname, {})[who] = {"ms": ms(samples), "faces": found[pname][who]}
    out: dict[str, Any] = {"photos": table, "dlib_skipped": reason}
    log("  face reach")
    out["face_reach_px"] = face_reach(dlib_run, args.quick)
    if dlib_run is not None:
        ref = f"{PHOTOS[0]}|dlib (upsample 0)"
        out["vs_dlib_upsample0"] = {
            who: round(ratio(s[ref], s[f"{PHOTOS[0]}|{who}"]), 3)
            for mname in models for who in results[mname]["_detectors"]}
    return out


def bench_tuning(path: Path, timer: Timer, args: argparse.Namespace) -> dict[str, Any]:
    """Session options compared at batch 1 and 16 (ms per face, ratio to pipdetect's)."""
    sessions = session_variants(path, args.threads)
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for b in (1, 16):
        x = rng.normal(size=(b, 3, 256, 256)).astype(np.float32)
        variants = {k: (lambda s=s, x=x: s.run(None, {"image": x})) for k, s in sessions.items()}
        log(f"  session options, batch {b}")
        s = timer.run(variants, rounds=max(3, timer.rounds // (1 if b == 1 else 2)))
        base = s["pipdetect (load_model)"]
        out[str(b)] = {k: {"ms_per_face": round(med(v) * 1000 / b, 3),
                           "ratio": round(ratio(v, base), 3)} for k, v in s.items()}
    return out


_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy
t1 = time.perf_counter()
import pipdetect
t2 = time.perf_counter()
from pipdetect import LandmarkDetector
det = LandmarkDetector(sys.argv[1])
t3 = time.perf_counter()
image = numpy.load(sys.argv[2])
t4 = time.perf_counter()
faces = det.detect(image)
t5 = time.perf_counter()
det.detect(image)
t6 = time.perf_counter()
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
kb = lambda k: int(status[k].split()[0])
print(json.dumps({"import_numpy_ms": (t1 - t0) * 1e3, "import_pipdetect_ms": (t2 - t1) * 1e3,
                  "model_load_ms": (t3 - t2) * 1e3, "first_call_ms": (t5 - t4) * 1e3,
                  "second_call_ms": (t6 - t5) * 1e3, "faces": len(faces),
                  "peak_rss_mb": kb("VmHWM") / 1024, "final_rss_mb": kb("VmRSS") / 1024}))
"""


def bench_cold(path: Path, photo: np.ndarray, repeats: int, workdir: Path) -> dict[str, Any]:
    """Fresh processes: import, model load, first call, peak memory (medians of ``repeats``)."""
    image_file = workdir / "photo.npy"
    np.save(image_file, photo)
    runs = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(image_file)],
                              capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise SystemExit(f"cold-start child failed:\n{done.stderr}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    out = {k: round(float(np.median([r[k] for r in runs])), 2) for k in runs[0]}
    out["repeats"] = repeats
    out["peak_rss_mb_max"] = round(max(r["peak_rss_mb"] for r in runs), 1)
    return out


# ----------------------------------------------------------------------------- report
def targets(results: dict[str, Any], photos: dict[str, Any], cold: dict[str, Any],
            head: str) -> list[dict[str, Any]]:
    out = []

    def add(key: str, value: float | None, met: bool | None, unit: str = "",
            int8: float | None = None) -> None:
        out.append({"target": TARGETS_DOC[key], "measured": value, "unit": unit,
                    "met": met, "model": head, "int8": int8})

    pf = results[head]["per_face_ms"]
    add("overhead", pf["overhead_ratio"], pf["overhead_ratio"] <= 1.10, "x raw")
    add("decoder", pf["decoder_pct_of_model"], pf["decoder_pct_of_model"] <= 1.0, "%")
    if "torch_speedup" in pf:
        add("torch", pf["torch_speedup"], pf["torch_speedup"] >= 1.5, "x",
            pf.get("torch_speedup_int8"))
    else:
        add("torch", None, None)
    vs = photos.get("vs_dlib_upsample0", {})
    add("dlib", vs.get(head), None if vs.get(head) is None else vs[head] > 1.0,
        "x (dlib time / pipdetect time)", vs.get(f"{head} int8"))
    fast = vs.get(f"{head}, detection_size={FAST_DETECTION}")
    add("dlib_fast", fast, None if fast is None else fast > 1.0,
        "x (dlib time / pipdetect time)")
    b16 = results[head]["batches"]["16"]["pipdetect_speedup_vs_b1"]
    add("batch", b16, b16 >= 1.25, "x")
    if cold:
        add("import", cold["import_pipdetect_ms"], cold["import_pipdetect_ms"] <= 50, "ms")
        add("rss", cold["peak_rss_mb"], cold["peak_rss_mb"] <= 300, "MB")
    return out


def markdown(report: dict[str, Any]) -> str:
    lines: list[str] = []
    meta = report["meta"]
    lines.append(f"Measured {meta['date']} on {meta.get('cpu_summary') or meta['cpu']}, "
                 f"Python {meta['python']}, onnxruntime {meta['onnxruntime']}, "
                 f"torch {meta.get('torch')}, dlib {meta.get('dlib')}; "
                 f"{'quick run' if meta['quick'] else 'full run'}, medians of "
                 f"{meta['rounds']} interleaved rounds; load average before / after "
                 f"{report['load_average_before_after']}.")
    lines.append("")
    cpu = meta.get("cpu_info", {})

    def flag(key: str) -> str:
        return {True: "yes", False: "no"}.get(cpu.get(key), "unknown")

    lines.append("| CPU | cores | AVX2 | AVX-512 | VNNI | AMX | int8 u8s8 kernels saturate "
                 "| onnxruntime |")
    lines.append("|---|---|---|---|---|---|---|---|")
    lines.append(f"| {meta['cpu']} | {meta['cores']} | {flag('avx2')} | {flag('avx512')} | "
                 f"{flag('vnni')} | {flag('amx')} | {flag('int8_u8s8_saturates')} | "
                 f"{meta['onnxruntime']} |")
    lines.append("")
    models = report["models"]
    lines.append("**Per face, batch 1 (ms)**")
    lines.append("")
    lines.append("| model | onnxruntime session.run | pipdetect, box given | overhead | "
                 "PyTorch reference | pipdetect speed-up | decoder | decoder / model | "
                 "int8, box given | int8 speed-up |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in models.items():
        p = r["per_face_ms"]
        lines.append(
            f"| {name} | {p['raw']:.1f} | {p['box']:.1f} | {p['overhead_ratio']:.3f}x | "
            f"{_f(p.get('torch'), '.1f')} | {_f(p.get('torch_speedup'), '.2f', 'x')} | "
            f"{p['decoder_b1']:.3f} | {p['decoder_pct_of_model']:.2f} % | "
            f"{_f(p.get('int8_box'), '.1f')} | {_f(p.get('int8_speedup_box'), '.2f', 'x')} |")
    lines.append("")
    lines.append("**Batches: faces per second (pipdetect, boxes given; raw session.run)**")
    lines.append("")
    lines.append("| model | " + " | ".join(f"batch {b}" for b in BATCHES)
                 + " | batch 16 vs 1 |")
    lines.append("|---|" + "---|" * (len(BATCHES) + 1))
    for name, r in models.items():
        cells = [f"{r['batches'][str(b)]['pipdetect_faces_per_s']:.1f} "
                 f"({r['batches'][str(b)]['raw_faces_per_s']:.1f})" for b in BATCHES]
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {r['batches']['16']['pipdetect_speedup_vs_b1']:.2f}x |")
    lines.append("")
    lines.append("**Decoder alone (98 or 68 landmarks, ms)**: batch 1 / batch 64 / "
                 "per face in batch 64")
    lines.append("")
    for name, r in models.items():
        p = r["per_face_ms"]
        lines.append(f"* {name}: {p['decoder_b1']:.3f} / {p['decoder_b64']:.3f} / "
                     f"{p['decoder_per_face_in_b64']:.4f}")
    lines.append("")
    photos = report["photos"]["photos"]
    if photos:
        who = list(next(iter(photos.values())))
        lines.append("**Full photo with face detection (ms per photo; faces found)**")
        lines.append("")
        lines.append("| photo | " + " | ".join(who) + " |")
        lines.append("|---|" + "---|" * len(who))
        for pname, row in photos.items():
            lines.append(f"| {pname} | " + " | ".join(
                f"{row[w]['ms']:.1f} ({row[w]['faces']})" for w in who) + " |")
        if report["photos"].get("dlib_skipped"):
            lines.append("")
            lines.append(f"dlib skipped: {report['photos']['dlib_skipped']}")
        lines.append("")
        reach = report["photos"].get("face_reach_px") or {}
        if reach:
            lines.append("**Face reach**: smallest face found (px wide, of "
                         + ", ".join(map(str, REACH_SIZES))
                         + ") on a 640x480 canvas: " + "; ".join(
                             f"{k} {'none' if v is None else f'{v} px'}"
                             for k, v in reach.items()) + ".")
            lines.append("")
    cold = report.get("cold_start")
    if cold:
        lines.append(f"**Cold start and memory** ({report['head']}, fresh process, median of "
                     f"{cold['repeats']}): import numpy {cold['import_numpy_ms']:.0f} ms, "
                     f"`import pipdetect` +{cold['import_pipdetect_ms']:.1f} ms, model load "
                     f"(incl. onnxruntime import) {cold['model_load_ms']:.0f} ms, first call "
                     f"on a 640x480 photo {cold['first_call_ms']:.0f} ms (second "
                     f"{cold['second_call_ms']:.0f} ms), peak RSS {cold['peak_rss_mb']:.0f} MB.")
        for name, mem in report.get("memory", {}).items():
            lines.append(f"Peak RSS {name}: {mem['peak_rss_mb']:.0f} MB.")
        lines.append("")
    drift = {n: r["int8_drift"] for n, r in models.items() if "int8_drift" in r}
    if drift:
        lines.append("**int8 vs fp32 landmarks, same photos and crops (the ResNets have random "
                     "weights: see README; pipnet-lite0-300w is trained)**")
        lines.append("")
        lines.append("| model | faces | landmarks: median / p95 / max px | cells flipped | "
                     "offsets, same cell: median / p95 / max px | score error p99 | "
                     "fp32 top-2 score gap |")
        lines.append("|---|---|---|---|---|---|---|")
        for name, d in drift.items():
            if d.get("faces"):
                lines.append(
                    f"| {name} | {d['faces']} | {d['median_px']} / {d['p95_px']} / "
                    f"{d['max_px']} | {d['cell_flips_pct']} % | {d['offset_median_px']} / "
                    f"{d['offset_p95_px']} / {d['offset_max_px']} | {d['score_error_p99']} | "
                    f"{d['fp32_top2_gap_median']} |")
        lines.append("")
    tuning = report.get("tuning")
    if tuning:
        lines.append(f"**onnxruntime session options** ({report['head']}, ms per face; "
                     "ratio to pipdetect's session)")
        lines.append("")
        lines.append("| options | batch 1 | batch 16 |")
        lines.append("|---|---|---|")
        for key in tuning["1"]:
            a, b = tuning["1"][key], tuning["16"][key]
            lines.append(f"| {key} | {a['ms_per_face']:.1f} ({a['ratio']:.2f}) | "
                         f"{b['ms_per_face']:.1f} ({b['ratio']:.2f}) |")
        lines.append("")
        lines.append("Spinning on whole photos, each setting in a process of its own: "
                     "`threads_bench.py`.")
        lines.append("")
    lines.append("**Targets**")
    lines.append("")
    for t in report["targets"]:
        mark = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        value = "-" if t["measured"] is None else f"{t['measured']} {t['unit']}"
        extra = "" if t.get("int8") is None else f" (int8 model: {t['int8']} x)"
        lines.append(f"* {t['target']}: {value} - **{mark}**{extra}")
    return "\n".join(lines)


def _f(value: float | None, fmt: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{suffix}"


def environment(args: argparse.Namespace, rounds: int) -> dict[str, Any]:
    import cv2
    import onnxruntime

    from pipdetect._cpu import cpu_info, cpu_summary

    info = cpu_info()  # model name, cores, AVX2 / AVX-512 / VNNI / AMX flags, onnxruntime
    versions = {}
    for mod in ("torch", "dlib"):
        if importlib.util.find_spec(mod) is not None:
            versions[mod] = __import__(mod).__version__
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "cpu": info["model"], "cores": info["cores"], "cpu_info": info,
        "cpu_summary": cpu_summary(info), "python": platform.python_version(),
        "numpy": np.__version__, "onnxruntime": onnxruntime.__version__,
        "opencv": cv2.__version__, **versions, "quick": args.quick, "rounds": rounds,
        "block_s": args.block, "threads": args.threads, "torch_threads": args.torch_threads,
    }


def calibration_and_drift_photos(quick: bool) -> tuple[list[Any], list[np.ndarray], str]:
    """Calibration photos for int8, and the photos drift is measured on (never the same)."""
    import cv2

    astronaut = cv2.imread(str(ASTRONAUT))
    if LFPW.is_dir():
        images = sorted(LFPW.glob("*.jpg")) + sorted(LFPW.glob("*.png"))
        n_cal, n_eval = (8, 4) if quick else (40, 40)
        calib = [str(p) for p in images[:n_cal]]
        evals = [astronaut] + [cv2.imread(str(p)) for p in images[n_cal:n_cal + n_eval]]
        return calib, evals, (f"calibrated on {len(calib)} LFPW test photos, drift on the "
                              f"astronaut and {len(evals) - 1} other LFPW photos")
    flips = [astronaut, astronaut[:, ::-1], cv2.resize(astronaut, None, fx=0.7, fy=0.7)]
    return flips, [astronaut], ("calibrated on the astronaut (no LFPW photos found): the drift "
                                "is measured on the calibration photo itself")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: ResNet-18 WFLW only, 3 short rounds, no tuning table")
    parser.add_argument("--models", default=None,
                        help=f"comma-separated subset of {','.join(MODELS)} (default: all; "
                             "--quick: r18-wflw)")
    parser.add_argument("--model", action="append", default=[], metavar="FILE",
                        help="benchmark this pipdetect .onnx file instead (repeatable)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per group")
    parser.add_argument("--block", type=float, default=None,
                        help="seconds per variant per round (default 0.4, quick 0.02)")
    parser.add_argument("--threads", type=int, default=None,
                        help="pipdetect / onnxruntime threads (default: pipdetect's default)")
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cold-repeats", type=int, default=None)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    parser.add_argument("--no-dlib", action="store_true", help="skip dlib")
    parser.add_argument("--no-int8", action="store_true", help="skip int8 quantisation")
    parser.add_argument("--no-default-model", action="store_true",
                        help="without --model: do not also measure the bundled default model")
    parser.add_argument("--out", type=Path, default=HERE / "results.json",
                        help="JSON output (default benchmarks/results.json)")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="also write the markdown tables to this file")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep generated models here (default: a temporary folder)")
    parser.add_argument("--wait-idle", type=float, default=None, metavar="LOAD",
                        help="first wait (up to 15 min) until the 1-minute load average "
                             "is below LOAD (the machine is shared)")
    args = parser.parse_args(argv)
    if args.wait_idle is not None:
        _wait_idle(args.wait_idle)
    load_before = os.getloadavg()[0]
    rounds = args.rounds or (3 if args.quick else 15)
    args.block = args.block or (0.02 if args.quick else 0.4)
    timer = Timer(rounds, args.block)

    tmp = tempfile.TemporaryDirectory(prefix="pipdetect-bench-")
    workdir = args.workdir or Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    args.workdir_path = workdir
    start = time.perf_counter()
    log("building inputs and models")
    photos = make_photos()
    if args.model:
        models = given_models(args.model)
    else:
        if importlib.util.find_spec("torch") is None:
            raise SystemExit("building the real-architecture models needs torch "
                             "(pip install torch), or pass --model FILE.onnx")
        names = (args.models.split(",") if args.models
                 else ["r18-wflw"] if args.quick else list(MODELS))
        unknown = [n for n in names if n not in MODELS]
        if unknown:
            raise SystemExit(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
        models = build_models(names, workdir)
        if not args.no_default_model:
            from pipdetect.zoo import bundled_path

            # the fp32 EfficientNet-Lite0 (its int8 copy, the default, is quantised from it;
            # this script makes and times its own int8 copy of every model it measures)
            models.update(given_models([str(bundled_path("pipnet-lite0-300w"))]))
    calib, drift_photos, calib_note = calibration_and_drift_photos(args.quick)
    head = next(iter(models))

    results = {}
    for name, model in models.items():
        log(f"model {name}")
        results[name] = bench_model(name, model, photos, timer, args, calib, drift_photos)

    results[head]["_detectors"][f"{head}, detection_size={FAST_DETECTION}"] = _detector(
        models[head]["path"], models[head]["torch"] is not None, threads=args.threads,
        detection_size=FAST_DETECTION)
    log("photos")
    photo_results = bench_photos(models, results, photos, timer, args)
    tuning = None if args.quick else bench_tuning(models[head]["path"], timer, args)
    log("cold start and memory (subprocesses)")
    repeats = args.cold_repeats or (1 if args.quick else 5)
    cold = bench_cold(models[head]["path"], photos[PHOTOS[0]], repeats, workdir)
    memory: dict[str, Any] = {head: {"peak_rss_mb": cold["peak_rss_mb"]}}
    if not args.quick:
        for name, model in models.items():
            if name != head:
                memory[name] = bench_cold(model["path"], photos[PHOTOS[0]], 1, workdir)

    for r in results.values():
        r.pop("_detectors", None)
    report = {
        "meta": environment(args, rounds),
        "head": head,
        "models": results,
        "photos": photo_results,
        "tuning": tuning,
        "cold_start": cold,
        "memory": memory,
        "int8_calibration": None if args.no_int8 else calib_note,
        "seconds": round(time.perf_counter() - start, 1),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    report["targets"] = targets(results, photo_results, cold, head)
    report["markdown"] = markdown(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=_json_default) + "\n")
    if args.markdown:
        args.markdown.write_text(report["markdown"] + "\n")
    print(report["markdown"])
    log(f"wrote {args.out} in {report['seconds']:.0f} s")
    tmp.cleanup()
    return 0


def _wait_idle(limit: float, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while os.getloadavg()[0] >= limit and time.monotonic() < deadline:
        log(f"waiting for the load average ({os.getloadavg()[0]:.2f}) to drop below {limit}")
        time.sleep(20)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
