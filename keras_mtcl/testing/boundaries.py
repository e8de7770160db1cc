"""Boundary maps for tests and benchmarks of `keras_mtcl.edge_eval`, and pyEdgeEval configured to its protocol.

`synthetic_pair` draws NYUD-like maps: label boundaries of a random Voronoi
segmentation (1 px, ~2 % of the pixels), and predictions that blur and shift
them, miss some segments, add spurious ones and carry a smooth
low-probability background, so every threshold from 0.001 to 0.999 has work.

The `pyedgeeval_*` functions run pyEdgeEval's kernels (PyPI `pyedgeeval`, the
Python port of the BSDS/SEISM benchmark with the randomized CSA matcher; it
needs Cython and a compiler to build, so no extra installs it) configured to
the same protocol, for parity tests and side-by-side timing.

Example:
>>> import numpy as np
>>> prediction, label = synthetic_pair((48, 64), np.random.default_rng(0))
>>> prediction.shape, prediction.dtype.name, sorted(np.unique(label).tolist())
((48, 64), 'float32', [0, 1])
"""

from __future__ import annotations

import contextlib

import numpy as np
from scipy import ndimage, spatial

from keras_mtcl import edge_eval


def voronoi_cells(shape: tuple[int, int], seeds: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W) int cell index of a random Voronoi segmentation."""
    h, w = shape
    points = rng.uniform((0, 0), (h, w), size=(seeds, 2))
    grid = np.stack(np.mgrid[0:h, 0:w], -1).reshape(-1, 2)
    return spatial.cKDTree(points).query(grid)[1].reshape(h, w)


def voronoi_boundaries(
    shape: tuple[int, int], seeds: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) bool: pixels whose Voronoi cell differs from their right or lower neighbour; and the cells."""
    cells = voronoi_cells(shape, seeds, rng)
    boundary = np.zeros(shape, bool)
    boundary[:, :-1] |= cells[:, :-1] != cells[:, 1:]
    boundary[:-1, :] |= cells[:-1, :] != cells[1:, :]
    return boundary, cells


