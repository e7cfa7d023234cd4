"""Landmark schemes: 98 -> 68 point by point, named parts where their names say, contours."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipdetect.presets import load_meanface
from pipdetect.schemes import (
    SCHEMES,
    WFLW98_TO_300W68,
    conversion_indices,
    convert_points,
    get_scheme,
    scheme_for,
)

MEANFACE = {"wflw98": "WFLW", "300w68": "300W", "cofw29": "COFW", "aflw19": "AFLW",
            "lapa106": "LaPa"}

# docs/design.md §8, transcribed by hand: "jaw 0,2,...,32; brows 33-37 and 42-46;
# nose 51-59; right eye 60,61,63,64,65,67; left eye 68,69,71,72,73,75; mouth 76-95".
DESIGN_98_TO_68 = (
    [("jaw", i) for i in range(0, 33, 2)]
    + [("right_brow", i) for i in range(33, 38)]
    + [("left_brow", i) for i in range(42, 47)]
    + [("nose", i) for i in range(51, 60)]
    + [("right_eye", i) for i in (60, 61, 63, 64, 65, 67)]
    + [("left_eye", i) for i in (68, 69, 71, 72, 73, 75)]
    + [("mouth", i) for i in range(76, 96)]
)


def test_98_to_68_matches_design_point_by_point():
    assert len(DESIGN_98_TO_68) == 68 == len(WFLW98_TO_300W68)
    w98, w68 = SCHEMES["wflw98"], SCHEMES["300w68"]
    for k, (part, source) in enumerate(DESIGN_98_TO_68):
        assert WFLW98_TO_300W68[k] == source, k
        # Same named part on both sides: point k of 300W is in the part the DESIGN names,
        # and so is the WFLW point it comes from.
        assert k in w68.indices(part), (k, part)
        assert source in w98.indices(part), (source, part)


def test_98_to_68_lands_on_the_300w_mean_face():
    """The mapped WFLW mean face matches the 300W one point by point (per-axis fit)."""
    mapped = convert_points(load_meanface("WFLW"), "wflw98", 68)
    target = load_meanface("300W")
    aligned = np.empty_like(mapped)
    for axis in range(2):
        a = np.c_[mapped[:, axis], np.ones(68)]
        coef = np.linalg.lstsq(a, target[:, axis], rcond=None)[0]
        aligned[:, axis] = a @ coef
    err = np.linalg.norm(aligned - target, axis=1)
    assert err.max() < 0.05  # crop units (the face is about 0.8 wide)
    # A mirrored mapping (left and right swapped) would not fit: the test can fail.
    flipped = mapped[[*range(16, -1, -1), *range(26, 16, -1)]]
    assert np.linalg.norm(flipped[:, 0] - target[:17 + 10, 0]) > 0.5


def test_conversion_options():
    pts = np.arange(98 * 2, dtype=float).reshape(98, 2)
    np.testing.assert_array_equal(convert_points(pts, "wflw98", "300w68"),
                                  pts[list(WFLW98_TO_300W68)])
    assert convert_points(pts, "wflw98", 98) is pts
    assert convert_points(pts, "wflw98", "wflw98") is pts
    batch = np.stack([pts, pts + 1])
    assert convert_points(batch, "wflw98", "68").shape == (2, 68, 2)
    assert conversion_indices("wflw98", 68)[0] == "300w68"
    with pytest.raises(ValueError, match="cannot return"):
        convert_points(pts, "wflw98", 29)
    with pytest.raises(ValueError, match=r"it gives its own 68 300w68 points\. Leave points unset"):
        convert_points(np.zeros((68, 2)), "300w68", 98)
    with pytest.raises(ValueError, match="custom"):
        convert_points(np.zeros((5, 2)), "custom", 68)
    with pytest.raises(ValueError, match="unknown landmark scheme"):
        convert_points(pts, "wflw98", 12)


def test_get_scheme():
    assert get_scheme("WFLW98") is SCHEMES["wflw98"]
    assert get_scheme(68).name == "300w68"
    assert get_scheme("106").name == "lapa106"
    for bad in ("dlib", 5, True, None):
        with pytest.raises(KeyError, match="known schemes"):
            get_scheme(bad)  # type: ignore[arg-type]


def test_scheme_for_specs():
    class Spec:
        def __init__(self, scheme, n, dataset=None):
            self.scheme, self.num_landmarks, self.dataset = scheme, n, dataset

    assert scheme_for(Spec("wflw98", 98)) == "wflw98"
    assert scheme_for(Spec("custom", 98, "WFLW")) == "wflw98"
    assert scheme_for(Spec("custom", 98)) == "custom"
    assert scheme_for(Spec("wflw98", 20)) == "custom"  # wrong count: not trusted
    assert scheme_for(Spec("custom", 68, "nonsense")) == "custom"


@pytest.mark.parametrize("name", list(SCHEMES))
def test_every_point_has_exactly_one_group(name):
    scheme = SCHEMES[name]
    seen = [i for idx in scheme.groups.values() for i in idx]
    assert sorted(seen) == list(range(scheme.num_points))
    assert (scheme.group_of() >= 0).all()
    for a, b in scheme.connections():
        assert 0 <= a < scheme.num_points and 0 <= b < scheme.num_points and a != b


def _centre(scheme, mf, part):
    return scheme.part(mf, part).mean(axis=0)


@pytest.mark.parametrize("name", list(SCHEMES))
def test_named_parts_sit_where_their_names_say(name):
    """On the scheme's own mean face (x right, y down, frontal, unmirrored)."""
    scheme = SCHEMES[name]
    mf = load_meanface(MEANFACE[name])
    assert len(mf) == scheme.num_points
    c = {p: _centre(scheme, mf, p) for p in scheme.part_names}
    # subject's right is on the image's left
    assert c["right_eye"][0] < c["left_eye"][0]
    assert c["right_brow"][0] < c["left_brow"][0]
    # top to bottom: brows, eyes, nose, mouth, jaw's lowest point
    assert c["right_brow"][1] < c["right_eye"][1] and c["left_brow"][1] < c["left_eye"][1]
    assert c["eyes"][1] < c["nose"][1] < c["mouth"][1]
    assert scheme.part(mf, "jaw")[:, 1].max() > scheme.part(mf, "mouth")[:, 1].max()
    assert abs(c["nose"][0] - 0.5 * (c["right_eye"][0] + c["left_eye"][0])) < 0.1
    if "pupils" in scheme.part_names:
        for side in ("right", "left"):
            eye = scheme.part(mf, f"{side}_eye")
            for p in scheme.part(mf, f"{side}_pupil"):
                assert np.all(p >= eye.min(axis=0) - 0.01) and np.all(p <= eye.max(axis=0) + 0.01)
    if "inner_lips" in scheme.groups:
        inner, outer = scheme.part(mf, "inner_lips"), scheme.part(mf, "outer_lips")
        assert inner[:, 1].min() >= outer[:, 1].min() and inner[:, 1].max() <= outer[:, 1].max()


