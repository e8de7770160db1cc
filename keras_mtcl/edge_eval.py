"""Boundary evaluation (ODS F, OIS F, AP) in Python, after the SEISM protocol.

The official edge numbers of the multi-task benchmarks (NYUD-v2, PASCAL-
Context) come from the MATLAB SEISM toolbox (Pont-Tuset & Marques, CVPR
2013), which wraps the BSDS benchmark (Martin et al., PAMI 2004) and Piotr
Dollar's edge toolbox. This module follows the same steps, on numpy arrays:

1. Reading. A prediction is read as SEISM reads the 8-bit PNGs the reference
   codebases write: with the default `threshold_rule="strict"`, a float map is
   quantised to 8 bits first (floor(255 p + 0.5), MATLAB's `uint8`) and every
   map becomes float32 x / 255 (`im2single`). The label boundary map comes from
   the label as the protocol's ground-truth reader builds it (`label_reading`):
   - NYUD (`"seg2bmap"`, the default of `dataset="nyud"`): the multi-task
     wrapper (ATRC/InvPT, SEISM's `db_gt`) reads the GT edge PNG as an integer
     map, and SEISM's `edgesEvalImg` takes `bwmorph(seg2bmap(G), 'thin', Inf)`
     of it: `nyud_boundaries`. `seg2bmap` marks a pixel whose right, lower or
     lower-right neighbour differs (only the right one on the last row, only
     the lower one on the last column, never the last pixel), so each side of
     a 1-pixel line is marked; thinning brings the band back to one pixel.
   - PASCAL-Context (`"given"`, the default of `dataset="pascal"`): the
     dataset builder's edge label (`keras_mtcl.data.pascal`: non-zero
     Laplacian of the context `LabelMap`, thinned) is used as it is. SEISM's
     own reading of the `LabelMap` (relabel, seg2bmap, thin) is
     `pascal_boundaries`; the two put some boundary pixels on opposite sides
     of a class change (`tools/bench_edge_eval.py --compare-rules` measures
     the difference).
2. Thinning by non-maximum suppression (`edge_nms`), as SEISM's reader
   `read_one_cont_png` does: the map is smoothed with a triangle filter of
   radius 4, the edge normal comes from second derivatives,
   O = mod(atan(Oyy * sign(-Oxy) / (Oxx + 1e-5)), pi); a pixel is kept when
   1.01 x its value is not below the bilinearly interpolated values one pixel
   away along O on both sides; values within 5 pixels of the image border are
   scaled down linearly to 0.
3. For each of the 101 thresholds t (0.001, 0.01, 0.02, ..., 0.99, 0.999), the
   binary map is thinned morphologically to one pixel (`thin`, MATLAB's
   `bwmorph(..., 'thin', Inf)`, the two-subiteration algorithm of Lam, Lee &
   Suen, PAMI 1992, p. 879). The binary map is, by `threshold_rule`:
   - `"strict"` (default, SEISM's `E > t` on the map read from the 8-bit
     PNG): `E > t` on the 8-bit-quantised map, compared in float32 (a pixel
     of exactly 153/255 is a boundary at t = 0.59, not at t = 0.60; away from
     such ties float32 and float64 order x / 255 and t alike);
   - `"inclusive"` (Dollar's `edgesEvalImg`, and this module's earlier rule):
     `E >= max(eps, t)` on the map as given (float maps are not quantised).
   Only the pixels above the lowest threshold take part; taken in decreasing
   value order, those passing a threshold are a prefix, and their 8-neighbour
   codes are updated as the threshold falls instead of recomputed.
4. Predicted boundary pixels are matched one-to-one to label boundary pixels
   no farther than maxDist x the image diagonal (`MAX_DIST`: 0.0075 PASCAL,
   0.011 NYUD). The BSDS `correspondPixels` solves a minimum-cost assignment:
   match distances plus an outlier cost of 100 x the tolerance per unmatched
   pixel. That cost is far above any match distance, so its optimum has the
   maximum number of matches and, among those, the least total distance
   (`correspond_pixels` computes this assignment exactly, with scipy's
   LAPJVsp on the sparse graph of candidate pairs plus one "unmatched" option
   per pixel). The counts need only its size, the maximum matching size,
   which `image_counts` computes exactly with depth-first augmenting-path
   searches (compiled by numba), repairing the maximum matching of the
   previous threshold from the pixels that left or joined it. Never a greedy
   or nearest-neighbour shortcut: those undercount. (scipy's
   `maximum_bipartite_matching` cannot start from a matching, and on these
   graphs it took about 27 s of CPU for one threshold, 0.1, of a 480 x 640
   map.)
5. Per image and threshold: cntR (matched label pixels), sumR (label pixels),
   cntP (matched predicted pixels), sumP (predicted pixels). ODS: counts are
   summed over the split per threshold, P = cntP / sumP, R = cntR / sumR,
   F = 2PR / (P + R), maximised over thresholds (first one on ties). OIS: each
   image takes the threshold of its own best F (first one on ties), the counts
   at those thresholds are summed, then F. AP is SEISM's `general_ap`: the
   split's precision is interpolated linearly over its recall (`interp1`;
   duplicate recalls keep their lowest threshold) at recall 0:0.01:1, grid
   points outside the measured recall range are NaN and left out, and the
   sum of the others is divided by 100. Empty cases follow SEISM: per image,
   no label boundary -> R = 1, P = 0, else no prediction -> R = 0, P = 1; on
   the split curve (`gather_measure`) no prediction wins, also when there is
   no label boundary either. F, P, R and AP are reported x100.

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
  With `label_reading="seg2bmap"` they count as 0 in the integer map.
- Arithmetic is float32 like the MATLAB/MEX code, but the triangle filter and
  gradients are numpy/scipy, so values equal up to rounding; a threshold
  falling exactly on a rounded value could flip a pixel.
- SEISM's releases and forks differ in their threshold test: its
  `read_one_cont_png` has read `im2double(E) > t` (then thinned) and, later,
  `im2single` with NMS and `E >= max(eps, t)` (the strict line commented
  out); some multi-task forks read `E / 255 >= t`. `threshold_rule` selects
  between the two tests; the default follows the multi-task protocol's.

Speed: 0.13 CPU-s per 480 x 640 map; the 654-image NYUD val split takes
about 42 s on 2 cores (pyEdgeEval: about 90 CPU-s per map). Measured by
tools/bench_edge_eval.py; docs/RESULTS.md section 5 has the numbers.

Example:
>>> import numpy as np
>>> label = np.zeros((60, 80), "uint8"); label[10:50, 40] = 1
>>> prediction = np.zeros((60, 80), "float32"); prediction[10:50, 40] = 0.9
>>> scores = evaluate_boundaries([prediction], [label], dataset="nyud", workers=0, progress=False)
>>> round(scores["ods_f"], 2)  # every thinned label pixel has a predicted partner within 1.1 px
100.0
"""

