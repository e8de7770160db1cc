"""Boundary evaluation (ODS F, OIS F, AP) in Python, after the SEISM protocol.

The official edge numbers of the multi-task benchmarks (NYUD-v2, PASCAL-
Context) come from the MATLAB SEISM toolbox (Pont-Tuset & Marques, CVPR
2013), which wraps the BSDS benchmark (Martin et al., PAMI 2004) and Piotr
Dollar's edge toolbox. This module follows the same steps, on numpy arrays:

1. Thinning by non-maximum suppression (`edge_nms`), as SEISM's reader
   `read_one_cont_png` does: the map is smoothed with a triangle filter of
   radius 4, the edge normal comes from second derivatives,
   O = mod(atan(Oyy * sign(-Oxy) / (Oxx + 1e-5)), pi); a pixel is kept when
   1.01 x its value is not below the bilinearly interpolated values one pixel
   away along O on both sides; values within 5 pixels of the image border are
   scaled down linearly to 0.
2. For each of the 101 thresholds t (0.001, 0.01, 0.02, ..., 0.99, 0.999), the
   binary map `E >= max(eps, t)` is thinned morphologically to one pixel
   (`thin`, MATLAB's `bwmorph(..., 'thin', Inf)`, the two-subiteration
   algorithm of Lam, Lee & Suen, PAMI 1992, p. 879).
3. Predicted boundary pixels are matched one-to-one to label boundary pixels
   no farther than maxDist x the image diagonal (`MAX_DIST`: 0.0075 PASCAL,
   0.011 NYUD). The BSDS `correspondPixels` solves a minimum-cost assignment:
   match distances plus an outlier cost of 100 x the tolerance per unmatched
   pixel. That cost is far above any match distance, so its optimum has the
   maximum number of matches and, among those, the least total distance
   (`correspond_pixels` computes this assignment exactly, with scipy's
   LAPJVsp on the sparse graph of candidate pairs plus one "unmatched" option
   per pixel). The counts need only its size, the maximum matching size,
   which `image_counts` computes exactly with breadth-first augmenting-path
   searches (as Hopcroft-Karp), repairing the maximum matching of the
   previous threshold. Never a greedy or nearest-neighbour shortcut: those
   undercount.
4. Per image and threshold: cntR (matched label pixels), sumR (label pixels),
   cntP (matched predicted pixels), sumP (predicted pixels). ODS: counts are
   summed over the split per threshold, P = cntP / sumP, R = cntR / sumR,
   F = 2PR / (P + R), maximised over thresholds. OIS: each image takes the
   threshold of its own best F (first one on ties), the counts at those
   thresholds are summed, then F. AP: the precision-recall curve of the split
   (duplicate recalls keep their first threshold) linearly interpolated at
   recall 0, 0.01, ..., 1 within its range, summed / 100. Empty cases follow
   SEISM: no label boundary -> R = 1, P = 0; no prediction -> R = 0, P = 1.
   F, P, R and AP are reported x100.

Inputs: a prediction is an (H, W) or (H, W, 1) boundary probability map in
[0, 1] (float) or an 8-bit map (uint8, divided by 255 as SEISM reads PNGs;
pass the very maps written for SEISM to reproduce it); a label is an (H, W)
or (H, W, 1) map in {0, 1} with 255 ignored, at the prediction's size.

Remaining differences from SEISM:
- correspondPixels rounds distances to 1/100 pixel, gives outlier nodes a
  few random sparse connections (an approximation of the full outlier
  graph) and, with a finite outlier cost, would trade a match for distance
  only along an augmenting path of over 200 pixels. The assignment here is
  exact for "most matches, then least distance"; the counts agree except in
  such degenerate cases, and ties between equal-size matchings may pick
  different pixels (which does not change the counts).
- Pixels labelled 255 are removed from the thinned prediction and are not
  label boundaries (SEISM has no ignore label; the released edge maps have
  no 255 once cropped to the image, so this only matters for padded input).
- SEISM builds label boundaries from segmentations with `seg2bmap`; here the
  dataset's binary edge labels are used as given.
- Arithmetic is float32 like the MATLAB/MEX code, but the triangle filter and
  gradients are numpy/scipy, so values equal up to rounding; a threshold
  falling exactly on a rounded value could flip a pixel.

Speed: see tools/bench_edge_eval.py (NYUD-sized maps, per image and for the
654-image val split).

Example:
>>> import numpy as np
>>> label = np.zeros((60, 80), "uint8"); label[10:50, 40] = 1
>>> prediction = np.zeros((60, 80), "float32"); prediction[10:50, 41] = 0.9  # one pixel off
>>> scores = evaluate_boundaries([prediction], [label], dataset="nyud", workers=0, progress=False)
>>> round(scores["ods_f"], 2)  # tolerance 0.011 x 100 px = 1.1 px: all 40 pixels match
100.0
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import os
import sys
import time
import types
from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from scipy.spatial import cKDTree

from keras_mtcl.tasks import IGNORE_INDEX

# The 101 thresholds of the multi-task benchmarks' SEISM runs.
THRESHOLDS = (0.001,) + tuple(round(0.01 * i, 2) for i in range(1, 100)) + (0.999,)
# Match tolerance, as a fraction of the image diagonal.
MAX_DIST = types.MappingProxyType({"pascal": 0.0075, "nyud": 0.011})
# Non-maximum suppression (SEISM's edgesNmsMex(E, O, 1, 5, 1.01) after convTri(E, 4)).
NMS_RADIUS = 1
NMS_BORDER = 5
NMS_MULTIPLIER = 1.01
ORIENTATION_SMOOTHING = 4
# MATLAB's eps: thresholds are max(eps, t).
_EPS = float(np.finfo(np.float64).eps)


class BoundaryLabelError(ValueError):
    """A boundary label or prediction holds values outside the expected range."""


# ----------------------------------------------------------------------------
# Thinning
# ----------------------------------------------------------------------------


def triangle_filter(image: np.ndarray, radius: int) -> np.ndarray:
    """Separable triangle filter [1 .. r+1 .. 1] / (r+1)^2 with symmetric padding (Dollar's `convTri`).

    Args:
        image: (H, W) array.
        radius: integer radius r >= 1.

    Returns:
        (H, W) float32 array.
    """
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f"`radius` must be an integer >= 1. Received: radius={radius!r}")
    kernel = np.concatenate([np.arange(1, radius + 2), np.arange(radius, 0, -1)]).astype(np.float32)
    kernel /= np.float32((radius + 1) ** 2)
    smoothed = ndimage.correlate1d(np.asarray(image, np.float32), kernel, axis=0, mode="reflect")
    return ndimage.correlate1d(smoothed, kernel, axis=1, mode="reflect")


def edge_orientation(edges: np.ndarray, smoothing: int = ORIENTATION_SMOOTHING) -> np.ndarray:
    """Normal direction of boundaries, in [0, pi), from second derivatives of the smoothed map.

    O = mod(atan(Oyy * sign(-Oxy) / (Oxx + 1e-5)), pi), x along columns and y
    along rows. A perfectly row-aligned ridge has Oxy = 0 and gets O = 0 (the
    reference's behaviour); morphological thinning handles such ridges later.

    Args:
        edges: (H, W) boundary map.
        smoothing: radius of the triangle filter applied first.

    Returns:
        (H, W) float32 angles.
    """
    smoothed = triangle_filter(edges, smoothing)
    oy, ox = np.gradient(smoothed)
    oxx = np.gradient(ox, axis=1)
    oxy = np.gradient(oy, axis=1)
    oyy = np.gradient(oy, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.arctan(oyy * np.sign(-oxy) / (oxx + np.float32(1e-5)))
    return np.mod(angle, np.float32(np.pi)).astype(np.float32)


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """image[y, x] by bilinear interpolation, coordinates clamped inside the image."""
    h, w = image.shape
    x = np.clip(x, np.float32(0), np.float32(w - 1.001))
    y = np.clip(y, np.float32(0), np.float32(h - 1.001))
    x0 = x.astype(np.int64)
    y0 = y.astype(np.int64)
    dx, dy = x - x0.astype(np.float32), y - y0.astype(np.float32)
    return (
        image[y0, x0] * (1 - dx) * (1 - dy)
        + image[y0, x0 + 1] * dx * (1 - dy)
        + image[y0 + 1, x0] * (1 - dx) * dy
        + image[y0 + 1, x0 + 1] * dx * dy
    )


def edge_nms(
    edges: np.ndarray,
    orientation: np.ndarray | None = None,
    radius: int = NMS_RADIUS,
    border: int = NMS_BORDER,
    multiplier: float = NMS_MULTIPLIER,
) -> np.ndarray:
    """Non-maximum suppression of a boundary map along the boundary normal.

    A pixel survives when `multiplier` x its value is not below the map's
    bilinear value at distances 1..radius on both sides along the normal;
    then values within `border` pixels of the image edge are scaled by their
    distance to it / border (the outermost pixels become 0).

    Args:
        edges: (H, W) boundary probabilities.
        orientation: (H, W) normal angles; default `edge_orientation(edges)`.
        radius: suppression radius in pixels.
        border: width of the border ramp in pixels.
        multiplier: tolerance factor (> 1 keeps near-equal neighbours).

    Returns:
        (H, W) float32 map, 0 where suppressed.
    """
    edges = np.asarray(edges, np.float32)
    if edges.ndim != 2 or min(edges.shape) < 2:
        raise ValueError(f"`edges` must be an (H, W) map of at least 2 x 2 pixels. Received: edges.shape={edges.shape}")
    if orientation is None:
        orientation = edge_orientation(edges)
    if orientation.shape != edges.shape:
        raise ValueError(
            f"`orientation` must have the shape of `edges` {edges.shape}. Received: orientation.shape={orientation.shape}"
        )
    h, w = edges.shape
    result = edges.copy()
    rows, cols = np.nonzero(edges)
    if rows.size:
        value = edges[rows, cols] * np.float32(multiplier)
        # A flat neighbourhood can give 0/0: compare along the rows there.
        angle = np.nan_to_num(np.asarray(orientation, np.float32)[rows, cols], nan=0.0)
        cos, sin = np.cos(angle), np.sin(angle)
        x, y = cols.astype(np.float32), rows.astype(np.float32)
        suppressed = np.zeros(rows.size, bool)
        for d in range(-radius, radius + 1):
            if d:
                neighbour = _bilinear(edges, x + np.float32(d) * cos, y + np.float32(d) * sin)
                suppressed |= value < neighbour
        result[rows[suppressed], cols[suppressed]] = 0
    s = min(border, w // 2, h // 2)
    if s > 0:
        ramp = np.arange(s, dtype=np.float32) / np.float32(s)
        col_scale = np.ones(w, np.float32)
        col_scale[:s] = ramp
        col_scale[w - s :] = ramp[::-1]
        row_scale = np.ones(h, np.float32)
        row_scale[:s] = ramp
        row_scale[h - s :] = ramp[::-1]
        result *= row_scale[:, None]
        result *= col_scale[None, :]
    return result


# Neighbours x1..x8 of a pixel: east first, counter-clockwise (row offset, column offset).
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def _thinning_tables() -> tuple[np.ndarray, np.ndarray]:
    """Deletion look-up tables of the two subiterations, indexed by the 8-neighbour code."""
    first = np.zeros(256, bool)
    second = np.zeros(256, bool)
    for code in range(256):
        x = [(code >> k) & 1 for k in range(8)]  # x[0] = x1 (east), ..., x[7] = x8 (south-east)
        crossings = sum(1 for i in range(4) if not x[2 * i] and (x[2 * i + 1] or x[(2 * i + 2) % 8]))
        n1 = sum(1 for k in range(4) if x[2 * k] or x[2 * k + 1])
        n2 = sum(1 for k in range(4) if x[2 * k + 1] or x[(2 * k + 2) % 8])
        removable = crossings == 1 and 2 <= min(n1, n2) <= 3
        # G3: (x2 | x3 | ~x8) & x1 == 0; G3': (x6 | x7 | ~x4) & x5 == 0.
        first[code] = removable and not (x[0] and (x[1] or x[2] or not x[7]))
        second[code] = removable and not (x[4] and (x[5] or x[6] or not x[3]))
    return first, second


_THIN_FIRST, _THIN_SECOND = _thinning_tables()


def thin(binary: np.ndarray) -> np.ndarray:
    """Morphological thinning to 1-pixel lines (MATLAB `bwmorph(binary, 'thin', Inf)`).

    Repeats the two parallel subiterations of Lam, Lee & Suen (1992) until
    nothing changes; pixels outside the image count as background.

    Args:
        binary: (H, W) boolean map.

    Returns:
        (H, W) boolean map, a subset of the input.
    """
    binary = np.asarray(binary, bool)
    if binary.ndim != 2:
        raise ValueError(f"`binary` must be an (H, W) map. Received: binary.shape={binary.shape}")
    padded = np.pad(binary, 1)
    width = padded.shape[1]
    flat = padded.reshape(-1)
    offsets = np.array([dr * width + dc for dr, dc in _NEIGHBOURS], np.int64)
    weights = (1 << np.arange(8)).astype(np.int64)
    # Only pixels whose neighbourhood changed can change their verdict: re-examine just those.
    pending = [flat.copy(), flat.copy()]
    while pending[0].any() or pending[1].any():
        for step, table in enumerate((_THIN_FIRST, _THIN_SECOND)):
            candidates = np.flatnonzero(pending[step] & flat)
            pending[step][:] = False
            if not len(candidates):
                continue
            codes = flat[candidates[:, None] + offsets].astype(np.int64) @ weights
            deleted = candidates[table[codes]]
            if len(deleted):
                flat[deleted] = False
                touched = (deleted[:, None] + offsets).reshape(-1)
                pending[0][touched] = True
                pending[1][touched] = True
    return padded[1:-1, 1:-1].copy()


# ----------------------------------------------------------------------------
# Matching
# ----------------------------------------------------------------------------


def _candidate_pairs(predicted: np.ndarray, truth: np.ndarray, radius: float, truth_tree=None):
    """(i, j, distance) of every predicted/truth point pair (N, 2) no farther than `radius`."""
    if not len(predicted) or not len(truth):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    truth_tree = cKDTree(truth) if truth_tree is None else truth_tree
    pairs = cKDTree(predicted).sparse_distance_matrix(truth_tree, radius, output_type="ndarray")
    return pairs["i"].astype(np.int64), pairs["j"].astype(np.int64), pairs["v"]


def _min_cost_matching(i: np.ndarray, j: np.ndarray, distance: np.ndarray, radius: float):
    """Most matches, then least total distance, among candidate pairs (i, j); returns matched (i, j)."""
    if not len(i):
        return i, j
    p_ids, i = np.unique(i, return_inverse=True)
    t_ids, j = np.unique(j, return_inverse=True)
    # The smaller side are the rows of a rectangular assignment: each row takes a candidate
    # (cost distance + 1) or its own "unmatched" column (cost `dummy`), columns may stay free.
    # An extra match changes the distance sum by less than rows x radius, so a dummy cost above
    # that makes every optimum a maximum matching; all costs are > 0 as LAPJVsp needs.
    transpose = len(t_ids) < len(p_ids)
    rows, cols = (j, i) if transpose else (i, j)
    n_rows, n_cols = (len(t_ids), len(p_ids)) if transpose else (len(p_ids), len(t_ids))
    dummy = (n_rows + 1) * (radius + 1.0) + 1.0
    data = np.concatenate([distance + 1.0, np.full(n_rows, dummy)])
    graph = csr_matrix(
        (data, (np.concatenate([rows, np.arange(n_rows)]), np.concatenate([cols, n_cols + np.arange(n_rows)]))),
        shape=(n_rows, n_cols + n_rows),
    )
    row_ind, col_ind = min_weight_full_bipartite_matching(graph)
    real = col_ind < n_cols
    row_ind, col_ind = row_ind[real], col_ind[real]
    if transpose:
        row_ind, col_ind = col_ind, row_ind
    return p_ids[row_ind], t_ids[col_ind]


def correspond_pixels(
    predicted: np.ndarray, ground_truth: np.ndarray, max_dist: float
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of boundary pixels within max_dist x image diagonal (BSDS `correspondPixels`).

    The assignment has the maximum number of matches and, among those, the
    least total distance: the optimum of correspondPixels' cost (distances
    plus 100 x tolerance per unmatched pixel), solved exactly.

    Args:
        predicted: (H, W) boolean predicted boundary map.
        ground_truth: (H, W) boolean label boundary map.
        max_dist: tolerance as a fraction of the diagonal sqrt(H^2 + W^2).

    Returns:
        (match_predicted, match_ground_truth): (H, W) int64 maps holding, for
        each matched boundary pixel, the flat index (row * W + col) of its
        partner in the other map, and -1 elsewhere.

    Example:
    >>> import numpy as np
    >>> a = np.zeros((10, 10), bool); a[5, 2:8] = True
    >>> b = np.zeros((10, 10), bool); b[6, 2:8] = True
    >>> m, _ = correspond_pixels(a, b, max_dist=0.1)
    >>> int((m >= 0).sum()), int(m[5, 2])  # 6 matches, each straight down
    (6, 62)
    """
    predicted = np.asarray(predicted, bool)
    ground_truth = np.asarray(ground_truth, bool)
    if predicted.ndim != 2 or predicted.shape != ground_truth.shape:
        raise ValueError(
            "`predicted` and `ground_truth` must be (H, W) maps of the same shape. "
            f"Received: predicted.shape={predicted.shape}, ground_truth.shape={ground_truth.shape}"
        )
    _check_max_dist(max_dist)
    h, w = predicted.shape
    radius = max_dist * math.hypot(h, w)
    p_flat, t_flat = np.flatnonzero(predicted), np.flatnonzero(ground_truth)
    p_xy = np.stack(np.unravel_index(p_flat, (h, w)), axis=1).astype(np.float64)
    t_xy = np.stack(np.unravel_index(t_flat, (h, w)), axis=1).astype(np.float64)
    i, j = _min_cost_matching(*_candidate_pairs(p_xy, t_xy, radius), radius)
    match_predicted = np.full(h * w, -1, np.int64)
    match_truth = np.full(h * w, -1, np.int64)
    match_predicted[p_flat[i]] = t_flat[j]
    match_truth[t_flat[j]] = p_flat[i]
    return match_predicted.reshape(h, w), match_truth.reshape(h, w)


class _BipartiteGraph:
    """Candidate pairs as adjacency lists both ways (CSR), predicted nodes 0..P-1, truth 0..T-1."""

    def __init__(self, i: np.ndarray, j: np.ndarray, num_predicted: int, num_truth: int):
        order = np.lexsort((j, i))
        self.i, self.j = i[order], j[order]
        self.p_ptr = np.concatenate([[0], np.cumsum(np.bincount(self.i, minlength=num_predicted))])
        self.p_adj = self.j
        by_truth = np.argsort(self.j, kind="stable")
        self.t_ptr = np.concatenate([[0], np.cumsum(np.bincount(self.j, minlength=num_truth))])
        self.t_adj = self.i[by_truth]

    @staticmethod
    def neighbours(ptr, adj, nodes):
        """(source node, neighbour) for every edge of `nodes`."""
        degree = ptr[nodes + 1] - ptr[nodes]
        total = int(degree.sum())
        if not total:
            return nodes[:0], nodes[:0]
        starts = np.repeat(ptr[nodes] - np.cumsum(degree) + degree, degree)
        return np.repeat(nodes, degree), adj[starts + np.arange(total)]


def _augment_from(
    graph: _BipartiteGraph, present: np.ndarray, mate_p: np.ndarray, mate_t: np.ndarray, sources: np.ndarray, side: str
):
    """Augments the matching (mate_p, mate_t) along augmenting paths that start at `sources`, in place.

    `sources` are free nodes of one side (`"predicted"` or `"truth"`). Each
    phase is one breadth-first search over alternating paths from every
    source still free; it stops at the first level that reaches free nodes of
    the other side and augments along vertex-disjoint shortest paths found
    there. Phases repeat until a search reaches no free node: then no source
    has an augmenting path, and augmenting along other paths later cannot
    give it one.
    """
    if side == "truth":
        a_ptr, a_adj, mate_a, mate_b, b_ok = graph.t_ptr, graph.t_adj, mate_t, mate_p, present
    else:
        a_ptr, a_adj, mate_a, mate_b, b_ok = graph.p_ptr, graph.p_adj, mate_p, mate_t, None
    while True:
        sources = sources[mate_a[sources] < 0]
        if not len(sources):
            return
        parent = np.full(len(mate_b), -1, np.int64)
        frontier = sources
        targets = frontier[:0]
        while len(frontier):
            a, b = _BipartiteGraph.neighbours(a_ptr, a_adj, frontier)
            keep = parent[b] < 0 if b_ok is None else (parent[b] < 0) & b_ok[b]
            a, b = a[keep], b[keep]
            # One parent per newly reached node: the assignment keeps one of the duplicates.
            parent[b] = a
            b = b[parent[b] == a]
            targets = b[mate_b[b] < 0]
            if len(targets):
                break
            frontier = mate_b[b]
        if not len(targets):
            return
        used = np.zeros(len(mate_a), bool)
        for target in targets.tolist():
            path = []
            b = target
            while True:
                a = int(parent[b])
                if used[a]:
                    path = None
                    break
                path.append((a, b))
                if mate_a[a] < 0:
                    break
                b = int(mate_a[a])
            if path is None:
                continue
            for a, b in path:
                used[a] = True
                mate_a[a] = b
                mate_b[b] = a


# ----------------------------------------------------------------------------
# Per image and over a split
# ----------------------------------------------------------------------------


def _check_max_dist(max_dist):
    if isinstance(max_dist, bool) or not isinstance(max_dist, (int, float)) or not 0 < max_dist < 1:
        raise ValueError(
            f"`max_dist` must be a fraction of the image diagonal in (0, 1), e.g. {dict(MAX_DIST)}. "
            f"Received: max_dist={max_dist!r}"
        )


def _check_thresholds(thresholds):
    values = [float(t) for t in thresholds]
    if not values or any(not 0.0 <= t <= 1.0 for t in values) or sorted(set(values)) != values:
        raise ValueError(f"`thresholds` must be distinct increasing values in [0, 1]. Received: thresholds={values}")
    return values


def _as_map(array, argument, index):
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(
            f"Each {argument} must be an (H, W) or (H, W, 1) map. Received: {argument}[{index}].shape={array.shape}"
        )
    return array


def _prepare(prediction, label, ignore_value, index=0):
    """Validates one image; returns (probabilities float32, boundary bool, ignored bool)."""
    prediction = _as_map(prediction, "prediction", index)
    label = _as_map(label, "label", index)
    if prediction.shape != label.shape:
        raise ValueError(
            f"Prediction and label of image {index} differ in size (crop predictions to the label first). "
            f"Received: prediction.shape={prediction.shape}, label.shape={label.shape}"
        )
    if prediction.dtype == np.uint8:
        prediction = prediction.astype(np.float32) / np.float32(255)
    else:
        prediction = prediction.astype(np.float32)
        if prediction.size and (not np.all(np.isfinite(prediction)) or prediction.min() < 0 or prediction.max() > 1):
            raise BoundaryLabelError(
                f"Boundary predictions must be probabilities in [0, 1] (apply the sigmoid to logits) or uint8 "
                f"maps. Received: prediction {index} with range [{np.nanmin(prediction)}, {np.nanmax(prediction)}]"
            )
    ignored = label == ignore_value
    unexpected = ~(ignored | (label == 0) | (label == 1))
    if unexpected.any():
        values = np.unique(label[unexpected])[:5].tolist()
        raise BoundaryLabelError(
            f"Boundary labels must hold 0, 1 or the ignore value {ignore_value}. "
            f"Received: label {index} with values {values}"
        )
    return prediction, label == 1, ignored


def image_counts(
    prediction: np.ndarray,
    label: np.ndarray,
    max_dist: float,
    thresholds: Sequence[float] = THRESHOLDS,
    nms: bool = True,
    ignore_value: int = IGNORE_INDEX,
) -> np.ndarray:
    """Boundary match counts of one image at every threshold.

    Args:
        prediction: (H, W) or (H, W, 1) probabilities in [0, 1], or uint8.
        label: (H, W) or (H, W, 1) in {0, 1}, `ignore_value` ignored.
        max_dist: tolerance as a fraction of the image diagonal (`MAX_DIST`).
        thresholds: increasing thresholds; a pixel is a boundary when its
            value is >= max(eps, t), before thinning.
        nms: apply `edge_nms` first (SEISM does; False evaluates the map as given).
        ignore_value: label value of pixels to leave out of both maps.

    Returns:
        (T, 4) int64 array of (cntR, sumR, cntP, sumP) per threshold.

    Raises:
        BoundaryLabelError: a label value outside {0, 1, ignore_value} or a
            prediction outside [0, 1].
    """
    _check_max_dist(max_dist)
    thresholds = _check_thresholds(thresholds)
    probabilities, boundary, ignored = _prepare(prediction, label, ignore_value)
    return _image_counts(probabilities, boundary, ignored, max_dist, thresholds, nms)


def _image_counts(probabilities, boundary, ignored, max_dist, thresholds, nms):
    h, w = probabilities.shape
    radius = max_dist * math.hypot(h, w)
    edges = edge_nms(probabilities) if nms else probabilities
    levels = [np.float32(max(_EPS, t)) for t in thresholds]
    counts = np.zeros((len(thresholds), 4), np.int64)
    counts[:, 1] = np.count_nonzero(boundary)
    # Every pixel that is a boundary at some threshold, and its candidate partners, once per image.
    candidates = np.flatnonzero((edges >= levels[0]) & ~ignored)
    truth_xy = np.argwhere(boundary).astype(np.float64)
    candidate_xy = np.stack(np.unravel_index(candidates, (h, w)), axis=1).astype(np.float64)
    pair_i, pair_j, _ = _candidate_pairs(candidate_xy, truth_xy, radius)
    graph = _BipartiteGraph(pair_i, pair_j, len(candidates), len(truth_xy))
    mate_p = np.full(len(candidates), -1, np.int64)
    mate_t = np.full(len(truth_xy), -1, np.int64)
    previous = np.zeros(len(candidates), bool)
    # From the highest threshold down, each maximum matching is repaired from the previous one.
    # Two stages keep it maximum: (1) predicted pixels that disappeared free their partners, and
    # only paths from those partners can augment; (2) pixels that appeared can augment only along
    # paths starting at them. In each stage every augmentation matches one source and one other
    # node, which is what makes searching from the sources alone exact.
    for k in range(len(thresholds) - 1, -1, -1):
        binary = thin(edges >= levels[k])
        binary &= ~ignored
        present = binary.reshape(-1)[candidates]
        if k < len(thresholds) - 1 and np.array_equal(present, previous):
            counts[k] = counts[k + 1]
            continue
        lost = (mate_p >= 0) & ~present
        freed = mate_p[lost]
        mate_t[freed] = -1
        mate_p[lost] = -1
        _augment_from(graph, previous & present, mate_p, mate_t, freed, "truth")
        _augment_from(graph, present, mate_p, mate_t, np.flatnonzero(present & ~previous), "predicted")
        previous = present
        matches = int(np.count_nonzero(mate_p >= 0))
        counts[k, 0] = counts[k, 2] = matches
        counts[k, 3] = int(np.count_nonzero(present))
    return counts


def _precision_recall(cnt_r, sum_r, cnt_p, sum_p):
    """SEISM's P and R with its empty cases (arrays of any shape)."""
    cnt_r, sum_r, cnt_p, sum_p = (np.asarray(v, np.float64) for v in (cnt_r, sum_r, cnt_p, sum_p))
    recall = np.where(sum_r == 0, 1.0, cnt_r / np.maximum(sum_r, 1))
    precision = np.where(sum_r == 0, 0.0, cnt_p / np.maximum(sum_p, 1))
    no_prediction = (sum_p == 0) & (sum_r != 0)
    recall = np.where(no_prediction, 0.0, recall)
    precision = np.where(no_prediction, 1.0, precision)
    return precision, recall


def _f_measure(precision, recall):
    total = precision + recall
    return np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1), 0.0)


