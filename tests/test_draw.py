"""Drawing: points where the landmarks are, lines along each group, sized to the face."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipdetect import Face
from pipdetect.draw import GROUP_COLORS, draw_faces, draw_landmarks, style_for
from pipdetect.errors import InvalidImageError
from pipdetect.presets import load_meanface
from pipdetect.schemes import SCHEMES


def face_at(crop, scheme="300w68", meanface="300W", track_id=None) -> Face:
    mf = load_meanface(meanface)
    x1, y1, x2, y2 = crop
    lm = np.stack([x1 + mf[:, 0] * (x2 - x1), y1 + mf[:, 1] * (y2 - y1)], axis=1)
    return Face(lm.astype(np.float32), np.ones(len(mf), np.float32), crop, crop, 1.0,
                scheme=scheme, track_id=track_id)


def painted(img: np.ndarray) -> np.ndarray:
    return np.any(img != 0, axis=2)


def test_points_and_lines_land_on_the_landmarks():
    blank = np.zeros((400, 400, 3), np.uint8)
    face = face_at((100.0, 80.0, 300.0, 300.0))
    out = draw_faces(blank, [face])
    assert not blank.any()  # drawn on a copy
    mask = painted(out)
    for x, y in face.landmarks:
        assert mask[round(float(y)), round(float(x))]
    # the midpoint of every drawn segment is painted, and in its group's colour
    scheme = SCHEMES["300w68"]
    names = list(scheme.groups)
    groups = scheme.group_of()
    for a, b in scheme.connections():
        mx, my = (face.landmarks[a] + face.landmarks[b]) / 2
        assert mask[round(float(my)), round(float(mx))]
    eye = face.landmarks[36:42].mean(axis=0)
    assert not mask[round(float(eye[1])), round(float(eye[0]))]  # the eye's inside stays empty
    x, y = face.landmarks[8]
    assert tuple(out[round(float(y)), round(float(x))]) == GROUP_COLORS[names[groups[8]]]
    # nothing far away from the face
    assert not mask[:60].any() and not mask[:, :90].any()


def test_points_only_and_custom_schemes():
    blank = np.zeros((300, 300, 3), np.uint8)
    face = face_at((50.0, 50.0, 250.0, 250.0))
    only = painted(draw_faces(blank, [face], lines=False))
    full = painted(draw_faces(blank, [face]))
    assert only.sum() < full.sum() and np.all(full[only])
    custom = face_at((50.0, 50.0, 250.0, 250.0), scheme="custom")
    np.testing.assert_array_equal(painted(draw_faces(blank, [custom])), only)
    none = painted(draw_faces(blank, [face], points=False, lines=False))
    assert not none.any()


def test_sizes_scale_with_the_face():
    small = painted(draw_faces(np.zeros((900, 900, 3), np.uint8),
                               [face_at((100.0, 100.0, 250.0, 250.0))]))
    big = painted(draw_faces(np.zeros((900, 900, 3), np.uint8),
                             [face_at((100.0, 100.0, 700.0, 700.0))]))
    ratio = big.sum() / small.sum()
    # painted area grows about with the square of the size (4x -> ~16x, less after
    # rounding radii to whole pixels); fixed-size dots and lines would give about 4x
    assert 6 < ratio < 32
    assert style_for(20) == (1, 1) and style_for(900)[0] >= 9


@settings(max_examples=20, deadline=None)
@given(x=st.floats(-50, 350), y=st.floats(-50, 350), size=st.floats(2, 400))
def test_any_position_and_size_is_safe(x, y, size):
    """Faces off the image or tiny are drawn as far as visible, never an error."""
    img = draw_faces(np.zeros((300, 300, 3), np.uint8), [face_at((x, y, x + size, y + size))],
                     boxes=True)
    assert img.shape == (300, 300, 3)


def test_labels_boxes_and_in_place():
    canvas = np.zeros((300, 300, 3), np.uint8)
    face = face_at((60.0, 80.0, 240.0, 280.0), track_id=7)
    labelled = painted(draw_faces(canvas, [face]))
    plain = painted(draw_faces(canvas, [face], labels=False))
    assert labelled.sum() > plain.sum()  # the "7" above the face
    boxed = painted(draw_faces(canvas, [face], boxes=True, labels=False))
    assert boxed[80, 150] and not plain[80, 150]
    out = draw_faces(canvas, [face], copy=False)
    assert out is canvas and canvas.any()
    with pytest.raises(InvalidImageError, match="copy=True"):
        draw_faces(np.zeros((10, 10), np.uint8), [face], copy=False)
    gray = draw_faces(np.zeros((300, 300), np.uint8), [face])  # copies convert
    assert gray.shape == (300, 300, 3)


def test_draw_landmarks_arrays():
    blank = np.zeros((200, 200, 3), np.uint8)
    pts = load_meanface("WFLW") * 160 + 20
    out = draw_landmarks(blank, pts, "wflw98", color=(1, 2, 3))
    colours = {tuple(c) for c in out.reshape(-1, 3)} - {(0, 0, 0)}
    assert (1, 2, 3) in colours
    with pytest.raises(ValueError, match="68 points"):
        draw_landmarks(blank, pts, "300w68")
    with pytest.raises(ValueError, match="unknown"):
        draw_landmarks(blank, pts, "dlib")
    nan = pts.copy()
    nan[5] = np.nan
    assert painted(draw_landmarks(blank, nan, "wflw98")).any()  # skipped, not an error
    assert not draw_landmarks(blank, np.zeros((0, 2))).any()
