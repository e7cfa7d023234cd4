"""Whole photos, side by side: pipdetect's default against dlib's fastest 68-point pipeline.

    python benchmarks/photo_bench.py --out benchmarks/photo_results.json
    python benchmarks/photo_bench.py --photos 20 --rounds 3 --other none --no-dlib

Photos: the LFPW test photos of 300-W (``--data``, read in place), each scaled so that
its longer side is 640 px (one face each), and the same photos put together two side by
side (640x480, 2 faces) and four in a 2x2 grid (640x480, 4 faces). Pipelines, each on
every photo of a set, taking turns in a fresh random order every round (``bench.Timer``):

* ``pipdetect``: ``LandmarkDetector()`` with default settings, ``detect(photo)``;
* ``pipdetect, upright only``: ``orientation_search="off"`` (no search for rolled faces);
* ``pipdetect, flip_test``: ``flip_test=True`` (each crop's mirror image run in the same
  batch and averaged in: the "accurate" setting); ``flip_test_cost`` in the JSON is its
  time over the default's (paired rounds);
* ``pipdetect, detection_size=480``: the face detector run on the photo scaled to 480 px
  (default 640; faces down to about 16 px wide instead of 12 are found);
* ``YuNet alone``: the face detector pipdetect runs (``find_faces``), to show its share;
* ``pipdetect fp32`` (``--other``, default the bundled ``pipnet-lite0-300w``: the
  network the default int8 model was quantised from by ``training/release_int8.py``),
  also with ``detection_size=480``; the int8 model's accuracy beside the fp32 one's on
  every ``--data`` photo (``int8_decision`` in the JSON);
* ``dlib``: ``get_frontal_face_detector()`` at upsample 0 (HOG, its fastest setting) and
  ``shape_predictor_68_face_landmarks`` (``face-recognition-models``), RGB conversion
  included.

Reported per set: ms per photo (median over rounds of the set's mean), faces found, and
for the one-face set the inter-ocular NME of the face nearest the annotation (pipdetect
and int8; dlib's too, though its training data is not documented well enough to say
whether it saw these photos) with the mean signed x offset. The CPU is named
(``pipdetect._cpu``). Prints Markdown and writes JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "training"))

import bench  # noqa: E402
import data as D  # noqa: E402

SIDE = 640
SMALL_DETECTION = 480
"""The face detector's input side of the ``detection_size=480`` rows (default 640)."""


def fit(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float, np.ndarray]:
    """``image`` scaled to fit ``width`` x ``height`` (aspect kept), centred on a grey
    canvas of that size: (canvas, scale, (dx, dy) offset of the scaled photo)."""
    import cv2

    h, w = image.shape[:2]
    s = min(width / w, height / h)
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                       interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = np.full((height, width, 3), 110, np.uint8)
    dy, dx = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    out[dy : dy + small.shape[0], dx : dx + small.shape[1]] = small
    # pixel centres: x' = (x + 0.5) * s - 0.5 + dx (what cv2.resize does)
    return out, s, np.array([dx + 0.5 * s - 0.5, dy + 0.5 * s - 0.5])