def summarize(counts: np.ndarray, thresholds: Sequence[float] = THRESHOLDS) -> dict:
    """ODS F, OIS F and AP (x100) from per-image counts.

    Args:
        counts: (N, T, 4) per image and threshold (cntR, sumR, cntP, sumP), as
            returned by `image_counts`.
        thresholds: the T thresholds.

    Returns:
        Dict with `ods_f`, `ods_precision`, `ods_recall`, `ods_threshold`,
        `ois_f`, `ois_precision`, `ois_recall`, `ap`, `num_images`, and the
        split's curves `thresholds`, `precision`, `recall`, `f` (lists, x100).

    Example:
    >>> import numpy as np
    >>> counts = np.array([[[8, 10, 8, 10], [5, 10, 5, 5]]])  # one image, two thresholds
    >>> round(summarize(counts, [0.3, 0.6])["ods_f"], 2)  # F = 80 and 2 * 1 * .5 / 1.5
    80.0
    """
    counts = np.asarray(counts, np.int64)
    thresholds = [float(t) for t in thresholds]
    if counts.ndim != 3 or counts.shape[1:] != (len(thresholds), 4) or not len(counts):
        raise ValueError(
            f"`counts` must be (N, T, 4) with N >= 1 and T = {len(thresholds)} thresholds. "
            f"Received: counts.shape={counts.shape}"
        )
    cnt_r, sum_r, cnt_p, sum_p = np.moveaxis(counts, -1, 0)
    # ODS: counts of the split per threshold.
    precision, recall = _precision_recall(*(v.sum(0) for v in (cnt_r, sum_r, cnt_p, sum_p)))
    f = _f_measure(precision, recall)
    best = int(np.argmax(f))
    # OIS: each image at its own best threshold (first on ties).
    image_f = _f_measure(*_precision_recall(cnt_r, sum_r, cnt_p, sum_p))
    choice = np.argmax(image_f, axis=1)
    rows = np.arange(len(counts))
    ois_p, ois_r = _precision_recall(*(v[rows, choice].sum() for v in (cnt_r, sum_r, cnt_p, sum_p)))
    ois_f = _f_measure(ois_p, ois_r)
    # AP: precision interpolated over recall 0, 0.01, ..., 1 within the curve's range.
    unique_recall, first = np.unique(recall, return_index=True)
    ap = 0.0
    if len(unique_recall) > 1:
        grid = np.linspace(0.0, 1.0, 101)
        inside = (grid >= unique_recall[0]) & (grid <= unique_recall[-1])
        ap = float(np.interp(grid[inside], unique_recall, precision[first]).sum() / 100.0)
    return {
        "ods_f": 100.0 * float(f[best]),
        "ods_precision": 100.0 * float(precision[best]),
        "ods_recall": 100.0 * float(recall[best]),
        "ods_threshold": thresholds[best],
        "ois_f": 100.0 * float(ois_f),
        "ois_precision": 100.0 * float(ois_p),
        "ois_recall": 100.0 * float(ois_r),
        "ap": 100.0 * ap,
        "num_images": len(counts),
        "thresholds": thresholds,
        "precision": (100.0 * precision).tolist(),
        "recall": (100.0 * recall).tolist(),
        "f": (100.0 * f).tolist(),
    }


