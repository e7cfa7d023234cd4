"""Landmark schemes: what each point of a model means, named parts, contours, 98 -> 68.

A *scheme* is the meaning and order of a model's landmarks. The official PIP-Net
models use five (the name is what a model's metadata ``scheme`` field holds):

========== ====== ==========================================================
scheme     points dataset
========== ====== ==========================================================
``wflw98``   98   WFLW
``300w68``   68   300W / Multi-PIE / iBUG (also the GSSL 300W+CelebA models)
``cofw29``   29   COFW (the 29-point LFPW subset)
``aflw19``   19   AFLW (21 points without the two ear lobes)
``lapa106``  106  LaPa (the JD 106-point scheme)
========== ====== ==========================================================

**Left and right are the subject's**, the anatomical convention of dlib, 300W and
of YuNet's keypoints in :mod:`pipdetect.faces`: ``"left_eye"`` is the person's
left eye, which appears on the *right* of the image in an unmirrored frontal
photo. Every scheme lists its subject's-right side first (image left), so e.g.
``300w68`` points 36-41 are ``"right_eye"``.

Named parts (:meth:`Scheme.part`, :meth:`pipdetect.Face.part`) come in two kinds:

* *groups*, the pieces a face is drawn with, each listed in contour order:
  ``jaw`` (the face outline; only the chin point in ``cofw29`` / ``aflw19``),
  ``right_brow``, ``left_brow``, ``nose_bridge``, ``nose_base`` (``nose`` alone in
  ``aflw19``), ``right_eye``, ``left_eye``, ``right_pupil``, ``left_pupil`` (where
  the scheme has pupils), ``outer_lips``, ``inner_lips`` (``aflw19`` has only
  ``mouth``);
* *unions* of them for convenience: ``brows``, ``eyes``, ``nose``, ``mouth``,
  ``pupils`` (where the scheme has pupils).

Indices were checked against the mean faces shipped in ``pipdetect/assets/meanface``
(see ``tests/test_schemes.py``: every named part sits where its name says).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import InvalidArgumentError, UnknownNameError

__all__ = [
    "SCHEMES",
    "WFLW98_TO_300W68",
    "Scheme",
    "conversion_indices",
    "convert_points",
    "get_scheme",
    "scheme_for",
]

CUSTOM = "custom"
"""The scheme name of models whose landmarks pipdetect knows nothing about."""


def _r(start: int, stop: int) -> tuple[int, ...]:
    return tuple(range(start, stop))


@dataclass(frozen=True)
class Scheme:
    """One landmark scheme: its name, size, named groups and how to draw them."""

    name: str
    num_points: int
    description: str
    groups: Mapping[str, tuple[int, ...]]
    """Group name -> indices in contour order (drawing order)."""
    closed: frozenset[str] = frozenset()
    """Groups drawn as closed loops (eyes, lips, brows outlined on both edges)."""
    lines: tuple[tuple[int, ...], ...] = ()
    """Polylines to draw; default: one per group of two or more points."""
    unions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Convenience names made of several groups (``"mouth"``: outer and inner lips)."""
    mirror: tuple[int, ...] | None = None
    """Each point's mirror partner, or ``None`` where pipdetect does not know the pairs:
    after a left-right flip of the image, point ``i`` of the flipped face is point
    ``mirror[i]`` of the original (a point on the face's midline is its own partner).
    Used by flip augmentation in ``training/`` and by
    ``LandmarkDetector(flip_test=True)``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", MappingProxyType(dict(self.groups)))
        object.__setattr__(self, "unions", MappingProxyType(dict(self.unions)))
        for name, idx in self.groups.items():
            if not idx or min(idx) < 0 or max(idx) >= self.num_points:
                raise ValueError(f"scheme {self.name}: group {name} has indices out of range")
        if not self.lines:
            object.__setattr__(
                self,
                "lines",
                tuple(
                    idx + (idx[0],) if name in self.closed else idx
                    for name, idx in self.groups.items()
                    if len(idx) > 1
                ),
            )
        if self.mirror is not None and (
            sorted(self.mirror) != list(range(self.num_points))
            or any(self.mirror[j] != i for i, j in enumerate(self.mirror))
        ):
            raise ValueError(f"scheme {self.name}: mirror is not a permutation of pairs")

    @property
    def part_names(self) -> tuple[str, ...]:
        """Every name :meth:`indices` accepts: the groups, then the unions."""
        return tuple(self.groups) + tuple(self.unions)

    def indices(self, part: str) -> tuple[int, ...]:
        """Landmark indices of a named part (group or union), in contour order.

        Raises :class:`~pipdetect.errors.UnknownNameError` (a :class:`KeyError`) naming the
        parts this scheme has.
        """
        if part in self.groups:
            return self.groups[part]
        if part in self.unions:
            return tuple(i for g in self.unions[part] for i in self.groups[g])
        raise UnknownNameError(
            f"scheme {self.name!r} has no part {part!r}; its parts are: "
            + ", ".join(self.part_names)
        )

    def part(self, points: np.ndarray, part: str) -> np.ndarray:
        """The rows of ``points`` (..., num_points, D) that belong to ``part``."""
        arr = np.asarray(points)
        if arr.ndim < 2 or arr.shape[-2] != self.num_points:
            raise InvalidArgumentError(
                f"scheme {self.name!r} has {self.num_points} points, got an array of shape "
                f"{arr.shape}"
            )
        return arr[..., np.asarray(self.indices(part), dtype=np.intp), :]

    def connections(self) -> list[tuple[int, int]]:
        """Every drawn segment as a pair of landmark indices (from :attr:`lines`)."""
        return [(a, b) for line in self.lines for a, b in itertools.pairwise(line)]

    def group_of(self) -> np.ndarray:
        """(num_points,) int: index into ``list(groups)`` of each point's group, -1 if none."""
        out = np.full(self.num_points, -1, dtype=np.intp)
        for g, idx in enumerate(self.groups.values()):
            out[list(idx)] = g
        return out


