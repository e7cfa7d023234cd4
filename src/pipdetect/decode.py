"""PIP-Net decoding in pure NumPy: five score/offset maps -> landmarks (docs/design.md §3).

>>> decoder = PIPDecoder("WFLW")                  # or an (L, 2) mean face, num_nb=10
>>> landmarks, scores = decoder(cls, x, y, nb_x, nb_y)

Coordinates are normalised to the network's input crop: ``(0, 0)`` is the crop's
top-left corner and ``(1, 1)`` its bottom-right, x to the right, y down. A
normalised ``u`` becomes the pixel index ``u * crop_width`` (pixel-centre
convention) in the crop, as in the reference implementation.

The decoder is vectorised over batch and landmarks: per call it reads only the
selected cell of every map (a gather), so its cost grows with ``B * L * K`` and
``B * L * H * W`` only through one ``argmax`` over the score maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import DecodeError, ModelOutputError

__all__ = ["MERGE_MODES", "PIPDecoder"]

MERGE_MODES = ("reference", "mean", "none")
"""Accepted values of ``PIPDecoder(merge=...)``."""

_MAP_NAMES = ("cls", "x", "y", "nb_x", "nb_y")


def _as_meanface(meanface: Any) -> np.ndarray:
    """An (L, 2) float64 mean face from an array-like, a preset name or a file path."""
    if isinstance(meanface, (str, Path)):
        from .presets import load_meanface

        return load_meanface(meanface)
    try:
        mf = np.array(meanface, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DecodeError(
            f"mean face must be an (L, 2) array of numbers, a preset name or a file path; "
            f"could not convert it to numbers ({exc})"
        ) from None
    if mf.ndim == 1:
        if mf.size % 2:
            raise DecodeError(
                f"a flat mean face must hold x1 y1 x2 y2 ... (an even number of values), "
                f"got {mf.size} values"
            )
        mf = mf.reshape(-1, 2)
    if mf.ndim != 2 or mf.shape[1] != 2:
        raise DecodeError(
            f"mean face must have shape (L, 2) or (2 * L,), got shape {mf.shape}"
        )
    return mf


def _neighbours(meanface: np.ndarray, num_nb: int) -> np.ndarray:
    """Neighbour lists exactly as the reference builds them (docs/design.md §3, step 4).

    For each landmark ``i``: ``argsort`` (NumPy's default kind) of the squared
    distances from ``i`` to every landmark, positions ``1 .. num_nb``. Position 0
    is skipped whatever it is: with duplicate mean-face points it may be the
    duplicate rather than ``i``, and ``i`` then appears among its own neighbours,
    as in the reference.
    """
    rows = []
    for i in range(meanface.shape[0]):  # init only; same arithmetic as the reference
        dists = np.sum(np.power(meanface[i] - meanface, 2), axis=1)
        rows.append(np.argsort(dists)[1 : 1 + num_nb])
    return np.array(rows, dtype=np.intp).reshape(meanface.shape[0], num_nb)


def _reverse_lists(neighbours: np.ndarray) -> list[list[int]]:
    """For each landmark j, the flat channels ``i*K + k`` with ``neighbours[i, k] == j``.

    In order of ``i`` then ``k`` (docs/design.md §3, step 5), unpadded.
    """
    num_lms, num_nb = neighbours.shape
    reverse: list[list[int]] = [[] for _ in range(num_lms)]
    for i in range(num_lms):
        for k in range(num_nb):
            reverse[int(neighbours[i, k])].append(i * num_nb + k)
    return reverse


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


class PIPDecoder:
    """Turns PIP-Net's five output maps into landmarks and per-landmark scores.

    Parameters
    ----------
    meanface:
        The model's mean face, normalised to the training crop: an ``(L, 2)``
        array-like of ``(x, y)``, or the flat ``x1 y1 x2 y2 ...`` form; or a
        dataset preset name (``"WFLW"``, ``"300W"`` ...) or the path of a
        reference ``meanface.txt`` (see :func:`pipdetect.presets.load_meanface`).
        Only the neighbour structure derived from it is used for decoding.
    num_nb:
        ``K``, the number of neighbours each landmark predicts (10 in all
        official models); ``1 <= num_nb < L``.
    merge:
        How the neighbours' votes are combined with each landmark's own prediction:

        * ``"reference"`` (default): exactly the reference. Landmark ``j`` is the
          mean of its own prediction and ``max_len`` votes, where its list of
          voters (the pairs ``(i, k)`` with ``j`` being neighbour ``k`` of ``i``,
          in order of ``i`` then ``k``) is repeated cyclically up to the length
          ``max_len`` of the longest such list. A list ``[a, b]`` padded to 5 is
          ``a, b, a, b, a``: a weighted mean. Published accuracies depend on it.
        * ``"mean"``: the plain mean of the own prediction and the unpadded votes,
          each vote counted once.
        * ``"none"``: the own predictions only (neighbour maps are validated but
          not read).

        In every mode a landmark that no other landmark votes for keeps its own
        prediction.

    Raises
    ------
    DecodeError
        Malformed mean face (not ``(L, 2)``, ``L < 2``, non-finite values),
        ``num_nb`` not an integer in ``[1, L)``, or an unknown ``merge``.
    KeyError, FileNotFoundError
        ``meanface`` given as an unknown preset name or a missing file.
    """

    def __init__(self, meanface: Any, num_nb: int = 10, merge: str = "reference") -> None:
        mf = _as_meanface(meanface)
        num_lms = mf.shape[0]
        if num_lms < 2:
            raise DecodeError(f"mean face must have at least 2 landmarks, got {num_lms}")
        if not np.all(np.isfinite(mf)):
            raise DecodeError("mean face contains NaN or infinity; pass finite coordinates")
        if isinstance(num_nb, (bool, np.bool_)) or not isinstance(num_nb, (int, np.integer)):
            raise DecodeError(f"num_nb must be an integer, got {num_nb!r}")
        num_nb = int(num_nb)
        if not 1 <= num_nb < num_lms:
            raise DecodeError(
                f"num_nb must be between 1 and L - 1 = {num_lms - 1} for a mean face of "
                f"{num_lms} landmarks, got {num_nb}"
            )
        if merge not in MERGE_MODES:
            raise DecodeError(f"merge must be one of {', '.join(map(repr, MERGE_MODES))}, "
                              f"got {merge!r}")

        self._meanface = _frozen(mf)
        self._num_lms = num_lms
        self._num_nb = num_nb
        self._merge = merge
        self._neighbours = _frozen(_neighbours(mf, num_nb))

        # Gather plan: per call the x (and y) predictions are laid out as (B, N),
        # P = [own (L) | neighbour votes (L*K, channel i*K+k) | a zero],
        # and landmark j is P[:, gather[j]].sum(axis=1) / count[j].
        reverse = _reverse_lists(self._neighbours)
        zero = num_lms + num_lms * num_nb
        max_len = max(len(r) for r in reverse)
        gather = np.full((num_lms, 1 + max_len), zero, dtype=np.intp)
        gather[:, 0] = np.arange(num_lms)
        count = np.ones(num_lms, dtype=np.float64)
        for j, voters in enumerate(reverse):
            if not voters:
                continue  # keeps its own value: own + zeros, divided by 1
            if merge == "reference":
                votes = [voters[m % len(voters)] for m in range(max_len)]
            else:
                votes = voters
            gather[j, 1 : 1 + len(votes)] = num_lms + np.asarray(votes, dtype=np.intp)
            count[j] = 1 + len(votes)
        used = int(count.max()) if merge == "mean" else 1 + max_len
        self._gather_t = np.ascontiguousarray(gather[:, :used].T)  # (M, L)
        self._count = count  # broadcasts over (2B, L)
        self._max_len = max_len
        self._bases: tuple[Any, np.ndarray, np.ndarray] = (None, np.empty(0), np.empty(0))

    # -- read-only description ------------------------------------------------------------

    @property
    def num_landmarks(self) -> int:
        """L, the number of landmarks."""
        return self._num_lms

    @property
    def num_nb(self) -> int:
        """K, the number of neighbours each landmark predicts."""
        return self._num_nb

    @property
    def merge(self) -> str:
        """The vote merging mode (``"reference"``, ``"mean"`` or ``"none"``)."""
        return self._merge

    @property
    def meanface(self) -> np.ndarray:
        """The mean face, (L, 2) float64, normalised to the crop (read-only)."""
        return self._meanface

    @property
    def neighbours(self) -> np.ndarray:
        """(L, K) landmark indices: ``neighbours[i, k]`` is neighbour k of landmark i (read-only).

        Channel ``i*K + k`` of the ``nb_x`` / ``nb_y`` maps predicts landmark
        ``neighbours[i, k]``.
        """
        return self._neighbours

    def __repr__(self) -> str:
        return (f"PIPDecoder(num_landmarks={self._num_lms}, num_nb={self._num_nb}, "
                f"merge={self._merge!r})")

    # -- decoding -------------------------------------------------------------------------

    def __call__(
        self,
        cls: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        nb_x: np.ndarray,
        nb_y: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode a batch of network outputs.

        Parameters
        ----------
        cls, x, y:
            ``(B, L, H, W)``: per-cell landmark scores, and x / y offsets of each
            landmark from the cell's top-left corner in cell units.
        nb_x, nb_y:
            ``(B, L*K, H, W)``: neighbour offsets; channel ``i*K + k`` is
            neighbour ``k`` of landmark ``i`` (see :attr:`neighbours`). Or both
            ``(B, L*K)``: those offsets already read at landmark ``i``'s selected
            cell, as models written by ``pipdetect convert`` give them (the network
            evaluates its neighbour heads there only). The two forms decode alike.

        Any real numeric dtype, any ``H, W >= 1`` (1x1 and non-square maps
        included), any ``B >= 0``, any memory layout; the maps are not modified.

        Returns
        -------
        landmarks:
            ``(B, L, 2)`` float64, ``(x, y)`` normalised to the crop.
        scores:
            ``(B, L)`` float64: ``cls`` at each landmark's selected cell.

        The selected cell of landmark ``i`` is the first maximum of ``cls[b, i]``
        flattened row-major; the own prediction is ``((col + x) / W, (row + y) / H)``
        there, the neighbour votes are read from the same cell, and they are
        merged as chosen by ``merge`` (see the class docstring).

        Raises
        ------
        DecodeError
            Wrong number of dimensions, channel counts that do not match
            ``L`` / ``L*K``, maps of different batch or spatial sizes, an empty
            map (``H`` or ``W`` zero), or a non-numeric dtype.
        ModelOutputError
            Non-finite values that would reach the result: NaN or ``+inf``
            anywhere in ``cls`` (NumPy's argmax selects them), a ``cls`` map
            that is ``-inf`` everywhere, or NaN / infinity in an offset read at
            a selected cell. Non-finite values elsewhere (``-inf`` scores that
            never win, offsets at cells that are not selected) cannot change
            the result and are ignored. The decoder never returns NaN or
            infinity.
        """
        cls, x, y, nb_x, nb_y = self._check_maps(cls, x, y, nb_x, nb_y)
        batch, num_lms, height, width = cls.shape
        num_nb = self._num_nb
        hw = height * width
        own_base, nb_base = self._flat_bases(batch, hw)

        # First maximum of each score map, row-major (np.argmax returns the first
        # one; it would also return the first NaN: those are refused below).
        cell = cls.reshape(batch, num_lms, hw).argmax(axis=2)  # (B, L)
        col = (cell % width).astype(np.float64)
        row = (cell // width).astype(np.float64)

        # Gathers by flat index into the C-ordered maps: only the selected cells
        # are read (ravel is a view for contiguous maps, a copy otherwise).
        own_idx = own_base + cell
        scores = np.take(cls.ravel(), own_idx).astype(np.float64)
        if not np.isfinite(scores).all():
            self._refuse_scores(scores)

        # preds[0] holds x, preds[1] y, each (B, N) laid out as
        # [own (L) | votes (L*K, channel i*K+k) | one zero].
        merge = self._merge
        n_votes = 0 if merge == "none" else num_lms * num_nb
        size = num_lms + n_votes
        preds = np.empty((2, batch, size + 1), dtype=np.float64)
        preds[:, :, size] = 0.0  # set before the divisions below read it (no stray NaN warning)
        preds[0, :, :num_lms] = np.take(x.ravel(), own_idx)
        preds[1, :, :num_lms] = np.take(y.ravel(), own_idx)
        preds[0, :, :num_lms] += col
        preds[1, :, :num_lms] += row
        if n_votes:
            if nb_x.ndim == 2:  # already read at the selected cells (by the model)
                preds[0, :, num_lms:size] = nb_x
                preds[1, :, num_lms:size] = nb_y
            else:
                nb_idx = (nb_base + cell[:, :, None]).reshape(batch, n_votes)
                preds[0, :, num_lms:size] = np.take(nb_x.ravel(), nb_idx)
                preds[1, :, num_lms:size] = np.take(nb_y.ravel(), nb_idx)
            # every vote of landmark i is read at i's cell
            preds[0, :, num_lms:size].reshape(batch, num_lms, num_nb)[...] += col[:, :, None]
            preds[1, :, num_lms:size].reshape(batch, num_lms, num_nb)[...] += row[:, :, None]
        if not np.isfinite(preds[:, :, :size]).all():
            self._refuse_offsets(preds[:, :, :size])
        preds[0] /= width
        preds[1] /= height
        landmarks = np.empty((batch, num_lms, 2), dtype=np.float64)

        if merge == "none":
            landmarks[..., 0] = preds[0, :, :num_lms]
            landmarks[..., 1] = preds[1, :, :num_lms]
            return landmarks, scores
        # (2B, M, L): slot 0 is the own prediction, then the votes in order (the
        # zero where a landmark has fewer); summed in that order, like the reference.
        slots = np.take(preds.reshape(2 * batch, size + 1), self._gather_t, axis=1)
        merged = slots.sum(axis=1)
        merged /= self._count
        if not np.isfinite(merged).all():  # only float64 maps near overflow get here
            raise ModelOutputError("offsets too large: merging them overflows float64; "
                                   "the model or its input is broken")
        landmarks[..., 0] = merged[:batch]
        landmarks[..., 1] = merged[batch:]
        return landmarks, scores

    def _flat_bases(self, batch: int, hw: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat offsets of channel starts: (B, L) for cls/x/y, (B, L, K) for nb maps."""
        cached = self._bases
        if cached[0] == (batch, hw):
            return cached[1], cached[2]
        num_lms, num_nb = self._num_lms, self._num_nb
        own = (np.arange(batch * num_lms, dtype=np.intp) * hw).reshape(batch, num_lms)
        nb = (np.arange(batch * num_lms * num_nb, dtype=np.intp) * hw).reshape(
            batch, num_lms, num_nb)
        self._bases = ((batch, hw), own, nb)  # one assignment: safe to share across threads
        return own, nb

    # -- validation -----------------------------------------------------------------------

    def _check_maps(self, *maps: Any) -> list[np.ndarray]:
        arrays = []
        for index, value in enumerate(maps):
            name = _MAP_NAMES[index]
            if value is None:
                raise DecodeError(f"map {name!r} is None; pass the network's {name} output")
            arr = np.asarray(value)
            if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
                raise DecodeError(
                    f"map {name!r} must hold real numbers, got dtype {arr.dtype}"
                )
            at_cell = name in ("nb_x", "nb_y") and arr.ndim == 2
            if arr.ndim != 4 and not at_cell:
                hint = (" (add the batch axis, e.g. maps[None])"
                        if arr.ndim == 3 else "")
                also = (" or 2 (B, L*K) read at the selected cells"
                        if name in ("nb_x", "nb_y") else "")
                raise DecodeError(
                    f"map {name!r} must have 4 dimensions (B, C, H, W){also}, got shape "
                    f"{arr.shape}{hint}"
                )
            arrays.append(arr)
        cls = arrays[0]
        batch, channels, height, width = cls.shape
        num_lms, num_nb = self._num_lms, self._num_nb
        if channels != num_lms:
            raise DecodeError(
                f"'cls' has {channels} channels but this decoder is for {num_lms} landmarks; "
                f"use the mean face of the model that produced the maps"
            )
        if height == 0 or width == 0:
            raise DecodeError(f"maps must have H, W >= 1, got H={height}, W={width}")
        if arrays[3].ndim != arrays[4].ndim:
            raise DecodeError(
                f"'nb_x' and 'nb_y' must both be maps (B, L*K, H, W) or both be read at the "
                f"selected cells (B, L*K), got shapes {arrays[3].shape} and {arrays[4].shape}"
            )
        for index in range(1, len(arrays)):
            name, arr = _MAP_NAMES[index], arrays[index]
            per_landmark = name in ("x", "y")
            want: tuple[int, ...] = (batch, num_lms if per_landmark else num_lms * num_nb,
                                     height, width)
            if arr.ndim == 2:
                want = want[:2]
            if arr.shape != want:
                what = (f"{num_lms} landmarks" if per_landmark
                        else f"{num_lms} landmarks x {num_nb} neighbours")
                size = "" if arr.ndim == 2 else f" and {height}x{width}"
                raise DecodeError(
                    f"map {name!r} has shape {arr.shape}, expected {want} "
                    f"(batch {batch}{size} as 'cls', {what}); "
                    f"check the output order cls, x, y, nb_x, nb_y and num_nb"
                )
        return arrays

    @staticmethod
    def _refuse_scores(scores: np.ndarray) -> None:
        bad = np.argwhere(~np.isfinite(scores))
        b, i = (int(v) for v in bad[0])
        raise ModelOutputError(
            f"non-finite score map: cls[{b}, {i}] selects {scores[b, i]} "
            f"({len(bad)} landmark(s) affected); the maps contain NaN or infinity, "
            f"the model or its input is broken"
        )

    def _refuse_offsets(self, preds: np.ndarray) -> None:
        bad = np.argwhere(~np.isfinite(preds))
        axis, b, p = (int(v) for v in bad[0])
        if p < self._num_lms:
            where = f"{'xy'[axis]}[{b}, {p}]"
        else:
            where = f"nb_{'xy'[axis]}[{b}, {p - self._num_lms}]"
        raise ModelOutputError(
            f"non-finite offset at the selected cell: {where} is NaN or infinity "
            f"({len(bad)} value(s) affected); the model or its input is broken"
        )