def _segments_cross(p1, p2, p3, p4) -> bool:
    def orient(a, b, c):
        return np.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    return (orient(p1, p2, p3) * orient(p1, p2, p4) < 0) and (
        orient(p3, p4, p1) * orient(p3, p4, p2) < 0
    )


@pytest.mark.parametrize("name", list(SCHEMES))
def test_contours_are_in_drawing_order(name):
    """Closed outlines never cross themselves on the mean face; the jaw runs left to right."""
    scheme = SCHEMES[name]
    mf = load_meanface(MEANFACE[name])
    for line in scheme.lines:
        segs = list(itertools.pairwise(line))
        for i in range(len(segs)):
            for j in range(i + 2, len(segs)):
                if segs[i][0] == segs[j][1]:
                    continue  # adjacent through the loop's closing point
                assert not _segments_cross(*mf[list(segs[i])], *mf[list(segs[j])]), (
                    name, segs[i], segs[j])
    jaw = scheme.part(mf, "jaw")
    if len(jaw) > 1:  # from the right ear (image left) round the chin, evenly spaced
        steps = np.linalg.norm(np.diff(jaw, axis=0), axis=1)
        assert jaw[0, 0] < jaw[-1, 0] and steps.max() < 2 * np.median(steps)
        assert np.argmax(jaw[:, 1]) in range(len(jaw) // 2 - 2, len(jaw) // 2 + 3)


def test_part_errors_and_shapes():
    scheme = SCHEMES["300w68"]
    with pytest.raises(KeyError, match="left_eye"):
        scheme.indices("ear")
    with pytest.raises(ValueError, match="68 points"):
        scheme.part(np.zeros((98, 2)), "jaw")
    batch = np.zeros((3, 68, 2))
    assert scheme.part(batch, "mouth").shape == (3, 20, 2)
    assert scheme.indices("eyes") == tuple(range(36, 48))


@given(st.sampled_from(list(SCHEMES)), st.data())
def test_part_takes_the_listed_rows(name, data):
    scheme = SCHEMES[name]
    part = data.draw(st.sampled_from(scheme.part_names))
    pts = np.random.default_rng(0).random((scheme.num_points, 2))
    np.testing.assert_array_equal(scheme.part(pts, part), pts[list(scheme.indices(part))])