from __future__ import annotations

import collections
import concurrent.futures
import math
import multiprocessing
import os
import time
import types
from typing import Iterable, Sequence

import numba
import numpy as np
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from keras_mtcl.tasks import IGNORE_INDEX

# The 101 thresholds of the multi-task benchmarks' SEISM runs.
THRESHOLDS = (0.001,) + tuple(round(0.01 * i, 2) for i in range(1, 100)) + (0.999,)
# Match tolerance, as a fraction of the image diagonal.
MAX_DIST = types.MappingProxyType({"pascal": 0.0075, "nyud": 0.011})
# Threshold tests: "strict" E > t on the 8-bit map in float32 (SEISM), "inclusive" E >= max(eps, t).
THRESHOLD_RULES = ("strict", "inclusive")
# Label readings: "given" (pixels equal to 1 are the boundaries), "seg2bmap" (thin(seg2bmap(label))).
LABEL_READINGS = ("given", "seg2bmap")
# The label reading of each dataset's protocol (`evaluate_boundaries(dataset=...)`).
DATASET_LABEL_READING = types.MappingProxyType({"nyud": "seg2bmap", "pascal": "given"})
# Non-maximum suppression (SEISM's edgesNmsMex(E, O, 1, 5, 1.01) after convTri(E, 4)).
NMS_RADIUS = 1
NMS_BORDER = 5
NMS_MULTIPLIER = 1.01
ORIENTATION_SMOOTHING = 4
# MATLAB's eps: inclusive thresholds are max(eps, t).
_EPS = float(np.finfo(np.float64).eps)
# MATLAB's 0:0.01:1: the colon operator counts up from 0 to the middle and down from 1 after it.
_AP_STEPS = np.arange(101)
_AP_GRID = np.where(_AP_STEPS <= 50, _AP_STEPS * 0.01, 1.0 - (100 - _AP_STEPS) * 0.01)


class BoundaryLabelError(ValueError):
    """A boundary label or prediction holds values outside the expected range."""


# ----------------------------------------------------------------------------
# Label boundaries
# ----------------------------------------------------------------------------


