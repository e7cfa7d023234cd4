"""Turning what users pass as an image into one well-formed BGR uint8 array.

Accepted (everything else is refused with :class:`~pipdetect.errors.InvalidImageError`):

* a path (``str`` or ``os.PathLike``) to an image file OpenCV can decode
  (EXIF orientation applied, colour images decoded as BGR, ``color`` ignored);
* a PIL image (anything with ``__array_interface__`` and a ``mode``) in mode RGB, RGBA
  or L, read as the RGB (or gray) picture it is whatever ``color`` says; PIL is never
  imported;
* a NumPy array of shape (H, W) grayscale, (H, W, 1), (H, W, 3) colour in
  ``color`` order (``"bgr"`` default, the OpenCV convention, or ``"rgb"``) or
  (H, W, 4) with alpha (alpha is dropped);
* dtypes: ``uint8``; ``uint16`` (scaled by 255/65535, as 16-bit PNGs); float
  (``float16/32/64``) with every value finite and in [0, 1] (scaled by 255).
  Other dtypes (bool, signed ints, ...) are refused rather than guessed.

Any strides are fine (views, negative strides); the result is C-contiguous.

Limits, checked before any work (so one hostile input costs no memory):

* each side at most :data:`MAX_SIDE` pixels, and at most :func:`pixel_limit`
  pixels in all (default :data:`MAX_PIXELS`, 100 megapixels, which keeps one
  input's peak memory under about 1 GB; raise it with the environment variable
  ``PIPDETECT_MAX_PIXELS`` for huge scans);
* a file's size is read from its header before it is decoded, and files larger
  than :func:`file_size_limit` bytes are refused before they are read. Formats:
  PNG, JPEG, BMP, WebP, TIFF, GIF, AVIF, JPEG 2000, PNM/PAM/PFM, Sun raster and
  Radiance HDR (OpenCV's decoders); a file in none of them is refused.
* arrays are converted in blocks of rows, so a uint16 or float image needs no
  temporary bigger than a few megabytes beside the result.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, Union

import numpy as np

from .errors import InvalidArgumentError, InvalidImageError

__all__ = [
    "MAX_PIXELS",
    "MAX_SIDE",
    "PIL_MODES",
    "ArrayImage",
    "ImageInput",
    "decode_image",
    "file_size_limit",
    "load_image",
    "pixel_limit",
]

MAX_SIDE = 32767
"""Largest image side in pixels (OpenCV's warp functions address pixels with 16-bit ints)."""
MAX_PIXELS = 100_000_000
"""Default largest image area in pixels (100 megapixels, 12500 x 8000); see :func:`pixel_limit`."""
PIXELS_ENV = "PIPDETECT_MAX_PIXELS"
"""Environment variable that overrides :data:`MAX_PIXELS` (read at each call)."""
_FILE_BYTES_PER_PIXEL = 6  # uncompressed 16-bit RGB, the largest honest encoding we accept
_FILE_SLACK = 64 * 1024**2  # headers, metadata, thumbnails
_MAX_DECODE_BYTES = 2**31 - 1  # cv2.imdecode refuses larger buffers
_BLOCK_ELEMENTS = 1 << 21  # conversion block: about 2 M values (8 MB of float32)

class ArrayImage(Protocol):
    """A PIL-like image: NumPy reads it through ``__array_interface__``; ``mode`` says
    what its channels are (``"RGB"``, ``"RGBA"``, ``"L"``)."""

    @property
    def __array_interface__(self) -> dict[str, Any]: ...

    @property
    def mode(self) -> str: ...


ImageInput = Union[np.ndarray, ArrayImage, str, "os.PathLike[str]"]


def pixel_limit() -> int:
    """The largest image area (pixels) accepted: ``$PIPDETECT_MAX_PIXELS`` or :data:`MAX_PIXELS`.

    One accepted image of ``n`` pixels costs about ``3 n`` bytes once decoded, and
    its decoding peaks at about ``9 n`` bytes for the worst (uncompressed 16-bit) files.
    """
    text = os.environ.get(PIXELS_ENV)
    if text is None or not text.strip():
        return MAX_PIXELS
    try:
        value = int(text.strip().replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidImageError(
            f"{PIXELS_ENV}={text!r} must be a positive whole number of pixels, e.g. 400000000"
        )
    return value


def file_size_limit() -> int:
    """Largest image file (bytes) read: 6 bytes per pixel of :func:`pixel_limit` (an
    uncompressed 16-bit RGB file) plus 64 MiB of metadata, at most 2 GiB - 1 (the most
    OpenCV decodes from memory)."""
    return min(_FILE_BYTES_PER_PIXEL * pixel_limit() + _FILE_SLACK, _MAX_DECODE_BYTES)


def load_image(image: Any, color: str = "bgr") -> np.ndarray:
    """Return ``image`` as a C-contiguous (H, W, 3) uint8 BGR array (see module docs)."""
    if color not in ("bgr", "rgb"):
        raise InvalidArgumentError(
            f"color={color!r}: color must be 'bgr' (OpenCV's order, the default) or 'rgb' "
            "(PIL, imageio, matplotlib); alpha channels are dropped on their own"
        )
    if isinstance(image, (str, os.PathLike)):
        return _read_file(Path(image))
    if image is None:
        raise InvalidImageError(
            "image is None; if it came from cv2.imread, the file could not be read "
            "(pass the path instead to get a precise error)"
        )
    # On the type: PIL's __array_interface__ is a property that decodes the whole image.
    if not isinstance(image, np.ndarray) and hasattr(type(image), "__array_interface__") and (
        hasattr(image, "mode")
    ):
        return _from_pil(image)
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(
            f"image must be a NumPy array, a PIL image or a path, got {type(image).__name__}"
        )
    return _convert(image, color)


PIL_MODES = ("RGB", "RGBA", "L")
"""Modes of PIL images :func:`load_image` reads (as the RGB or gray pictures they are)."""


def _from_pil(image: Any) -> np.ndarray:
    """A PIL image (or anything with ``__array_interface__`` and a ``mode``), read as RGB(A)
    or gray whatever ``color`` says, without importing PIL."""
    mode = image.mode
    if mode not in PIL_MODES:
        raise InvalidImageError(
            f"PIL image in mode {mode!r}: pipdetect reads modes {', '.join(PIL_MODES)}; "
            "convert it first with image.convert('RGB')"
        )
    size = getattr(image, "size", None)  # (width, height): checked before PIL decodes it
    if isinstance(size, tuple) and len(size) == 2 and all(isinstance(v, int) for v in size):
        _check_size((size[1], size[0]), "PIL image")
    return _convert(np.asarray(image), "bgr" if mode == "L" else "rgb")


def decode_image(data: Any, source: str = "image") -> np.ndarray:
    """Encoded image bytes (``bytes`` or a 1-D uint8 array) -> (H, W, 3) uint8 BGR.

    Same checks and decoding as a file given to :func:`load_image`; ``source``
    names the data in error messages.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        buf = np.frombuffer(data, dtype=np.uint8)
    else:
        buf = np.asarray(data)
        if buf.dtype != np.uint8 or buf.ndim != 1:
            raise InvalidImageError(
                f"{source}: encoded image data must be bytes, got {type(data).__name__}"
            )
    limit = file_size_limit()
    if buf.size > limit:
        raise InvalidImageError(
            f"{source}: {buf.size:,} bytes is more than pipdetect reads for one image "
            f"({limit:,} bytes); {_RAISE_HINT}"
        )
    return _decode(buf, source)


_RAISE_HINT = f"downscale it first, or raise the limit with the environment variable {PIXELS_ENV}"


def _check_size(shape: tuple[int, ...], source: str = "image") -> None:
    h, w = int(shape[0]), int(shape[1])
    if h == 0 or w == 0:
        raise InvalidImageError(f"{source} is empty (shape {tuple(shape)})")
    limit = pixel_limit()
    if h > MAX_SIDE or w > MAX_SIDE or h * w > limit:
        raise InvalidImageError(
            f"{source} of {w}x{h} pixels is larger than pipdetect accepts "
            f"({MAX_SIDE} px per side, {limit:,} px in all); {_RAISE_HINT}"
        )


def _convert(arr: np.ndarray, color: str) -> np.ndarray:
    """Check shape, dtype and size first, then convert block by block into the result."""
    if arr.ndim not in (2, 3):
        hint = " (for several images call detect() per image)" if arr.ndim == 4 else ""
        raise InvalidImageError(
            f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {arr.shape}{hint}"
        )
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if channels not in (1, 3, 4):
        raise InvalidImageError(
            f"image has {channels} channels; expected 1 (gray), 3 (colour) or 4 (with alpha)"
        )
    if arr.dtype != np.uint8 and arr.dtype != np.uint16 and arr.dtype.kind != "f":
        raise InvalidImageError(
            f"image dtype {arr.dtype} is not supported; use uint8 (0-255), uint16, "
            "or float in [0, 1]"
        )
    _check_size(arr.shape)
    if arr.dtype.kind == "f":
        lo, hi = float(arr.min()), float(arr.max())  # streaming: no temporary array
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InvalidImageError("float image contains NaN or infinity")
        if lo < 0.0 or hi > 1.0:
            raise InvalidImageError(
                f"float images must hold values in [0, 1]; this one spans [{lo:g}, {hi:g}]. "
                "Pass uint8 (0-255) instead, or divide by 255"
            )
    src = arr if arr.ndim == 3 else arr[:, :, None]
    src = src[:, :, :3] if channels == 4 else src
    if color == "rgb" and src.shape[2] == 3:
        src = src[:, :, ::-1]
    try:
        if src.dtype == np.uint8 and src.shape[2] == 3:
            return np.ascontiguousarray(src)
        h, w = src.shape[:2]
        out = np.empty((h, w, 3), dtype=np.uint8)
        rows = max(1, _BLOCK_ELEMENTS // max(1, w * src.shape[2]))
        for start in range(0, h, rows):
            out[start : start + rows] = _to_uint8(src[start : start + rows])
        return out
    except MemoryError:
        raise InvalidImageError(
            f"not enough memory to convert a {src.shape[1]}x{src.shape[0]} image"
        ) from None


def _to_uint8(block: np.ndarray) -> np.ndarray:
    if block.dtype == np.uint8:
        return block
    scale = 255.0 / 65535.0 if block.dtype == np.uint16 else 255.0
    return (block.astype(np.float32) * np.float32(scale) + np.float32(0.5)).astype(np.uint8)


def _read_file(path: Path) -> np.ndarray:
    """Header first (memory-mapped: only the pages it reads), then OpenCV reads the file
    itself, streaming (peak about 2x the decoded image for 8-bit files, 3x for 16-bit).
    Paths OpenCV cannot open (e.g. non-ASCII ones on Windows) are read into memory."""
    import cv2

    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if not path.is_file():
        raise InvalidImageError(f"{path} is not a file")
    size = path.stat().st_size
    limit = file_size_limit()
    if size > limit:
        raise InvalidImageError(
            f"{path}: {size:,} bytes is more than pipdetect reads for one image "
            f"({limit:,} bytes); {_RAISE_HINT}"
        )
    if size == 0:
        raise InvalidImageError(f"{path}: empty file, nothing to decode")
    try:
        header = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError):  # a file system without mmap: read it whole instead
        image = None
    else:
        _check_header(header, str(path))
        del header  # unmaps
        image = _cv2_call(lambda: cv2.imread(str(path), cv2.IMREAD_COLOR), str(path))
    if image is None:
        try:
            data = np.fromfile(str(path), dtype=np.uint8, count=limit + 1)
        except OSError as exc:
            raise InvalidImageError(f"{path}: cannot read the file ({exc})") from None
        if data.size > limit:  # grew since stat
            raise InvalidImageError(f"{path}: file is larger than {limit:,} bytes; {_RAISE_HINT}")
        return _decode(data, str(path))
    return _checked(image, str(path))


def _decode(data: np.ndarray, source: str) -> np.ndarray:
    import cv2

    if data.size == 0:
        raise InvalidImageError(f"{source}: empty file, nothing to decode")
    _check_header(data, source)
    return _checked(_cv2_call(lambda: cv2.imdecode(data, cv2.IMREAD_COLOR), source), source)


def _check_header(data: np.ndarray, source: str) -> None:
    size = image_header_size(np.ascontiguousarray(data).data)
    if size is None:
        raise InvalidImageError(
            f"{source}: not an image pipdetect can decode (corrupt header, or not PNG, JPEG, "
            "BMP, WebP, TIFF, GIF, AVIF, JPEG 2000, PNM, Sun raster or HDR)"
        )
    width, height = size
    _check_size((height, width), f"{source}: image")


def _cv2_call(decode: Callable[[], Any], source: str) -> Any:
    import cv2

    try:
        return decode()
    except (cv2.error, MemoryError, OverflowError, UnicodeError) as exc:
        if isinstance(exc, UnicodeError):
            return None
        short = isinstance(exc, MemoryError) or "alloc" in str(exc).lower()
        kind = "not enough memory to decode it" if short else "OpenCV cannot decode it"
        raise InvalidImageError(f"{source}: corrupt or unsupported image ({kind})") from None


def _checked(image: Any, source: str) -> np.ndarray:
    if image is None:
        raise InvalidImageError(
            f"{source}: not an image OpenCV can decode (corrupt or unsupported)"
        )
    _check_size(image.shape, f"{source}: image")
    return np.ascontiguousarray(image)


# --------------------------------------------------------------------------- headers


def image_header_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) in pixels that an encoded image's header declares, without decoding.

    ``None`` when the data is in none of the formats listed in the module docs or its
    header is cut or inconsistent. For multi-image formats, the largest image OpenCV
    may decode (GIF: the logical screen; TIFF: the first page; AVIF: the largest item).
    """
    view = memoryview(data).cast("B")
    reader: Callable[[memoryview], tuple[int, int] | None] | None = None
    if bytes(view[4:8]) == b"ftyp":
        reader = _avif
    for magic, candidate in _READERS:
        if reader is None and bytes(view[: len(magic)]) == magic:
            reader = candidate
    if reader is None:
        return None
    try:
        size = reader(view)
    except (struct.error, ValueError, IndexError):
        return None
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return size


def _u(fmt: str, view: memoryview, offset: int) -> tuple[Any, ...]:
    if not 0 <= offset <= len(view):
        raise ValueError("offset outside the data")
    return struct.unpack_from(fmt, view, offset)


def _png(v: memoryview) -> tuple[int, int] | None:
    if bytes(v[12:16]) != b"IHDR":
        return None
    w, h = _u(">II", v, 16)
    return w, h


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(v: memoryview) -> tuple[int, int] | None:
    pos, n = 2, len(v)
    while pos + 4 <= n:
        if v[pos] != 0xFF:
            return None
        marker = v[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        (length,) = _u(">H", v, pos + 2)
        if marker in _SOF:
            h, w = _u(">HH", v, pos + 5)
            return w, h
        if length < 2:
            return None
        pos += 2 + length
    return None


def _bmp(v: memoryview) -> tuple[int, int] | None:
    (header,) = _u("<I", v, 14)
    if header == 12:
        w, h = _u("<HH", v, 18)
        return w, h
    w, h = _u("<ii", v, 18)
    return w, abs(h)


def _webp(v: memoryview) -> tuple[int, int] | None:
    if bytes(v[8:12]) != b"WEBP":
        return None
    kind = bytes(v[12:16])
    if kind == b"VP8 ":
        w, h = _u("<HH", v, 26)
        return w & 0x3FFF, h & 0x3FFF
    if kind == b"VP8L":
        (bits,) = _u("<I", v, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        b = bytes(v[24:30])
        if len(b) < 6:
            return None
        return int.from_bytes(b[:3], "little") + 1, int.from_bytes(b[3:], "little") + 1
    return None


def _tiff(v: memoryview) -> tuple[int, int] | None:
    e = "<" if bytes(v[:2]) == b"II" else ">"
    (version,) = _u(e + "H", v, 2)
    big = version == 43
    if big:
        (ifd,) = _u(e + "Q", v, 8)
        (count,) = _u(e + "Q", v, ifd)
        first, step = ifd + 8, 20
    else:
        (ifd,) = _u(e + "I", v, 4)
        (count,) = _u(e + "H", v, ifd)
        first, step = ifd + 2, 12
    if count > 4096:
        return None
    found: dict[int, int] = {}
    for i in range(count):
        at = first + i * step
        tag, kind = _u(e + "HH", v, at)
        if tag in (256, 257):
            value_at = at + (12 if big else 8)
            fmt = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if fmt is None:
                return None
            (found[tag],) = _u(e + fmt, v, value_at)
    if 256 not in found or 257 not in found:
        return None
    return found[256], found[257]


def _gif(v: memoryview) -> tuple[int, int] | None:
    w, h = _u("<HH", v, 6)
    return w, h


_PNM_TOKEN = re.compile(rb"(?:\s|#[^\n\r]*)*(\S+)")


def _pnm(v: memoryview) -> tuple[int, int] | None:
    head = bytes(v[:4096])
    if head[:2] == b"P7":
        w = re.search(rb"\nWIDTH\s+(\d+)", head)
        h = re.search(rb"\nHEIGHT\s+(\d+)", head)
        return (int(w.group(1)), int(h.group(1))) if w and h else None
    if head[:2] not in (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"PF", b"Pf"):
        return None
    tokens = []
    pos = 2
    for _ in range(2):
        found = _PNM_TOKEN.match(head, pos)
        if not found:
            return None
        tokens.append(int(found.group(1)))  # ValueError for junk: caught by the caller
        pos = found.end()
    return tokens[0], tokens[1]


def _sunras(v: memoryview) -> tuple[int, int] | None:
    w, h = _u(">II", v, 4)
    return w, h


_HDR_SIZE = re.compile(rb"\n\s*([-+][XY])\s+(\d+)\s+([-+][XY])\s+(\d+)")


def _hdr(v: memoryview) -> tuple[int, int] | None:
    m = _HDR_SIZE.search(bytes(v[:65536]))
    if not m:
        return None
    first, second = int(m.group(2)), int(m.group(4))
    return (second, first) if m.group(1).endswith(b"Y") else (first, second)


def _j2k(v: memoryview) -> tuple[int, int] | None:
    xs, ys, xo, yo = _u(">IIII", v, 8)
    return xs - xo, ys - yo


def _boxes(v: memoryview, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """ISO base media / JP2 boxes in v[start:end]: (type, payload start, payload end)."""
    out: list[tuple[bytes, int, int]] = []
    pos = start
    while pos + 8 <= end and len(out) < 4096:
        size, kind = _u(">I4s", v, pos)
        head = 8
        if size == 1:
            (size,) = _u(">Q", v, pos + 8)
            head = 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            break
        out.append((kind, pos + head, pos + size))
        pos += size
    return out


def _jp2(v: memoryview) -> tuple[int, int] | None:
    for kind, a, b in _boxes(v, 0, len(v)):
        if kind == b"jp2h":
            for sub, sa, _ in _boxes(v, a, b):
                if sub == b"ihdr":
                    h, w = _u(">II", v, sa)
                    return w, h
    return None


def _avif(v: memoryview) -> tuple[int, int] | None:
    best: tuple[int, int] | None = None

    def walk(a: int, b: int, depth: int) -> None:
        nonlocal best
        for kind, sa, sb in _boxes(v, a, b):
            if kind == b"meta" and depth == 0:
                walk(sa + 4, sb, 1)  # a full box: version and flags first
            elif kind in (b"iprp", b"ipco") and depth in (1, 2):
                walk(sa, sb, depth + 1)
            elif kind == b"ispe" and depth == 3:
                w, h = _u(">II", v, sa + 4)
                if best is None or w * h > best[0] * best[1]:
                    best = (w, h)

    walk(0, len(v), 0)
    return best


_READERS: list[tuple[bytes, Callable[[memoryview], tuple[int, int] | None]]] = [
    (b"\x89PNG\r\n\x1a\n", _png),
    (b"\xff\xd8\xff", _jpeg),
    (b"BM", _bmp),
    (b"RIFF", _webp),
    (b"II*\x00", _tiff),
    (b"MM\x00*", _tiff),
    (b"II+\x00", _tiff),
    (b"MM\x00+", _tiff),
    (b"GIF87a", _gif),
    (b"GIF89a", _gif),
    (b"\x59\xa6\x6a\x95", _sunras),
    (b"#?RADIANCE", _hdr),
    (b"#?RGBE", _hdr),
    (b"\xff\x4f\xff\x51", _j2k),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", _jp2),
    (b"P", _pnm),
]
