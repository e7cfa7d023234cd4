"""pipdetect inside your own video loop: head pose (``Face.pose``) and blinks from 68 points.

    python examples/head_pose.py clip.mp4 [--model my.onnx]
    python examples/head_pose.py 0                        # camera 0
    python examples/head_pose.py examples/astronaut.jpg   # a single photo works too

Your loop owns the frames; a ``pipdetect.track.Tracker`` is fed one frame at a time
and returns each face with a stable ``track_id``. ``points=68`` asks a 98-point
(WFLW) model for the standard 68-point subset, so the same code runs with 68-point
models too. Per face and frame this prints yaw / pitch / roll in degrees (``Face.pose``,
estimated from the landmarks: see docs/angles.md) and the
eye aspect ratio (EAR, Soukupova and Cech 2016), counting a blink when it drops
below 0.2 for at least two frames.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from pipdetect import LandmarkDetector, PipdetectError
from pipdetect.image import load_image
from pipdetect.track import Tracker
from pipdetect.video import IMAGE_EXTENSIONS, open_frames


def eye_aspect_ratio(eye: np.ndarray) -> float:
    """EAR of one 6-point eye (corner, 2 upper, corner, 2 lower): small when closed."""
    vertical = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
    return float(vertical / (2.0 * np.linalg.norm(eye[0] - eye[3]) + 1e-9))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="video file, image, or camera index")
    parser.add_argument("--model", default=None, help="model file or zoo name")
    args = parser.parse_args(argv)
    source: int | str = int(args.source) if args.source.isdigit() else args.source

    try:
        detector = LandmarkDetector(args.model)
        tracker = Tracker(detector, points=68)
    except (PipdetectError, OSError, ValueError) as exc:
        print(f"Could not set up a 68-point detector: {exc}", file=sys.stderr)
        return 2
    # OpenCV's own warnings (e.g. about a missing camera) off: the message below says it.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        seen = follow(tracker, source)
    except (PipdetectError, OSError) as exc:  # no camera, a bad file: say so, no traceback
        hint = (" (no camera here? pass a video file or a photo instead)"
                if isinstance(source, int) else "")
        print(f"Could not read the frames: {exc}{hint}", file=sys.stderr)
        return 1
    if seen is None:
        print(f"Could not read any frame from {args.source}", file=sys.stderr)
        return 1
    if seen == 0:
        print(f"no face found in {args.source}")
    return 0


def follow(tracker: Tracker, source: int | str) -> int | None:
    """Print pose and blinks per face and frame; returns how many faces were seen
    (``None`` when not a single frame could be read)."""
    if isinstance(source, str) and Path(source).suffix.lower() in IMAGE_EXTENSIONS:
        frames: Iterable[np.ndarray] = [load_image(source)]  # a photo: one frame
    else:
        frames, _ = open_frames(source)
    closed: dict[int, int] = {}
    blinks: dict[int, int] = {}
    seen = None
    for frame in frames:  # your own loop: grab, process, display ...
        faces = tracker.update(frame)
        seen = (seen or 0) + len(faces)
        for face in faces:
            tid = face.track_id if face.track_id is not None else -1
            roll, yaw, pitch = face.pose or (math.nan, math.nan, math.nan)
            ear = (eye_aspect_ratio(face.part("right_eye"))
                   + eye_aspect_ratio(face.part("left_eye"))) / 2
            closed[tid] = closed.get(tid, 0) + 1 if ear < 0.2 else 0
            if closed[tid] == 2:
                blinks[tid] = blinks.get(tid, 0) + 1
            print(f"frame {faces.frame_index:5d}  face {tid}: yaw {yaw:6.1f}  pitch "
                  f"{pitch:6.1f}  roll {roll:6.1f}  EAR {ear:.2f}  blinks {blinks.get(tid, 0)}")
    return seen


if __name__ == "__main__":
    sys.exit(main())