def seg2bmap(segmentation: np.ndarray) -> np.ndarray:
    """Boundary pixels of an integer map, as the BSDS `seg2bmap` marks them.

    A pixel is a boundary when its right, lower or lower-right neighbour
    holds another value. On the last row only the right neighbour counts, on
    the last column only the lower one, and the last pixel is never a
    boundary. Both sides of a 1-pixel line are marked (the pixel before it
    and the line itself): the band is 2 pixels wide until `thin`.

    Args:
        segmentation: (H, W) integer (or boolean) map.

    Returns:
        (H, W) boolean map.

    Example:
    >>> import numpy as np
    >>> seg = np.zeros((4, 5), int); seg[:, 2] = 1
    >>> seg2bmap(seg).astype(int)
    array([[0, 1, 1, 0, 0],
           [0, 1, 1, 0, 0],
           [0, 1, 1, 0, 0],
           [0, 1, 1, 0, 0]])
    """
    seg = np.asarray(segmentation)
    if seg.ndim != 2 or not seg.size:
        raise ValueError(f"`segmentation` must be a non-empty (H, W) map. Received: segmentation.shape={seg.shape}")
    boundary = np.zeros(seg.shape, bool)
    boundary[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    boundary[:-1, :] |= seg[:-1, :] != seg[1:, :]
    boundary[:-1, :-1] |= seg[:-1, :-1] != seg[1:, 1:]
    return boundary


def nyud_boundaries(label: np.ndarray, ignore_value: int = IGNORE_INDEX) -> np.ndarray:
    """Label boundary map of NYUD-v2 as the multi-task protocol builds it.

    The wrapper around SEISM (ATRC/InvPT, `db_gt`'s NYUD branch) reads the
    GT edge PNG as an integer map, and SEISM's `edgesEvalImg` matches against
    `bwmorph(seg2bmap(G), 'thin', Inf)`: both sides of every 1-pixel edge line
    are marked, then thinned back to one pixel, which may sit on either side
    of the original line. The {0, 1} map the dataset builder stores gives the
    same result as the {0, 255} PNG. Pixels equal to `ignore_value` count as 0
    and are never boundaries.

    Args:
        label: (H, W) or (H, W, 1) map in {0, 1}, `ignore_value` ignored.
        ignore_value: label value of ignored pixels.

    Returns:
        (H, W) boolean boundary map, 1 pixel wide.

    Example:
    >>> import numpy as np
    >>> label = np.zeros((5, 6), "uint8"); label[1:4, 3] = 1
    >>> nyud_boundaries(label).astype(int)  # seg2bmap marks columns 2 and 3 of rows 0..3; thinned
    array([[0, 0, 0, 0, 0, 0],
           [0, 0, 1, 0, 0, 0],
           [0, 0, 1, 0, 0, 0],
           [0, 0, 1, 0, 0, 0],
           [0, 0, 0, 0, 0, 0]])
    """
    label = _as_map(label, "label", 0)
    ignored = label == ignore_value
    integers = np.where(ignored, 0, label).astype(np.int64)
    return thin(seg2bmap(integers)) & ~ignored


def pascal_boundaries(label_map: np.ndarray) -> np.ndarray:
    """Label boundary map of PASCAL-Context as SEISM builds it from the context `LabelMap`.

    SEISM's `db_gt` relabels the connected regions of the 459-class
    `LabelMap` (4-connectivity) and `edgesEvalImg` takes
    `bwmorph(seg2bmap(G), 'thin', Inf)`. Relabelling cannot change the
    boundary map: two 8-adjacent pixels that keep one label but fall in
    different regions meet only diagonally, and then the right or lower
    neighbour of the upper one already differs from it. So this is
    `thin(seg2bmap(label_map))`.

    The dataset builder (`keras_mtcl.data.pascal`) stores another reading,
    the thinned non-zero Laplacian of the same map (both sides of a class
    change, thinned to either), which the benchmark uses as given.

    Args:
        label_map: (H, W) integer class map.

    Returns:
        (H, W) boolean boundary map, 1 pixel wide.
    """
    label_map = np.asarray(label_map)
    if label_map.ndim != 2:
        raise ValueError(f"`label_map` must be an (H, W) map. Received: label_map.shape={label_map.shape}")
    return thin(seg2bmap(label_map))


# ----------------------------------------------------------------------------
# Non-maximum suppression
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


@numba.njit(cache=True, nogil=True)
def _suppressed(edges, flat, cos, sin, radius: int, multiplier):
    """(N,) bool: pixel `flat[n]`'s value x `multiplier` is below the map's bilinear value at some
    distance 1..radius along (cos, sin)[n], on either side; coordinates clamped inside the map.

    All arithmetic is float32, in the order SEISM's `edgesNmsMex` interpolates.
    """
    h, w = edges.shape
    one = np.float32(1)
    x_max = np.float32(w - 1.001)
    y_max = np.float32(h - 1.001)
    result = np.zeros(len(flat), np.bool_)
    for n in range(len(flat)):
        row, col = divmod(flat[n], w)
        value = edges[row, col] * multiplier
        for d in range(-radius, radius + 1):
            if d == 0:
                continue
            x = min(max(np.float32(col) + np.float32(d) * cos[n], np.float32(0)), x_max)
            y = min(max(np.float32(row) + np.float32(d) * sin[n], np.float32(0)), y_max)
            x0, y0 = int(x), int(y)
            dx, dy = x - np.float32(x0), y - np.float32(y0)
            neighbour = (
                edges[y0, x0] * (one - dx) * (one - dy)
                + edges[y0, x0 + 1] * dx * (one - dy)
                + edges[y0 + 1, x0] * (one - dx) * dy
                + edges[y0 + 1, x0 + 1] * dx * dy
            )
            if value < neighbour:
                result[n] = True
                break
    return result


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
    return _edge_nms(edges, orientation, radius, border, multiplier, None)


def _edge_nms(edges, orientation, radius, border, multiplier, floor):
    """`edge_nms`, leaving out pixels not above `floor` (they stay below every threshold anyway)."""
    edges = np.ascontiguousarray(edges, np.float32)
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
    flat = np.flatnonzero(edges if floor is None else edges > floor)
    if flat.size:
        # A flat neighbourhood can give 0/0: compare along the rows there.
        angle = np.nan_to_num(np.asarray(orientation, np.float32).reshape(-1)[flat], nan=0.0)
        suppressed = _suppressed(edges, flat, np.cos(angle), np.sin(angle), int(radius), np.float32(multiplier))
        result.reshape(-1)[flat[suppressed]] = 0
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


# ----------------------------------------------------------------------------
# Morphological thinning
# ----------------------------------------------------------------------------

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


def _neighbour_table(flat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, 8) indices into `flat` of each pixel's neighbours x1..x8; N where the neighbour is not in `flat`.

    `flat` holds C-order flat indices (row * W + col) of N pixels of an (H, W) image.
    """
    return _neighbour_table_kernel(np.asarray(flat, np.int64), int(shape[0]), int(shape[1]), np.array(_NEIGHBOURS))


@numba.njit(cache=True, nogil=True)
def _neighbour_table_kernel(flat, h: int, w: int, offsets):
    n = len(flat)
    index = np.full(h * w, n, np.int64)
    for i in range(n):
        index[flat[i]] = i
    table = np.full((n, 8), n, np.int64)
    for i in range(n):
        row, col = divmod(flat[i], w)
        for k in range(8):
            r, c = row + offsets[k, 0], col + offsets[k, 1]
            if 0 <= r < h and 0 <= c < w:
                table[i, k] = index[r * w + c]
    return table


def _neighbour_codes(on: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(N + 1,) uint8 8-neighbour codes (bit k: neighbour x_{k+1} is on) of the pixels of a `_neighbour_table`."""
    codes = np.zeros(len(table) + 1, np.uint8)
    codes[:-1] = np.packbits(on[table], axis=1, bitorder="little").reshape(-1)
    return codes


@numba.njit(cache=True, nogil=True)
def _switch_on(start: int, stop: int, on, codes, table) -> None:
    """Turns nodes start..stop-1 on and updates their neighbours' codes, in place."""
    for node in range(start, stop):
        on[node] = True
        for k in range(8):
            codes[table[node, k]] |= np.uint8(1 << ((k + 4) % 8))  # this node is x_{k+5} of that neighbour


@numba.njit(cache=True, nogil=True)
def _thin_nodes(on, codes, table, limit: int) -> None:
    """Thins, in place, the first `limit` pixels of a `_neighbour_table` that are on.

    `on` holds N + 1 flags (the last, for "outside", False) and `codes` their
    8-neighbour codes (`_neighbour_codes`), kept up to date as pixels are
    deleted; pixels from `limit` on are off. Repeats the two parallel
    subiterations until nothing changes: each deletes, at once, the pixels
    its table marks, judged on the codes from before any deletion.
    """
    alive = np.flatnonzero(on[:limit])
    deleted = np.empty(len(alive), np.int64)
    alive_count = len(alive)
    changed = True
    while changed:
        changed = False
        for deletable in (_THIN_FIRST, _THIN_SECOND):
            count = 0
            for i in range(alive_count):
                if deletable[codes[alive[i]]]:
                    deleted[count] = alive[i]
                    count += 1
            if count == 0:
                continue
            changed = True
            for i in range(count):
                node = deleted[i]
                on[node] = False
                for k in range(8):
                    codes[table[node, k]] &= np.uint8(255 - (1 << ((k + 4) % 8)))
            kept = 0
            for i in range(alive_count):
                if on[alive[i]]:
                    alive[kept] = alive[i]
                    kept += 1
            alive_count = kept


def thin(binary: np.ndarray) -> np.ndarray:
    """Morphological thinning to 1-pixel lines (MATLAB `bwmorph(binary, 'thin', Inf)`).

    Repeats the two parallel subiterations of Lam, Lee & Suen (1992) until
    nothing changes; pixels outside the image count as background. Any
    memory layout (C, Fortran, strided views) gives the same result.

    Args:
        binary: (H, W) boolean map.

    Returns:
        (H, W) boolean map, a subset of the input.
    """
    binary = np.asarray(binary, bool)
    if binary.ndim != 2:
        raise ValueError(f"`binary` must be an (H, W) map. Received: binary.shape={binary.shape}")
    flat = np.flatnonzero(binary)  # C-order indices whatever the memory layout
    on = np.ones(len(flat) + 1, bool)
    on[-1] = False
    table = _neighbour_table(flat, binary.shape)
    _thin_nodes(on, _neighbour_codes(on, table), table, len(flat))
    result = np.zeros(binary.size, bool)
    result[flat[on[:-1]]] = True
    return result.reshape(binary.shape)



# ----------------------------------------------------------------------------
# Matching
# ----------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _pairs_within(predicted, truth, h: int, w: int, radius: float):
    """(i, j, distance) of every pair of pixels predicted[i], truth[j] no farther apart than `radius`.

    `predicted` and `truth` hold C-order flat indices (row * W + col) of
    pixels of an (H, W) image; pairs come grouped by j.
    """
    index = np.full(h * w, -1, np.int32)
    for i in range(len(predicted)):
        index[predicted[i]] = i
    reach = int(radius)
    offsets = [
        (dr, dc)
        for dr in range(-reach, reach + 1)
        for dc in range(-reach, reach + 1)
        if dr * dr + dc * dc <= radius * radius
    ]
    count = 0
    for fill in range(2):  # count, then fill
        if fill:
            pair_i = np.empty(count, np.int64)
            pair_j = np.empty(count, np.int64)
            distance = np.empty(count, np.float64)
            count = 0
        for j in range(len(truth)):
            row, col = divmod(truth[j], w)
            inside = reach <= row < h - reach and reach <= col < w - reach
            for dr, dc in offsets:
                if not inside and not (0 <= row + dr < h and 0 <= col + dc < w):
                    continue
                i = index[truth[j] + dr * w + dc]
                if i >= 0:
                    if fill:
                        pair_i[count] = i
                        pair_j[count] = j
                        distance[count] = math.sqrt(dr * dr + dc * dc)
                    count += 1
    return pair_i, pair_j, distance


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
    i, j = _min_cost_matching(*_pairs_within(p_flat, t_flat, h, w, radius), radius)
    match_predicted = np.full(h * w, -1, np.int64)
    match_truth = np.full(h * w, -1, np.int64)
    match_predicted[p_flat[i]] = t_flat[j]
    match_truth[t_flat[j]] = p_flat[i]
    return match_predicted.reshape(h, w), match_truth.reshape(h, w)


@numba.njit(cache=True, nogil=True)
def _adjacency(i, j, num_nodes: int):
    """CSR lists (ptr (num_nodes + 1,), adj) of the j's of each i over pairs (i, j), by counting sort."""
    ptr = np.zeros(num_nodes + 1, np.int64)
    for node in i:
        ptr[node + 1] += 1
    ptr = np.cumsum(ptr)
    fill = ptr[:-1].copy()
    adj = np.empty(len(i), np.int64)
    for e in range(len(i)):
        adj[fill[i[e]]] = j[e]
        fill[i[e]] += 1
    return ptr, adj


@numba.njit(cache=True, nogil=True)
def _augment(source, ptr, adj, mate_a, mate_b, usable, seen, stamp, stack, via, edge):
    """Depth-first search for an augmenting path from the free node `source` of side A; augments it.

    Side B's node b is entered once per stamp (`seen[b] == stamp`); it ends
    the path when free, else the search goes on from its partner. With
    `usable` given (length of B), only B nodes flagged there are entered.
    Returns True when a path was found (the matching grew by one).
    """
    depth = 0
    stack[0] = source
    edge[0] = ptr[source]
    while depth >= 0:
        a = stack[depth]
        if edge[depth] == ptr[a + 1]:
            depth -= 1
            continue
        b = adj[edge[depth]]
        edge[depth] += 1
        if seen[b] == stamp or (len(usable) and not usable[b]):
            continue
        seen[b] = stamp
        via[depth] = b
        if mate_b[b] < 0:
            for d in range(depth + 1):
                mate_a[stack[d]] = via[d]
                mate_b[via[d]] = stack[d]
            return True
        depth += 1
        stack[depth] = mate_b[b]
        edge[depth] = ptr[stack[depth]]
    return False


@numba.njit(cache=True, nogil=True)
def _augment_all(sources, ptr, adj, mate_a, mate_b, usable, seen, stamp, stack, via, edge):
    """Searches from the free sources until none has an augmenting path; returns the next stamp.

    In passes over the sources, as Hopcroft-Karp's phases: within a pass,
    nodes stay marked once entered, so its paths are vertex-disjoint and a
    failed search is never repeated. A pass that augmented nothing ran with
    one matching throughout, so then no source has an augmenting path.
    """
    while True:
        found = False
        for source in sources:
            if mate_a[source] < 0 and _augment(source, ptr, adj, mate_a, mate_b, usable, seen, stamp, stack, via, edge):
                found = True
        stamp += 1
        if not found:
            return stamp


@numba.njit(cache=True, nogil=True)
def _threshold_counts(passing, table, countable, node_of, p_ptr, p_adj, t_ptr, t_adj):
    """(T, 2) int64: matched pixels and predicted pixels at each threshold, from the highest down.

    `passing[k]`: how many domain pixels (in decreasing value order) pass
    threshold k; `table`: their `_neighbour_table`; `countable`: not
    ignored; `node_of`: the domain pixels that have a label pixel within
    the tolerance (matching candidates), increasing; `p_ptr`/`p_adj` and
    `t_ptr`/`t_adj`: the candidate pairs as adjacency lists both ways.

    Each threshold's maximum matching is repaired from the previous one's.
    Two stages keep it maximum: (1) predicted pixels that disappeared
    (thinning is not monotone) free their partners, and only paths from
    those label pixels through the other remaining pixels can augment; (2)
    pixels that appeared are unmatched, so they can only end a path:
    searching from each of them finds every augmenting path left.
    """
    levels = len(passing)
    counts = np.zeros((levels, 2), np.int64)
    num_domain = table.shape[0]
    num_predicted = len(node_of)
    num_truth = len(t_ptr) - 1
    base_on = np.zeros(num_domain + 1, np.bool_)
    base_codes = np.zeros(num_domain + 1, np.uint8)
    mate_p = np.full(num_predicted, -1, np.int64)
    mate_t = np.full(num_truth, -1, np.int64)
    previous = np.zeros(num_predicted, np.bool_)
    present = np.zeros(num_predicted, np.bool_)
    usable = np.zeros(num_predicted, np.bool_)
    no_filter = np.zeros(0, np.bool_)
    seen_p = np.zeros(num_predicted, np.int64)
    seen_t = np.zeros(num_truth, np.int64)
    stack = np.empty(max(num_predicted, num_truth) + 1, np.int64)
    via = np.empty_like(stack)
    edge = np.empty_like(stack)
    freed = np.empty(num_truth, np.int64)
    new = np.empty(num_predicted, np.int64)
    stamp = 1
    switched = 0
    for k in range(levels - 1, -1, -1):
        if k < levels - 1 and passing[k] == passing[k + 1]:
            counts[k] = counts[k + 1]  # the same pixels pass: the same thinned map
            continue
        _switch_on(switched, passing[k], base_on, base_codes, table)
        switched = passing[k]
        on = base_on.copy()
        _thin_nodes(on, base_codes.copy(), table, switched)
        predicted = 0
        for node in range(switched):
            if on[node] and countable[node]:
                predicted += 1
        counts[k, 1] = predicted
        changed = False
        for i in range(num_predicted):
            present[i] = node_of[i] < switched and on[node_of[i]]
            changed |= present[i] != previous[i]
        if k < levels - 1 and not changed:
            counts[k, 0] = counts[k + 1, 0]  # the same candidates: the same matching
            continue
        num_freed = 0
        num_new = 0
        for i in range(num_predicted):
            if mate_p[i] >= 0 and not present[i]:
                mate_t[mate_p[i]] = -1
                freed[num_freed] = mate_p[i]
                num_freed += 1
                mate_p[i] = -1
            usable[i] = previous[i] and present[i]
            if present[i] and not previous[i]:
                new[num_new] = i
                num_new += 1
        stamp = _augment_all(freed[:num_freed], t_ptr, t_adj, mate_t, mate_p, usable, seen_p, stamp, stack, via, edge)
        # Stage 2 searches from the smaller side: the new pixels, or the free label pixels through
        # the present pixels (a path found from there can only end at a new pixel).
        num_free = 0
        for j in range(num_truth):
            if mate_t[j] < 0 and t_ptr[j + 1] > t_ptr[j]:
                freed[num_free] = j
                num_free += 1
        if num_free < num_new:
            stamp = _augment_all(freed[:num_free], t_ptr, t_adj, mate_t, mate_p, present, seen_p, stamp, stack, via, edge)
        else:
            stamp = _augment_all(new[:num_new], p_ptr, p_adj, mate_p, mate_t, no_filter, seen_t, stamp, stack, via, edge)
        previous[:] = present
        counts[k, 0] = np.count_nonzero(mate_p >= 0)
    return counts


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


def _check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}. Received: {name}={value!r}")


