"""Speed and parity of the Python boundary benchmark (keras_mtcl.edge_eval) on NYUD-sized maps.

Synthetic but realistic maps: label boundaries of a random Voronoi
segmentation (1 px, ~2% of the pixels, like NYUD's), predictions that blur
and shift them, miss some segments, add spurious ones and carry a smooth
low-probability background, so every threshold from 0.001 to 0.999 has work.

    python tools/bench_edge_eval.py                        # 654 maps of 480x640, every CPU
    python tools/bench_edge_eval.py --images 40 --workers 2
    python tools/bench_edge_eval.py --images 40 --compare-rules        # before/after table
    python tools/bench_edge_eval.py --images 2 --pyedgeeval 1          # side by side with pyEdgeEval

Prints one JSON object: seconds per image (wall and per worker), the time
extrapolated to the 654-image NYUD val split, and the scores. With
`--compare-rules`, the split is also scored with the earlier conventions
(label used as given, `E >= max(eps, t)`) and under the PASCAL protocol
(the builder's Laplacian label against SEISM's `pascal_boundaries`). With
`--pyedgeeval N`, the first N maps are also scored by pyEdgeEval's pieces
(`pip install pyedgeeval`, its NMS kernel, thinning and CSA
`correspond_pixels`) configured to the same protocol, one process, and both
times are reported (the machine may be shared: compare the ratio).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time

import numpy as np
from scipy import ndimage, spatial

from keras_mtcl import edge_eval

NYUD_VAL_IMAGES = 654


def voronoi_cells(shape, seeds, rng):
    """(H, W) int cell index of a random Voronoi segmentation."""
    h, w = shape
    points = rng.uniform((0, 0), (h, w), size=(seeds, 2))
    grid = np.stack(np.mgrid[0:h, 0:w], -1).reshape(-1, 2)
    return spatial.cKDTree(points).query(grid)[1].reshape(h, w)


def voronoi_boundaries(shape, seeds, rng):
    """(H, W) bool: pixels whose Voronoi cell differs from their right or lower neighbour; and the cells."""
    cells = voronoi_cells(shape, seeds, rng)
    boundary = np.zeros(shape, bool)
    boundary[:, :-1] |= cells[:, :-1] != cells[:, 1:]
    boundary[:-1, :] |= cells[:-1, :] != cells[1:, :]
    return boundary, cells


def synthetic_pair(shape, rng, with_cells=False):
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


def pyedgeeval_nms(values, orientation=None):
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


def pyedgeeval_thin(binary, thinning="bwmorph"):
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
    prediction,
    boundary,
    max_dist,
    thresholds=edge_eval.THRESHOLDS,
    threshold_rule="strict",
    orientation=None,
    edges=None,
    thinning="bwmorph",
):
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


def _scores(summary):
    return {key: round(summary[key], 2) for key in ("ods_f", "ois_f", "ap")} | {
        "ods_threshold": summary["ods_threshold"]
    }


def compare_rules(pairs, workers):
    """ODS/OIS/AP of the split under the earlier and the current conventions, both protocols."""
    predictions = [p for p, _, _ in pairs]
    labels = [l for _, l, _ in pairs]
    from keras_mtcl.data.pascal import decode_edge  # the builder's PASCAL reading (Laplacian, thinned)

    builder_labels = [decode_edge(cells, "synthetic")[..., 0] for _, _, cells in pairs]
    seism_labels = [edge_eval.pascal_boundaries(cells).astype(np.uint8) for _, _, cells in pairs]
    common = {"workers": workers, "progress": False}
    table = {
        "nyud_before (label as given, E >= t)": edge_eval.evaluate_boundaries(
            predictions, labels, dataset="nyud", threshold_rule="inclusive", label_reading="given", **common
        ),
        "nyud_seg2bmap_only (E >= t)": edge_eval.evaluate_boundaries(
            predictions, labels, dataset="nyud", threshold_rule="inclusive", **common
        ),
        "nyud_after (seg2bmap + thin, E > t on 8 bits)": edge_eval.evaluate_boundaries(
            predictions, labels, dataset="nyud", **common
        ),
        "pascal_before (builder label, E >= t)": edge_eval.evaluate_boundaries(
            predictions, builder_labels, dataset="pascal", threshold_rule="inclusive", **common
        ),
        "pascal_after (builder label, E > t on 8 bits)": edge_eval.evaluate_boundaries(
            predictions, builder_labels, dataset="pascal", **common
        ),
        "pascal_seism_reading (pascal_boundaries, E > t on 8 bits)": edge_eval.evaluate_boundaries(
            predictions, seism_labels, dataset="pascal", **common
        ),
    }
    return {name: _scores(summary) for name, summary in table.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=NYUD_VAL_IMAGES, help="number of maps (default 654)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: every CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (skips importing Keras)")
    parser.add_argument("--compare-rules", action="store_true", help="also score with the earlier conventions")
    parser.add_argument("--pyedgeeval", type=int, default=0, metavar="N", help="also time pyEdgeEval on N maps")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    pairs = [synthetic_pair((args.height, args.width), rng, with_cells=True) for _ in range(args.images)]
    generation = time.perf_counter() - start
    edge_fraction = float(np.mean([label.mean() for _, label, _ in pairs]))
    predictions = [p for p, _, _ in pairs]
    labels = [l for _, l, _ in pairs]
    if not args.no_progress:
        import keras  # noqa: F401  (imported before the clock starts: the progress bar is Keras')

    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    start = time.perf_counter()
    scores = edge_eval.evaluate_boundaries(
        predictions, labels, dataset="nyud", workers=workers, progress=not args.no_progress
    )
    wall = time.perf_counter() - start
    per_image = wall / args.images
    report = {
        "images": args.images,
        "size": [args.height, args.width],
        "workers": workers,
        "cpus": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "machine": platform.processor() or platform.machine(),
        "label_edge_fraction": round(edge_fraction, 4),
        "generation_s": round(generation, 1),
        "wall_s": round(wall, 1),
        "wall_s_per_image": round(per_image, 3),
        "cpu_s_per_image": round(per_image * max(workers, 1), 3),
        "extrapolated_nyud_val_s": round(per_image * NYUD_VAL_IMAGES, 0),
        "threshold_rule": scores["threshold_rule"],
        "label_reading": scores["label_reading"],
    } | _scores(scores)
    if args.compare_rules:
        report["compare_rules"] = compare_rules(pairs, workers)
    if args.pyedgeeval:
        n = min(args.pyedgeeval, args.images)
        max_dist = edge_eval.MAX_DIST["nyud"]
        ours = theirs = 0.0
        ours_counts, their_counts = [], []
        for prediction, label in zip(predictions[:n], labels[:n]):
            start = time.process_time()
            ours_counts.append(edge_eval.image_counts(prediction, label, max_dist, label_reading="seg2bmap"))
            ours += time.process_time() - start
            start = time.process_time()
            their_counts.append(pyedgeeval_counts(prediction, edge_eval.nyud_boundaries(label), max_dist))
            theirs += time.process_time() - start
        ours_counts, their_counts = np.stack(ours_counts), np.stack(their_counts)
        ours_summary = edge_eval.summarize(ours_counts)
        their_summary = edge_eval.summarize(their_counts)
        report["pyedgeeval"] = {
            "images": n,
            "cpu_s_per_image_ours": round(ours / n, 3),
            "cpu_s_per_image_pyedgeeval": round(theirs / n, 2),
            "speed_ratio": round(theirs / max(ours, 1e-9), 1),
            "ours": _scores(ours_summary),
            "pyedgeeval": _scores(their_summary),
            "thresholds_with_equal_counts": int(np.all(ours_counts == their_counts, axis=(0, 2)).sum()),
            "matches_ours_minus_pyedgeeval": [
                int((ours_counts[..., 0] - their_counts[..., 0]).min()),
                int((ours_counts[..., 0] - their_counts[..., 0]).max()),
            ],
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
