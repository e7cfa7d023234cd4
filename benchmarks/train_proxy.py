"""Train a stand-in PIP-Net (ResNet-18, 68 points) on LFPW, then measure what int8 does to it.

    nice -n 19 python benchmarks/train_proxy.py --epochs 100 --workdir /tmp/pipdetect-proxy

Why: the int8 drift in ``benchmarks/README.md`` ("int8") was measured on random
weights, whose score maps are almost flat, so the argmax flips between near-tied
cells and the drift is meaningless. No official checkpoint is reachable here, so
this script trains one from scratch, on the LFPW test photos that
``bench.py`` does not use (sorted images ``[80:]``; ``[:40]`` calibrate the int8
model and ``[40:80]`` measure the drift), and then runs the benchmark's own
quantisation (``bench._quantize``) and drift measurement (``bench._drift``) on it.

Training follows the PIP-Net reference (docs/design.md): crops are the
68-point landmark box enlarged 1.1 about its centre (the 300W convention),
stretched to 256x256, RGB with ImageNet normalisation; the score map target is 1
at the landmark's cell and 0 elsewhere (MSE, weight 10); x/y offsets of the
landmark and of its 10 mean-face neighbours from that cell's top-left corner, in
cell units, with L1 at the positive cell (weight 1). Random rotation, scale,
shift, horizontal flip (with the 68-point flip map) and colour jitter.

Coordinates follow pipdetect (``pipdetect.crop``): 0-based pixel-centre image
coordinates (the LFPW ``.pts`` files here are converted to that), a normalised
crop coordinate ``u`` is ``x1 + u * (x2 - x1)`` image pixels, and the crop is
sampled exactly like :func:`pipdetect.crop.warp_crops`.

Everything derived from the data (the checkpoint, the ONNX models, the results)
goes to ``--workdir`` (default: a new temporary folder), never into the
repository: 300-W data is for research use only. Dev-only: needs torch.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LFPW = ROOT.parent / "shared" / "data" / "lfpw_test"
BENCH_PHOTOS = 80
"""bench.py uses sorted images [:40] (int8 calibration) and [40:80] (drift)."""
INPUT = 256
STRIDE = 32
NUM_LMS = 68
NUM_NB = 10
CROP_ENLARGE = 1.1
CLS_WEIGHT = 10.0
REG_WEIGHT = 1.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTEROCULAR = (36, 45)
"""300W inter-ocular normalisation: outer corners of the two eyes."""

# The data conventions, targets and loss are the default model's (training/): one copy.
sys.path.insert(0, str(ROOT / "training"))
from data import FLIP_68, landmark_crop, make_targets, to_input  # noqa: E402
from data import read_pts as _read_pts  # noqa: E402
from evaluate import nearest_face  # noqa: E402


def read_pts(path: Path) -> np.ndarray:
    """Landmarks (68, 2) float64 of a 300-W ``.pts`` file (image pixels, as stored)."""
    return _read_pts(path)


def _nme(pred: np.ndarray, truth: np.ndarray) -> float:
    from data import nme

    return float(nme(pred[None], truth[None])[0])


def pip_loss(outputs: tuple[Any, ...], targets: dict[str, Any]) -> tuple[Any, dict[str, float]]:
    """Reference loss: 10 * MSE(score maps) + L1 of the four offset maps at the positive cell."""
    from nets import pip_loss as loss

    return loss(outputs, targets, CLS_WEIGHT, REG_WEIGHT)


# ----------------------------------------------------------------------------- data
def lfpw_images(data: Path) -> list[Path]:
    """All LFPW photos in bench.py's order (sorted ``*.jpg`` then sorted ``*.png``)."""
    return sorted(data.glob("*.jpg")) + sorted(data.glob("*.png"))


def training_photos(data: Path) -> list[Path]:
    """The photos bench.py never uses (it takes the first 80 for calibration and drift)."""
    return lfpw_images(data)[BENCH_PHOTOS:]


@dataclass
class Sample:
    """One annotated face, kept as a region around it (to save memory and warp time)."""

    image: np.ndarray
    """BGR uint8 region of the photo around the face."""
    points: np.ndarray
    """(68, 2) landmarks in the region's pixel coordinates."""
    name: str


