"""Rendering speed of the procedural scenes (`keras_mtcl.data.synthetic`).

    python tools/bench_synthetic.py                       # 120x160, 240x320, 480x640
    python tools/bench_synthetic.py --size 64 80 --num 200 --workers 2
    python tools/bench_synthetic.py --tfds small --data-dir /tmp/tfds   # time a full builder preparation

For each size, renders `--num` scenes (seeds 0..num-1, after one warm-up
scene) in one process and, with `--workers` > 1, in a process pool. Prints
one JSON line per (size, workers): images/s, wall ms per image (and CPU ms
per image in one process, which other processes on a shared machine
disturb less), the 1-minute load average, and the bytes of one example in
memory. With `--tfds CONFIG`, also prepares that `SyntheticScenes` config
into `--data-dir` and prints the time taken and the size on disk. See
`keras_mtcl.analysis.data_bench`.
"""

from __future__ import annotations

import argparse
import json

from keras_mtcl.analysis import data_bench


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=2, action="append", metavar=("H", "W"),
                        help="image size; repeat for several (default: 120 160, 240 320, 480 640)")
    parser.add_argument("--num", type=int, default=0,
                        help="scenes per size (default: 200 at <= 240x320, else 40)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1],
                        help="process counts to time, e.g. --workers 1 2")
    parser.add_argument("--tfds", default="", help="also prepare this SyntheticScenes config")
    parser.add_argument("--data-dir", default="", help="tfds data_dir for --tfds (required with it)")
    args = parser.parse_args(argv)
    if args.tfds and not args.data_dir:
        parser.error("--tfds needs --data-dir (the builder never writes to a default location)")
    sizes = args.size or [[120, 160], [240, 320], [480, 640]]
    for height, width in sizes:
        num = args.num or (200 if height * width <= 240 * 320 else 40)
        for workers in args.workers:
            print(json.dumps(data_bench.render_speed(height, width, num, workers)), flush=True)
    if args.tfds:
        print(json.dumps(data_bench.prepare_speed(args.tfds, args.data_dir)), flush=True)


if __name__ == "__main__":
    main()
