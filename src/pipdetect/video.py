"""Frames in and out through OpenCV: video files, cameras, iterables of images.

Frames are (H, W, 3) uint8 BGR arrays (OpenCV's order), as everywhere in pipdetect.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidArgumentError, InvalidImageError, VideoError

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "VideoFrames",
    "VideoInfo",
    "VideoTruncatedWarning",
    "find_images",
    "is_video_path",
    "open_frames",
    "open_writer",
]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".jp2",
     ".pbm", ".pgm", ".ppm", ".pnm", ".sr", ".ras", ".exr", ".hdr", ".pic", ".avif"}
)
"""File name extensions treated as still images (lower case)."""

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
     ".3gp", ".ts", ".mts", ".ogv", ".gif"}
)
"""File name extensions treated as videos (lower case)."""

DEFAULT_FPS = 30.0
"""Frame rate assumed when a source does not say (cameras, iterables of frames)."""


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a frame source before reading it.

    ``fps`` in frames per second (``DEFAULT_FPS`` when the source does not say);
    ``width`` / ``height`` in pixels and ``frame_count`` (an estimate for
    files, as reported by the container) are ``None`` when unknown.
    """

    fps: float = DEFAULT_FPS
    width: int | None = None
    height: int | None = None
    frame_count: int | None = None


def find_images(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """The images of a folder as the command line reads them: files with an image
    extension (:data:`IMAGE_EXTENSIONS`), sorted; sub-folders only when ``recursive``;
    other files (notes, videos) left out, and pipdetect's own drawings
    (``NAME_landmarks.EXT`` beside ``NAME.*``) too. An unreadable folder gives ``[]``."""
    root = Path(folder)
    try:
        found = sorted(p for p in root.glob("**/*" if recursive else "*")
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    except OSError:
        return []
    names = {(p.parent, p.stem) for p in found} | {(p.parent, p.name) for p in found}
    return [p for p in found
            if not (p.stem.endswith("_landmarks") and (p.parent, p.stem[:-10]) in names)]


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """True when the file name's extension is a video extension (see :data:`VIDEO_EXTENSIONS`)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def open_frames(source: Any) -> tuple[Iterator[Any], VideoInfo]:
    """Frames of a video file path, a camera index, or an iterable of images.

    Returns an iterator over the frames and what is known about them. For files
    and cameras the iterator is a :class:`VideoFrames`, which releases the capture
    device when exhausted or closed (``del`` it, or call ``.close()``) and tells
    whether a file ended before its declared frame count. Raises :class:`FileNotFoundError` for
    a missing file and :class:`~pipdetect.errors.VideoError` for a file or camera
    OpenCV cannot open.
    """
    if isinstance(source, (bool, np.bool_)):
        raise InvalidArgumentError(
            "source must be a video path, a camera index or an iterable of frames"
        )
    if isinstance(source, (int, np.integer)):
        return _capture(int(source), f"camera {int(source)}")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"video file not found: {path}")
        if not path.is_file():
            raise VideoError(f"{path} is not a file")
        return _capture(str(path), str(path))
    if isinstance(source, np.ndarray):
        if source.ndim != 4:
            raise InvalidImageError(
                "a frame array must be (T, H, W, C); pass a single image to detect() instead"
            )
        return iter(source), VideoInfo(
            height=source.shape[1], width=source.shape[2], frame_count=source.shape[0]
        )
    if isinstance(source, Iterable):
        return iter(source), VideoInfo()
    raise InvalidArgumentError(
        f"source must be a video path, a camera index or an iterable of frames, got "
        f"{type(source).__name__}"
    )


def _capture(target: int | str, name: str) -> tuple[Iterator[np.ndarray], VideoInfo]:
    import cv2

    cap = cv2.VideoCapture(target)
    if not cap.isOpened():
        cap.release()
        what = "camera" if isinstance(target, int) else "video"
        raise VideoError(
            f"{name}: OpenCV cannot open this {what}"
            + (" (corrupt, or a codec this OpenCV build lacks)" if what == "video" else
               " (no such device, or it is in use)")
        )
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    info = VideoInfo(
        fps=fps if 0.0 < fps < 1000.0 else DEFAULT_FPS,
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or None,
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or None,
        frame_count=count if count > 0 else None,
    )
    return VideoFrames(cap, info.frame_count if isinstance(target, str) else None), info


class VideoTruncatedWarning(UserWarning):
    """A video file ended before the frame count its container declares (truncated or
    damaged): the frames before the damage were read, the rest are missing."""


class VideoFrames(Iterator[np.ndarray]):
    """The frames of an OpenCV capture (from :func:`open_frames`), one at a time.

    :attr:`read` counts the frames read so far. When a file ends before the frame count
    its container declares, :attr:`ended_early` becomes True and a
    :class:`VideoTruncatedWarning` is issued (``warnings``); the frames read until then
    are good.
    """

    def __init__(self, cap: Any, declared: int | None) -> None:
        self.cap = cap
        self.declared = declared
        """Frames the file declares (``None`` for cameras or when unknown)."""
        self.read = 0
        self.ended_early = False

    def __next__(self) -> np.ndarray:
        if self.cap is None:
            raise StopIteration
        ok, frame = self.cap.read()
        if not ok or frame is None:
            self.close()
            if self.declared is not None and self.read < self.declared:
                self.ended_early = True
                warnings.warn(
                    f"the video ended after {self.read} of its {self.declared} frames "
                    "(truncated or damaged)", VideoTruncatedWarning, stacklevel=2)
            raise StopIteration
        self.read += 1
        return np.asarray(frame)

    def close(self) -> None:
        """Release the capture device (also done when the frames run out)."""
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    def __del__(self) -> None:
        self.close()


_FOURCC = {".avi": "MJPG", ".mkv": "MJPG"}
"""Codec per output extension; everything else is written as MPEG-4 part 2 (``mp4v``),
which every OpenCV build with FFmpeg can write without extra libraries."""


def _fourcc(code: str) -> int:
    """The FOURCC integer of a four-letter codec name (as ``cv2.VideoWriter_fourcc``)."""
    a, b, c, d = (ord(ch) for ch in code)
    return a | (b << 8) | (c << 16) | (d << 24)


def open_writer(path: str | os.PathLike[str], fps: float, size: tuple[int, int]) -> Any:
    """A ``cv2.VideoWriter`` for ``path`` (``size`` = (width, height) pixels).

    ``.avi`` and ``.mkv`` get Motion-JPEG, everything else MPEG-4 (``mp4v``).
    Raises :class:`OSError` when OpenCV cannot write this file.
    """
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = _FOURCC.get(path.suffix.lower(), "mp4v")
    writer = cv2.VideoWriter(str(path), _fourcc(fourcc), float(fps), size)
    if not writer.isOpened():
        writer.release()
        raise OSError(
            f"{path}: OpenCV cannot write a {fourcc} video here; use a .mp4 or .avi file name "
            "in a writable folder"
        )
    return writer
