"""Speed of the Python boundary benchmark (keras_mtcl.edge_eval) on NYUD-sized maps.

Synthetic but realistic maps: label boundaries of a random Voronoi
segmentation (1 px, ~3% of the pixels, like NYUD's), predictions that blur
and shift them, miss some segments, add spurious ones and carry a smooth
low-probability background, so every threshold from 0.001 to 0.999 has work.

    python tools/bench_edge_eval.py                      # 654 maps of 480x640, every CPU
    python tools/bench_edge_eval.py --images 40 --workers 2

Prints one JSON object: seconds per image (wall and per worker), the time
extrapolated to the 654-image NYUD val split, and the scores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
from scipy import ndimage, spatial

from keras_mtcl import edge_eval

NYUD_VAL_IMAGES = 654


def voronoi_boundaries(shape, seeds, rng):
    """(H, W) bool: pixels whose Voronoi cell differs from their right or lower neighbour."""
    h, w = shape
    points = rng.uniform((0, 0), (h, w), size=(seeds, 2))
    grid = np.stack(np.mgrid[0:h, 0:w], -1).reshape(-1, 2)
    cells = spatial.cKDTree(points).query(grid)[1].reshape(h, w)
    boundary = np.zeros(shape, bool)
    boundary[:, :-1] |= cells[:, :-1] != cells[:, 1:]
    boundary[:-1, :] |= cells[:-1, :] != cells[1:, :]
    return boundary, cells


def synthetic_pair(shape, rng):
    """(prediction float32 in [0, 1], label uint8 {0, 1}) of one image."""
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
    return prediction, label.astype(np.uint8)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=NYUD_VAL_IMAGES, help="number of maps (default 654)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: every CPU)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    pairs = [synthetic_pair((args.height, args.width), rng) for _ in range(args.images)]
    generation = time.perf_counter() - start
    edge_fraction = float(np.mean([label.mean() for _, label in pairs]))

    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    start = time.perf_counter()
    scores = edge_eval.evaluate_boundaries(
        [p for p, _ in pairs], [l for _, l in pairs], dataset="nyud", workers=workers, progress=True
    )
    wall = time.perf_counter() - start
    per_image = wall / args.images
    print(
        json.dumps(
            {
                "images": args.images,
                "size": [args.height, args.width],
                "workers": workers,
                "cpus": os.cpu_count(),
                "machine": platform.processor() or platform.machine(),
                "label_edge_fraction": round(edge_fraction, 4),
                "generation_s": round(generation, 1),
                "wall_s": round(wall, 1),
                "wall_s_per_image": round(per_image, 3),
                "cpu_s_per_image": round(per_image * max(workers, 1), 3),
                "extrapolated_nyud_val_s": round(per_image * NYUD_VAL_IMAGES, 0),
                "ods_f": round(scores["ods_f"], 2),
                "ois_f": round(scores["ois_f"], 2),
                "ap": round(scores["ap"], 2),
                "ods_threshold": scores["ods_threshold"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
