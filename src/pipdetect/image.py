"""Turning what users pass as an image into one well-formed BGR uint8 array.

Accepted (everything else is refused with :class:`~pipdetect.errors.InvalidImageError`):

* a path (``str`` or ``os.PathLike``) to an image file OpenCV can decode
  (EXIF orientation applied, colour images decoded as BGR, ``color`` ignored);
* a NumPy array of shape (H, W) grayscale, (H, W, 1), (H, W, 3) colour in
  ``color`` order (``"bgr"`` default, the OpenCV convention, or ``"rgb"``) or
  (H, W, 4) with alpha (alpha is dropped);
* dtypes: ``uint8``; ``uint16`` (scaled by 255/65535, as 16-bit PNGs); float
  (``float16/32/64``) with every value finite and in [0, 1] (scaled by 255).
  Other dtypes (bool, signed ints, ...) are refused rather than guessed.

Any strides are fine (views, negative strides); the result is C-contiguous.
Each side must be at most :data:`MAX_SIDE` pixels and the image at most
:data:`MAX_PIXELS` pixels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import numpy as np

from .errors import InvalidImageError

__all__ = ["MAX_PIXELS", "MAX_SIDE", "ImageInput", "load_image"]

MAX_SIDE = 32767
"""Largest image side in pixels (OpenCV's warp functions address pixels with 16-bit ints)."""
MAX_PIXELS = 400_000_000
"""Largest image area in pixels (a 20000 x 20000 photo)."""

ImageInput = Union[np.ndarray, str, "os.PathLike[str]"]


def load_image(image: Any, color: str = "bgr") -> np.ndarray:
    """Return ``image`` as a C-contiguous (H, W, 3) uint8 BGR array (see module docs)."""
    if color not in ("bgr", "rgb"):
        raise ValueError(f"color must be 'bgr' or 'rgb', got {color!r}")
    if isinstance(image, (str, os.PathLike)):
        return _read_file(Path(image))
    if image is None:
        raise InvalidImageError(
            "image is None; if it came from cv2.imread, the file could not be read "
            "(pass the path instead to get a precise error)"
        )
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(
            f"image must be a NumPy array or a path, got {type(image).__name__}"
        )
    arr = _as_uint8(image)
    arr = _as_three_channels(arr)
    if color == "rgb":
        arr = arr[:, :, ::-1]
    return np.ascontiguousarray(arr)


def _check_size(shape: tuple[int, ...]) -> None:
    h, w = shape[0], shape[1]
    if h == 0 or w == 0:
        raise InvalidImageError(f"image is empty (shape {shape})")
    if h > MAX_SIDE or w > MAX_SIDE or h * w > MAX_PIXELS:
        raise InvalidImageError(
            f"image of {w}x{h} pixels is larger than pipdetect accepts "
            f"({MAX_SIDE} px per side, {MAX_PIXELS:,} px in all); downscale it first"
        )


def _as_three_channels(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        _check_size(arr.shape)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3:
        hint = " (for several images call detect() per image)" if arr.ndim == 4 else ""
        raise InvalidImageError(
            f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {arr.shape}{hint}"
        )
    _check_size(arr.shape)
    channels = arr.shape[2]
    if channels == 1:
        return np.repeat(arr, 3, axis=2)
    if channels == 3:
        return arr
    if channels == 4:
        return arr[:, :, :3]
    raise InvalidImageError(
        f"image has {channels} channels; expected 1 (gray), 3 (colour) or 4 (with alpha)"
    )


def _as_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return ((arr.astype(np.float32) * (255.0 / 65535.0)) + 0.5).astype(np.uint8)
    if arr.dtype.kind == "f":
        if arr.size == 0:
            return arr.astype(np.uint8)
        if not np.all(np.isfinite(arr)):
            raise InvalidImageError("float image contains NaN or infinity")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise InvalidImageError(
                f"float images must hold values in [0, 1]; this one spans [{lo:g}, {hi:g}]. "
                "Pass uint8 (0-255) instead, or divide by 255"
            )
        return (arr.astype(np.float32) * 255.0 + 0.5).astype(np.uint8)
    raise InvalidImageError(
        f"image dtype {arr.dtype} is not supported; use uint8 (0-255), uint16, or float in [0, 1]"
    )


def _read_file(path: Path) -> np.ndarray:
    import cv2

    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if not path.is_file():
        raise InvalidImageError(f"{path} is not a file")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise InvalidImageError(f"{path}: not an image OpenCV can decode (corrupt or unsupported)")
    _check_size(image.shape)
    return np.ascontiguousarray(image)