def _count_task(task):
    index, prediction, label, options = task
    probabilities, boundary, ignored = _prepare(prediction, label, options["ignore_value"], index)
    return index, _image_counts(
        probabilities, boundary, ignored, options["max_dist"], options["thresholds"], options["nms"]
    )


class _Progress:
    """A one-line progress report on stderr, redrawn at most twice a second and at the end."""

    def __init__(self, enabled: bool, total: int | None):
        self.enabled, self.total, self.done, self.shown = enabled, total, 0, 0
        self.start = self.drawn = time.monotonic()

    def step(self):
        self.done += 1
        if self.enabled and (time.monotonic() - self.drawn >= 0.5 or self.done == self.total):
            self._draw()

    def _draw(self):
        self.drawn = time.monotonic()
        self.shown = self.done
        elapsed = self.drawn - self.start
        line = f"\rBoundary evaluation: {self.done}"
        if self.total:
            left = elapsed / self.done * (self.total - self.done)
            line += f"/{self.total} images, {elapsed:.0f} s elapsed, ~{left:.0f} s left"
        else:
            line += f" images, {elapsed:.0f} s elapsed"
        sys.stderr.write(line)
        sys.stderr.flush()

    def close(self):
        if self.enabled and self.done:
            if self.shown != self.done:
                self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()


