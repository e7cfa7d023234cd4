"""A plain-loop PIP-Net decoder written straight from docs/design.md §3.

Deliberately naive (Python loops and floats, no vectorisation), independent of
``pipdetect.decode``: the tests check the vectorised decoder against it.
"""

from __future__ import annotations

import math

import numpy as np


def neighbour_lists(meanface: np.ndarray, num_nb: int) -> list[list[int]]:
    """Step 4: argsort (default kind) of squared distances, positions 1..K."""
    mf = np.asarray(meanface, dtype=np.float64).reshape(-1, 2)
    lists = []
    for i in range(len(mf)):
        dists = []
        for j in range(len(mf)):
            dx, dy = float(mf[i, 0] - mf[j, 0]), float(mf[i, 1] - mf[j, 1])
            dists.append(dx * dx + dy * dy)
        order = np.argsort(dists)
        lists.append([int(order[p]) for p in range(1, num_nb + 1)])
    return lists


def reverse_lists(nb: list[list[int]], cyclic: bool = True) -> list[list[tuple[int, int]]]:
    """Step 5: for each j, the pairs (i, k) with nb[i][k] == j, in order of i then k.

    With ``cyclic`` every non-empty list is padded to the longest length by
    repeating it from its start.
    """
    lms = len(nb)
    rev: list[list[tuple[int, int]]] = [[] for _ in range(lms)]
    for i in range(lms):
        for k in range(len(nb[i])):
            rev[nb[i][k]].append((i, k))
    if not cyclic:
        return rev
    max_len = max(len(r) for r in rev)
    padded = []
    for r in rev:
        p: list[tuple[int, int]] = []
        while r and len(p) < max_len:
            p.append(r[len(p) % len(r)])
        padded.append(p)
    return padded


def decode(meanface, num_nb, cls, x, y, nb_x, nb_y, merge="reference"):
    """Decode (B, C, H, W) maps with literal loops; returns (B, L, 2) and (B, L) lists as arrays."""
    nb = neighbour_lists(meanface, num_nb)
    rev = reverse_lists(nb, cyclic=(merge == "reference"))
    batch, lms, height, width = np.shape(cls)
    out = np.zeros((batch, lms, 2))
    scores = np.zeros((batch, lms))
    for b in range(batch):
        own = []
        votes = {}
        for i in range(lms):
            flat = [float(cls[b][i][r][c]) for r in range(height) for c in range(width)]
            best = 0
            for idx in range(1, len(flat)):
                if flat[idx] > flat[best]:  # strictly greater: first maximum wins
                    best = idx
            col, row = best % width, best // width
            scores[b, i] = flat[best]
            own.append(((col + float(x[b][i][row][col])) / width,
                        (row + float(y[b][i][row][col])) / height))
            for k in range(num_nb):
                ch = i * num_nb + k
                votes[(i, k)] = ((col + float(nb_x[b][ch][row][col])) / width,
                                 (row + float(nb_y[b][ch][row][col])) / height)
        for j in range(lms):
            if merge == "none" or not rev[j]:
                out[b, j] = own[j]
                continue
            values = [own[j]] + [votes[pair] for pair in rev[j]]
            out[b, j, 0] = math.fsum(v[0] for v in values) / len(values)
            out[b, j, 1] = math.fsum(v[1] for v in values) / len(values)
    return out, scores


def at_selected_cells(cls: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """Neighbour maps ``nb`` (B, L*K, H, W) read at each landmark's selected cell (the
    first maximum of ``cls[b, i]``, row-major), in loops: (B, L*K), the form of the
    neighbour outputs of the models ``pipdetect convert`` writes."""
    batch, lms, height, width = cls.shape
    num_nb = nb.shape[1] // lms
    out = np.empty((batch, lms * num_nb), dtype=nb.dtype)
    for b in range(batch):
        for i in range(lms):
            best, cell = -math.inf, (0, 0)
            for row in range(height):
                for col in range(width):
                    if float(cls[b, i, row, col]) > best:
                        best, cell = float(cls[b, i, row, col]), (row, col)
            for k in range(num_nb):
                out[b, i * num_nb + k] = nb[b, i * num_nb + k, cell[0], cell[1]]
    return out