def load_samples(paths: list[Path]) -> list[Sample]:
    """Read photos and their ``.pts`` landmarks; keep twice the landmark box around each face.

    Twice the box covers the largest augmented crop (1.1 / 0.9 zoom out, 20 degree
    rotation, 5 % shift); what lies outside the photo stays black, as at run time.
    """
    import cv2

    out = []
    for path in paths:
        image = cv2.imread(str(path))
        if image is None:
            raise FileNotFoundError(f"cannot read {path}")
        points = read_pts(path.with_suffix(".pts"))
        x1, y1, x2, y2 = landmark_crop(points, 2.0)
        h, w = image.shape[:2]
        left, top = max(0, math.floor(x1)), max(0, math.floor(y1))
        right, bottom = min(w, math.ceil(x2) + 1), min(h, math.ceil(y2) + 1)
        region = np.ascontiguousarray(image[top:bottom, left:right])
        out.append(Sample(region, points - [left, top], path.stem))
    return out


@dataclass(frozen=True)
class Augment:
    """Ranges of the random augmentation (all zero / off: the plain training crop)."""

    rotate_deg: float = 20.0
    zoom: float = 0.1
    """Face scale in the crop uniform in [1 - zoom, 1 + zoom]."""
    shift: float = 0.05
    """Crop shift, uniform in +-shift of the crop's width and height."""
    flip: bool = True
    colour: float = 0.2
    """Per-channel gain in [1 - colour, 1 + colour], offset in +-colour * 100 grey levels."""


NO_AUGMENT = Augment(0.0, 0.0, 0.0, False, 0.0)


