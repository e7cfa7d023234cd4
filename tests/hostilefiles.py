"""Hostile and unlucky files made on the spot (issue 20): header bombs, truncations,
junk. No file of this corpus is ever committed; each builder returns bytes."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def png_bomb(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header claims width x height RGB pixels (about 70 bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def jpeg_bomb(width: int, height: int) -> bytes:
    """A small real JPEG with its frame header rewritten to claim width x height."""
    _, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def encoded(ext: str, shape: tuple[int, int] = (40, 48)) -> bytes:
    """A small real image file (noise) in OpenCV's encoding for ``ext``."""
    rng = np.random.default_rng(len(ext))
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    if ext in (".pfm", ".hdr"):
        image = image.astype(np.float32) / 255
    if ext == ".pgm":
        image = image[:, :, 0]
    ok, buf = cv2.imencode(ext, image)
    assert ok, ext
    return buf.tobytes()


FORMATS = (".png", ".jpg", ".bmp", ".webp", ".tiff", ".ppm", ".pgm", ".pam", ".pfm", ".ras",
           ".hdr", ".jp2", ".gif", ".avif")
"""Every format OpenCV encodes here that pipdetect reads sizes from."""


def set_header_size(data: bytes, ext: str, width: int, height: int) -> bytes:
    """``data`` (from :func:`encoded`) with its header claiming width x height."""
    b = bytearray(data)
    if ext == ".png":
        b[16:24] = struct.pack(">II", width, height)
        b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])) & 0xFFFFFFFF)
    elif ext == ".jpg":
        return jpeg_bomb(width, height)
    elif ext == ".bmp":
        b[18:26] = struct.pack("<ii", width, height)
    elif ext == ".ras":
        b[4:12] = struct.pack(">II", width, height)
    elif ext in (".ppm", ".pgm", ".pfm"):
        head, rest = bytes(b).split(b"\n", 1)
        _, rest = rest.split(b"\n", 1)
        return head + b"\n" + f"{width} {height}".encode() + b"\n" + rest
    else:
        raise ValueError(ext)
    return bytes(b)


# --------------------------------------------------------------------------- checkpoints


def _unicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def tensor_pickle(tensors: dict[str, tuple[tuple[int, ...], tuple[int, ...], str, int]]) -> bytes:
    """A torch.save-style pickle (protocol 2) of a dict of float32 tensors, written opcode
    by opcode (no torch needed): name -> (size, stride, storage key, storage numel)."""
    out = [b"\x80\x02}("]
    for name, (size, stride, key, numel) in tensors.items():
        out += [_unicode(name), b"ctorch._utils\n_rebuild_tensor_v2\n(",
                b"(", _unicode("storage"), b"ctorch\nFloatStorage\n", _unicode(key),
                _unicode("cpu"), _int(numel), b"tQ", _int(0),
                b"(", *map(_int, size), b"t", b"(", *map(_int, stride), b"t",
                b"\x89N" b"tR"]
    out.append(b"u.")
    return b"".join(out)


def zip_checkpoint(path, pickled: bytes, members: dict[str, bytes] | None = None,
                   deflated: dict[str, int] | None = None):
    """A torch zip checkpoint; ``deflated``: members of that many zero bytes, compressed
    (written in chunks, so a 256 MiB member costs no memory here)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickled)
        for name, data in (members or {}).items():
            z.writestr(name, data)
        for name, size in (deflated or {}).items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            chunk = b"\0" * (1 << 20)
            with z.open(info, "w", force_zip64=True) as f:
                for _ in range(size // len(chunk)):
                    f.write(chunk)
    return path


def shared_nest(depth: int = 45) -> bytes:
    """The issue's 463-byte checkpoint pickle: a list holding another twice, ``depth``
    levels deep (2^depth leaves if expanded), plus a list that holds itself."""
    import pickle

    nest: list = []
    for _ in range(depth):
        nest = [nest, nest]
    loop: list = []
    loop += [loop, loop]
    return pickle.dumps({"w": nest, "loop": loop}, protocol=2)


def png_zeros(width: int, height: int) -> bytes:
    """A valid black RGB PNG of any size, compressed row by row (a 9000^2 one is 240 kB
    and costs no memory to make)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    packer = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))
