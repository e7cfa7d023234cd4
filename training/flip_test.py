"""Which convention correction test-time flip averaging needs, measured on training faces.

    python training/flip_test.py --model pipnet-lite0-300w --data ../shared/data/300w_train

``LandmarkDetector(flip_test=True)`` averages each crop's landmarks with those of its
mirror image mapped back. The 300-W annotations sit about 0.77 % of the inter-ocular
distance right of the features' mirror-symmetric place (training/README.md, "The
annotations' x offset"), and the model keeps that convention on mirrored photos too, so a
mirrored pass mapped back lands twice that left of the annotation and a plain average
loses the convention. This script compares, per face cropped by the training rule
(landmark box x the model's enlargement, levelled by the eye line, as
``output_offset.py`` crops them), in % inter-ocular NME and mean signed x / y error:

* ``normal``: the crop alone (``flip_test=False``);
* ``plain``: the plain average of the crop and its mirror mapped back;
* ``keep_x``: the average moved in the crop's x so that its mean x is the normal pass's
  (what ``flip_test=True`` does: the convention is read off the model itself, per face);
* ``fitted``: the plain average plus a constant (du, dv) fitted on these same faces (the
  mean ``annotation - average`` in the crop's normalised frame; in-sample, an upper bound
  for a correction stored with the model).

Fit and choose on the training faces only; LFPW is reported with ``evaluate.py
--flip-test``. Prints JSON.
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


def passes(model: str | None, folder: Path, limit: int | None = None, chunk: int = 16
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per face: the normal pass and the mirrored pass mapped back (N, 68, 2) in the
    crop's normalised frame (output offset included, as the library applies it), the
    annotation in that frame, and the crops (N, 5)."""
    import cv2

    from pipdetect import LandmarkDetector
    from pipdetect.crop import crop_from_landmark_box, training_crop_enlargement, warp_crops
    from pipdetect.schemes import get_scheme

    det = LandmarkDetector(model, min_confidence=0)
    mirror = np.asarray(get_scheme(det.scheme).mirror, dtype=np.intp)
    enlarge = training_crop_enlargement(det.spec) or D.CROP_ENLARGE
    size = det.spec.input_size
    scale = np.array(size[::-1], dtype=np.float64)
    normal, flipped, truths, crops = [], [], [], []
    pairs = D.find_pairs(folder)[:limit]
    for start in range(0, len(pairs), chunk):
        batch = []
        for image_path, pts_path in pairs[start : start + chunk]:
            image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
            truth = D.read_pts(pts_path)
            crop = crop_from_landmark_box(truth[None], enlarge)
            batch.append(warp_crops(image, crop, size)[0])
            truths.append(truth)
            crops.append(crop[0])
        x = np.stack(batch)
        normal.append(det.predict_crops(x) / scale)
        m = det.predict_crops(np.ascontiguousarray(x[:, :, ::-1])) / scale
        m[..., 0] = 1.0 - m[..., 0]
        flipped.append(m[:, mirror])
    from output_offset import to_crop_frame

    crops_arr = np.stack(crops)
    truth_arr = np.stack(truths)
    return (np.concatenate(normal), np.concatenate(flipped),
            to_crop_frame(truth_arr, crops_arr), crops_arr)


def scores(uv: np.ndarray, truth_uv: np.ndarray, crops: np.ndarray) -> dict[str, float]:
    from pipdetect.crop import crops_to_image

    pred, truth = crops_to_image(uv, crops), crops_to_image(truth_uv, crops)
    off = D.signed_offset(pred, truth)
    return {"nme_pct": round(float(D.nme(pred, truth).mean()), 3),
            "offset_x_pct": round(float(off[:, 0].mean()), 3),
            "offset_y_pct": round(float(off[:, 1].mean()), 3)}


def compare(normal: np.ndarray, flipped: np.ndarray, truth: np.ndarray, crops: np.ndarray
            ) -> dict[str, Any]:
    plain = (normal + flipped) / 2
    keep_x = plain.copy()
    keep_x[..., 0] += (normal[..., 0] - plain[..., 0]).mean(axis=1, keepdims=True)
    k = (truth - plain).reshape(-1, 2).mean(axis=0)
    return {
        "faces": len(normal),
        "normal": scores(normal, truth, crops),
        "plain": scores(plain, truth, crops),
        "keep_x": scores(keep_x, truth, crops),
        "fitted": {**scores(plain + k, truth, crops), "du_dv": [round(float(v), 6) for v in k]},
        "half_difference_du": round(float((normal - flipped)[..., 0].mean() / 2), 6),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None,
                   help="model file or name (default: the default model)")
    p.add_argument("--data", type=Path, required=True, help="training faces (image + .pts)")
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args(argv)
    from pipdetect.zoo import DEFAULT_MODEL

    print(json.dumps({"model": args.model or DEFAULT_MODEL,
                      **compare(*passes(args.model, args.data, args.limit))}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
