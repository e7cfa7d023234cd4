"""Fit a model's output offset on the training faces and store it in the model (issue 21).

    python training/output_offset.py --train ../shared/data/300w_train \
        --val ../shared/data/lfpw_test --write

A model trained with flip augmentation on 300-W is mirror-symmetric, while the 300-W
annotations are not: every landmark of version 1 of pipdetect's model landed about 1 %
of the inter-ocular distance left of the annotation, on every set. This script measures that
offset where the model was trained, and nowhere else:

1. each training face (``--train``) is cropped by the training rule (landmark box x the
   model's enlargement, levelled by the eye line: ``pipdetect.crop.crop_from_landmark_box``)
   and run through the library (``LandmarkDetector.run_network``);
2. prediction and annotation are taken into the crop's normalised frame ``(u, v)``
   (0..1 across the crop, x along the levelled face), and the mean of ``annotation -
   prediction`` over faces and landmarks is the offset (added to the model's current one,
   so a second run refines rather than replaces it);
3. ``--val`` (never used for fitting) is evaluated with ``training/evaluate.py`` before and
   after, on a copy of the model with the new offset: NME with true-landmark crops and end
   to end, and the mean signed offset in image x and y.

``--write`` stores the offset in the model's metadata (field ``output_offset``, applied by
``LandmarkDetector`` where normalised landmarks become image pixels), the "after" figures
as the model's ``accuracy``, and updates ``src/pipdetect/assets/<name>.json`` (figures,
size, sha256). The docs' accuracy tables must then be updated to the printed figures
(``tests/test_default_model.py`` checks them). Prints a JSON report.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import data as D  # noqa: E402

FP32_MODEL = REPO / "src" / "pipdetect" / "assets" / "pipnet-lite0-300w.onnx"
"""``--model`` by default: the bundled fp32 model (the int8 default gets its own fit with
``--model .../pipnet-lite0-300w-int8.onnx``, training/README.md)."""
SUBSETS = ("lfpw", "helen", "afw")


def to_crop_frame(points: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """Image pixels (N, L, 2) -> normalised coordinates (u, v) of oriented crops (N, 5)
    (or axis-aligned (N, 4)):
    the inverse of :func:`pipdetect.crop.crops_to_image`."""
    crops = np.asarray(crops, dtype=np.float64).reshape(len(points), -1)
    if crops.shape[1] == 4:  # axis-aligned
        crops = np.concatenate([crops, np.zeros((len(crops), 1))], axis=1)
    centre = (crops[:, None, :2] + crops[:, None, 2:4]) / 2
    size = crops[:, None, 2:4] - crops[:, None, :2]
    a = np.radians(crops[:, 4])[:, None]
    rel = np.asarray(points, dtype=np.float64) - centre
    along = np.cos(a) * rel[..., 0] + np.sin(a) * rel[..., 1]
    across = -np.sin(a) * rel[..., 0] + np.cos(a) * rel[..., 1]
    return np.stack([along, across], axis=-1) / size + 0.5


def residuals(det: Any, folder: Path, limit: int | None = None, chunk: int = 16
              ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per face: mean ``annotation - prediction`` (du, dv) in its training crop's frame,
    the mean signed image offset ``prediction - annotation`` (x, y) in % of the
    inter-ocular distance, and the face's file name."""
    import cv2

    from pipdetect.crop import crop_from_landmark_box, training_crop_enlargement

    enlarge = training_crop_enlargement(det.spec) or D.CROP_ENLARGE
    pairs = D.find_pairs(folder)[:limit]
    uv, image_off, names = [], [], []
    for start in range(0, len(pairs), chunk):
        items, truths = [], []
        for image_path, pts_path in pairs[start : start + chunk]:
            image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
            truth = D.read_pts(pts_path)
            items.append((image, crop_from_landmark_box(truth[None], enlarge)))
            truths.append(truth)
            names.append(image_path.name)
        for (_, crop), truth, found in zip(items, truths, det.run_network(items), strict=True):
            pred = found.points
            uv.append((to_crop_frame(truth[None], crop) - to_crop_frame(pred, crop))[0]
                      .mean(axis=0))
            image_off.append(D.signed_offset(pred, truth[None])[0])
    return np.array(uv), np.array(image_off), names


