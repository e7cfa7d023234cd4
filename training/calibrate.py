"""Fit a model's confidence calibration (and its levelled crop policy) and store both in it.

    python training/calibrate.py --train ../shared/data/300w_train --val ../shared/data/lfpw_test \
        --model src/pipdetect/assets/pipnet-lite0-300w.onnx --write

``Face.confidence`` is the estimated probability that a face's landmarks are right
(inter-ocular NME <= 8 %). It is a logistic function of two summaries of the network's
per-landmark scores (:mod:`pipdetect.confidence`), fitted here on faces with the
mistakes real photos bring, made from annotated photos:

* ``detect``: the photo as it is, end to end (``LandmarkDetector.detect``);
* ``rolled``: the photo turned by a random angle, end to end;
* ``box``: a caller's box of another style: the landmark box scaled 0.6-1.8x and
  shifted up to 40 % of its size (``detect(boxes=...)``, refinement passes included);
* ``raw``: one network pass on a crop shifted, scaled and turned at random, with no
  refinement (what a tracker sees on a fast move);
* ``not a face``: boxes away from the annotated face (IoU < 0.05 with its landmark
  box) and the face detector's extra detections at a low threshold; and boxes on noise
  and gradient pictures. These are wrong whatever the network says.

The calibration is fitted on the training faces (``--train``) only; the validation
photos (``--val``, never trained on) get the same mistakes and give the report:
ROC AUC of right (NME <= 8 %) against wrong (NME >= 15 % or not a face), expected
calibration error over 10 bins, the reliability diagram, and what the recommended
threshold keeps and drops. The threshold is the largest that keeps 99 % of the right
faces of the fitting set.

``--refit-policy`` also refits the crop policy on the training faces in the levelled
frame (``training/train.py``'s ``fit_policy``). ``--write`` stores the policy and the
calibration in the model's metadata (nothing else in the file changes) and updates
``src/pipdetect/assets/<name>.json`` (size, sha256). The report goes to stdout as JSON
and, with ``--report FILE``, to a file (the shipped model's:
``training/calibration_report.json``, whose figures docs/angles.md shows). The samples
are made with the pipeline as the model file has it (its crop policy and, for the search
of turned crops, any calibration already in it), so the run is deterministic for a
given file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "benchmarks"))

import data as D  # noqa: E402

DEFAULT_SCORE = 0.6
"""The face detector's default score threshold (LandmarkDetector's score_threshold)."""
RIGHT = 8.0
WRONG = 15.0
KEEP_RIGHT = 0.99


def _nme(face: Any, truth: np.ndarray) -> float:
    return float(D.nme(np.asarray(face.landmarks, np.float64)[None], truth[None])[0])


def away_box(rng: np.random.Generator, shape: tuple[int, ...], truth: np.ndarray,
             others: np.ndarray | None = None) -> Any:
    """A face-sized box inside the picture that misses the annotated face and every box in
    ``others`` (other faces the detector sees, which may be people nobody annotated), or
    None."""
    from fit_crop_policy import iou

    h, w = shape[:2]
    lo, hi = truth.min(axis=0), truth.max(axis=0)
    avoid = np.concatenate([np.concatenate([lo, hi])[None],
                            np.zeros((0, 4)) if others is None else others.reshape(-1, 4)])
    for _ in range(20):
        side = (hi - lo).mean() * rng.uniform(0.5, 1.2)
        if side >= min(h, w):
            return None
        x, y = rng.uniform(0, w - side), rng.uniform(0, h - side)
        box = np.array([x, y, x + side, y + side])
        if iou(box[None], avoid).max() < 0.05:
            return box
    return None


def samples(det: Any, fp_det: Any, folder: Path, limit: int | None, seed: int
            ) -> list[tuple[np.ndarray, float, str]]:
    """(per-landmark scores, NME % or inf for not a face, kind) for every sample."""
    import cv2
    from fit_crop_policy import iou
    from rotation_bench import rotate, score

    from pipdetect.crop import crop_from_landmark_box

    rng = np.random.default_rng(seed)
    out: list[tuple[np.ndarray, float, str]] = []
    for image_path, pts_path in D.find_pairs(folder)[:limit]:
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        truth = D.read_pts(pts_path)
        ok, err, face = score(det.detect(image), truth)
        if face is not None:
            out.append((face.scores, err if ok else np.inf, "detect"))
        img, pts = rotate(image, truth, float(rng.uniform(-180, 180)))
        ok, err, face = score(det.detect(img), pts)
        if face is not None:
            out.append((face.scores, err if ok else np.inf, "rolled"))
        lo, hi = truth.min(axis=0), truth.max(axis=0)
        size = (hi - lo) * rng.uniform(0.6, 1.8)
        centre = (lo + hi) / 2 + rng.uniform(-0.4, 0.4, 2) * (hi - lo)
        box = np.concatenate([centre - size / 2, centre + size / 2])
        face = det.detect(image, boxes=[box])[0]
        out.append((face.scores, _nme(face, truth), "box"))
        crop = crop_from_landmark_box(truth[None], 1.1)[0]
        c = (crop[:2] + crop[2:4]) / 2 + rng.uniform(-0.5, 0.5, 2) * (crop[2:4] - crop[:2])
        half = (crop[2:4] - crop[:2]) * rng.uniform(0.6, 1.6) / 2
        raw = np.array([[*(c - half), *(c + half), crop[4] + rng.uniform(-60, 60)]])
        points, sc = det.run_network([(image, raw)])[0]
        out.append((sc[0], float(D.nme(points, truth[None])[0]), "raw"))
        # Low-threshold detections away from the annotated face that the detector does not
        # keep at its default threshold: its false positives. (Confident detections away
        # from the annotated face are often real people nobody annotated: left out.)
        loose = fp_det.detect(image)
        sure_boxes = np.array([f.box for f in loose if f.score >= DEFAULT_SCORE]).reshape(-1, 4)
        away = away_box(rng, image.shape, truth, np.array([f.box for f in loose]))
        if away is not None:
            out.append((det.detect(image, boxes=[away])[0].scores, np.inf, "not a face"))
        for f in loose:
            cx, cy = f.crop.center
            near = (lo[0] - 0.5 * (hi - lo)[0] <= cx <= hi[0] + 0.5 * (hi - lo)[0]
                    and lo[1] - 0.5 * (hi - lo)[1] <= cy <= hi[1] + 0.5 * (hi - lo)[1])
            if not near and f.score < DEFAULT_SCORE and not (
                    len(sure_boxes) and iou(np.array([f.box]), sure_boxes).max() > 0.1):
                out.append((f.scores, np.inf, "not a face"))
    for k in range(max(4, (limit or 200) // 20)):  # pictures without people
        h, w = 240, 320
        pic = (rng.normal(128, 60, (h, w, 3)) if k % 2 else
               np.linspace(0, 255, w)[None, :, None] * rng.uniform(0.2, 1, (1, 1, 3))
               + rng.normal(0, 8, (h, w, 3)))
        pic = np.clip(pic, 0, 255).astype(np.uint8)
        side = rng.uniform(60, 200)
        x, y = rng.uniform(0, w - side), rng.uniform(0, h - side)
        face = det.detect(pic, boxes=[[x, y, x + side, y + side]])[0]
        out.append((face.scores, np.inf, "not a face"))
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3, steps: int = 50
                 ) -> np.ndarray:
    """Intercept and weights of a logistic regression (Newton's method, small L2)."""
    a = np.concatenate([np.ones((len(x), 1)), x], axis=1)
    w = np.zeros(a.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ w, -50, 50)))
        grad = a.T @ (p - y) + ridge * len(x) * np.r_[0.0, w[1:]]
        hess = (a * (p * (1 - p))[:, None]).T @ a + ridge * len(x) * np.diag(np.r_[0.0, np.ones(
            len(w) - 1)])
        step = np.linalg.solve(hess + 1e-9 * np.eye(len(w)), grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a random right face scores above a random wrong one (ties half)."""
    if not len(pos) or not len(neg):
        return float("nan")
    allv = np.concatenate([pos, neg])
    ranks = np.argsort(np.argsort(allv, kind="mergesort"), kind="mergesort") + 1.0
    # average ranks of ties
    _, inv, counts = np.unique(allv, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, ranks)
    ranks = (sums / counts)[inv]
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def report(conf: np.ndarray, nme: np.ndarray, kinds: list[str], threshold: float
           ) -> dict[str, Any]:
    right = nme <= RIGHT
    wrong = nme >= WRONG
    bins = np.clip((conf * 10).astype(int), 0, 9)
    diagram, ece = [], 0.0
    for b in range(10):
        sel = bins == b
        if sel.any():
            predicted, observed = float(conf[sel].mean()), float(right[sel].mean())
            ece += sel.mean() * abs(predicted - observed)
            diagram.append({"bin": f"{b / 10:.1f}-{(b + 1) / 10:.1f}", "faces": int(sel.sum()),
                            "mean_confidence": round(predicted, 3),
                            "share_right": round(observed, 3)})
    detected = np.array([k in ("detect", "rolled", "not a face") for k in kinds])
    wrong_detected = wrong & detected
    return {
        "samples": len(conf),
        "right": int(right.sum()), "wrong": int(wrong.sum()),
        "by_kind": {k: {"n": int(sum(1 for q in kinds if q == k)),
                        "right": int(sum(1 for q, r in zip(kinds, right, strict=True)
                                         if q == k and r))}
                    for k in sorted(set(kinds))},
        "roc_auc_right_vs_wrong": round(auc(conf[right], conf[wrong]), 4),
        "expected_calibration_error": round(float(ece), 4),
        "reliability": diagram,
        "threshold": round(threshold, 4),
        "kept_right_pct": round(100.0 * float(np.mean(conf[right] >= threshold)), 2),
        "dropped_wrong_detected_pct": round(
            100.0 * float(np.mean(conf[wrong_detected] < threshold)), 2)
        if wrong_detected.any() else None,
        "wrong_detected": int(wrong_detected.sum()),
    }


def write_metadata(path: Path, updates: dict[str, Any]) -> None:
    """Replace fields of the pipdetect metadata of the ONNX file at ``path`` in place."""
    import onnx

    from pipdetect.model import METADATA_KEY, ModelSpec
    from pipdetect.zoo import file_sha256

    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            data = json.loads(prop.value)
            data.update(updates)
            ModelSpec.from_dict(data, str(path))  # still a valid spec
            prop.value = json.dumps(data, separators=(",", ":"))
    onnx.save(model, str(path))
    facts = REPO / "src" / "pipdetect" / "assets" / f"{path.stem}.json"
    if facts.exists():
        info = json.loads(facts.read_text())
        info["size"] = path.stat().st_size
        info["sha256"] = file_sha256(path)
        facts.write_text(json.dumps(info, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path,
                   default=REPO / "src" / "pipdetect" / "assets" / "pipnet-lite0-300w.onnx")
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--val", type=Path, required=True)
    p.add_argument("--train-limit", type=int, default=700)
    p.add_argument("--val-limit", type=int, default=None)
    p.add_argument("--refit-policy", action="store_true")
    p.add_argument("--write", action="store_true")
    p.add_argument("--report", type=Path, default=None)
    args = p.parse_args(argv)

    from pipdetect import LandmarkDetector
    from pipdetect.confidence import FEATURES, Calibration, score_features

    result: dict[str, Any] = {"model": args.model.name}
    if args.refit_policy:
        from train import fit_policy

        faces = D.load_faces(args.train)
        policy, found, iou = fit_policy(faces)
        policy = type(policy)(box=policy.box, keypoints=policy.keypoints, fitted_on=(
            f"YuNet (pipdetect FaceFinder defaults) on {found} of {len(faces)} "
            f"{args.train.name} faces; target: landmark box x 1.1, measured in the frame "
            f"levelled by the eye keypoints; mean IoU {iou:.3f} on the faces it was fitted on"))
        result["crop_policy"] = {"faces": found, "iou": round(iou, 4)}
        if args.write:
            write_metadata(args.model, {"crop_policy": policy.to_dict()})
        print(f"crop policy refitted on {found} faces: IoU {iou:.3f}", flush=True)

    det = LandmarkDetector(args.model, min_confidence=0)
    fp_det = LandmarkDetector(args.model, min_confidence=0, score_threshold=0.3,
                              orientation_search="off")
    fit = samples(det, fp_det, args.train, args.train_limit, seed=1)
    val = samples(det, fp_det, args.val, args.val_limit, seed=2)
    print(f"{len(fit)} fitting samples, {len(val)} validation samples", flush=True)

    def arrays(rows: list[tuple[np.ndarray, float, str]]) -> tuple[Any, Any, list[str]]:
        return (score_features(np.stack([r[0] for r in rows])), np.array([r[1] for r in rows]),
                [r[2] for r in rows])

    xf, nf, kf = arrays(fit)
    _, nv, kv = arrays(val)
    coef = fit_logistic(xf, (nf <= RIGHT).astype(float))
    calib = Calibration(tuple(float(v) for v in coef), 0.0, "")
    conf_fit = calib(np.stack([r[0] for r in fit]))
    threshold = float(np.quantile(conf_fit[nf <= RIGHT], 1.0 - KEEP_RIGHT))
    calib = Calibration(calib.coef, round(threshold, 4), (
        f"logistic on {list(FEATURES)}, fitted on {len(fit)} samples from "
        f"{min(args.train_limit, len(D.find_pairs(args.train)))} {args.train.name} photos "
        "(detections, rolled photos, boxes of other styles, raw shifted crops, boxes away "
        "from faces, low-threshold detector false positives, pictures without people); "
        f"right = NME <= {RIGHT:g} %; threshold keeps {KEEP_RIGHT:.0%} of right faces there; "
        "training/calibrate.py"))
    conf_val = calib(np.stack([r[0] for r in val]))
    result["fit"] = report(conf_fit, nf, kf, calib.threshold)
    result["validation"] = report(conf_val, nv, kv, calib.threshold)
    result["calibration"] = calib.to_dict()
    if args.write:
        write_metadata(args.model, {"confidence": calib.to_dict()})
    text = json.dumps(result, indent=1)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
