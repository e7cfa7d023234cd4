"""Quick start: find the landmarks on the bundled photo and draw them into a PNG.

    python examples/quickstart.py                       # the bundled default model, offline
    python examples/quickstart.py --model my.onnx       # a converted model file
    python examples/quickstart.py photo.jpg -o out.png

The bundled photo (``examples/astronaut.jpg``) is NASA's public-domain portrait
of Eileen Collins, as shipped with scikit-image (``skimage.data.astronaut``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from pipdetect import LandmarkDetector, PipdetectError, draw_faces

HERE = Path(__file__).resolve().parent

HOW_TO_GET_A_MODEL = """\
Without --model pipdetect uses the default model inside the package. For another
model, pass a pipdetect .onnx file, or convert an official PIP-Net checkpoint
yourself (no PyTorch needed):
      pip install ".[convert]"          # in the pipdetect checkout
      pipdetect convert epoch59.pth --backbone resnet18 --dataset WFLW -o pipnet-r18-wflw.onnx
    then run: python examples/quickstart.py --model pipnet-r18-wflw.onnx"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", default=str(HERE / "astronaut.jpg"))
    parser.add_argument(
        "--model", default=None, help="model file or name (default: the bundled model)"
    )
    parser.add_argument("-o", "--output", default="out/quickstart.png", help="PNG to write")
    args = parser.parse_args(argv)

    try:
        detector = LandmarkDetector(args.model)
    except (PipdetectError, FileNotFoundError) as exc:
        print(f"Could not load a model: {exc}\n\n{HOW_TO_GET_A_MODEL}", file=sys.stderr)
        return 2

    image = cv2.imread(args.image)
    if image is None:
        print(f"Could not read the image {args.image}", file=sys.stderr)
        return 2
    faces = detector.detect(image)
    print(f"{len(faces)} face(s) in {args.image} with model {detector.spec.name!r}")
    for i, face in enumerate(faces):
        x, y = face.landmarks[0]
        print(f"  face {i}: {face}; first landmark ({x:.1f}, {y:.1f}) px")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), draw_faces(image, faces, boxes=True))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
