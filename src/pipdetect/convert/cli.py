"""``pipdetect convert``: PIP-Net checkpoint (.pth) -> pipdetect ONNX model."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

from ..presets import PRESETS
from .arch import BACKBONES

__all__ = ["build_parser", "main"]

_EPILOG = """\
examples:
  pipdetect convert epoch59.pth --backbone resnet18 --dataset WFLW -o pipnet-r18-wflw.onnx
  pipdetect convert my_finetune.pth --backbone resnet50 --meanface meanface.txt \\
      --num-nb 10 -o mine.onnx
  pipdetect convert epoch59.pth --backbone resnet18 --dataset WFLW -o r18.onnx \\
      --quantize int8 --calibration photos/      # also writes r18-int8.onnx
  pipdetect convert run/final.pth --backbone efficientnet_lite0 --meanface 300W \\
      --scheme 300w68 --crop-policy run/crop_policy.json --info info.json \\
      --name pipnet-lite0-300w -o pipnet-lite0-300w.onnx   # a model trained with training/

The checkpoint is read without PyTorch and without running any code from it:
only tensors are rebuilt (zip and legacy torch.save formats). Every weight is
checked against the reference PIP-Net architecture. Needs the `onnx` package:
pip install onnx, or in the pipdetect checkout: pip install '.[convert]'.

Files: the model (and its int8 copy) is written beside -o and renamed over it
only once complete (with --quantize, both or neither): a failed or interrupted
conversion leaves existing files as they were. An -o that is, or links to, a
file the conversion reads is refused.

