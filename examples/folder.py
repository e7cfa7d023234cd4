"""Process a folder of photos: landmarks of every face into one CSV, plus annotated copies.

    python examples/folder.py photos/ -o out/                 # the bundled default model
    python examples/folder.py photos/ -o out/ --model my.onnx

Images go through the network in batches (``LandmarkDetector.detect_batch``); a file
that cannot be read is reported and skipped. The command line does the same with
``pipdetect photos/ -o out/ --draw``; this script shows the Python API behind it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

from pipdetect import LandmarkDetector, PipdetectError
from pipdetect.draw import draw_faces
from pipdetect.image import load_image
from pipdetect.results import image_record, write_csv
from pipdetect.video import find_images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("out/folder"))
    parser.add_argument("--model", default=None, help="model file or zoo name")
    parser.add_argument("--batch", type=int, default=8, help="images per network call")
    args = parser.parse_args(argv)

    try:
        detector = LandmarkDetector(args.model)
    except (PipdetectError, OSError) as exc:
        print(f"Could not load a model: {exc}\n(see examples/quickstart.py)", file=sys.stderr)
        return 2
    paths = find_images(args.folder)  # the images the command line reads (-r: recursive=True)
    args.output.mkdir(parents=True, exist_ok=True)
    records, failed, faces_total = [], 0, 0
    start = time.perf_counter()
    for i in range(0, len(paths), args.batch):
        chunk = []
        for path in paths[i : i + args.batch]:
            try:
                chunk.append((path, load_image(path)))
            except (PipdetectError, OSError) as exc:
                print(f"skipping: {exc}", file=sys.stderr)  # the message names the file
                failed += 1
        # all faces of the chunk's images through the network together
        results = detector.detect_batch([img for _, img in chunk])
        for (path, img), faces in zip(chunk, results, strict=True):
            records.append(image_record(detector, faces, size=(img.shape[1], img.shape[0]),
                                        source=path))
            cv2.imwrite(str(args.output / f"{path.stem}_landmarks.png"), draw_faces(img, faces))
            faces_total += len(faces)
    with open(args.output / "landmarks.csv", "w", newline="") as stream:
        write_csv(stream, records)
    seconds = time.perf_counter() - start
    print(f"{len(records)} images, {faces_total} faces, {failed} unreadable, "
          f"{seconds:.2f} s; results in {args.output}/")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
