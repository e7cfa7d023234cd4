"""Dataset presets of the official PIP-Net models: the one table every part agrees on.

A preset names a training set: how many landmarks it has, its landmark scheme,
its mean face (shipped in ``pipdetect/assets/meanface``), the benchmark numbers
published for it, and how its training crops were built.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import InvalidArgumentError, UnknownNameError

__all__ = ["PRESETS", "Preset", "get_preset", "load_meanface"]


@dataclass(frozen=True)
class Preset:
    """One training set of the official PIP-Net models."""

    name: str
    """Canonical name as used on the command line (``--dataset``)."""
    meanface_file: str
    """File name in ``pipdetect/assets/meanface``."""
    num_landmarks: int
    scheme: str
    """Landmark scheme name (see :mod:`pipdetect.schemes`)."""
    crop_rule: str
    """How the training crops were built (human-readable, from the reference preprocessing)."""
    nme: dict[str, float]
    """Published NME in percent, by backbone (``resnet18`` ...); empty where none was published."""
    nme_normalisation: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "WFLW",
            "WFLW.txt",
            98,
            "wflw98",
            "dataset face rectangle enlarged by 1.2, not square",
            {"resnet18": 4.57, "resnet50": 4.48, "resnet101": 4.31},
            "inter-ocular",
        ),
        Preset(
            "300W",
            "data_300W.txt",
            68,
            "300w68",
            "landmark bounding box enlarged by 1.1, not square",
            {"resnet18": 3.36, "resnet50": 3.34, "resnet101": 3.19},
            "inter-ocular",
        ),
        Preset(
            "COFW",
            "COFW.txt",
            29,
            "cofw29",
            "dataset face box, see the reference preprocessing",
            {"resnet18": 3.31, "resnet50": 3.18, "resnet101": 3.08},
            "inter-ocular",
        ),
        Preset(
            "AFLW",
            "AFLW.txt",
            19,
            "aflw19",
            "dataset face box, see the reference preprocessing",
            {"resnet18": 1.48, "resnet50": 1.44, "resnet101": 1.42},
            "box size",
        ),
        Preset(
            "LaPa",
            "LaPa.txt",
            106,
            "lapa106",
            "dataset face box, see the reference preprocessing",
            {},
            "inter-ocular",
        ),
        Preset(
            "300W-CelebA",
            "data_300W_CELEBA.txt",
            68,
            "300w68",
            "GSSL: 300W labelled + CelebA unlabelled",
            {},
            "inter-ocular",
        ),
        Preset(
            "300W-COFW-WFLW",
            "data_300W_COFW_WFLW.txt",
            68,
            "300w68",
            "GSSL: 300W, COFW and WFLW combined",
            {},
            "inter-ocular",
        ),
    ]
}


def get_preset(name: str) -> Preset:
    """Return the preset called ``name`` (case-insensitive; ``_`` and ``+`` count as ``-``)."""
    key = name.strip().lower().replace("_", "-").replace("+", "-")
    for preset in PRESETS.values():
        if preset.name.lower() == key:
            return preset
    known = ", ".join(PRESETS)
    raise UnknownNameError(f"unknown dataset preset {name!r}; known presets: {known}")


@cache
def _preset_meanface(file_name: str) -> np.ndarray:
    text = resources.files("pipdetect").joinpath("assets", "meanface", file_name).read_text()
    return _parse_meanface(text, file_name)


def _parse_meanface(text: str, source: str) -> np.ndarray:
    try:
        values = np.array(text.split(), dtype=np.float64)
    except ValueError as exc:
        raise InvalidArgumentError(f"mean face {source}: not a list of numbers ({exc})") from None
    if values.size < 4 or values.size % 2:
        raise InvalidArgumentError(
            f"mean face {source}: expected an even number (>= 4) of values x1 y1 x2 y2 ..., "
            f"got {values.size}"
        )
    if not np.all(np.isfinite(values)):
        raise InvalidArgumentError(f"mean face {source}: contains NaN or infinity")
    return values.reshape(-1, 2)


def load_meanface(name_or_path: str | Path) -> np.ndarray:
    """Load a mean face as an (L, 2) float64 array, normalised to the training crop.

    ``name_or_path`` is a preset name (``"WFLW"``, ``"300W"`` ...) or the path of a
    text file holding ``x1 y1 x2 y2 ...`` (the reference repository's ``meanface.txt``).
    """
    path = Path(name_or_path)
    if isinstance(name_or_path, Path) or path.suffix or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"mean face file not found: {path}")
        return _parse_meanface(path.read_text(), str(path)).copy()
    return _preset_meanface(get_preset(str(name_or_path)).meanface_file).copy()