def _as_map(array, argument, index):
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(
            f"Each {argument} must be an (H, W) or (H, W, 1) map. Received: {argument}[{index}].shape={array.shape}"
        )
    return array


def _prepare(prediction, label, ignore_value, threshold_rule="strict", label_reading="given", index=0):
    """Validates and reads one image; returns (probabilities float32, boundary bool, ignored bool)."""
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
        if threshold_rule == "strict":
            # The 8-bit PNG SEISM reads: MATLAB's uint8(255 p) rounds half away from zero.
            prediction = np.floor(prediction.astype(np.float64) * 255 + 0.5).astype(np.float32) / np.float32(255)
    ignored = label == ignore_value
    unexpected = ~(ignored | (label == 0) | (label == 1))
    if unexpected.any():
        values = np.unique(label[unexpected])[:5].tolist()
        raise BoundaryLabelError(
            f"Boundary labels must hold 0, 1 or the ignore value {ignore_value}. "
            f"Received: label {index} with values {values}"
        )
    if label_reading == "seg2bmap":
        boundary = nyud_boundaries(label, ignore_value)
    else:
        boundary = label == 1
    return np.ascontiguousarray(prediction), np.ascontiguousarray(boundary), np.ascontiguousarray(ignored)


def _levels(thresholds, threshold_rule):
    """The float32 comparison values of the thresholds under a rule."""
    if threshold_rule == "strict":
        return np.array(thresholds, np.float32)
    return np.array([max(_EPS, t) for t in thresholds], np.float32)


