from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import EXAMPLE_IMAGE as EXAMPLE
from pipdetect.errors import InvalidArgumentError, InvalidImageError
from pipdetect.image import MAX_SIDE, load_image


def test_bgr_uint8_passes_through_unchanged(astronaut):
    out = load_image(astronaut)
    assert out.dtype == np.uint8 and out.shape == astronaut.shape
    np.testing.assert_array_equal(out, astronaut)


def test_rgb_is_converted_to_bgr(astronaut):
    rgb = astronaut[:, :, ::-1]
    np.testing.assert_array_equal(load_image(rgb, color="rgb"), astronaut)


def test_gray_and_alpha():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = load_image(gray)
    assert out.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)
    np.testing.assert_array_equal(load_image(gray[:, :, None]), out)
    bgra = np.dstack([out, np.full((3, 4), 7, np.uint8)])
    np.testing.assert_array_equal(load_image(bgra), out)


def test_uint16_and_float_are_scaled():
    u16 = np.array([[0, 65535, 257 * 100]], dtype=np.uint16)
    np.testing.assert_array_equal(load_image(u16)[..., 0], [[0, 255, 100]])
    f = np.array([[0.0, 1.0, 0.5]], dtype=np.float32)
    np.testing.assert_array_equal(load_image(f)[..., 0], [[0, 255, 128]])


@pytest.mark.parametrize(
    "bad, match",
    [
        (None, "None"),
        (np.zeros((0, 5, 3), np.uint8), "empty"),
        (np.zeros((5, 0), np.uint8), "empty"),
        (np.zeros((4, 4, 2), np.uint8), "2 channels"),
        (np.zeros((2, 4, 4, 3), np.uint8), "shape"),
        (np.zeros(5, np.uint8), "shape"),
        (np.zeros((4, 4, 3), bool), "dtype bool"),
        (np.zeros((4, 4, 3), np.int32), "dtype int32"),
        (np.full((4, 4, 3), 2.0), r"\[0, 1\]"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        ([[1, 2], [3, 4]], "NumPy array"),
    ],
)
def test_bad_arrays_are_refused_clearly(bad, match):
    with pytest.raises(InvalidImageError, match=match):
        load_image(bad)


def test_bad_color_argument():
    with pytest.raises(InvalidArgumentError, match="color='hsv'") as info:
        load_image(np.zeros((2, 2, 3), np.uint8), color="hsv")
    assert isinstance(info.value, ValueError)


class _ArrayImage:
    """What PIL images are to pipdetect: __array_interface__ plus a mode (no PIL needed)."""

    def __init__(self, pixels: np.ndarray, mode: str) -> None:
        self._pixels = pixels
        self.mode = mode

    @property
    def __array_interface__(self) -> dict:
        return self._pixels.__array_interface__


def test_pil_like_images_are_read_as_the_rgb_pictures_they_are(astronaut):
    rgb = np.ascontiguousarray(astronaut[:, :, ::-1])
    for color in ("bgr", "rgb"):  # a PIL image says its own order: color does not apply
        np.testing.assert_array_equal(load_image(_ArrayImage(rgb, "RGB"), color), astronaut)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(load_image(_ArrayImage(rgba, "RGBA")), astronaut)
    gray = rgb[:, :, 1].copy()
    np.testing.assert_array_equal(load_image(_ArrayImage(gray, "L")), np.dstack([gray] * 3))
    for mode in ("CMYK", "P", "I;16", "1"):
        with pytest.raises(InvalidImageError, match=rf"mode '{re.escape(mode)}'.*convert\('RGB'\)"):
            load_image(_ArrayImage(rgb, mode))


def test_real_pil_images(astronaut):
    image = pytest.importorskip("PIL.Image")
    pil = image.open(EXAMPLE)
    expected = np.asarray(pil)[:, :, ::-1]  # PIL's own decoding, in BGR order
    np.testing.assert_array_equal(load_image(pil), expected)
    np.testing.assert_array_equal(load_image(pil.convert("RGBA")), expected)
    with pytest.raises(InvalidImageError, match="mode 'CMYK'"):
        load_image(pil.convert("CMYK"))


def test_other_objects_are_refused_with_what_is_accepted():
    with pytest.raises(InvalidImageError, match="NumPy array, a PIL image or a path, got list"):
        load_image([[0, 1], [2, 3]])


def test_too_large_is_refused_without_allocating():
    big = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (MAX_SIDE + 1, 2, 3))
    with pytest.raises(InvalidImageError, match="larger"):
        load_image(big)


