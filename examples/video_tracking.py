"""Track faces through a video: landmarks follow the face, smoothed, written to a new video.

    python examples/video_tracking.py clip.mp4 -o out/tracked.mp4 [--model my.onnx]
    python examples/video_tracking.py 0                 # camera 0 (no output file: stats only)
    python examples/video_tracking.py clip.mp4 --compare   # also time detection on every frame

The face detector runs only on the first frame, when a face is lost, and every
``--redetect-interval`` frames; in between, each frame's landmarks give the next
frame's crop. Smoothing (a One Euro filter per coordinate) removes jitter without
lagging behind fast motion.
"""

from __future__ import annotations

import argparse
import sys
import time

from pipdetect import LandmarkDetector, PipdetectError
from pipdetect.draw import draw_faces
from pipdetect.video import open_frames, open_writer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="video file, or a camera index such as 0")
    parser.add_argument("-o", "--output", default=None, help="annotated video to write (.mp4)")
    parser.add_argument("--model", default=None, help="model file or zoo name")
    parser.add_argument("--redetect-interval", type=int, default=10)
    parser.add_argument("--no-smooth", action="store_true")
    parser.add_argument("--compare", action="store_true",
                        help="afterwards, time face detection on every frame too")
    args = parser.parse_args(argv)
    source: int | str = int(args.source) if args.source.isdigit() else args.source

    try:
        detector = LandmarkDetector(args.model)
    except (PipdetectError, OSError) as exc:
        print(f"Could not load a model: {exc}\n(see examples/quickstart.py)", file=sys.stderr)
        return 2

    writer = None
    frames = detected = 0
    ids: set[int] = set()
    start = time.perf_counter()
    for faces in detector.track(source, redetect_interval=args.redetect_interval,
                                smoothing=not args.no_smooth):
        frames += 1
        detected += faces.detected
        ids.update(f.track_id for f in faces if f.track_id is not None)
        if args.output:
            if writer is None:
                h, w = faces.image.shape[:2]
                writer = open_writer(args.output, 25.0, (w, h))
            writer.write(draw_faces(faces.image, faces))
    seconds = time.perf_counter() - start
    if writer is not None:
        writer.release()
    if not frames:
        print("no frames could be read", file=sys.stderr)
        return 1
    print(f"{frames} frames in {seconds:.2f} s ({frames / seconds:.1f} fps), "
          f"{len(ids)} face(s) tracked, face detector on {detected} frames")

    if args.compare and not isinstance(source, int):
        stream, _ = open_frames(source)
        start = time.perf_counter()
        for frame in stream:
            detector.detect(frame)
        every = time.perf_counter() - start
        print(f"detecting on every frame: {every:.2f} s ({frames / every:.1f} fps); "
              f"tracking is {every / seconds:.2f}x as fast")
    return 0


if __name__ == "__main__":
    sys.exit(main())