def image_counts(
    prediction: np.ndarray,
    label: np.ndarray,
    max_dist: float,
    thresholds: Sequence[float] = THRESHOLDS,
    nms: bool = True,
    ignore_value: int = IGNORE_INDEX,
    threshold_rule: str = "strict",
    label_reading: str = "given",
) -> np.ndarray:
    """Boundary match counts of one image at every threshold.

    Args:
        prediction: (H, W) or (H, W, 1) probabilities in [0, 1], or uint8.
        label: (H, W) or (H, W, 1) in {0, 1}, `ignore_value` ignored.
        max_dist: tolerance as a fraction of the image diagonal (`MAX_DIST`).
        thresholds: increasing thresholds.
        nms: apply `edge_nms` first (SEISM does; False evaluates the map as given).
        ignore_value: label value of pixels to leave out of both maps.
        threshold_rule: `"strict"` (a pixel is a boundary when its 8-bit
            value is > t, in float32; SEISM) or `"inclusive"` (>= max(eps, t)
            on the map as given), before thinning.
        label_reading: `"given"` (label pixels equal to 1 are the boundaries)
            or `"seg2bmap"` (`nyud_boundaries` of the label, NYUD's protocol).

    Returns:
        (T, 4) int64 array of (cntR, sumR, cntP, sumP) per threshold.

    Raises:
        BoundaryLabelError: a label value outside {0, 1, ignore_value} or a
            prediction outside [0, 1].
    """
    _check_max_dist(max_dist)
    thresholds = _check_thresholds(thresholds)
    _check_choice(threshold_rule, "threshold_rule", THRESHOLD_RULES)
    _check_choice(label_reading, "label_reading", LABEL_READINGS)
    probabilities, boundary, ignored = _prepare(prediction, label, ignore_value, threshold_rule, label_reading)
    return _image_counts(probabilities, boundary, ignored, max_dist, thresholds, nms, threshold_rule)