Licence: the official PIP-Net weights were trained on research-only datasets;
the converted models say so in their metadata (research use only).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pipdetect convert``."""
    parser = argparse.ArgumentParser(
        prog="pipdetect convert",
        description="Convert a PIP-Net PyTorch checkpoint (state_dict .pth) into a pipdetect "
                    "ONNX model, batch-norm folded, with the metadata LandmarkDetector needs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="the .pth file written by torch.save")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="ONNX file to write (default: <name>.onnx in the current "
                             "folder); replaced only by a whole new model, never an input")
    parser.add_argument("--backbone", required=True, metavar="NAME",
                        help=f"network backbone: {', '.join(BACKBONES)}")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", metavar="PRESET",
                        help="official training set (case-insensitive): "
                             f"{', '.join(PRESETS)}; sets mean face, landmark scheme, "
                             "crop policy, published accuracy and licence note")
    source.add_argument("--meanface", metavar="FILE_OR_PRESET",
                        help="mean face of a custom training (x1 y1 x2 y2 ... normalised to "
                             "the crop, as the reference repo's meanface.txt), or the name of "
                             "the preset whose mean face it was trained with (300W)")
    parser.add_argument("--num-nb", type=int, default=None, metavar="K",
                        help="number of neighbours the model was trained with (read from the "
                             "checkpoint; if given, it is checked)")
    parser.add_argument("--name", default=None,
                        help="model name stored in the file (default: pipnet-r18-wflw style "
                             "for a dataset, the output file name for a custom mean face)")
    parser.add_argument("--stride", type=int, default=32, metavar="PIXELS",
                        help="net_stride of the model (default 32, as every official model; "
                             "the reference also has 64 and 128, and 16 for resnet18)")
    parser.add_argument("--input-size", type=int, default=256, metavar="PIXELS",
                        help="square network input size (default 256)")
    parser.add_argument("--crop-policy", default=None, metavar="PRESET_OR_JSON",
                        help="use the face-box-to-crop policy fitted for this preset, or the "
                             "one in this .json file (training/train.py writes one); default: "
                             "the dataset's, 300W's for a custom mean face")
    parser.add_argument("--scheme", default=None, metavar="NAME",
                        help="landmark scheme of a custom model (300w68, wflw98, ...; default "
                             "custom, or the dataset's)")
    parser.add_argument("--info", type=Path, default=None, metavar="JSON",
                        help="facts about a model you trained, stored in its metadata: a JSON "
                             "object with dataset (text), license (text), accuracy (object) "
                             "and training (object: command, commit, data)")
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help="also write an int8 model, <output stem>-int8.onnx: onnxruntime "
                             "static quantisation (QDQ), uint8 activations, int8 weights per "
                             "output channel in the 7-bit range [-64, 64] (reduce_range=True), "
                             "output heads fp32. The 7-bit weights keep it exact on every CPU: "
                             "x86 without VNNI (AVX2-only, AVX-512 without VNNI), whose int8 "
                             "kernels saturate full 8-bit weights, as well as VNNI, AMX and "
                             "Arm64. About 2.5x faster than fp32 on CPUs with VNNI, see "
                             "benchmarks/README.md; needs --calibration")
    parser.add_argument("--calibration", type=Path, nargs="+", default=None,
                        metavar="PHOTO_OR_FOLDER",
                        help="photos with faces, or folders of them, to calibrate the int8 "
                             "model (a few dozen faces like the ones the model will see)")
    return parser


def _default_output(args: argparse.Namespace) -> Path:
    if args.name:
        return Path(f"{args.name}.onnx")
    if args.dataset:
        from ..presets import get_preset
        from .arch import SHORT_NAMES, normalise_backbone

        preset = get_preset(args.dataset)
        stem = f"pipnet-{SHORT_NAMES[normalise_backbone(args.backbone)]}-{preset.name.lower()}"
        return Path(stem + (f"-s{args.stride}" if args.stride != 32 else "") + ".onnx")
    return Path(f"{args.checkpoint.stem}.onnx")


def _inputs(args: argparse.Namespace) -> list[Path]:
    """Every file the conversion reads: the checkpoint, the mean face, crop policy and
    info files, and the calibration photos (those in folders too)."""
    named = [args.checkpoint, args.meanface, args.crop_policy, args.info,
             *(args.calibration or [])]
    found: list[Path] = []
    for item in (Path(n) for n in named if n is not None):
        if item.is_dir():
            from .quantize import IMAGE_SUFFIXES

            found += [p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        elif item.exists():
            found.append(item)
    return found


def _check_outputs(args: argparse.Namespace, outputs: list[Path]) -> None:
    """Refuse, before any work, outputs that cannot be written or would destroy an input
    (the file itself, or a hard or symbolic link to it)."""
    inputs = _inputs(args)
    for out in outputs:
        if out.is_dir():
            raise ValueError(f"the output {out} is a folder; give the file to write, such as "
                             f"-o {out / 'model.onnx'}")
        if not out.parent.is_dir():
            raise FileNotFoundError(f"output folder does not exist: {out.parent}")
        for source in inputs if out.exists() else []:
            if os.path.samefile(out, source):
                what = "is" if out.absolute() == source.absolute() else "links to"
                raise ValueError(f"refusing to overwrite an input: the output {out} {what} "
                                 f"the input {source}; choose another -o")


def main(argv: list[str] | None = None) -> int:
    """Run ``pipdetect convert``; returns the exit status (0 ok, 2 on any error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.quantize and not args.calibration:
            parser.error("--quantize int8 needs --calibration PHOTO_OR_FOLDER ... (photos "
                         "with faces to measure the activation ranges on)")
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else 2

    from ..errors import PipdetectError
    from ..results import replacing
    from . import convert_checkpoint

    start = time.perf_counter()
    try:
        output = args.output if args.output is not None else _default_output(args)
        int8_output = output.with_name(f"{output.stem}-int8{output.suffix}")
        _check_outputs(args, [output, int8_output] if args.quantize else [output])
        # both files are written beside their targets and renamed over them only once
        # both are complete: a failure anywhere leaves the two as they were
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(replacing(output))
            tmp8 = stack.enter_context(replacing(int8_output)) if args.quantize else None
            spec = convert_checkpoint(
                args.checkpoint, tmp,
                backbone=args.backbone, dataset=args.dataset, meanface=args.meanface,
                num_nb=args.num_nb, stride=args.stride, input_size=args.input_size,
                crop_policy=args.crop_policy, scheme=args.scheme, info=args.info,
                name=args.name or (None if args.dataset else output.stem),  # not tmp's
            )
            if tmp8 is not None:
                from .quantize import quantize_model

                int8_spec = quantize_model(tmp, tmp8, args.calibration)
    except (PipdetectError, ValueError, OSError, ImportError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"pipdetect convert: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pipdetect convert: interrupted; no output file was changed", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - start
    size_mb = output.stat().st_size / 1e6
    print(f"wrote {output} ({spec.name}: {spec.backbone}, {spec.num_landmarks} landmarks, "
          f"num_nb {spec.num_nb}, input {spec.input_size[0]}x{spec.input_size[1]}, "
          f"stride {spec.stride}; {size_mb:.1f} MB) in {seconds:.1f} s")
    if args.quantize:
        crops = int8_spec.provenance["quantization"]["calibration_crops"]
        print(f"wrote {int8_output} ({int8_spec.name}: int8, calibrated on {crops} face crops; "
              f"{int8_output.stat().st_size / 1e6:.1f} MB)")
    if args.info is not None:
        print(f"licence: {spec.license}")
    elif spec.dataset is not None:
        print("licence: research use only (trained on a non-commercial research dataset)")
    return 0