_UNIONS_FULL = {
    "brows": ("right_brow", "left_brow"),
    "eyes": ("right_eye", "left_eye"),
    "nose": ("nose_bridge", "nose_base"),
    "mouth": ("outer_lips", "inner_lips"),
}

WFLW98 = Scheme(
    "wflw98",
    98,
    "WFLW: 33 outline, 2x9 brows, 4+5 nose, 2x8 eyes, 12+8 lips, 2 pupils",
    {
        "jaw": _r(0, 33),
        "right_brow": _r(33, 42),  # 33-37 upper edge outwards-in, 38-41 lower edge back
        "left_brow": _r(42, 51),
        "nose_bridge": _r(51, 55),
        "nose_base": _r(55, 60),
        "right_eye": _r(60, 68),  # 60 outer corner, 64 inner corner
        "left_eye": _r(68, 76),  # 68 inner corner, 72 outer corner
        "outer_lips": _r(76, 88),
        "inner_lips": _r(88, 96),
        "right_pupil": (96,),
        "left_pupil": (97,),
    },
    closed=frozenset({"right_brow", "left_brow", "right_eye", "left_eye", "outer_lips",
                      "inner_lips"}),
    unions={**_UNIONS_FULL, "pupils": ("right_pupil", "left_pupil")},
)

def _mirror_pairs(num_points: int, pairs: list[tuple[int, int]]) -> tuple[int, ...]:
    table = list(range(num_points))
    for a, b in pairs:
        table[a], table[b] = b, a
    return tuple(table)


W300_68 = Scheme(
    "300w68",
    68,
    "300W / Multi-PIE: 17 jaw, 2x5 brows, 4+5 nose, 2x6 eyes, 12+8 lips",
    {
        "jaw": _r(0, 17),
        "right_brow": _r(17, 22),
        "left_brow": _r(22, 27),
        "nose_bridge": _r(27, 31),
        "nose_base": _r(31, 36),
        "right_eye": _r(36, 42),
        "left_eye": _r(42, 48),
        "outer_lips": _r(48, 60),
        "inner_lips": _r(60, 68),
    },
    closed=frozenset({"right_eye", "left_eye", "outer_lips", "inner_lips"}),
    unions=_UNIONS_FULL,
    mirror=_mirror_pairs(68, [(i, 16 - i) for i in range(8)]  # jaw 0-16, chin 8 stays
                         + [(17 + i, 26 - i) for i in range(5)]  # brows 17-21 <-> 26-22
                         + [(31, 35), (32, 34)]  # nose base; bridge 27-30 and tip 33 stay
                         + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
                         + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips
                         + [(60, 64), (61, 63), (65, 67)]),  # inner lips
)