def _image_counts(probabilities, boundary, ignored, max_dist, thresholds, nms, threshold_rule="strict"):
    h, w = probabilities.shape
    radius = max_dist * math.hypot(h, w)
    strict = threshold_rule == "strict"
    levels = _levels(thresholds, threshold_rule)
    if nms:
        floor = levels[0] if strict else np.nextafter(levels[0], np.float32(-1))
        edges = _edge_nms(probabilities, None, NMS_RADIUS, NMS_BORDER, NMS_MULTIPLIER, floor)
    else:
        edges = probabilities
    flat_edges = edges.reshape(-1)
    # The pixels that are a boundary at some threshold (ignored ones included: they take part in
    # thinning) and their 8-neighbour table, once per image; thinning works on these alone.
    # In decreasing value order, the pixels that pass a threshold are the first `passing[k]`.
    domain = np.flatnonzero(flat_edges > levels[0] if strict else flat_edges >= levels[0])
    domain = domain[np.argsort(-flat_edges[domain], kind="stable")]
    table = _neighbour_table(domain, (h, w))
    ordered = flat_edges[domain][::-1]
    passing = len(domain) - np.searchsorted(ordered, levels, side="right" if strict else "left")
    # Predicted pixels: domain pixels not ignored. Matching candidates: those with a label pixel
    # within the tolerance.
    countable = ~ignored.reshape(-1)[domain]
    truth_flat = np.flatnonzero(boundary)
    counted = np.flatnonzero(countable)
    pair_i, pair_j, _ = _pairs_within(domain[counted], truth_flat, h, w, radius)
    linked = np.zeros(len(counted), bool)
    linked[pair_i] = True
    node_of = counted[linked]
    pair_i = (np.cumsum(linked) - 1)[pair_i]
    p_ptr, p_adj = _adjacency(pair_i, pair_j, len(node_of))
    t_ptr, t_adj = _adjacency(pair_j, pair_i, len(truth_flat))
    matched = _threshold_counts(passing, table, countable, node_of, p_ptr, p_adj, t_ptr, t_adj)
    counts = np.zeros((len(thresholds), 4), np.int64)
    counts[:, 0] = counts[:, 2] = matched[:, 0]
    counts[:, 1] = len(truth_flat)
    counts[:, 3] = matched[:, 1]
    return counts