def evaluate_boundaries(
    predictions: Iterable[np.ndarray],
    labels: Iterable[np.ndarray],
    max_dist: float | None = None,
    dataset: str | None = None,
    thresholds: Sequence[float] = THRESHOLDS,
    nms: bool = True,
    ignore_value: int = IGNORE_INDEX,
    workers: int | None = None,
    progress: bool = True,
    return_counts: bool = False,
) -> dict:
    """Boundary benchmark of a split: ODS F, OIS F and AP (x100), SEISM protocol.

    Args:
        predictions: iterable of (H, W) or (H, W, 1) probability maps in
            [0, 1], or uint8 maps; consumed lazily.
        labels: iterable of label maps in {0, 1} (255 ignored), one per prediction.
        max_dist: tolerance as a fraction of the image diagonal; give this or `dataset`.
        dataset: `"nyud"` (0.011) or `"pascal"` (0.0075), see `MAX_DIST`.
        thresholds: thresholds of the curve (default the benchmark's 101).
        nms: thin maps by non-maximum suppression first, as SEISM does.
        ignore_value: label value of pixels left out of both maps.
        workers: processes evaluating images in parallel; None uses every
            CPU, 0 or 1 evaluates in this process. Workers are spawned, so a
            script that uses them needs the usual `if __name__ == "__main__":`.
        progress: print a progress line on stderr.
        return_counts: also return the (N, T, 4) counts under `"counts"`.

    Returns:
        The dict of `summarize`.

    Raises:
        ValueError: bad arguments, different numbers of predictions and
            labels, or maps of different sizes.
        BoundaryLabelError: a label or prediction with unexpected values.
    """
    if (max_dist is None) == (dataset is None):
        raise ValueError(
            "Give exactly one of `max_dist` and `dataset`. "
            f"Received: max_dist={max_dist!r}, dataset={dataset!r}"
        )
    if dataset is not None:
        if dataset not in MAX_DIST:
            raise ValueError(f"`dataset` must be one of {sorted(MAX_DIST)}. Received: dataset={dataset!r}")
        max_dist = MAX_DIST[dataset]
    _check_max_dist(max_dist)
    thresholds = _check_thresholds(thresholds)
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"`workers` must be None or an integer >= 0. Received: workers={workers!r}")
    options = {
        "max_dist": float(max_dist),
        "thresholds": thresholds,
        "nms": bool(nms),
        "ignore_value": ignore_value,
    }
    total = None
    if hasattr(predictions, "__len__") and hasattr(labels, "__len__"):
        if len(predictions) != len(labels):
            raise ValueError(
                f"`predictions` and `labels` must have one map per image each. "
                f"Received: {len(predictions)} predictions and {len(labels)} labels"
            )
        total = len(predictions)
    tasks = _tasks(predictions, labels, options)
    bar = _Progress(progress, total)
    results = {}
    try:
        if workers <= 1:
            for task in tasks:
                index, counts = _count_task(task)
                results[index] = counts
                bar.step()
        else:
            # Spawned workers: forking a process that runs JAX/TF/torch threads is unsafe.
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                pending = set()
                for task in tasks:
                    pending.add(pool.submit(_count_task, task))
                    # Bounded look-ahead: maps are read lazily, not all held in memory.
                    if len(pending) >= 2 * workers:
                        pending = _collect(pending, results, bar, concurrent.futures.FIRST_COMPLETED)
                _collect(pending, results, bar, concurrent.futures.ALL_COMPLETED)
    finally:
        bar.close()
    if not results:
        raise ValueError("`predictions` and `labels` must hold at least one image. Received: 0 images")
    counts = np.stack([results[i] for i in range(len(results))])
    summary = summarize(counts, thresholds)
    if return_counts:
        summary["counts"] = counts
    return summary


