"""Speed and parity of the Python boundary benchmark (keras_mtcl.edge_eval) on NYUD-sized maps.

Synthetic NYUD-like maps (`keras_mtcl.testing.boundaries.synthetic_pair`),
scored by `evaluate_boundaries` with worker processes, as a split is:

    python tools/bench_edge_eval.py                        # 654 maps of 480x640, every CPU
    python tools/bench_edge_eval.py --images 40 --workers 2
    python tools/bench_edge_eval.py --images 40 --compare-rules        # before/after table
    python tools/bench_edge_eval.py --images 2 --pyedgeeval 2          # side by side with pyEdgeEval

Prints one JSON object: seconds per image (wall, and per worker with the
workers' start-up), the time extrapolated to the 654-image NYUD val split,
and the scores (`keras_mtcl.analysis.boundaries`). `--compare-rules` also
scores the split with the earlier conventions and under the PASCAL
protocol; `--pyedgeeval N` scores and times the first N maps with
pyEdgeEval's kernels configured to the same protocol, in one process
(`pip install pyedgeeval`; the machine may be shared: compare the ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from keras_mtcl.analysis import boundaries
from keras_mtcl.testing.boundaries import synthetic_pair


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=boundaries.NYUD_VAL_IMAGES, help="number of maps (default 654)")
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
    if not args.no_progress:
        import keras  # noqa: F401  (imported before the clock starts: the progress bar is Keras')
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    report = {"size": [args.height, args.width], "machine": platform.processor() or platform.machine()}
    report |= {"generation_s": round(generation, 1)}
    report |= boundaries.split_speed(pairs, workers, progress=not args.no_progress)
    if args.compare_rules:
        report["compare_rules"] = boundaries.compare_rules(pairs, workers)
    if args.pyedgeeval:
        report["pyedgeeval"] = boundaries.compare_with_pyedgeeval(pairs[: args.pyedgeeval])
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