def test_files(tmp_path: Path, astronaut):
    import cv2

    png = tmp_path / "a.png"
    cv2.imwrite(str(png), astronaut)
    np.testing.assert_array_equal(load_image(png), astronaut)
    np.testing.assert_array_equal(load_image(str(png)), astronaut)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_image(tmp_path / "missing.jpg")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(InvalidImageError, match="decode"):
        load_image(corrupt)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InvalidImageError, match="decode"):
        load_image(empty)
    with pytest.raises(InvalidImageError, match="not a file"):
        load_image(tmp_path)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    step_y=st.sampled_from([1, 2, -1, -2]),
    step_x=st.sampled_from([1, 2, -1, -2]),
    channels=st.sampled_from([None, 1, 3, 4]),
    seed=st.integers(0, 2**16),
)
def test_any_view_gives_the_same_pixels(h, w, step_y, step_x, channels, seed):
    rng = np.random.default_rng(seed)
    c = 1 if channels is None else channels
    base = rng.integers(0, 256, (h * 2, w * 2, c), dtype=np.uint8)
    view = base[::step_y, ::step_x]
    if channels is None:
        view = view[:, :, 0]
    out = load_image(view)
    assert out.flags.c_contiguous and out.shape == (view.shape[0], view.shape[1], 3)
    expected = np.ascontiguousarray(view).reshape(view.shape[0], view.shape[1], -1)
    if expected.shape[2] == 1:
        expected = np.repeat(expected, 3, axis=2)
    np.testing.assert_array_equal(out, expected[:, :, :3])


# --------------------------------------------------------------------------- limits (issue 20)

import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

from hostilefiles import FORMATS, encoded, png_bomb, png_zeros, set_header_size  # noqa: E402
from pipdetect.image import (  # noqa: E402
    MAX_PIXELS,
    PIXELS_ENV,
    decode_image,
    file_size_limit,
    image_header_size,
    pixel_limit,
)


@pytest.mark.parametrize("ext", FORMATS)
def test_header_sizes_of_every_format_opencv_writes(ext, tmp_path):
    data = encoded(ext, (40, 56))
    assert image_header_size(data) == (56, 40)
    path = tmp_path / f"a{ext}"
    path.write_bytes(data)
    assert load_image(path).shape == (40, 56, 3)
    assert decode_image(data).shape == (40, 56, 3)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".ras", ".ppm", ".pgm", ".pfm"])
@pytest.mark.parametrize("size", [(65_535, 65_535), (30_000, 30_000), (12_000, 9_000)])
def test_header_bombs_are_refused_before_decoding(ext, size, tmp_path):
    data = set_header_size(encoded(ext), ext, *size)
    assert image_header_size(data) == size
    path = tmp_path / f"bomb{ext}"
    path.write_bytes(data)
    with pytest.raises(InvalidImageError, match="larger than pipdetect accepts"):
        load_image(path)
    with pytest.raises(InvalidImageError, match=PIXELS_ENV):
        decode_image(data)