def _precision_recall(cnt_r, sum_r, cnt_p, sum_p, split_curve=False):
    """SEISM's P and R with its empty cases (arrays of any shape).

    Per image (`eval_cont`, `general_ois`) no label boundary gives R = 1,
    P = 0 first; on the split's curve (`gather_measure`, `split_curve=True`)
    no prediction gives R = 0, P = 1 even when there is no label boundary.
    """
    cnt_r, sum_r, cnt_p, sum_p = (np.asarray(v, np.float64) for v in (cnt_r, sum_r, cnt_p, sum_p))
    recall = np.where(sum_r == 0, 1.0, cnt_r / np.maximum(sum_r, 1))
    precision = np.where(sum_r == 0, 0.0, cnt_p / np.maximum(sum_p, 1))
    no_prediction = (sum_p == 0) if split_curve else (sum_p == 0) & (sum_r != 0)
    recall = np.where(no_prediction, 0.0, recall)
    precision = np.where(no_prediction, 1.0, precision)
    return precision, recall


def _f_measure(precision, recall):
    total = precision + recall
    return np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1), 0.0)


def average_precision(precision: Sequence[float], recall: Sequence[float]) -> float:
    """SEISM's `general_ap`: precision interpolated over recall on 0:0.01:1, summed / 100.

    Duplicate recalls keep the precision of their first entry (the lowest
    threshold, MATLAB's `unique`). `interp1` is linear between the measured
    recalls and NaN outside their range, and NaNs are left out of the sum: a
    curve whose recalls span [0.2, 0.8] sums 61 grid points. Fewer than two
    distinct recalls give 0.

    Args:
        precision: (T,) precision per threshold, as fractions.
        recall: (T,) recall per threshold, as fractions.

    Returns:
        AP as a fraction.

    Example:
    >>> round(average_precision([0.3, 0.6, 0.9], [0.8, 0.5, 0.2]), 4)  # P = 1.1 - R on [.2, .8]: 61 x .6 / 100
    0.366
    """
    precision = np.asarray(precision, np.float64)
    recall = np.asarray(recall, np.float64)
    if precision.shape != recall.shape or precision.ndim != 1:
        raise ValueError(
            "`precision` and `recall` must be 1-D and of one length. "
            f"Received: precision.shape={precision.shape}, recall.shape={recall.shape}"
        )
    unique_recall, first = np.unique(recall, return_index=True)
    if len(unique_recall) < 2:
        return 0.0
    inside = (_AP_GRID >= unique_recall[0]) & (_AP_GRID <= unique_recall[-1])
    return float(np.interp(_AP_GRID[inside], unique_recall, precision[first]).sum() / 100.0)


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
    precision, recall = _precision_recall(*(v.sum(0) for v in (cnt_r, sum_r, cnt_p, sum_p)), split_curve=True)
    f = _f_measure(precision, recall)
    best = int(np.argmax(f))
    # OIS: each image at its own best threshold (first on ties).
    image_f = _f_measure(*_precision_recall(cnt_r, sum_r, cnt_p, sum_p))
    choice = np.argmax(image_f, axis=1)
    rows = np.arange(len(counts))
    ois_p, ois_r = _precision_recall(*(v[rows, choice].sum() for v in (cnt_r, sum_r, cnt_p, sum_p)))
    ois_f = _f_measure(ois_p, ois_r)
    return {
        "ods_f": 100.0 * float(f[best]),
        "ods_precision": 100.0 * float(precision[best]),
        "ods_recall": 100.0 * float(recall[best]),
        "ods_threshold": thresholds[best],
        "ois_f": 100.0 * float(ois_f),
        "ois_precision": 100.0 * float(ois_p),
        "ois_recall": 100.0 * float(ois_r),
        "ap": 100.0 * average_precision(precision, recall),
        "num_images": len(counts),
        "thresholds": thresholds,
        "precision": (100.0 * precision).tolist(),
        "recall": (100.0 * recall).tolist(),
        "f": (100.0 * f).tolist(),
    }