def photo_sets(folder: Path, count: int) -> dict[str, list[tuple[np.ndarray, list[np.ndarray]]]]:
    """Three sets of (photo, annotated landmarks of its faces)."""
    import cv2

    pairs = D.find_pairs(folder)[:count]
    loaded = [(cv2.imread(str(i), cv2.IMREAD_COLOR), D.read_pts(p)) for i, p in pairs]
    single = []
    for image, truth in loaded:
        h, w = image.shape[:2]
        s = SIDE / max(h, w)
        canvas, s, off = fit(image, round(w * s), round(h * s))
        single.append((canvas, [truth * s + off]))

    def grid(cols: int, rows: int) -> list[tuple[np.ndarray, list[np.ndarray]]]:
        tw, th, n = 640 // cols, 480 // rows, cols * rows
        out = []
        for start in range(0, len(loaded) - n + 1, n):
            canvas = np.zeros((480, 640, 3), np.uint8)
            faces = []
            for k, (image, truth) in enumerate(loaded[start : start + n]):
                tile, s, off = fit(image, tw, th)
                x0, y0 = (k % cols) * tw, (k // cols) * th
                canvas[y0 : y0 + th, x0 : x0 + tw] = tile
                faces.append(truth * s + off + [x0, y0])
            out.append((canvas, faces))
        return out

    return {"one face, 640 px": single, "2 faces, 640x480": grid(2, 1),
            "4 faces, 640x480": grid(2, 2)}


def nearest(candidates: list[np.ndarray], truth: np.ndarray) -> np.ndarray | None:
    if not candidates:
        return None
    centre = truth.mean(axis=0)
    return min(candidates, key=lambda p: float(np.linalg.norm(p.mean(axis=0) - centre)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "lfpw_test")
    p.add_argument("--photos", type=int, default=60)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--model", default=None, help="pipdetect model (default: the bundled one)")
    p.add_argument("--other", default="pipnet-lite0-300w", metavar="MODEL",
                   help="a second model timed beside it (default: the bundled fp32 model; "
                        "'none' to skip)")
    p.add_argument("--no-dlib", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = p.parse_args(argv)

    from pipdetect import LandmarkDetector
    from pipdetect._cpu import cpu_info, cpu_summary

    sets = photo_sets(args.data, args.photos)
    det = LandmarkDetector(args.model)
    upright = LandmarkDetector(args.model, orientation_search="off")
    flipped = LandmarkDetector(args.model, flip_test=True)
    small = LandmarkDetector(args.model, detection_size=SMALL_DETECTION)
    run: dict[str, Any] = {
        "pipdetect": lambda img: [f.landmarks for f in det.detect(img)],
        "pipdetect, upright only": lambda img: [f.landmarks for f in upright.detect(img)],
        "pipdetect, flip_test": lambda img: [f.landmarks for f in flipped.detect(img)],
        f"pipdetect, detection_size={SMALL_DETECTION}":
            lambda img: [f.landmarks for f in small.detect(img)],
        "YuNet alone": lambda img: [np.zeros((68, 2))] * len(det.find_faces(img).boxes),
    }
    int8_decision: dict[str, Any] | None = None
    other = ""
    if args.other != "none":
        det2 = LandmarkDetector(args.other)
        small2 = LandmarkDetector(args.other, detection_size=SMALL_DETECTION)
        other = "int8" if det2.spec.provenance.get("quantization") else "fp32"
        run[f"pipdetect {other}"] = lambda img: [f.landmarks for f in det2.detect(img)]
        run[f"pipdetect {other}, detection_size={SMALL_DETECTION}"] = \
            lambda img: [f.landmarks for f in small2.detect(img)]
        det8, det32 = (det2, det) if other == "int8" else (det, det2)
        from evaluate import evaluate_model  # every --data photo, end to end, as shipped

        fp32_acc, int8_acc = evaluate_model(det32, args.data), evaluate_model(det8, args.data)
        quantization = det8.spec.provenance.get("quantization") or {}
        int8_decision = {
            "model": det8.spec.name,
            "calibration": quantization.get("calibration_photos"),
            "fp32": fp32_acc, "int8": int8_acc,
            "nme_cost_end_to_end": round(int8_acc["end_to_end_nme_pct"]
                                         - fp32_acc["end_to_end_nme_pct"], 3),
            "nme_cost_gt_crops": round(int8_acc["gt_crops_nme_pct"]
                                       - fp32_acc["gt_crops_nme_pct"], 3),
            "file_mb": [round(_model_path(det32.spec.name).stat().st_size / 1e6, 1),
                        round(_model_path(det8.spec.name).stat().st_size / 1e6, 1)],
        }
    dlib_skipped = "--no-dlib"
    if not args.no_dlib:
        dlib_run, dlib_skipped = bench.dlib_pipeline()
        if dlib_run is not None:
            run["dlib (HOG upsample 0 + 68 points)"] = lambda img: dlib_run(img, 0)
    load_before = os.getloadavg()[0]
    timer = bench.Timer(args.rounds, block=0.0)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["photo_bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "cpu": cpu_summary(), "cpu_info": cpu_info(), "rounds": args.rounds,
        "dlib_skipped": dlib_skipped, "sets": {},
    }
    for name, photos in sets.items():
        bench.log(f"{name}: {len(photos)} photos")
        variants = {who: (lambda fn=fn, photos=photos: [fn(img) for img, _ in photos])
                    for who, fn in run.items()}
        samples = timer.run(variants)
        row: dict[str, Any] = {"photos": len(photos),
                               "annotated_faces": sum(len(f) for _, f in photos)}
        for who, fn in run.items():
            found = [fn(img) for img, _ in photos]
            entry: dict[str, Any] = {
                "ms_per_photo": round(bench.med(samples[who]) * 1000 / len(photos), 2),
                "faces_found": sum(len(f) for f in found)}
            if who != "YuNet alone":
                errs, offs, missed = [], [], 0
                for (_, truths), faces in zip(photos, found, strict=True):
                    for truth in truths:
                        pred = nearest(list(faces), truth)
                        if pred is None or np.linalg.norm(pred.mean(0) - truth.mean(0)) > \
                                np.ptp(truth[:, 0]):
                            missed += 1
                            continue
                        pred = np.asarray(pred, np.float64)[None]
                        errs.append(D.nme(pred, truth[None])[0])
                        offs.append(D.signed_offset(pred, truth[None])[0, 0])
                entry.update({"annotated_faces_missed": missed,
                              "nme_mean_pct": round(float(np.mean(errs)), 3) if errs else None,
                              "offset_x_pct": round(float(np.mean(offs)), 3) if offs else None})
            row[who] = entry
        row["flip_test_cost"] = round(bench.ratio(samples["pipdetect, flip_test"],
                                                  samples["pipdetect"]), 3)
        dlib_key = next((k for k in run if k.startswith("dlib")), None)
        if dlib_key:
            row["dlib_over_pipdetect"] = round(bench.ratio(samples[dlib_key],
                                                           samples["pipdetect"]), 3)
            row["dlib_over_pipdetect_upright_only"] = round(bench.ratio(
                samples[dlib_key], samples["pipdetect, upright only"]), 3)
            if other:
                row[f"dlib_over_pipdetect_{other}"] = round(bench.ratio(
                    samples[dlib_key], samples[f"pipdetect {other}"]), 3)
            row["dlib_over"] = {who: round(bench.ratio(samples[dlib_key], samples[who]), 3)
                                for who in run if who.startswith("pipdetect")}
        report["sets"][name] = row
    report["load_average_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    report["int8_decision"] = int8_decision
    report["markdown"] = markdown(report, list(run))
    print(report["markdown"])
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


def _model_path(model: str | None) -> Path:
    from pipdetect.zoo import resolve_model

    return Path(resolve_model(model))


def markdown(report: dict[str, Any], who: list[str]) -> str:
    lines = [f"Measured {report['date']} on {report['cpu']}; medians of {report['rounds']} "
             f"interleaved rounds; load average before / after "
             f"{report['load_average_before_after']}.", "",
             "| photos | " + " | ".join(who) + " | dlib time / pipdetect time |",
             "|---|" + "---|" * (len(who) + 1)]
    for name, row in report["sets"].items():
        cells = []
        for w in who:
            e = row[w]
            extra = "" if e.get("nme_mean_pct") is None else f", NME {e['nme_mean_pct']:.2f} %"
            cells.append(f"{e['ms_per_photo']:.1f} ms ({e['faces_found']} faces{extra})")
        ratio = row.get("dlib_over_pipdetect")
        lines.append(f"| {name} ({row['photos']} photos, {row['annotated_faces']} faces) | "
                     + " | ".join(cells) + f" | {'-' if ratio is None else f'{ratio:.2f}x'} |")
    ours = [w for w in who if w.startswith("pipdetect")]
    if all("dlib_over" in row for row in report["sets"].values()):
        lines += ["", "dlib time / pipdetect time, each setting (paired rounds):", "",
                  "| photos | " + " | ".join(ours) + " |", "|---|" + "---|" * len(ours)]
        for name, row in report["sets"].items():
            lines.append(f"| {name} | "
                         + " | ".join(f"{row['dlib_over'][w]:.2f}x" for w in ours) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
