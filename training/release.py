"""Turn a finished training run into the model pipdetect ships, with measured metadata.

    python training/release.py --run ~/pipdetect-train/lite0 --val ../shared/data/lfpw_test

Steps (all through ``pipdetect convert``, the one documented conversion command):

1. convert ``<run>/final.pth`` with the run's crop policy, its network input size
   (``train.py --input-size``, from ``<run>/run.json``) and an info file saying
   what the model is (training data, licence, provenance from ``run.json``);
2. measure it with ``training/evaluate.py`` on ``--val`` (true-landmark crops and
   end to end through the library);
3. convert again with the measured accuracy in the info file, so the figures live
   in the model's own metadata, and write the facts ``pipdetect.list_models()``
   shows (``src/pipdetect/assets/<name>.json``).

The conversion is deterministic, so the second file holds the very weights measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ASSETS = REPO / "src" / "pipdetect" / "assets"
sys.path.insert(0, str(HERE))

BACKBONE_NAMES = {"efficientnet_lite0": "EfficientNet-Lite0 (ImageNet weights)",
                  "resnet18": "ResNet-18 (from scratch)"}
DATASET = ("300-W train, partial: LFPW train 802 + HELEN train 870 + AFW 337 = 2,009 faces "
           "(no iBUG, 870 of HELEN's 2,000)")
LICENSE = ("Research use only (non-commercial). Trained by the pipdetect developers on 300-W "
           "training faces (iBUG, Imperial College London; LFPW, HELEN, AFW), which are "
           "distributed for non-commercial research only; the weights carry the same "
           "restriction. The EfficientNet-Lite0 ImageNet initialisation is Apache-2.0. "
           "This is not legal advice.")


def read_run(run: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A train.py run's ``run.json`` and its ``log.jsonl`` rows (one per epoch)."""
    meta = json.loads((run / "run.json").read_text())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line]
    return meta, log


def input_size_of(run: Path) -> int:
    """The network input side of a train.py run, in pixels: its ``--input-size``
    (runs from before the option have no such setting and were trained at 256)."""
    meta = json.loads((run / "run.json").read_text())
    return int(meta["args"].get("input_size", 256))


def parent_of(model: Path) -> dict[str, Any]:
    """What a run started with ``train.py --init MODEL`` continued: the file's SHA-256 and
    the training record in its metadata (which holds its own parent, if any)."""
    from pipdetect.model import load_model
    from pipdetect.zoo import file_sha256

    provenance = load_model(model, threads=1).spec.provenance or {}
    return {"sha256": file_sha256(model), "training": provenance.get("training")}


def info_for(run: Path, accuracy: dict[str, Any] | None,
             parent: dict[str, Any] | None = None) -> dict[str, Any]:
    """The info file of a run's model. ``parent``: :func:`parent_of` the model the run
    started from (``train.py --init``); its epochs count in ``total_epochs``."""
    meta, log = read_run(run)
    training: dict[str, Any] = {
        "command": meta["command"],
        "commit": meta["commit"],
        "torch": meta["torch"],
        "settings": meta["args"],
        "training_faces": meta["training_faces"],
        "epochs": len(log),
        "train_seconds": round(sum(r["train_seconds"] for r in log)),
        "data": DATASET,
        "recipe": "training/README.md",
    }
    if parent is not None:
        training["continued_from"] = parent
        training["total_epochs"] = len(log) + int((parent.get("training") or {}).get(
            "total_epochs", (parent.get("training") or {}).get("epochs", 0)))
    info: dict[str, Any] = {"dataset": DATASET, "license": LICENSE, "training": training}
    if accuracy is not None:
        info["accuracy"] = accuracy
    return info


def convert(run: Path, out: Path, info: dict[str, Any], name: str, backbone: str) -> None:
    from pipdetect.convert.cli import main as convert_main

    with tempfile.TemporaryDirectory() as tmp:
        info_path = Path(tmp) / "info.json"
        info_path.write_text(json.dumps(info))
        code = convert_main([
            str(run / "final.pth"), "--backbone", backbone, "--meanface", "300W",
            "--scheme", "300w68", "--crop-policy", str(run / "crop_policy.json"),
            "--input-size", str(input_size_of(run)),
            "--info", str(info_path), "--name", name, "-o", str(out),
        ])
    if code != 0:
        raise SystemExit(f"pipdetect convert failed ({code})")


def main(argv: list[str] | None = None) -> int:
    from evaluate import accuracy_field, evaluate_model

    from pipdetect.zoo import file_sha256

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="the --out folder of train.py")
    p.add_argument("--val", type=Path, required=True, help="validation photos (lfpw_test)")
    p.add_argument("--name", default="pipnet-lite0-300w")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="model file (default: src/pipdetect/assets/<name>.onnx)")
    p.add_argument("--parent", type=Path, default=None, metavar="MODEL",
                   help="the model the run started from (train.py --init), recorded in the "
                        "metadata; needed when --init was a .onnx that has since been replaced")
    p.add_argument("--no-facts", action="store_true",
                   help="do not write src/pipdetect/assets/<name>.json (for comparison runs)")
    args = p.parse_args(argv)
    out = args.output or ASSETS / f"{args.name}.onnx"
    meta, _ = read_run(args.run)
    init = meta["args"].get("init", "None")
    if args.parent is None and init not in ("None", "") and Path(init).suffix == ".onnx":
        raise SystemExit(f"the run started from {init}: name that model with --parent (a copy "
                         "of it, if the file has been replaced since) to record it")
    parent = parent_of(args.parent) if args.parent is not None else None

    convert(args.run, out, info_for(args.run, None, parent), args.name, args.backbone)
    measured = evaluate_model(out, args.val)
    print(json.dumps(measured, indent=1))
    accuracy = accuracy_field(measured)
    convert(args.run, out, info_for(args.run, accuracy, parent), args.name, args.backbone)
    if not args.no_facts:
        facts = {
            "name": args.name, "file": out.name, "dataset": "300W (partial train)",
            "backbone": args.backbone, "num_landmarks": 68, "scheme": "300w68",
            "nme": measured["end_to_end_nme_pct"], "nme_gt_crops": measured["gt_crops_nme_pct"],
            "nme_normalisation": "inter-ocular",
            "benchmark": f"LFPW test (300-W), {measured['photos']} photos, end to end "
                         "(YuNet + crop policy); training/evaluate.py",
            "training": "supervised", "size": out.stat().st_size, "sha256": file_sha256(out),
            "license": LICENSE,
            "note": f"pipdetect's own model: {BACKBONE_NAMES.get(args.backbone, args.backbone)} "
                    f"trained on {DATASET}; bundled in the package",
        }
        (ASSETS / f"{args.name}.json").write_text(json.dumps(facts, indent=1) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