def summary(uv: np.ndarray, image_off: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Mean offsets over all faces and per 300-W subset (by file name prefix)."""
    def one(sel: np.ndarray) -> dict[str, Any]:
        return {"faces": int(sel.sum()),
                "du": round(float(uv[sel, 0].mean()), 5), "dv": round(float(uv[sel, 1].mean()), 5),
                "offset_x_pct": round(float(image_off[sel, 0].mean()), 3),
                "offset_y_pct": round(float(image_off[sel, 1].mean()), 3)}

    out: dict[str, Any] = {"all": one(np.ones(len(names), dtype=bool))}
    # what train.py --annotation-offset takes (valid for a model trained with plain mirrors)
    out["annotation_offset"] = round(-out["all"]["offset_x_pct"] / 100, 5)
    for subset in SUBSETS:
        sel = np.array([n.startswith(subset + "_") for n in names])
        if sel.any():
            out[subset] = one(sel)
    return out


def accuracy_field(measured: dict[str, Any]) -> dict[str, Any]:
    """The model's ``accuracy`` metadata (``evaluate.accuracy_field``) with the mean
    signed offsets this script is about."""
    from evaluate import accuracy_field as common

    return {**common(measured),
            "end_to_end_offset_x_pct": measured["end_to_end_offset_x_pct"],
            "end_to_end_offset_y_pct": measured["end_to_end_offset_y_pct"]}


def main(argv: list[str] | None = None) -> int:
    from calibrate import write_metadata
    from evaluate import evaluate_model

    from pipdetect import LandmarkDetector

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=FP32_MODEL)
    p.add_argument("--train", type=Path, required=True, help="faces the offset is fitted on")
    p.add_argument("--val", type=Path, default=None, help="photos it is checked on (not fitted)")
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--val-limit", type=int, default=None)
    p.add_argument("--write", action="store_true",
                   help="store the offset and the --val figures in --model")
    p.add_argument("--report", type=Path, default=None, help="also write the report here")
    args = p.parse_args(argv)
    if args.write and (args.val is None or args.val_limit is not None):
        p.error("--write needs --val with every photo (its figures go into the metadata)")

    det = LandmarkDetector(args.model, min_confidence=0)
    old = np.asarray(det.spec.output_offset, dtype=np.float64)
    uv, image_off, names = residuals(det, args.train, args.train_limit)
    new = old + uv.mean(axis=0)
    report: dict[str, Any] = {
        "model": args.model.name,
        "fitted_on": f"{len(names)} {args.train.name} faces, true-landmark crops",
        "output_offset_before": [round(float(v), 6) for v in old],
        "output_offset": [round(float(v), 6) for v in new],
        "train_before": summary(uv, image_off, names),
    }
    print(json.dumps(report["train_before"]), file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / "candidate.onnx"  # no facts file of that name: not updated
        shutil.copyfile(args.model, candidate)
        write_metadata(candidate, {"output_offset": report["output_offset"]})
        after = LandmarkDetector(candidate, min_confidence=0)
        report["train_after"] = summary(*residuals(after, args.train, args.train_limit))
        if args.val is not None:
            report["val_before"] = evaluate_model(LandmarkDetector(args.model), args.val,
                                                  args.val_limit)
            report["val_after"] = evaluate_model(LandmarkDetector(candidate), args.val,
                                                 args.val_limit)
    if args.write:
        fitted = (f"mean (annotation - prediction) in the crop's normalised frame over "
                  f"{len(names)} {args.train.name} faces, true-landmark crops; "
                  "training/output_offset.py")
        provenance = {**det.spec.provenance, "output_offset": fitted}
        write_metadata(args.model, {"output_offset": report["output_offset"],
                                    "accuracy": accuracy_field(report["val_after"]),
                                    "provenance": provenance})
        write_facts(args.model, report["val_after"])
    text = json.dumps(report, indent=1)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")
    return 0


def write_facts(model: Path, measured: dict[str, Any]) -> None:
    """The figures ``list_models()`` shows (``assets/<name>.json``), from ``measured``."""
    facts = REPO / "src" / "pipdetect" / "assets" / f"{model.stem}.json"
    if not facts.exists():
        return
    info = json.loads(facts.read_text())
    info["nme"] = measured["end_to_end_nme_pct"]
    info["nme_gt_crops"] = measured["gt_crops_nme_pct"]
    facts.write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