COFW29 = Scheme(
    "cofw29",
    29,
    "COFW: brows (corners, top, bottom), eyes (corners, top, bottom, pupil), nose, mouth, chin",
    {
        "jaw": (28,),  # the chin
        "right_brow": (0, 4, 2, 5),  # outer corner, top, inner corner, bottom
        "left_brow": (3, 6, 1, 7),  # inner corner, top, outer corner, bottom
        "nose_bridge": (20,),  # the tip
        "nose_base": (18, 21, 19),  # right nostril, below the tip, left nostril
        "right_eye": (8, 12, 10, 13),  # outer corner, top, inner corner, bottom
        "left_eye": (11, 14, 9, 15),
        "outer_lips": (22, 24, 23, 27),  # right corner, top, left corner, bottom
        "inner_lips": (25, 26),  # top, bottom (the corners are the outer ones)
        "right_pupil": (16,),
        "left_pupil": (17,),
    },
    lines=(
        (0, 4, 2, 5, 0),
        (3, 6, 1, 7, 3),
        (18, 21, 19),
        (8, 12, 10, 13, 8),
        (11, 14, 9, 15, 11),
        (22, 24, 23, 27, 22),
        (22, 25, 23, 26, 22),
    ),
    unions={**_UNIONS_FULL, "pupils": ("right_pupil", "left_pupil")},
)

AFLW19 = Scheme(
    "aflw19",
    19,
    "AFLW: 2x3 brows, 2x3 eyes (corners and centre), 3 nose, 3 mouth, chin",
    {
        "jaw": (18,),  # the chin
        "right_brow": (0, 1, 2),
        "left_brow": (3, 4, 5),
        "right_eye": (6, 7, 8),  # outer corner, centre, inner corner
        "left_eye": (9, 10, 11),
        "nose": (12, 13, 14),  # right nostril, tip, left nostril
        "mouth": (15, 16, 17),  # right corner, centre, left corner
    },
    lines=((0, 1, 2), (3, 4, 5), (6, 8), (9, 11), (12, 13, 14), (15, 16, 17)),
    unions={"brows": ("right_brow", "left_brow"), "eyes": ("right_eye", "left_eye")},
)

LAPA106 = Scheme(
    "lapa106",
    106,
    "LaPa (JD 106): 33 outline, 2x9 brows, 4+11 nose, 2x8 eyes, 2 pupils (twice), 12+8 lips",
    {
        "jaw": _r(0, 33),
        "right_brow": _r(33, 42),
        "left_brow": _r(42, 51),
        "nose_bridge": _r(51, 55),
        "nose_base": _r(55, 66),
        "right_eye": _r(66, 74),
        "left_eye": _r(75, 83),
        "outer_lips": _r(84, 96),
        "inner_lips": _r(96, 104),
        "right_pupil": (74, 104),  # LaPa repeats each pupil: 74 == 104, 83 == 105
        "left_pupil": (83, 105),
    },
    closed=frozenset({"right_brow", "left_brow", "right_eye", "left_eye", "outer_lips",
                      "inner_lips"}),
    unions={**_UNIONS_FULL, "pupils": ("right_pupil", "left_pupil")},
)

SCHEMES: Mapping[str, Scheme] = MappingProxyType(
    {s.name: s for s in (WFLW98, W300_68, COFW29, AFLW19, LAPA106)}
)
"""The known schemes by name."""

