"""Faces at any angle: the LFPW test photos rolled in the image plane, end to end.

    python benchmarks/rotation_bench.py                       # all 224 photos, ~6 min on 2 cores
    python benchmarks/rotation_bench.py --limit 40 --angles 0 90 180
    python benchmarks/rotation_bench.py --baseline 30e7843    # and time that commit
    python benchmarks/rotation_bench.py --baseline 53e412d 2206a26   # or several

Each photo is turned clockwise by the angle about its centre on a canvas grown to
hold it (black corners; quarter turns are exact), the 68 annotated points with it.
``LandmarkDetector().detect`` runs with default settings. Of the faces returned,
the one whose crop centre is nearest the annotated face is scored; it is *found*
when that centre lies inside the annotated landmarks' box. Per angle: faces
found, inter-ocular NME (outer eye corners, %) mean and median over found faces,
the share above 10 %, the median error of ``Face.pose`` roll against the known
turn (relative to the upright photo's roll), and the mean confidence.

Also, measured in the same run, interleaved so the noisy shared machine affects
both alike: milliseconds per upright photo with the default settings and, with
``--baseline REV [REV ...]``, with the library as it was at each git revision REV (loaded
from a ``git archive`` of that commit under another module name, with that commit's own
bundled model), and the time of photos
without a face (the photos' top-left corners, checked to hold no detection of the
annotated face) with ``orientation_search`` "auto" and "off".
Mirror check: ``Face.pose`` yaw of each upright photo against its mirror image
(which should have the opposite sign). Caller boxes: ``detect(image, boxes=[box])`` with
boxes of three styles (the tight landmark box, the landmark box x 1.3, and a loose box
x 1.6 shifted up by 15 % of its height), upright and turned 90 degrees, beside the
detector path on the same photos, with the median time per photo of each.

Writes ``benchmarks/rotation_results.json`` (``--no-write`` to skip). Needs
``../shared/data/lfpw_test`` (research use only, read in place).
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "lfpw_test"
ANGLES = (0, 15, 30, 45, 60, 90, 135, 180, 225, 270)


def rotate(image: np.ndarray, points: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The image turned ``angle`` degrees clockwise on a canvas that holds it all, and the
    points (pixel centres at integers) moved with it."""
    import cv2

    h, w = image.shape[:2]
    k = round(angle / 90.0)
    if abs(angle - 90.0 * k) < 1e-9:
        k %= 4
        out = np.ascontiguousarray(np.rot90(image, -k))
        pts = points.copy()
        for step in range(k):
            hh = h if step % 2 == 0 else w
            pts = np.stack([hh - 1 - pts[:, 1], pts[:, 0]], axis=1)
        return out, pts
    a = np.radians(angle)
    c, s = abs(np.cos(a)), abs(np.sin(a))
    nw, nh = int(np.ceil(w * c + h * s)), int(np.ceil(w * s + h * c))
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), -angle, 1.0)
    m[:, 2] += ((nw - 1) / 2 - (w - 1) / 2, (nh - 1) / 2 - (h - 1) / 2)
    out = cv2.warpAffine(image, m, (nw, nh), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return out, points @ m[:, :2].T + m[:, 2]


def score(faces: list[Any], truth: np.ndarray) -> tuple[bool, float, Any]:
    """(found, NME %, face) of the face nearest the annotated one."""
    import data as D

    if not faces:
        return False, float("nan"), None
    centre = truth.mean(axis=0)
    face = min(faces, key=lambda f: float(np.hypot(*(np.asarray(f.crop.center) - centre))))
    lo, hi = truth.min(axis=0), truth.max(axis=0)
    cx, cy = face.crop.center
    found = bool(lo[0] <= cx <= hi[0] and lo[1] <= cy <= hi[1])
    err = float(D.nme(np.asarray(face.landmarks, np.float64)[None], truth[None])[0])
    return found, err, face


def load_pairs(folder: Path, limit: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    import cv2
    import data as D

    out = []
    for image_path, pts_path in D.find_pairs(folder)[:limit]:
        out.append((cv2.imread(str(image_path), cv2.IMREAD_COLOR), D.read_pts(pts_path)))
    return out


def accuracy(det: Any, pairs: list[tuple[np.ndarray, np.ndarray]],
             angles: list[float]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    upright_roll: dict[int, float] = {}
    for angle in angles:
        found, errs, conf, roll_err = 0, [], [], []
        for i, (image, truth) in enumerate(pairs):
            img, pts = rotate(image, truth, angle)
            ok, err, face = score(det.detect(img), pts)
            if not ok:
                continue
            found += 1
            errs.append(err)
            conf.append(face.confidence)
            pose = face.pose
            if pose is not None:
                if angle == 0:
                    upright_roll[i] = pose.roll
                if i in upright_roll:
                    d = (pose.roll - upright_roll[i] - angle + 180.0) % 360.0 - 180.0
                    roll_err.append(abs(d))
        e = np.array(errs)
        rows[str(angle)] = {
            "photos": len(pairs),
            "found": found,
            "found_pct": round(100.0 * found / len(pairs), 1),
            "nme_mean": round(float(e.mean()), 3) if e.size else None,
            "nme_median": round(float(np.median(e)), 3) if e.size else None,
            "over_10_pct": round(100.0 * float(np.mean(e > 10)), 2) if e.size else None,
            "roll_error_median_deg": round(float(np.median(roll_err)), 2) if roll_err else None,
            "confidence_mean": round(float(np.mean(conf)), 3) if conf else None,
        }
        print(f"{angle:>5}  " + "  ".join(f"{k} {v}" for k, v in rows[str(angle)].items()),
              flush=True)
    return rows


BOX_STYLES = {
    "tight landmark box": (1.0, 0.0),
    "landmark box x 1.3": (1.3, 0.0),
    "loose box, shifted up": (1.6, -0.15),
}
"""Caller box styles: (enlargement of the landmark box, shift of its centre in box heights)."""


def box_styles(det: Any, pairs: list[tuple[np.ndarray, np.ndarray]],
               angles: tuple[float, ...] = (0.0, 90.0)) -> dict[str, Any]:
    """NME of ``detect(image, boxes=[box])`` for boxes of several styles, beside the
    detector path on the same photos, upright and turned; and the time per face."""
    import data as D

    out: dict[str, Any] = {}
    for angle in angles:
        errs: dict[str, list[float]] = {"detector": []}
        times: dict[str, list[float]] = {"detector": []}
        for image, truth in pairs:
            img, pts = rotate(image, truth, angle)
            t0 = time.perf_counter()
            ok, err, _ = score(det.detect(img), pts)
            times["detector"].append(time.perf_counter() - t0)
            errs["detector"].append(err if ok else np.nan)
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            for name, (enlarge, shift) in BOX_STYLES.items():
                size = (hi - lo) * enlarge
                centre = (lo + hi) / 2 + [0.0, shift * size[1]]
                box = np.concatenate([centre - size / 2, centre + size / 2])
                t0 = time.perf_counter()
                face = det.detect(img, boxes=[box])[0]
                times.setdefault(name, []).append(time.perf_counter() - t0)
                errs.setdefault(name, []).append(
                    float(D.nme(np.asarray(face.landmarks, np.float64)[None], pts[None])[0]))
        out[str(angle)] = {
            name: {"nme_mean": round(float(np.nanmean(v)), 3),
                   "over_10_pct": round(100.0 * float(np.nanmean(np.array(v) > 10)), 2),
                   "ms_per_photo": round(1000 * float(np.median(times[name])), 2)}
            for name, v in errs.items()
        }
        for name, row in out[str(angle)].items():
            print(f"boxes at {angle:>5}: {name:<24} {row}", flush=True)
    return out


def mirror_yaw(det: Any, pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Yaw of each upright photo and of its mirror image: they should have opposite signs."""
    yaws = []
    for image, truth in pairs:
        _, _, a = score(det.detect(image), truth)
        mirrored = np.ascontiguousarray(image[:, ::-1])
        mt = np.stack([image.shape[1] - 1 - truth[:, 0], truth[:, 1]], axis=1)
        _, _, b = score(det.detect(mirrored), mt)
        if a is not None and b is not None and a.pose is not None and b.pose is not None:
            yaws.append((a.pose.yaw, b.pose.yaw))
    y = np.array(yaws)
    turned = np.abs(y[:, 0]) >= 5.0
    return {
        "faces": len(y),
        "turned_5deg_or_more": int(turned.sum()),
        "opposite_sign_pct_of_turned": round(
            100.0 * float(np.mean(np.sign(y[turned, 0]) == -np.sign(y[turned, 1]))), 1)
        if turned.any() else None,
        "sum_abs_median_deg": round(float(np.median(np.abs(y[:, 0] + y[:, 1]))), 2),
    }


def baseline_module(rev: str, tmp: Path) -> Any:
    """The pipdetect package as it was at ``rev``, imported as ``pipdetect_baseline_<rev>``."""
    name = f"pipdetect_baseline_{rev}"
    tmp = tmp / name
    tmp.mkdir()
    archive = tmp / "base.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev, "src/pipdetect"],
                   check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    (tmp / "src" / "pipdetect").rename(tmp / name)
    sys.path.insert(0, str(tmp))
    return importlib.import_module(name)


def timings(detectors: dict[str, Any], photos: list[np.ndarray], empty: list[np.ndarray],
            rounds: int) -> dict[str, Any]:
    """Median ms per photo of each detector, interleaved round by round."""
    names = list(detectors)
    per: dict[str, dict[str, list[float]]] = {n: {"upright": [], "no_face": []} for n in names}
    for _ in range(rounds):
        for kind, images in (("upright", photos), ("no_face", empty)):
            for name in names:
                det = detectors[name]
                t0 = time.perf_counter()
                for img in images:
                    det.detect(img)
                per[name][kind].append((time.perf_counter() - t0) * 1000 / len(images))
    out = {n: {k: round(float(np.median(v)), 2) for k, v in per[n].items()} for n in names}
    for name, row in out.items():
        print(f"{name:<28} upright {row['upright']:7.2f} ms/photo   "
              f"no face {row['no_face']:7.2f} ms/photo", flush=True)
    return out


def calibration_report() -> dict[str, Any]:
    """The confidence calibration report (``training/calibrate.py --report``) of the model
    ``LandmarkDetector()`` runs."""
    from pipdetect.zoo import DEFAULT_MODEL

    for path in sorted((ROOT / "training").glob("calibration_report*.json")):
        report: dict[str, Any] = json.loads(path.read_text())
        if report.get("model") == f"{DEFAULT_MODEL}.onnx":
            return report
    raise FileNotFoundError(f"no training/calibration_report*.json for {DEFAULT_MODEL}")


def tables(report: dict[str, Any], calibration: dict[str, Any]) -> dict[str, str]:
    """The Markdown tables of docs/angles.md, made from ``rotation_results.json`` and the
    default model's calibration report (:func:`calibration_report`;
    tests/test_default_model.py checks the page)."""
    rows = ["| roll | faces found | NME mean | NME median | faces > 10 % | roll error (median) |",
            "|---|---|---|---|---|---|"]
    for angle, r in report["angles"].items():
        rows.append(f"| {float(angle):g}° | {r['found']}/{r['photos']} ({r['found_pct']:g} %) "
                    f"| {r['nme_mean']:.2f} % | {r['nme_median']:.2f} % | {r['over_10_pct']:g} % "
                    f"| {r['roll_error_median_deg']:.1f}° |")
    from pipdetect._cpu import cpu_summary

    cpu = cpu_summary(report["cpu"])
    timing = report["timing_ms_per_photo"]
    bases = [k for k in timing if k.startswith("baseline")]
    trows = ["| settings | upright photo, ms | photo without a face, ms |", "|---|---|---|"]
    for name, t in timing.items():
        of = [f"{t['upright'] / timing[b]['upright']:.2f}× of "
              + ("before" if len(bases) == 1 else b.split()[-1]) for b in bases if b != name]
        ratio = f" ({', '.join(of)})" if of and name not in bases else ""
        trows.append(f"| {name} | {t['upright']:.1f}{ratio} | {t['no_face']:.1f} |")
    trows.append("")
    trows.append(f"Measured in one run, interleaved, on {cpu}; the machine is shared, "
                 "so only the ratios count.")
    brows = ["| roll | box style | NME mean | faces > 10 % | ms per photo |",
             "|---|---|---|---|---|"]
    for angle, styles in report["box_styles"].items():
        for name, r in styles.items():
            brows.append(f"| {float(angle):g}° | {name} | {r['nme_mean']:.2f} % "
                         f"| {r['over_10_pct']:g} % | {r['ms_per_photo']:.1f} |")
    val = calibration["validation"]
    crows = ["| on the LFPW test photos with mistakes | value |", "|---|---|",
             f"| samples (right, wrong) | {val['samples']} ({val['right']}, {val['wrong']}) |",
             f"| ROC AUC, right (NME ≤ 8 %) against wrong (NME ≥ 15 % or not a face) "
             f"| {val['roc_auc_right_vs_wrong']:.3f} |",
             f"| expected calibration error (10 bins) | {val['expected_calibration_error']:.3f} |",
             f"| default threshold (`min_confidence`) | {val['threshold']:.3f} |",
             f"| right faces kept by it | {val['kept_right_pct']:g} % |",
             f"| wrong detected faces dropped by it | {val['dropped_wrong_detected_pct']:g} % "
             f"(of {val['wrong_detected']}) |"]
    rel = ["| confidence | faces | mean confidence | share right |", "|---|---|---|---|"]
    for r in val["reliability"]:
        rel.append(f"| {r['bin']} | {r['faces']} | {r['mean_confidence']:.3f} "
                   f"| {r['share_right']:.3f} |")
    mirror = report["mirror_yaw"]
    pose = (f"the signs were opposite for {mirror['opposite_sign_pct_of_turned']:g} % of the "
            f"{mirror['turned_5deg_or_more']} faces turned 5° or more, and yaw plus the "
            f"mirror's yaw had a median size of {mirror['sum_abs_median_deg']:g}°")
    return {"ROTATION_TABLE": "\n".join(rows), "TIMING_TABLE": "\n".join(trows),
            "BOX_TABLE": "\n".join(brows), "CALIBRATION_TABLE": "\n".join(crows),
            "RELIABILITY_TABLE": "\n".join(rel), "POSE_MIRROR": pose}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--angles", type=float, nargs="+", default=list(ANGLES))
    parser.add_argument("--baseline", nargs="+", default=[],
                        help="git revisions to time beside")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timing-photos", type=int, default=40)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--tables", action="store_true",
                        help="print docs/angles.md's tables from the saved results and stop")
    args = parser.parse_args(argv)
    if args.tables:
        report = json.loads((ROOT / "benchmarks" / "rotation_results.json").read_text())
        for key, text in tables(report, calibration_report()).items():
            print(f"<!-- {key} -->\n{text}\n")
        return 0
    if not args.data.is_dir():
        print(f"data folder not found: {args.data}", file=sys.stderr)
        return 2
    import cv2
    import onnxruntime

    from pipdetect import LandmarkDetector
    from pipdetect._cpu import cpu_info

    pairs = load_pairs(args.data, args.limit)
    det = LandmarkDetector()
    print(f"{len(pairs)} photos; angles {args.angles}", flush=True)
    report: dict[str, Any] = {"cpu": cpu_info(), "onnxruntime": onnxruntime.__version__,
                              "photos": len(pairs)}
    report["angles"] = accuracy(det, pairs, args.angles)
    report["mirror_yaw"] = mirror_yaw(det, pairs)
    print("mirror yaw:", report["mirror_yaw"], flush=True)
    report["box_styles"] = box_styles(det, pairs)

    photos = [p for p, _ in pairs[: args.timing_photos]]
    empty = []
    for image, truth in pairs[: args.timing_photos]:
        lo = truth.min(axis=0)
        corner = image[: max(int(lo[1]) - 10, 0), : max(int(lo[0]) - 10, 0)]
        if min(corner.shape[:2]) >= 64:
            empty.append(np.ascontiguousarray(cv2.resize(corner, (320, 240))))
    detectors: dict[str, Any] = {
        "default (orientation_search auto)": det,
        "orientation_search off": LandmarkDetector(orientation_search="off"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for rev in args.baseline:
            base = baseline_module(rev, Path(tmp))
            # the revision's own bundled model: its package data would resolve to today's
            # (resources.files("pipdetect")), whose file format it may not read
            own = Path(base.__file__).parent / "assets" / "pipnet-lite0-300w.onnx"
            detectors[f"baseline {rev}"] = base.LandmarkDetector(str(own))
        for d in detectors.values():  # warm up: sessions, first-call costs
            d.detect(photos[0])
        print(f"timing: {len(photos)} upright photos, {len(empty)} photos without faces, "
              f"{args.rounds} interleaved rounds", flush=True)
        report["timing_ms_per_photo"] = timings(detectors, photos, empty, args.rounds)
    if not args.no_write:
        out = ROOT / "benchmarks" / "rotation_results.json"
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
