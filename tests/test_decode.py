"""Tests of pipdetect.decode: the vectorised PIP-Net decoder against docs/design.md §3."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_decode as ref
from modelfactory import reference_neighbours
from pipdetect import PipdetectError
from pipdetect.decode import PIPDecoder
from pipdetect.errors import DecodeError, ModelOutputError
from pipdetect.presets import load_meanface


def _maps(rng: np.random.Generator, batch: int, lms: int, nb: int, h: int, w: int,
          *, ties: bool = True, dtype: type = np.float32) -> list[np.ndarray]:
    """Random maps; with ``ties`` the scores are small integers so maxima often tie."""
    if ties:
        cls = rng.integers(0, 3, (batch, lms, h, w)).astype(dtype)
    else:
        cls = rng.random((batch, lms, h, w)).astype(dtype)
    rest = [rng.uniform(-2.0, 3.0, (batch, c, h, w)).astype(dtype)
            for c in (lms, lms, lms * nb, lms * nb)]
    return [cls, *rest]


def _meanface(rng: np.random.Generator, lms: int, kind: str) -> np.ndarray:
    if kind == "grid":  # integer grid: many equal distances, often duplicate points
        return rng.integers(0, 3, (lms, 2)).astype(np.float64) / 4
    return rng.random((lms, 2))


# -- parity with the plain-loop reference ---------------------------------------------------


@st.composite
def _cases(draw: st.DrawFn) -> dict:
    lms = draw(st.integers(2, 12))
    return {
        "lms": lms,
        "nb": draw(st.integers(1, lms - 1)),
        "h": draw(st.integers(1, 6)),
        "w": draw(st.integers(1, 7)),
        "batch": draw(st.integers(1, 5)),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "ties": draw(st.booleans()),
        "kind": draw(st.sampled_from(["random", "grid"])),
        "dtype": draw(st.sampled_from([np.float32, np.float64])),
        "merge": draw(st.sampled_from(["reference", "mean", "none"])),
    }


@settings(max_examples=150, deadline=None)
@given(_cases())
def test_parity_with_plain_loop_reference(case: dict) -> None:
    rng = np.random.default_rng(case["seed"])
    mf = _meanface(rng, case["lms"], case["kind"])
    maps = _maps(rng, case["batch"], case["lms"], case["nb"], case["h"], case["w"],
                 ties=case["ties"], dtype=case["dtype"])
    decoder = PIPDecoder(mf, case["nb"], merge=case["merge"])
    got, scores = decoder(*maps)
    want, want_scores = ref.decode(mf, case["nb"], *maps, merge=case["merge"])
    assert got.shape == (case["batch"], case["lms"], 2)
    assert got.dtype == np.float64 and scores.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(scores, want_scores)
    np.testing.assert_array_equal(decoder.neighbours, ref.neighbour_lists(mf, case["nb"]))
    # the neighbour outputs of a converted model, read at the selected cells: the same result
    at_cell = [*maps[:3], *(ref.at_selected_cells(maps[0], m) for m in maps[3:])]
    got_at_cell, scores_at_cell = decoder(*at_cell)
    np.testing.assert_array_equal(got_at_cell, got)
    np.testing.assert_array_equal(scores_at_cell, scores)


@pytest.mark.parametrize(("preset", "shape"), [("WFLW", (8, 8)), ("300W", (3, 7)),
                                               ("COFW", (1, 1)), ("AFLW", (5, 2))])
def test_parity_on_official_mean_faces(preset: str, shape: tuple[int, int]) -> None:
    mf = load_meanface(preset)
    rng = np.random.default_rng(len(mf))
    maps = _maps(rng, 3, len(mf), 10, *shape)
    got, scores = PIPDecoder(preset)(*maps)
    want, want_scores = ref.decode(mf, 10, *maps)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(scores, want_scores)


def test_first_maximum_wins_on_ties() -> None:
    mf = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    cls = np.zeros((1, 3, 2, 3), np.float32)
    cls[0, 0, 0, 2] = cls[0, 0, 1, 0] = 1.0  # flat cells 2 and 3 tie: 2 wins
    cls[0, 1] = 5.0  # all tie: cell 0 wins
    cls[0, 2, 1, 2] = -1.0  # the zeros tie, cell 0 wins
    x = np.zeros((1, 3, 2, 3), np.float32)
    zeros_nb = np.zeros((1, 3, 2, 3), np.float32)
    got, scores = PIPDecoder(mf, 1, merge="none")(cls, x, x, zeros_nb, zeros_nb)
    np.testing.assert_array_equal(got[0], [[2 / 3, 0.0], [0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(scores[0], [1.0, 5.0, 0.0])


def test_no_copy_of_inputs_and_layouts_do_not_matter() -> None:
    rng = np.random.default_rng(7)
    mf = rng.random((6, 2))
    maps = _maps(rng, 3, 6, 2, 4, 5)
    dec = PIPDecoder(mf, 2)
    want = dec(*maps)
    before = [m.copy() for m in maps]
    # other layouts: Fortran order, strided views, nested lists, negative strides
    fortran = [np.asfortranarray(m) for m in maps]
    strided = [np.repeat(m, 2, axis=3)[..., ::2] for m in maps]
    reversed_batch = [m[::-1] for m in maps]
    for variant in (fortran, strided, [m.tolist() for m in maps]):
        got = dec(*variant)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    got = dec(*reversed_batch)
    np.testing.assert_array_equal(got[0], want[0][::-1])
    for m, b in zip(maps, before, strict=True):
        np.testing.assert_array_equal(m, b)


def test_batch_items_are_independent_and_empty_batch() -> None:
    rng = np.random.default_rng(3)
    mf = rng.random((7, 2))
    maps = _maps(rng, 4, 7, 3, 3, 3)
    dec = PIPDecoder(mf, 3)
    whole, whole_scores = dec(*maps)
    for b in range(4):
        one, one_scores = dec(*[m[b : b + 1] for m in maps])
        np.testing.assert_array_equal(one[0], whole[b])
        np.testing.assert_array_equal(one_scores[0], whole_scores[b])
    empty, empty_scores = dec(*[m[:0] for m in maps])
    assert empty.shape == (0, 7, 2) and empty_scores.shape == (0, 7)


# -- known answer ------------------------------------------------------------------------------


def _known_answer_maps(shape: np.ndarray, meanface: np.ndarray, nb: int, batch: int,
                       h: int, w: int) -> list[np.ndarray]:
    """All scores tie, the offsets spell ``shape`` from the first cell (as modelfactory does)."""
    lms = len(shape)
    idx = reference_neighbours(meanface, nb).reshape(-1)
    cls = np.full((batch, lms, h, w), 0.75)
    x = np.broadcast_to((shape[:, 0] * w)[None, :, None, None], (batch, lms, h, w))
    y = np.broadcast_to((shape[:, 1] * h)[None, :, None, None], (batch, lms, h, w))
    nb_x = np.broadcast_to((shape[idx, 0] * w)[None, :, None, None], (batch, lms * nb, h, w))
    nb_y = np.broadcast_to((shape[idx, 1] * h)[None, :, None, None], (batch, lms * nb, h, w))
    return [cls, x, y, nb_x, nb_y]


@pytest.mark.parametrize("merge", ["reference", "mean", "none"])
@pytest.mark.parametrize(("h", "w"), [(8, 8), (1, 1), (4, 16)])
def test_known_answer_returns_the_mean_face_exactly(merge: str, h: int, w: int) -> None:
    # Dyadic coordinates (k / 64) make every step exact, so equality is exact.
    mf = np.round(load_meanface("WFLW") * 64) / 64
    maps = _known_answer_maps(mf, mf, 10, 2, h, w)
    got, scores = PIPDecoder(mf, 10, merge=merge)(*maps)
    np.testing.assert_array_equal(got, np.broadcast_to(mf, got.shape))
    np.testing.assert_array_equal(scores, np.full((2, 98), 0.75))


def test_known_answer_other_shape_on_float32_maps() -> None:
    mf = load_meanface("300W")
    target = mf * 0.8 + 0.1  # any shape works, neighbour structure from the mean face
    maps = [m.astype(np.float32) for m in _known_answer_maps(target, mf, 10, 1, 8, 8)]
    got, _ = PIPDecoder("300W")(*maps)
    np.testing.assert_allclose(got[0], target, rtol=0, atol=1e-6)


# -- the cyclic padding quirk, by hand --------------------------------------------------------


def _hub_face() -> np.ndarray:
    """Landmark 0 is a hub; 1..5 are satellites around it at radius ~1, 72 degrees apart;
    6 lies just beyond satellite 1. With K = 1 (nearest neighbour only):
    satellites -> hub, hub -> 1 (the closest satellite), 6 -> 1.
    """
    pts = [(0.0, 0.0)]
    for s in range(5):
        r, a = 1.0 + 0.01 * s, math.radians(72 * s)
        pts.append((r * math.cos(a), r * math.sin(a)))
    pts.append((2.05, 0.0))
    return np.array(pts)


def test_cyclic_padding_weights_by_hand() -> None:
    mf = _hub_face()
    dec = PIPDecoder(mf, 1)
    np.testing.assert_array_equal(dec.neighbours[:, 0], [1, 0, 0, 0, 0, 0, 1])
    # Reverse lists: hub <- [1, 2, 3, 4, 5] (the longest, max_len 5); landmark 1 <-
    # [0, 6], padded cyclically to 0, 6, 0, 6, 0; the others have no voters.
    rng = np.random.default_rng(11)
    x, y, nb_x, nb_y = (rng.uniform(-1, 2, (1, 7, 1, 1)) for _ in range(4))
    cls = np.zeros((1, 7, 1, 1))
    got, _ = dec(cls, x, y, nb_x, nb_y)  # 1x1 map: predictions are the offsets themselves
    for own, vote, axis in ((x[0, :, 0, 0], nb_x[0, :, 0, 0], 0),
                            (y[0, :, 0, 0], nb_y[0, :, 0, 0], 1)):
        expected = own.copy()
        expected[0] = (own[0] + vote[1] + vote[2] + vote[3] + vote[4] + vote[5]) / 6
        expected[1] = (own[1] + 3 * vote[0] + 2 * vote[6]) / 6
        np.testing.assert_allclose(got[0, :, axis], expected, rtol=0, atol=1e-12)

    mean, _ = PIPDecoder(mf, 1, merge="mean")(cls, x, y, nb_x, nb_y)
    own, vote = x[0, :, 0, 0], nb_x[0, :, 0, 0]
    assert mean[0, 1, 0] == pytest.approx((own[1] + vote[0] + vote[6]) / 3, abs=1e-12)
    assert mean[0, 0, 0] == pytest.approx(got[0, 0, 0], abs=1e-12)  # no padding needed there
    np.testing.assert_array_equal(mean[0, 2:, 0], own[2:])
    none, _ = PIPDecoder(mf, 1, merge="none")(cls, x, y, nb_x, nb_y)
    np.testing.assert_array_equal(none[0, :, 0], own)


def test_cell_offsets_on_a_non_square_map() -> None:
    # 2 landmarks, K = 1, map 3 x 7: landmark 0 peaks at row 2 col 5, landmark 1 at row 0 col 6.
    mf = np.array([[0.0, 0.0], [1.0, 1.0]])
    cls = np.zeros((1, 2, 3, 7))
    cls[0, 0, 2, 5] = 1.0
    cls[0, 1, 0, 6] = 1.0
    x = np.zeros((1, 2, 3, 7))
    y = np.zeros((1, 2, 3, 7))
    nb_x = np.zeros((1, 2, 3, 7))
    nb_y = np.zeros((1, 2, 3, 7))
    x[0, 0, 2, 5], y[0, 0, 2, 5] = 0.5, 0.25
    x[0, 1, 0, 6], y[0, 1, 0, 6] = 0.75, 0.5
    nb_x[0, 0, 2, 5], nb_y[0, 0, 2, 5] = 1.0, -1.0  # landmark 0 votes for 1
    nb_x[0, 1, 0, 6], nb_y[0, 1, 0, 6] = -2.0, 2.0  # landmark 1 votes for 0
    got, _ = PIPDecoder(mf, 1)(cls, x, y, nb_x, nb_y)
    own0, vote_for_0 = ((5 + 0.5) / 7, (2 + 0.25) / 3), ((6 - 2.0) / 7, (0 + 2.0) / 3)
    own1, vote_for_1 = ((6 + 0.75) / 7, (0 + 0.5) / 3), ((5 + 1.0) / 7, (2 - 1.0) / 3)
    want = [[(a + b) / 2 for a, b in zip(own0, vote_for_0, strict=True)],
            [(a + b) / 2 for a, b in zip(own1, vote_for_1, strict=True)]]
    np.testing.assert_allclose(got[0], want, rtol=0, atol=1e-12)


def test_duplicate_mean_face_points_follow_argsort_literally() -> None:
    # Points 1 and 2 coincide. For landmark 2, argsort of distances puts point 1
    # (distance 0, lower index) at position 0, which is skipped: 2 becomes its own
    # neighbour, exactly as in the reference.
    mf = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    dec = PIPDecoder(mf, 1)
    np.testing.assert_array_equal(dec.neighbours[:, 0], [1, 2, 2, 1])
    rng = np.random.default_rng(5)
    maps = _maps(rng, 2, 4, 1, 2, 2)
    got, _ = dec(*maps)
    want, _ = ref.decode(mf, 1, *maps)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


# -- construction and attributes ---------------------------------------------------------------


def test_attributes_are_read_only_and_match_modelfactory() -> None:
    mf = load_meanface("WFLW")
    dec = PIPDecoder(mf.reshape(-1), 10)  # flat form x1 y1 x2 y2 ...
    assert dec.num_landmarks == 98 and dec.num_nb == 10 and dec.merge == "reference"
    np.testing.assert_array_equal(dec.meanface, mf)
    np.testing.assert_array_equal(dec.neighbours, reference_neighbours(mf, 10))
    assert dec.neighbours.shape == (98, 10)
    with pytest.raises(ValueError):
        dec.neighbours[0, 0] = 3
    with pytest.raises(ValueError):
        dec.meanface[0, 0] = 3.0
    mf[0, 0] = 5.0  # the decoder kept its own copy
    assert dec.meanface[0, 0] != 5.0
    assert "98" in repr(dec)


def test_meanface_from_preset_name_and_file(tmp_path) -> None:
    path = tmp_path / "meanface.txt"
    mf = load_meanface("COFW")
    path.write_text(" ".join(repr(float(v)) for v in mf.reshape(-1)))
    for source in ("COFW", "cofw", path, str(path)):
        np.testing.assert_array_equal(PIPDecoder(source).meanface, mf)
    with pytest.raises(KeyError, match="known presets"):
        PIPDecoder("no-such-dataset")
    with pytest.raises(FileNotFoundError):
        PIPDecoder(tmp_path / "missing.txt")


@pytest.mark.parametrize(("meanface", "num_nb", "merge", "message"), [
    ([[0.5, 0.5]], 1, "reference", "at least 2 landmarks"),
    (np.zeros((3, 3)), 1, "reference", r"shape \(L, 2\)"),
    (np.zeros(5), 1, "reference", "even number"),
    (np.zeros((2, 2, 2)), 1, "reference", r"shape \(L, 2\)"),
    ([[0.0, 0.0], [np.nan, 1.0], [1.0, 1.0]], 1, "reference", "NaN or infinity"),
    ([[0.0, 0.0], [np.inf, 1.0], [1.0, 1.0]], 1, "reference", "NaN or infinity"),
    ([["a", "b"], ["c", "d"]], 1, "reference", "numbers"),
    (np.zeros((4, 2)), 0, "reference", "between 1 and L - 1 = 3"),
    (np.zeros((4, 2)), 4, "reference", "between 1 and L - 1 = 3"),
    (np.zeros((4, 2)), 2.0, "reference", "integer"),
    (np.zeros((4, 2)), True, "reference", "integer"),
    (np.zeros((4, 2)), 2, "median", "merge must be one of"),
])
def test_bad_construction(meanface, num_nb, merge, message) -> None:
    with pytest.raises(DecodeError, match=message) as info:
        PIPDecoder(meanface, num_nb, merge=merge)
    assert isinstance(info.value, ValueError) and isinstance(info.value, PipdetectError)


def test_numpy_integer_num_nb_is_accepted() -> None:
    assert PIPDecoder(np.zeros((4, 2)) + np.arange(4)[:, None], np.int64(2)).num_nb == 2


# -- bad maps ----------------------------------------------------------------------------------


def _good() -> tuple[PIPDecoder, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    return PIPDecoder(rng.random((5, 2)), 2), _maps(rng, 2, 5, 2, 3, 4)


@pytest.mark.parametrize(("index", "bad", "message"), [
    (0, lambda m: m[0], r"4 dimensions.*add the batch axis"),
    (3, lambda m: m[..., 0], "4 dimensions"),
    (0, lambda m: m[:, :4], "'cls' has 4 channels but this decoder is for 5 landmarks"),
    (1, lambda m: m[:, :4], r"map 'x' has shape \(2, 4, 3, 4\), expected \(2, 5, 3, 4\)"),
    (2, lambda m: m[:1], r"map 'y' has shape \(1, 5, 3, 4\), expected \(2, 5, 3, 4\)"),
    (3, lambda m: m[:, :5], r"'nb_x'.*expected \(2, 10, 3, 4\).*5 landmarks x 2 neighbours"),
    (4, lambda m: m[:, :, :2], r"'nb_y'.*expected \(2, 10, 3, 4\)"),
    (1, lambda m: m.transpose(0, 1, 3, 2), r"'x' has shape \(2, 5, 4, 3\)"),
    (0, lambda m: m[:, :, :0], "H, W >= 1"),
    (0, lambda m: m.astype(complex), "real numbers"),
    (1, lambda m: m > 0, "real numbers"),
    (2, lambda m: m.astype(object), "real numbers"),
    (4, lambda m: None, "'nb_y' is None"),
    (3, lambda m: m[:, :, 0, 0], r"'nb_x' and 'nb_y' must both be maps .* or both be read"),
    (1, lambda m: m[:, :, 0, 0], r"'x' must have 4 dimensions \(B, C, H, W\), got shape"),
])
def test_bad_maps_are_refused_clearly(index, bad, message) -> None:
    dec, maps = _good()
    maps[index] = bad(maps[index])
    with pytest.raises(DecodeError, match=message) as info:
        dec(*maps)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("bad", "message"), [
    (lambda m: m[:, :9], r"map 'nb_x' has shape \(2, 9\), expected \(2, 10\) \(batch 2 as"),
    (lambda m: m[:1], r"map 'nb_x' has shape \(1, 10\), expected \(2, 10\)"),
])
def test_neighbours_at_the_selected_cells_of_the_wrong_size_are_refused(bad, message) -> None:
    dec, maps = _good()
    maps[3], maps[4] = bad(maps[3][:, :, 0, 0]), maps[4][:, :, 0, 0]
    with pytest.raises(DecodeError, match=message):
        dec(*maps)


def test_empty_maps_with_zero_width_are_refused() -> None:
    dec = PIPDecoder(np.arange(6.0).reshape(3, 2), 1)
    maps = [np.zeros((1, 3, 2, 0))] * 3 + [np.zeros((1, 3, 2, 0))] * 2
    with pytest.raises(DecodeError, match="H=2, W=0"):
        dec(*maps)


def test_integer_maps_are_accepted() -> None:
    dec, maps = _good()
    as_int = [np.round(m * 4).astype(np.int32) for m in maps]
    got, scores = dec(*as_int)
    want, want_scores = ref.decode(dec.meanface, 2, *as_int)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(scores, want_scores)


# -- non-finite maps ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_anywhere_in_cls_is_refused(value: float) -> None:
    dec, maps = _good()
    maps[0][1, 3, 2, 1] = value  # not the maximum otherwise: NaN/+inf would still be selected
    with pytest.raises(ModelOutputError, match=r"cls\[1, 3\]"):
        dec(*maps)


def test_all_minus_inf_scores_are_refused_but_a_losing_minus_inf_is_fine() -> None:
    dec, maps = _good()
    maps[0][0, 2, 0, 0] = -np.inf  # never the maximum: cannot change anything
    clean = [m.copy() for m in maps]
    clean[0][0, 2, 0, 0] = -100.0
    np.testing.assert_array_equal(dec(*maps)[0], dec(*clean)[0])
    maps[0][0, 2] = -np.inf
    with pytest.raises(ModelOutputError, match=r"cls\[0, 2\]"):
        dec(*maps)


@pytest.mark.parametrize(("index", "where"), [(1, r"x\[1, 4\]"), (2, r"y\[1, 4\]"),
                                              (3, r"nb_x\[1, 9\]"), (4, r"nb_y\[1, 8\]")])
def test_non_finite_offset_at_the_selected_cell_is_refused(index: int, where: str) -> None:
    dec, maps = _good()
    maps[0][1, 4] = 0.0
    maps[0][1, 4, 1, 2] = 1.0  # landmark 4 of item 1 selects row 1, col 2
    channel = {1: 4, 2: 4, 3: 9, 4: 8}[index]
    maps[index][1, channel, 1, 2] = np.nan
    with pytest.raises(ModelOutputError, match=where) as info:
        dec(*maps)
    assert isinstance(info.value, PipdetectError)


def test_non_finite_offset_elsewhere_is_ignored() -> None:
    dec, maps = _good()
    maps[0][:] = 0.0
    maps[0][:, :, 0, 0] = 1.0  # every landmark selects cell 0
    want = dec(*maps)
    for index in range(1, 5):
        maps[index][:, :, 2, 3] = np.nan
    got = dec(*maps)
    np.testing.assert_array_equal(got[0], want[0])
    assert np.isfinite(got[0]).all()


def test_nb_maps_are_not_read_with_merge_none() -> None:
    dec, maps = _good()
    none = PIPDecoder(dec.meanface, 2, merge="none")
    want = none(*maps)
    maps[3][:] = np.nan
    got = none(*maps)
    np.testing.assert_array_equal(got[0], want[0])