def _peak_mb(code: str, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(baseline MB after imports, peak RSS MB, stdout) of ``code`` in a fresh interpreter."""
    script = textwrap.dedent("""
        import resource, sys
        import numpy as np, cv2
        from pipdetect.image import load_image, decode_image
        from pipdetect.errors import InvalidImageError
        def hwm():  # VmHWM: ru_maxrss would keep the parent's peak across exec
            return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
        base = hwm()
        try:
        {body}
        except InvalidImageError as exc:
            print("refused", exc)
        peak = hwm()
        print(base / 1024, peak / 1024)
    """).format(body=textwrap.indent(textwrap.dedent(code), "    "))
    import os

    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr
    *text, last = out.stdout.strip().splitlines()
    base, peak = (float(v) for v in last.split())
    return base, peak, "\n".join(text)


LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@LINUX_ONLY
def test_a_header_bomb_costs_no_memory(tmp_path):
    """The issue's 69-byte 100000^2 PNG and a 30000^2 one: refused, peak RSS barely moves
    (before: a raw cv2.error, and 5.3 GB for 30000^2)."""
    for side in (100_000, 30_000):
        path = tmp_path / f"bomb{side}.png"
        path.write_bytes(png_bomb(side, side))
        base, peak, out = _peak_mb(f"load_image({str(path)!r})")
        assert "refused" in out and "larger than pipdetect accepts" in out
        assert peak - base < 20, (peak, base)


def test_arrays_are_checked_before_any_conversion():
    """Shapes and dtypes first: neither of these allocates (broadcast views of one value)."""
    for shape, dtype in [((40_000, 2_000), np.float32), ((100_000, 100_000), np.uint8),
                         ((20_000, 20_000), np.uint16), ((5, 5, 2), np.float64)]:
        view = np.broadcast_to(np.zeros((1,) * len(shape), dtype), shape)
        with pytest.raises(InvalidImageError):
            load_image(view)


@LINUX_ONLY
@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_conversion_needs_no_big_temporaries(dtype):
    """A 40 MB uint16 (80 MB float32) gray image: the peak is what the process held
    before plus the 60 MB result plus a few MB of blocks (converting it whole took
    several times the input in float32 temporaries)."""
    base, peak, out = _peak_mb(f"""
        a = np.full((5000, 4000), 0.5 if "{dtype}" == "float32" else 32768, np.{dtype})
        with open("/proc/self/statm") as f:
            held = int(f.read().split()[1]) * resource.getpagesize() / 2**20
        out = load_image(a)
        assert out.shape == (5000, 4000, 3) and out[0, 0, 0] == 128
        print("held", held)
    """)
    held = float(out.split()[-1])
    assert peak - max(held, base) < 60 + 16, (base, held, peak)


def test_pixel_limit_is_settable_with_the_environment(monkeypatch, tmp_path):
    assert pixel_limit() == MAX_PIXELS == 100_000_000
    image = np.zeros((20, 30, 3), np.uint8)
    monkeypatch.setenv(PIXELS_ENV, "599")
    with pytest.raises(InvalidImageError, match="599 px in all"):
        load_image(image)
    monkeypatch.setenv(PIXELS_ENV, "600")
    assert load_image(image).shape == (20, 30, 3)
    monkeypatch.setenv(PIXELS_ENV, "a lot")
    with pytest.raises(InvalidImageError, match=PIXELS_ENV):
        load_image(image)
    monkeypatch.setenv(PIXELS_ENV, "1_000")
    assert file_size_limit() == 6_000 + 64 * 1024**2


def test_files_over_the_size_limit_are_refused_before_reading(monkeypatch, tmp_path):
    """A sparse file just over the limit (PIPDETECT_MAX_PIXELS=1000: 64 MiB + 6 kB)."""
    monkeypatch.setenv(PIXELS_ENV, "1000")
    path = tmp_path / "huge.png"
    with open(path, "wb") as f:
        f.write(png_bomb(10, 10))
        f.truncate(file_size_limit() + 1)
    with pytest.raises(InvalidImageError, match="more than pipdetect reads"):
        load_image(path)


@pytest.mark.parametrize("ext", FORMATS)
def test_truncated_files_give_an_image_or_invalid_image(ext, tmp_path):
    data = encoded(ext, (40, 48))
    for cut in sorted({0, 1, 3, 8, 16, 30, len(data) // 2, len(data) - 1}):
        path = tmp_path / f"cut{cut}{ext}"
        path.write_bytes(data[:cut])
        try:
            out = load_image(path)
        except InvalidImageError:
            continue
        assert out.shape == (40, 48, 3)


@settings(max_examples=80, deadline=None)
@given(ext=st.sampled_from(FORMATS), data=st.data())
def test_corrupted_headers_give_an_image_or_invalid_image(ext, data):
    raw = bytearray(encoded(ext, (40, 36)))
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, min(len(raw), 300) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    size = image_header_size(bytes(raw))
    assert size is None or (size[0] > 0 and size[1] > 0)
    try:
        out = decode_image(bytes(raw))
    except InvalidImageError:
        return
    assert out.ndim == 3 and out.shape[2] == 3 and out.shape[0] * out.shape[1] <= MAX_PIXELS


@settings(max_examples=200, deadline=None)
@given(prefix=st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"RIFF", b"II*\0",
                               b"MM\0*", b"II+\0", b"GIF89a", b"P6", b"P7", b"#?RADIANCE",
                               b"\xff\x4f\xff\x51", b"\0\0\0\x0cjP  \r\n\x87\n",
                               b"\0\0\0\x18ftypavif"]),
       tail=st.binary(max_size=200))
def test_header_reader_never_raises(prefix, tail):
    size = image_header_size(prefix + tail)
    assert size is None or (size[0] > 0 and size[1] > 0)


def test_a_pil_image_is_size_checked_before_it_is_read():
    """A PIL image opened from a header bomb is decoded only when its pixels are asked
    for: its declared size is refused first (the pixels are never touched here)."""

    class Bomb(_ArrayImage):
        size = (60_000, 60_000)

        @property
        def __array_interface__(self) -> dict:
            raise AssertionError("pixels read before the size was checked")

    with pytest.raises(InvalidImageError, match="PIL image of 60000x60000 pixels is larger"):
        load_image(Bomb(np.zeros((1, 1, 3), np.uint8), "RGB"))


@LINUX_ONLY
def test_out_of_memory_is_an_invalid_image_error(tmp_path):
    """With 150 MB of address space left, a 9000^2 PNG (243 MB decoded) and a 9000^2 uint16
    array fail as InvalidImageError, never a raw cv2.error or MemoryError."""
    path = tmp_path / "black.png"
    path.write_bytes(png_zeros(9000, 9000))
    _, _, out = _peak_mb(f"""
        vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + 150 * 2**20, resource.RLIM_INFINITY))
        for image in ({str(path)!r}, np.broadcast_to(np.zeros((1, 1), np.uint16), (9000, 9000))):
            try:
                load_image(image)
                print("accepted")
            except InvalidImageError as exc:
                print("refused", exc)
    """)
    lines = out.splitlines()
    assert len(lines) == 2 and all(line.startswith("refused") for line in lines), out
    assert "not enough memory" in lines[0] and "not enough memory" in lines[1]


def test_files_are_read_without_mmap_too(tmp_path, monkeypatch, astronaut):
    """Where memory-mapping fails (some network or FUSE file systems) the file is read
    into memory and checked the same way."""
    import cv2

    def no_mmap(*args, **kwargs):
        raise OSError(19, "No such device")

    monkeypatch.setattr(np, "memmap", no_mmap)
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), astronaut)
    np.testing.assert_array_equal(load_image(path), astronaut)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(30_000, 30_000))
    with pytest.raises(InvalidImageError, match="larger than pipdetect accepts"):
        load_image(bomb)