def _tasks(predictions, labels, options):
    """Yields (index, prediction, label, options), checking that both iterables have the same length."""
    missing = object()
    label_iter = iter(labels)
    count = 0
    for prediction in predictions:
        label = next(label_iter, missing)
        if label is missing:
            raise ValueError(
                "`predictions` and `labels` must have one map per image each. "
                f"Received: more than {count} predictions and {count} labels"
            )
        yield count, prediction, label, options
        count += 1
    if next(label_iter, missing) is not missing:
        raise ValueError(
            "`predictions` and `labels` must have one map per image each. "
            f"Received: {count} predictions and more labels"
        )


def _collect(pending, results, bar, return_when):
    done, pending = concurrent.futures.wait(pending, return_when=return_when)
    for future in done:
        index, counts = future.result()
        results[index] = counts
        bar.step()
    return pending


__all__ = [
    "BoundaryLabelError",
    "MAX_DIST",
    "NMS_BORDER",
    "NMS_MULTIPLIER",
    "NMS_RADIUS",
    "ORIENTATION_SMOOTHING",
    "THRESHOLDS",
    "correspond_pixels",
    "edge_nms",
    "edge_orientation",
    "evaluate_boundaries",
    "image_counts",
    "summarize",
    "thin",
    "triangle_filter",
]