WFLW98_TO_300W68: tuple[int, ...] = (
    tuple(range(0, 33, 2))  # jaw: every other outline point
    + _r(33, 38)  # right brow, upper edge
    + _r(42, 47)  # left brow, upper edge
    + _r(51, 60)  # nose bridge and base
    + (60, 61, 63, 64, 65, 67)  # right eye: corners and the two upper / lower points
    + (68, 69, 71, 72, 73, 75)  # left eye
    + _r(76, 96)  # outer and inner lips
)
"""For each of the 68 points of ``300w68``, its index in ``wflw98`` (docs/design.md §8)."""

_CONVERSIONS: dict[tuple[str, str], tuple[int, ...]] = {
    ("wflw98", "300w68"): WFLW98_TO_300W68,
}


def get_scheme(name: str | int) -> Scheme:
    """A scheme by name (``"wflw98"``, case-insensitive) or by its number of points (``68``).

    Raises :class:`~pipdetect.errors.UnknownNameError` (a :class:`KeyError`) listing the
    known schemes.
    """
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        for scheme in SCHEMES.values():
            if scheme.num_points == int(name):
                return scheme
    elif isinstance(name, str):
        key = name.strip().lower()
        if key.isdigit():
            return get_scheme(int(key))
        if key in SCHEMES:
            return SCHEMES[key]
    known = ", ".join(f"{s.name} ({s.num_points})" for s in SCHEMES.values())
    raise UnknownNameError(f"unknown landmark scheme {name!r}; known schemes: {known}")


def scheme_for(spec: Any) -> str:
    """The scheme name of a model spec: its ``scheme`` if known, else its dataset's, else
    ``"custom"`` (a model whose points pipdetect cannot name or convert)."""
    name = str(getattr(spec, "scheme", CUSTOM) or CUSTOM).lower()
    if name in SCHEMES and SCHEMES[name].num_points == spec.num_landmarks:
        return name
    dataset = getattr(spec, "dataset", None)
    if dataset:
        from .presets import get_preset

        try:
            preset = get_preset(str(dataset))
        except KeyError:
            return CUSTOM
        if preset.num_landmarks == spec.num_landmarks:
            return preset.scheme
    return CUSTOM


def conversion_indices(source: str, target: str | int) -> tuple[str, np.ndarray | None]:
    """How to get ``target`` points from a ``source``-scheme model.

    Returns the target scheme's name and the indices to take (``None``: nothing to do).
    Raises :class:`~pipdetect.errors.InvalidArgumentError` (a :class:`ValueError`) when the
    model's points cannot be converted, or :class:`~pipdetect.errors.UnknownNameError` for
    an unknown scheme.
    """
    if isinstance(target, str) and target.strip().lower() == source:
        return source, None
    if source in SCHEMES and SCHEMES[source].num_points == _as_count(target):
        return source, None
    wanted = get_scheme(target)
    if wanted.name == source:
        return source, None
    idx = _CONVERSIONS.get((source, wanted.name))
    if idx is None:
        possible = [t for (s, t) in _CONVERSIONS if s == source]
        own = (f"{SCHEMES[source].num_points} {source} points" if source in SCHEMES
               else "points (a custom scheme pipdetect cannot convert)")
        subsets = f" or a subset of them ({', '.join(possible)})" if possible else ""
        raise InvalidArgumentError(
            f"cannot return {wanted.name} points ({wanted.num_points}) from this model: it "
            f"gives its own {own}{subsets}. Leave points unset for the model's own points, "
            f"or use a model trained on {wanted.name} landmarks"
        )
    return wanted.name, np.asarray(idx, dtype=np.intp)


def _as_count(target: str | int) -> int | None:
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        return int(target)
    if isinstance(target, str) and target.strip().isdigit():
        return int(target.strip())
    return None


def convert_points(points: np.ndarray, source: str, target: str | int) -> np.ndarray:
    """``points`` (..., N, D) of scheme ``source`` as scheme ``target`` (e.g. 98 -> 68).

    Only subsets are supported (currently ``wflw98`` -> ``300w68``, docs/design.md §8);
    other pairs raise :class:`~pipdetect.errors.InvalidArgumentError` (a :class:`ValueError`).
    """
    _, idx = conversion_indices(source, target)
    arr = np.asarray(points)
    return arr if idx is None else arr[..., idx, :]
