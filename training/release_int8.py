"""Make the default model: the bundled int8 copy of the fp32 model, with measured metadata
and facts.

    python training/release_int8.py --calibration ../shared/data/300w_train \
        --val ../shared/data/lfpw_test
    python training/calibrate.py --model src/pipdetect/assets/pipnet-lite0-300w-int8.onnx \
        --train ../shared/data/300w_train --val ../shared/data/lfpw_test --write \
        --report training/calibration_report_int8.json
    python training/output_offset.py --model src/pipdetect/assets/pipnet-lite0-300w-int8.onnx \
        --train ../shared/data/300w_train --val ../shared/data/lfpw_test --write

Steps:

1. quantise the fp32 model (``--model``, default the bundled ``pipnet-lite0-300w``) with
   :func:`pipdetect.convert.quantize.quantize_model`, its defaults: static QDQ int8,
   per-channel 7-bit weights (``reduce_range``: no int16 saturation on x86 CPUs
   without VNNI), the five output convolutions kept in float, and the first
   ``--keep-first-fp32`` convolutions too (default 3: EfficientNet-Lite0's stem and first
   block, which cost 0.03 of the 0.04 NME points that quantising everything cost on
   LFPW, for no measurable speed), activation ranges
   from the faces of the first ``--calibration-photos`` photos of ``--calibration``
   (training photos: never the validation set);
2. measure it with ``training/evaluate.py`` on ``--val`` and store the figures in its
   metadata (``accuracy``), beside the fp32 model's for comparison;
3. write the facts ``pipdetect.list_models()`` shows
   (``src/pipdetect/assets/<name>.json``).

Then ``calibrate.py`` and ``output_offset.py`` refit the confidence and the output
offset for the int8 network's own scores and outputs (the commands above), as for the
fp32 model. The quantisation is deterministic for a given model, photos and
onnxruntime version.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ASSETS = REPO / "src" / "pipdetect" / "assets"
sys.path.insert(0, str(HERE))

NOTE = ("the default model: the int8 copy of pipnet-lite0-300w (the same network, "
        "quantised: training/release_int8.py); faster than the fp32 model where measured "
        "(x86: AVX-512 VNNI and AVX2 kernels), slightly less accurate; bundled in the package")


def facts_for(fp32_facts: dict[str, Any], name: str, out: Path,
              measured: dict[str, Any]) -> dict[str, Any]:
    """The int8 model's ``assets/<name>.json``: the fp32 model's facts with its own name,
    file, figures, size and SHA-256."""
    from pipdetect.zoo import file_sha256

    facts = dict(fp32_facts)
    facts.update({
        "name": name, "file": out.name,
        "nme": measured["end_to_end_nme_pct"], "nme_gt_crops": measured["gt_crops_nme_pct"],
        "benchmark": f"LFPW test (300-W), {measured['photos']} photos, end to end "
                     "(YuNet + crop policy); training/evaluate.py",
        "size": out.stat().st_size, "sha256": file_sha256(out), "note": NOTE,
    })
    return facts


def main(argv: list[str] | None = None) -> int:
    import data as D
    from calibrate import write_metadata
    from evaluate import accuracy_field, evaluate_model

    from pipdetect.convert.quantize import quantize_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=ASSETS / "pipnet-lite0-300w.onnx",
                   help="the fp32 model (default: the bundled pipnet-lite0-300w)")
    p.add_argument("--calibration", type=Path, required=True,
                   help="training photos (image + .pts) for the activation ranges")
    p.add_argument("--calibration-photos", type=int, default=40)
    p.add_argument("--keep-first-fp32", type=int, default=3, metavar="N",
                   help="the first N convolutions from the input stay in float (default 3)")
    p.add_argument("--val", type=Path, required=True, help="validation photos (lfpw_test)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="model file (default: src/pipdetect/assets/<fp32 name>-int8.onnx)")
    p.add_argument("--no-facts", action="store_true",
                   help="do not write src/pipdetect/assets/<name>.json (for comparison runs)")
    args = p.parse_args(argv)
    out = args.output or args.model.with_name(f"{args.model.stem}-int8.onnx")
    photos = [str(image) for image, _ in D.find_pairs(args.calibration)]
    photos = photos[: args.calibration_photos]
    spec = quantize_model(args.model, out, photos, keep_first_fp32=args.keep_first_fp32)
    measured = evaluate_model(out, args.val)
    print(json.dumps(measured, indent=1))
    quantization = {**spec.provenance["quantization"],
                    "calibration_photos": f"the first {len(photos)} photos of "
                                          f"{args.calibration.name} (training photos)",
                    "recipe": "training/release_int8.py"}
    write_metadata(out, {"accuracy": accuracy_field(measured),
                         "provenance": {**spec.provenance, "quantization": quantization}})
    if not args.no_facts:
        fp32_facts = json.loads(args.model.with_suffix(".json").read_text())
        facts = facts_for(fp32_facts, spec.name, out, measured)
        (ASSETS / f"{spec.name}.json").write_text(json.dumps(facts, indent=1) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
