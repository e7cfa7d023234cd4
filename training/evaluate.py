"""Accuracy of a pipdetect model on annotated 68-point photos, through the library only.

    python training/evaluate.py --model src/pipdetect/assets/pipnet-lite0-300w.onnx \
        --data ../shared/data/lfpw_test

Two inter-ocular NME figures (%, outer eye corners 36 and 45, the 300-W protocol):

* ``gt_crops``: each face cropped by the 300W training rule (landmark box x 1.1)
  and run through ``LandmarkDetector.predict_crops``: the network alone.
* ``end_to_end``: ``LandmarkDetector.detect`` on the whole photo (YuNet, the
  model's crop policy, the network, the decoder, back to pixels). Of the faces
  found, the one whose crop centre is nearest the annotated face is scored; a
  photo where no face is found counts in ``missed`` and is left out of the mean.

Each also gets its mean signed error in image x and y (``*_offset_x_pct``,
``*_offset_y_pct``: ``prediction - annotation`` over all landmarks and faces, % of the
inter-ocular distance; issue 21's convention offset).

No PyTorch needed: this is what a user of the shipped model gets. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import data as D  # noqa: E402


def nearest_face(faces: Any, truth: np.ndarray) -> Any:
    """Of detected faces, the one whose crop centre is nearest the annotated landmarks' mean."""
    centre = truth.mean(axis=0)
    return min(faces, key=lambda f: float(np.hypot((f.crop[0] + f.crop[2]) / 2 - centre[0],
                                                   (f.crop[1] + f.crop[3]) / 2 - centre[1])))


def evaluate_model(model: Any, folder: Path, limit: int | None = None) -> dict[str, Any]:
    """Both NME figures of ``model`` (a path or a LandmarkDetector) on ``folder``."""
    import cv2

    from pipdetect import LandmarkDetector
    from pipdetect.crop import crops_to_image, warp_crops

    det = model if isinstance(model, LandmarkDetector) else LandmarkDetector(model)
    size = det.spec.input_size
    gt, e2e, missed = [], [], 0
    gt_off, e2e_off = [], []
    for image_path, pts_path in D.find_pairs(folder)[:limit]:
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        truth = D.read_pts(pts_path)
        crop = D.landmark_crop(truth)[None]
        norm = det.predict_crops(warp_crops(image, crop, size)) / np.array(size[::-1])
        pred = crops_to_image(norm, crop)
        gt.append(D.nme(pred, truth[None])[0])
        gt_off.append(D.signed_offset(pred, truth[None])[0])
        faces = det.detect(image)
        if not faces:
            missed += 1
            continue
        face = nearest_face(faces, truth)
        pred = np.asarray(face.landmarks, np.float64)[None]
        e2e.append(D.nme(pred, truth[None])[0])
        e2e_off.append(D.signed_offset(pred, truth[None])[0])
    g, e = np.array(gt), np.array(e2e)
    go, eo = np.array(gt_off).reshape(-1, 2), np.array(e2e_off).reshape(-1, 2)
    return {
        "photos": len(g),
        "gt_crops_nme_pct": round(float(g.mean()), 3),
        "end_to_end_nme_pct": round(float(e.mean()), 3) if e.size else None,
        "end_to_end_median_pct": round(float(np.median(e)), 3) if e.size else None,
        "end_to_end_failure_rate_10pct": round(float(np.mean(e > 10)) * 100, 2) if e.size else None,
        "missed": missed,
        "gt_crops_offset_x_pct": round(float(go[:, 0].mean()), 3),
        "gt_crops_offset_y_pct": round(float(go[:, 1].mean()), 3),
        "end_to_end_offset_x_pct": round(float(eo[:, 0].mean()), 3) if e.size else None,
        "end_to_end_offset_y_pct": round(float(eo[:, 1].mean()), 3) if e.size else None,
    }


def accuracy_field(measured: dict[str, Any]) -> dict[str, Any]:
    """The model's ``accuracy`` metadata from an :func:`evaluate_model` result (what
    ``release.py`` and ``output_offset.py`` store with the model)."""
    return {
        "metric": "NME", "unit": "%", "normalisation": "inter-ocular (outer eye corners)",
        "test_set": f"LFPW test (300-W), {measured['photos']} photos, never trained on",
        "gt_crops": measured["gt_crops_nme_pct"],
        "value": measured["end_to_end_nme_pct"],
        "end_to_end": measured["end_to_end_nme_pct"],
        "end_to_end_failure_rate_10pct": measured["end_to_end_failure_rate_10pct"],
        "missed": measured["missed"],
        "source": "measured by pipdetect: training/evaluate.py (value = end to end: YuNet, "
                  "crop policy, network, decoder)",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None,
                   help="model file or name (default: the default model)")
    p.add_argument("--data", type=Path, required=True, help="folder of image + 68-point .pts")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--flip-test", action="store_true",
                   help="LandmarkDetector(flip_test=True): average each crop with its mirror")
    args = p.parse_args(argv)
    from pipdetect import LandmarkDetector

    det = LandmarkDetector(args.model, flip_test=args.flip_test)
    print(json.dumps(evaluate_model(det, args.data, args.limit), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
