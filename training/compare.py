"""Compare finished training runs: accuracy end to end and speed, side by side in one run.

    python training/compare.py --val ../shared/data/lfpw_test \
        ~/pipdetect-train/lite0:efficientnet_lite0 ~/pipdetect-train/r18:resnet18
    python training/compare.py --val ../shared/data/lfpw_test old.onnx \
        src/pipdetect/assets/pipnet-lite0-300w.onnx     # finished models as they ship

Each run (``FOLDER:BACKBONE``, a ``training/train.py --out`` folder) is converted
with ``training/release.py``'s conversion into a temporary file, measured with
``training/evaluate.py`` on ``--val`` and timed through ``LandmarkDetector``:
milliseconds per face with the box given (crop, network, decoding) and per
640x480 photo (YuNet included), the models taking turns round by round so that
the shared machine's noise falls on all of them alike. Prints a Markdown table
(the one in ``training/README.md``; ``input``: the network's input side in pixels,
from the model's metadata or the run's ``--input-size``) and the CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                flags = Path("/proc/cpuinfo").read_text()
                isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile")
                       if f" {f} " in flags or f" {f}\n" in flags]
                return f"{line.split(':', 1)[1].strip()} ({'/'.join(isa)})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timings(paths: list[Path], rounds: int = 15) -> list[dict[str, float]]:
    import os

    import cv2

    from pipdetect import LandmarkDetector

    photo = cv2.imread(str(HERE.parent / "examples" / "astronaut.jpg"))
    photo = cv2.copyMakeBorder(photo, 0, 0, 64, 64, cv2.BORDER_CONSTANT)
    photo = cv2.resize(photo, (640, 480))
    dets = [LandmarkDetector(p, threads=os.cpu_count()) for p in paths]
    box = dets[0].detect(photo)[0].box
    for d in dets:  # warm up
        d(photo, box=box)
        d(photo)
    face: list[list[float]] = [[] for _ in dets]
    whole: list[list[float]] = [[] for _ in dets]
    for _ in range(rounds):
        for i, d in enumerate(dets):
            t = time.perf_counter()
            d(photo, box=box)
            face[i].append(time.perf_counter() - t)
            t = time.perf_counter()
            d(photo)
            whole[i].append(time.perf_counter() - t)
    return [{"ms_per_face": 1000 * float(np.median(f)), "ms_per_photo": 1000 * float(np.median(w))}
            for f, w in zip(face, whole, strict=True)]


def model_facts(path: Path) -> dict[str, Any]:
    """Backbone, precision, epochs and training minutes of a converted model, from the
    training record in its metadata (``release.py`` writes it; a run continued from
    another model counts the parent's epochs and minutes too)."""
    from pipdetect.model import load_model

    spec = load_model(path, threads=1).spec
    training = (spec.provenance or {}).get("training") or {}
    seconds, record = 0.0, training
    while record:
        seconds += float(record.get("train_seconds", 0))
        record = (record.get("continued_from") or {}).get("training") or {}
    settings = training.get("settings") or {}
    return {"backbone": spec.backbone, "input": spec.input_size[0],
            "precision": settings.get("precision", "fp32"),
            "epochs": training.get("total_epochs", training.get("epochs", "-")),
            "train_minutes": round(seconds / 60) if seconds else "-"}


def main(argv: list[str] | None = None) -> int:
    from evaluate import evaluate_model
    from release import convert, info_for, input_size_of, read_run

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+",
                   help="FOLDER:BACKBONE of finished train.py runs, or converted .onnx models")
    p.add_argument("--val", type=Path, required=True)
    p.add_argument("--int8-calibration", type=Path, default=None, metavar="PHOTOS",
                   help="also measure an int8 copy of each run (7-bit weights), calibrated "
                        "on the faces in this folder of photos (e.g. training photos)")
    args = p.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for item in args.runs:
            if item.endswith(".onnx"):  # a finished model, e.g. the one shipped today
                out = Path(item).expanduser()
                rows.append({"run": out.stem, **model_facts(out),
                             "mb": round(out.stat().st_size / 1e6, 1),
                             **evaluate_model(out, args.val)})
            else:
                folder, backbone = item.rsplit(":", 1)
                run = Path(folder).expanduser()
                out = Path(tmp) / f"{run.name}.onnx"
                convert(run, out, info_for(run, None), run.name, backbone)
                meta, log = read_run(run)
                rows.append({"run": run.name, "backbone": backbone,
                             "input": input_size_of(run),
                             "precision": meta["args"].get("precision", "fp32"),
                             "epochs": len(log),
                             "train_minutes": round(sum(r["train_seconds"] for r in log) / 60),
                             "mb": round(out.stat().st_size / 1e6, 1),
                             **evaluate_model(out, args.val)})
            paths.append(out)
            if args.int8_calibration is not None:
                from pipdetect.convert.quantize import quantize_model

                q = Path(tmp) / f"{rows[-1]['run']}-int8.onnx"
                quantize_model(out, q, [args.int8_calibration])
                rows.append({**rows[-1], "precision": f"{rows[-1]['precision']} -> int8",
                             "mb": round(q.stat().st_size / 1e6, 1),
                             **evaluate_model(q, args.val)})
                paths.append(q)
        for row, t in zip(rows, timings(paths), strict=True):
            row.update({k: round(v, 1) for k, v in t.items()})
    print(f"CPU: {cpu_name()}, {__import__('os').cpu_count()} cores; "
          f"onnxruntime {__import__('onnxruntime').__version__}")
    print("| model | backbone | input | training | epochs | minutes | NME true-landmark crops | "
          "NME end to end | failures > 10 % | ms / face (box given) | ms / 640x480 photo | MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['backbone']} | {r['input']} | {r['precision']} | "
              f"{r['epochs']} | {r['train_minutes']} | "
              f"{r['gt_crops_nme_pct']:.2f} % | {r['end_to_end_nme_pct']:.2f} % | "
              f"{r['end_to_end_failure_rate_10pct']:.1f} % | {r['ms_per_face']} | "
              f"{r['ms_per_photo']} | {r['mb']} |")
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