def _count_task(task):
    index, prediction, label, options = task
    probabilities, boundary, ignored = _prepare(
        prediction, label, options["ignore_value"], options["threshold_rule"], options["label_reading"], index
    )
    return index, _image_counts(
        probabilities,
        boundary,
        ignored,
        options["max_dist"],
        options["thresholds"],
        options["nms"],
        options["threshold_rule"],
    )


class _Progress:
    """Keras' progress bar over images; its time estimate starts once `warmup` images are done.

    The first results include starting the worker processes, and with W
    workers they arrive W at a time: an estimate from them is off by far.
    The bar stays silent until `warmup` images are done, then shows the time
    per image and the time left, both from the last `warmup` images only
    (`recent_seconds_per_image`), so the slow start weighs nothing.
    """

    def __init__(self, enabled: bool, total: int | None, warmup: int):
        self.done = 0
        self.warmup = warmup
        self.bar = None
        self.times = collections.deque(maxlen=max(int(warmup), 2))  # when each of the last images finished
        if enabled:
            from keras.utils import Progbar

            progress = self

            class RecentRateBar(Progbar):
                def _estimate_step_duration(self, current, now):
                    recent = progress.recent_seconds_per_image()
                    return super()._estimate_step_duration(current, now) if recent is None else recent

            print(f"Boundary evaluation of {total} images:" if total is not None else "Boundary evaluation:")
            self.bar = RecentRateBar(total, verbose=0, interval=0.0, unit_name="image")

    def recent_seconds_per_image(self) -> float | None:
        """Seconds per image over the last `warmup` images (None before two are done)."""
        if len(self.times) < 2:
            return None
        return (self.times[-1] - self.times[0]) / (len(self.times) - 1)

    def step(self):
        self.done += 1
        self.times.append(time.time())
        if self.bar is None:
            return
        if self.done >= self.warmup or self.done == self.bar.target:
            self.bar.verbose = 1
        self.bar.update(self.done)

    def close(self):
        if self.bar is not None and self.done and self.bar.target is None:
            self.bar.verbose = 1
            self.bar.update(self.done, finalize=True)


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
    threshold_rule: str = "strict",
    label_reading: str | None = None,
) -> dict:
    """Boundary benchmark of a split: ODS F, OIS F and AP (x100), SEISM protocol.

    Args:
        predictions: iterable of (H, W) or (H, W, 1) probability maps in
            [0, 1], or uint8 maps; consumed lazily.
        labels: iterable of label maps in {0, 1} (255 ignored), one per prediction.
        max_dist: tolerance as a fraction of the image diagonal; give this or `dataset`.
        dataset: `"nyud"` or `"pascal"`: the tolerance of `MAX_DIST` (0.011,
            0.0075) and the label reading of `DATASET_LABEL_READING` (NYUD:
            `nyud_boundaries` of the stored {0, 1} map; PASCAL: as given).
        thresholds: thresholds of the curve (default the benchmark's 101).
        nms: thin maps by non-maximum suppression first, as SEISM does.
        ignore_value: label value of pixels left out of both maps.
        workers: processes evaluating images in parallel; None uses every
            CPU, 0 or 1 evaluates in this process. Workers are spawned, so a
            script that uses them needs the usual `if __name__ == "__main__":`.
        progress: show Keras' progress bar (imports Keras).
        return_counts: also return the (N, T, 4) counts under `"counts"`.
        threshold_rule: `"strict"` (SEISM: 8-bit map > t in float32) or
            `"inclusive"` (map >= max(eps, t)); see the module docstring.
        label_reading: `"given"` or `"seg2bmap"`; default: the dataset's
            (`DATASET_LABEL_READING`), `"given"` with `max_dist`.

    Returns:
        The dict of `summarize`, plus `threshold_rule` and `label_reading`.

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
        if label_reading is None:
            label_reading = DATASET_LABEL_READING[dataset]
    if label_reading is None:
        label_reading = "given"
    _check_max_dist(max_dist)
    thresholds = _check_thresholds(thresholds)
    _check_choice(threshold_rule, "threshold_rule", THRESHOLD_RULES)
    _check_choice(label_reading, "label_reading", LABEL_READINGS)
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"`workers` must be None or an integer >= 0. Received: workers={workers!r}")
    options = {
        "max_dist": float(max_dist),
        "thresholds": thresholds,
        "nms": bool(nms),
        "ignore_value": ignore_value,
        "threshold_rule": threshold_rule,
        "label_reading": label_reading,
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
    bar = _Progress(progress, total, warmup=max(3, 2 * workers))
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
    summary["threshold_rule"] = threshold_rule
    summary["label_reading"] = label_reading
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
    "DATASET_LABEL_READING",
    "LABEL_READINGS",
    "MAX_DIST",
    "NMS_BORDER",
    "NMS_MULTIPLIER",
    "NMS_RADIUS",
    "ORIENTATION_SMOOTHING",
    "THRESHOLDS",
    "THRESHOLD_RULES",
    "average_precision",
    "correspond_pixels",
    "edge_nms",
    "edge_orientation",
    "evaluate_boundaries",
    "image_counts",
    "nyud_boundaries",
    "pascal_boundaries",
    "seg2bmap",
    "summarize",
    "thin",
    "triangle_filter",
]