def synthetic_pair(shape: tuple[int, int], rng: np.random.Generator, with_cells: bool = False) -> tuple:
    """(prediction float32 in [0, 1], label uint8 {0, 1}) of one image (and the cell map if asked)."""
    label, cells = voronoi_boundaries(shape, 40, rng)
    kept = rng.random(cells.max() + 1) > 0.2  # miss the boundaries of ~20% of the cells
    detected = label & kept[cells]
    spurious, _ = voronoi_boundaries(shape, 8, rng)
    ridge = detected.astype(np.float32) * rng.uniform(0.5, 1.0) + 0.5 * spurious
    ridge = np.roll(ridge, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
    blurred = ndimage.gaussian_filter(ridge, 1.5)
    blurred /= max(float(blurred.max()), 1e-6)
    background = ndimage.gaussian_filter(rng.random(shape).astype(np.float32), 4)
    background = 0.05 * (background - background.min()) / max(float(np.ptp(background)), 1e-6)
    prediction = np.clip(0.95 * blurred + background, 0.0, 1.0).astype(np.float32)
    if with_cells:
        return prediction, label.astype(np.uint8), cells
    return prediction, label.astype(np.uint8)


def pyedgeeval_nms(values: np.ndarray, orientation: np.ndarray | None = None) -> np.ndarray:
    """SEISM's NMS by pyEdgeEval's kernel (float64) on an (H, W) map, unsmoothed.

    Args:
        values: (H, W) float map (already read: 8-bit values / 255).
        orientation: (H, W) normal angles; default: from pyEdgeEval's own
            toolbox (convTri(E, 4), gradient2), as SEISM computes them.

    Returns:
        (H, W) float32 map.
    """
    from pyEdgeEval._lib import nms
    from pyEdgeEval.preprocess.nms.toolbox import conv_tri, grad2

    if orientation is None:
        ox, oy = grad2(conv_tri(values, 4))
        oxx, _ = grad2(ox)
        oxy, oyy = grad2(oy)
        with np.errstate(divide="ignore", invalid="ignore"):
            orientation = np.mod(np.arctan(oyy * np.sign(-oxy) / (oxx + np.float32(1e-5))), np.pi)
    return nms(values, np.nan_to_num(orientation), 1, 5, 1.01).astype(np.float32)


@contextlib.contextmanager
def _numpy_in1d():
    """pyEdgeEval 0.2.8's `bwmorph_thin` calls `np.in1d`, which numpy 2.4 removed: lend it `np.isin`."""
    missing = not hasattr(np, "in1d")
    if missing:
        np.in1d = np.isin
    try:
        yield
    finally:
        if missing:
            del np.in1d


def pyedgeeval_thin(binary: np.ndarray, thinning: str = "bwmorph") -> np.ndarray:
    """pyEdgeEval's thinning: `"bwmorph"` (`bwmorph_thin`, MATLAB's tables) or `"binary"`.

    `"binary"` is `binary_thin`, the BSDS Python port its evaluators use by
    default; it keeps some L-shaped corners that MATLAB's `bwmorph(., 'thin',
    Inf)` removes (38 of 300 random 20 x 24 maps differ).
    """
    from pyEdgeEval.preprocess import binary_thin, bwmorph_thin

    if thinning == "binary":
        return binary_thin(binary)
    with _numpy_in1d():
        return bwmorph_thin(binary).astype(bool)


def pyedgeeval_counts(
    prediction: np.ndarray,
    boundary: np.ndarray,
    max_dist: float,
    thresholds=edge_eval.THRESHOLDS,
    threshold_rule: str = "strict",
    orientation: np.ndarray | None = None,
    edges: np.ndarray | None = None,
    thinning: str = "bwmorph",
) -> np.ndarray:
    """(T, 4) counts of one image from pyEdgeEval's kernels, configured to this package's protocol.

    pyEdgeEval's defaults are BSDS's (its `fast_nms` smooths the map with
    convTri(E, 1) first, thresholds `E >= t`, thins with its BSDS port, reads
    label boundaries from BSDS .mat files); here it gets the same 8-bit map,
    the same label boundary map, SEISM's NMS (its `nms` kernel on the
    unsmoothed map), the same threshold test, MATLAB's thinning and its
    randomized CSA `correspond_pixels` at `max_dist`.

    Args:
        prediction: (H, W) float map in [0, 1] (quantised to 8 bits for `"strict"`) or uint8.
        boundary: (H, W) boolean label boundary map (e.g. `edge_eval.nyud_boundaries(label)`).
        max_dist: tolerance as a fraction of the image diagonal.
        thresholds: increasing thresholds.
        threshold_rule: `"strict"` (E > t in float32) or `"inclusive"` (E >= max(eps, t)).
        orientation: see `pyedgeeval_nms`.
        edges: an (H, W) NMS map to use instead of `pyedgeeval_nms`'s
            (to compare the later stages alone).
        thinning: see `pyedgeeval_thin`.

    Returns:
        (T, 4) int64 (cntR, sumR, cntP, sumP).
    """
    from pyEdgeEval._lib import correspond_pixels

    if edges is None:
        values, _, _ = edge_eval._prepare(prediction, np.zeros(boundary.shape, np.uint8), 255, threshold_rule)
        edges = pyedgeeval_nms(values, orientation)
    counts = np.zeros((len(thresholds), 4), np.int64)
    for k, level in enumerate(edge_eval._levels(list(thresholds), threshold_rule)):
        binary = pyedgeeval_thin(edges > level if threshold_rule == "strict" else edges >= level, thinning)
        match_p, match_t, _, _ = correspond_pixels(binary, boundary, max_dist=max_dist)
        counts[k] = [np.count_nonzero(match_t), np.count_nonzero(boundary), np.count_nonzero(match_p),
                     np.count_nonzero(binary)]
    return counts
