"""pipdetect: facial landmarks with PIP-Net on onnxruntime.

>>> from pipdetect import LandmarkDetector
>>> detector = LandmarkDetector("pipnet.onnx")
>>> points = detector(image)   # (N, 2) float32, original-image pixels

Heavy modules (onnxruntime, OpenCV) are imported when first needed, so
``import pipdetect`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    CheckpointError,
    ConcurrentUseError,
    DecodeError,
    DownloadError,
    InvalidArgumentError,
    InvalidBoxError,
    InvalidImageError,
    ModelFormatError,
    ModelNotFoundError,
    ModelOutputError,
    NoFaceError,
    PipdetectError,
    UnknownNameError,
    VideoError,
)

__all__ = [
    "DEFAULT_MODEL",
    "CheckpointError",
    "ConcurrentUseError",
    "Crop",
    "DecodeError",
    "DownloadError",
    "Face",
    "FrameFaces",
    "InvalidArgumentError",
    "InvalidBoxError",
    "InvalidImageError",
    "LandmarkDetector",
    "ModelFormatError",
    "ModelNotFoundError",
    "ModelOutputError",
    "NoFaceError",
    "OneEuroFilter",
    "PIPDecoder",
    "PipdetectError",
    "Tracker",
    "UnknownNameError",
    "VideoError",
    "__version__",
    "draw_faces",
    "list_models",
    "set_global_threads",
]

_LAZY = {
    "LandmarkDetector": "detector",
    "Face": "detector",
    "Crop": "stages",
    "PIPDecoder": "decode",
    "list_models": "zoo",
    "Tracker": "track",
    "FrameFaces": "track",
    "OneEuroFilter": "track",
    "draw_faces": "draw",
    "DEFAULT_MODEL": "zoo",
    "set_global_threads": "model",
}

if TYPE_CHECKING:  # pragma: no cover
    from .decode import PIPDecoder
    from .detector import Face, LandmarkDetector
    from .draw import draw_faces
    from .model import set_global_threads
    from .stages import Crop
    from .track import FrameFaces, OneEuroFilter, Tracker
    from .zoo import DEFAULT_MODEL, list_models


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pipdetect' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