def make_example(sample: Sample, rng: np.random.Generator, aug: Augment,
                 size: int = INPUT) -> tuple[np.ndarray, np.ndarray]:
    """One training crop: (size, size, 3) BGR uint8 and its landmarks (68, 2) normalised.

    The augmentation is a similarity transform ``G`` of the photo about the crop's
    centre (flip, rotation, zoom, shift); the crop is the 1.1 landmark box of the
    untransformed face, taken in the transformed photo. A landmark at ``p`` then has
    normalised crop coordinates ``(G p - (x1, y1)) / (w, h)``, and output pixel ``d``
    samples the transformed photo at ``x1 + (d + 0.5) * w / size - 0.5`` (like
    :func:`pipdetect.crop.warp_crops`).
    """
    import cv2

    x1, y1, x2, y2 = landmark_crop(sample.points)
    w, h = x2 - x1, y2 - y1
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    flip = bool(aug.flip and rng.random() < 0.5)
    angle = math.radians(rng.uniform(-aug.rotate_deg, aug.rotate_deg))
    zoom = rng.uniform(1 - aug.zoom, 1 + aug.zoom)
    shift = rng.uniform(-aug.shift, aug.shift, 2) * [w, h]
    rot = zoom * np.array([[math.cos(angle), -math.sin(angle)],
                           [math.sin(angle), math.cos(angle)]])
    if flip:
        rot = rot @ np.diag([-1.0, 1.0])
    g = np.eye(3)
    g[:2, :2] = rot
    g[:2, 2] = centre + shift - rot @ centre
    points = sample.points @ g[:2, :2].T + g[:2, 2]
    if flip:
        points = points[list(FLIP_68)]
    norm = (points - [x1, y1]) / [w, h]
    k = np.array([[w / size, 0.0, x1 + 0.5 * w / size - 0.5],
                  [0.0, h / size, y1 + 0.5 * h / size - 0.5],
                  [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(g) @ k  # output pixel -> region pixel
    crop = cv2.warpAffine(sample.image, inverse[:2], (size, size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    if aug.colour > 0:
        gain = rng.uniform(1 - aug.colour, 1 + aug.colour, 3)
        offset = rng.uniform(-aug.colour, aug.colour) * 100
        crop = np.clip(crop * gain + offset, 0, 255).astype(np.uint8)
    return crop, norm


def neighbours_300w(num_nb: int = NUM_NB) -> np.ndarray:
    """(68, num_nb) neighbour lists of the 300W mean face, by pipdetect's decoder's own rule."""
    from pipdetect import PIPDecoder
    from pipdetect.presets import load_meanface

    return np.asarray(PIPDecoder(load_meanface("300W"), num_nb=num_nb).neighbours)


# ----------------------------------------------------------------------------- training
def build_net(seed: int) -> Any:
    """ResNet-18 PIP-Net (benchmarks/pipnet_torch.py) initialised for training from scratch.

    Convolutions He-normal (fan out), the last BatchNorm of every residual branch
    zero (each block starts as the identity), heads normal(0, 0.001) with zero bias
    like the reference's heads.
    """
    import torch
    from torch import nn

    sys.path.insert(0, str(HERE))
    from pipnet_torch import PIPNet

    torch.manual_seed(seed)
    net = PIPNet("resnet18", NUM_LMS, NUM_NB)
    heads = {"cls_layer", "x_layer", "y_layer", "nb_x_layer", "nb_y_layer"}
    with torch.no_grad():
        for name, module in net.named_modules():
            if isinstance(module, nn.Conv2d):
                if name in heads:
                    nn.init.normal_(module.weight, std=0.001)
                    nn.init.zeros_(module.bias)
                else:
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.zeros_(module.bias)
                if name.endswith(".bn2"):
                    nn.init.zeros_(module.weight)
                else:
                    nn.init.ones_(module.weight)
    return net


def batch_tensors(samples: list[Sample], rng: np.random.Generator, aug: Augment,
                  neighbours: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """Augmented crops of ``samples`` as an input tensor and stacked target tensors."""
    import torch

    crops, targets = [], []
    for sample in samples:
        crop, norm = make_example(sample, rng, aug)
        crops.append(crop)
        targets.append(make_targets(norm, neighbours))
    stacked = {k: torch.from_numpy(np.stack([t[k] for t in targets])) for k in targets[0]}
    return torch.from_numpy(to_input(np.stack(crops))), stacked


def train(samples: list[Sample], *, epochs: int, batch_size: int, lr: float,
          weight_decay: float, seed: int, aug: Augment, max_steps: int | None = None,
          max_minutes: float | None = None) -> tuple[Any, list[dict[str, float]]]:
    """Train from scratch with AdamW and a cosine learning rate (1-epoch warm-up).

    Returns the network in eval mode and one log row per epoch. ``max_steps`` stops
    after that many optimiser steps in total (smoke tests). ``max_minutes`` is a
    wall-clock budget for a shared machine: the cosine then follows whichever is
    further along, the steps or the clock, and training ends at the end of the epoch
    where it reaches zero (so a slowed-down run still ends annealed, with fewer epochs).
    """
    import torch

    net = build_net(seed)
    net.train()
    rng = np.random.default_rng(seed)
    neighbours = neighbours_300w()
    steps_per_epoch = max(1, len(samples) // batch_size)  # drop the ragged last batch
    total = epochs * steps_per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)

    def progress(step: int) -> float:
        done = step / total
        if max_minutes is not None:
            done = max(done, (time.perf_counter() - start) / (60 * max_minutes))
        return min(done, 1.0)

    def schedule(step: int) -> float:
        if step < steps_per_epoch:
            return (step + 1) / steps_per_epoch
        return 0.5 * (1 + math.cos(math.pi * progress(step)))

    start = time.perf_counter()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    history: list[dict[str, float]] = []
    step = 0
    for epoch in range(epochs):
        order = rng.permutation(len(samples))
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        for s in range(steps_per_epoch):
            batch = [samples[i] for i in order[s * batch_size:(s + 1) * batch_size]]
            inputs, targets = batch_tensors(batch, rng, aug, neighbours)
            loss, parts = pip_loss(net(inputs), targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            if max_steps is not None and step >= max_steps:
                break
        n = s + 1
        row = {"epoch": epoch + 1, **{k: v / n for k, v in sums.items()},
               "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        history.append(row)
        _log(f"epoch {epoch + 1}/{epochs}: loss {row['loss']:.4f} (cls {row['cls']:.5f}, "
             f"x {row['x']:.3f}, nb_x {row['nb_x']:.3f}), {row['seconds']:.1f} s")
        if max_steps is not None and step >= max_steps:
            break
        if max_minutes is not None and epoch + 1 < epochs and progress(step) >= 1.0:
            _log(f"stopping after {epoch + 1} epochs: the {max_minutes} min budget is used up")
            break
    return net.eval(), history


def save_checkpoint(net: Any, path: Path) -> None:
    """``torch.save`` the state_dict: the authors' key layout, what ``pipdetect convert`` reads."""
    import torch

    torch.save(net.state_dict(), path)


def convert(pth: Path, onnx_path: Path) -> Any:
    """Convert with pipdetect.convert as an official 300W ResNet-18 checkpoint would be."""
    from pipdetect.convert import convert_checkpoint

    return convert_checkpoint(pth, onnx_path, backbone="resnet18", dataset="300W")


# ----------------------------------------------------------------------------- evaluation
def nme_ground_truth_crops(onnx_path: Path, samples: list[Sample]) -> float:
    """Mean inter-ocular NME (%) with the 300W training crops built from the true landmarks."""
    from pipdetect import PIPDecoder
    from pipdetect.model import load_model

    model = load_model(onnx_path, threads=1)
    spec = model.spec
    decode = PIPDecoder(spec.meanface, num_nb=spec.num_nb)
    rng = np.random.default_rng(0)
    errors = []
    for sample in samples:
        crop, norm = make_example(sample, rng, NO_AUGMENT, spec.input_size[0])
        maps = model.session.run(None, {"image": to_input(crop[None])})
        pred = np.asarray(decode(*maps)[0])[0]
        x1, y1, x2, y2 = landmark_crop(sample.points)
        scale = np.array([x2 - x1, y2 - y1])
        errors.append(_nme(pred * scale, norm * scale))
    return float(np.mean(errors))


def nme_detector(det: Any, paths: list[Path]) -> dict[str, Any]:
    """Inter-ocular NME (%) with the detector's own face boxes and crops (``det.detect``).

    Per photo, the detected face whose crop centre is nearest the annotated
    landmarks' centroid is scored; photos where no face is found are counted as misses.
    """
    import cv2

    errors, misses = [], 0
    for path in paths:
        truth = read_pts(path.with_suffix(".pts"))
        faces = det.detect(cv2.imread(str(path)))
        if not faces:
            misses += 1
            continue
        face = nearest_face(faces, truth)
        errors.append(_nme(np.asarray(face.landmarks, np.float64), truth))
    e = np.array(errors)
    return {"photos": len(paths), "faces_scored": len(e), "missed": misses,
            "nme_mean_pct": round(float(e.mean()), 2) if e.size else None,
            "nme_median_pct": round(float(np.median(e)), 2) if e.size else None,
            "failure_rate_10pct": round(float(np.mean(e > 10)) * 100, 1) if e.size else None}


def peak_scores(det: Any, session: Any, images: list[np.ndarray]) -> dict[str, float]:
    """Median best-cell score and median top-2 gap of the fp32 score maps on ``images``."""
    from pipdetect.crop import warp_crops

    spec = det.spec
    tops = []
    for image in images:
        faces = det.detect(image)
        if not faces:
            continue
        crops = np.array([f.crop for f in faces])
        x = to_input(warp_crops(image, crops, spec.input_size))
        cls = session.run(None, {"image": x})[0]
        tops.append(np.sort(cls.reshape(*cls.shape[:2], -1), axis=2)[:, :, -2:].reshape(-1, 2))
    t = np.concatenate(tops)
    return {"peak_median": round(float(np.median(t[:, 1])), 3),
            "second_median": round(float(np.median(t[:, 0])), 3)}


def evaluate(onnx_path: Path, workdir: Path, data: Path, train_samples: list[Sample]
             ) -> dict[str, Any]:
    """fp32 accuracy, int8 quantisation and drift, all with bench.py's own functions."""
    import logging

    sys.path.insert(0, str(HERE))
    import bench

    from pipdetect import LandmarkDetector
    from pipdetect.model import load_model

    if data.resolve() != bench.LFPW.resolve():
        raise SystemExit(f"bench.py reads its photos from {bench.LFPW}; --data must be that "
                         "folder for the drift to be measured on the same photos")
    calib, drift_images, note = bench.calibration_and_drift_photos(quick=False)
    drift_paths = lfpw_images(data)[40:BENCH_PHOTOS]
    det = LandmarkDetector(onnx_path, threads=1)
    session = load_model(onnx_path, threads=1).session
    _log("fp32 NME on the held-out drift photos (detector crops)")
    result: dict[str, Any] = {
        "nme_detector_drift_photos": nme_detector(det, drift_paths),
        "nme_gt_crops_drift_photos_pct": round(
            nme_ground_truth_crops(onnx_path, load_samples(drift_paths)), 2),
        "nme_gt_crops_training_photos_pct": round(
            nme_ground_truth_crops(onnx_path, train_samples), 2),
        "fp32_scores": peak_scores(det, session, drift_images),
    }
    _log(f"  {result['nme_detector_drift_photos']}")
    _log("quantising (bench._quantize) and measuring the drift (bench._drift)")
    int8_path = bench._quantize(onnx_path, calib, workdir)
    logging.getLogger().setLevel(logging.WARNING)
    session8 = load_model(int8_path, threads=1).session
    result["int8_drift"] = bench._drift(det, session, session8, drift_images)
    result["int8_nme_detector_drift_photos"] = nme_detector(
        LandmarkDetector(int8_path, threads=1), drift_paths)
    result["photos"] = note
    return result


def markdown(result: dict[str, Any]) -> str:
    """The README tables of one run."""
    nme = result["nme_detector_drift_photos"]
    nme8 = result["int8_nme_detector_drift_photos"]
    d = result["int8_drift"]
    s = result["fp32_scores"]
    return "\n".join([
        "| NME, detector crops: fp32 (mean / median) | int8 (mean / median) | fp32 NME, "
        "true-landmark crops: drift photos / training photos | faces scored (missed) | "
        "fp32 best-cell score (median) | second-best (median) |",
        "|---|---|---|---|---|---|",
        f"| {nme['nme_mean_pct']} % / {nme['nme_median_pct']} % | "
        f"{nme8['nme_mean_pct']} % / {nme8['nme_median_pct']} % | "
        f"{result['nme_gt_crops_drift_photos_pct']} % / "
        f"{result['nme_gt_crops_training_photos_pct']} % | {nme['faces_scored']} "
        f"({nme['missed']}) | {s['peak_median']} | {s['second_median']} |",
        "",
        "| model | faces | landmarks: median / p95 / max px | cells flipped | offsets, same "
        "cell: median / p95 / max px | score error p99 | fp32 top-2 score gap |",
        "|---|---|---|---|---|---|---|",
        f"| trained r18-300w stand-in | {d['faces']} | {d['median_px']} / {d['p95_px']} / "
        f"{d['max_px']} | {d['cell_flips_pct']} % | {d['offset_median_px']} / "
        f"{d['offset_p95_px']} / {d['offset_max_px']} | {d['score_error_p99']} | "
        f"{d['fp32_top2_gap_median']} |",
    ])


# ----------------------------------------------------------------------------- main
def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=LFPW, help="LFPW test folder (read in place)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the checkpoint, models and results go (default: a new "
                             "temporary folder; never inside the repository)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--max-photos", type=int, default=None,
                        help="train on the first N training photos only (smoke tests)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after N optimiser steps (smoke tests)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="wall-clock training budget: the learning rate decays with "
                             "whichever is further along, epochs or clock (see train())")
    parser.add_argument("--no-eval", action="store_true",
                        help="only train and save the checkpoint (no conversion, int8, drift)")
    parser.add_argument("--eval-only", action="store_true",
                        help="no training: evaluate the checkpoint a previous run left in "
                             "--workdir")
    args = parser.parse_args(argv)

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="pipdetect-proxy-"))).resolve()
    if workdir == ROOT or ROOT in workdir.parents:
        raise SystemExit(f"--workdir {workdir} is inside the repository: weights trained on "
                         "300-W photos must stay outside it")
    workdir.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(args.threads)
    paths = training_photos(args.data)[: args.max_photos]
    if not paths:
        raise SystemExit(f"no training photos in {args.data} (need more than {BENCH_PHOTOS})")
    _log(f"training on {len(paths)} LFPW photos ({paths[0].name} ... {paths[-1].name}); "
         f"workdir {workdir}")
    samples = load_samples(paths)
    pth = workdir / "proxy-r18-300w.pth"
    report_path = workdir / "train_proxy.json"
    if args.eval_only:
        if not (pth.is_file() and report_path.is_file()):
            raise SystemExit(f"--eval-only: no {pth.name} and {report_path.name} in {workdir}; "
                             "train first")
        report: dict[str, Any] = json.loads(report_path.read_text())
    else:
        start = time.perf_counter()
        net, history = train(samples, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
                             aug=Augment(), max_steps=args.max_steps,
                             max_minutes=args.max_minutes)
        train_minutes = (time.perf_counter() - start) / 60
        save_checkpoint(net, pth)
        report = {
            "command": "python benchmarks/train_proxy.py " + " ".join(
                sys.argv[1:] if argv is None else argv),
            "training_photos": len(paths), "epochs_run": len(history),
            "train_minutes": round(train_minutes, 1), "history": history,
            "checkpoint": str(pth),
        }
        _log(f"saved {pth} after {train_minutes:.1f} min")
    if not args.no_eval:
        onnx_path = workdir / "proxy-r18-300w.onnx"
        convert(pth, onnx_path)
        report.update(evaluate(onnx_path, workdir, args.data, samples))
        table = markdown(report)
        report["markdown"] = table
        print(table)
    report_path.write_text(json.dumps(report, indent=1, default=str))
    _log(f"wrote {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
