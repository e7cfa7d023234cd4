from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipdetect.errors import InvalidImageError
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
    with pytest.raises(ValueError, match="color"):
        load_image(np.zeros((2, 2, 3), np.uint8), color="hsv")


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
