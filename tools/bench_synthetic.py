"""Rendering speed of the procedural scenes (`keras_mtcl.data.synthetic`).

    python tools/bench_synthetic.py                       # 120x160, 240x320, 480x640
    python tools/bench_synthetic.py --size 64 80 --num 200 --workers 2
    python tools/bench_synthetic.py --tfds small --data-dir /tmp/tfds   # time a full builder preparation

For each size, renders `--num` scenes (seeds 0..num-1, after one warm-up
scene) with `render_scene`, in one process and, with `--workers` > 1, in a
process pool. Prints one JSON line per (size, workers): images/s, wall ms
per image (and CPU ms per image in one process, which other processes on a
shared machine disturb less), the 1-minute load average, and the bytes of
one example in memory. With `--tfds CONFIG`, also
prepares that `SyntheticScenes` config into `--data-dir` and prints the
time taken and the size on disk.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path


from keras_mtcl.data import synthetic


def _render(args):
    seed, height, width = args
    synthetic.render_scene(seed, height, width)
    return seed


def bench(height: int, width: int, num: int, workers: int) -> dict:
    example = synthetic.render_scene(0, height, width)  # warm-up
    jobs = [(seed, height, width) for seed in range(num)]
    start = time.perf_counter()
    cpu_start = time.process_time()
    if workers == 1:
        for job in jobs:
            _render(job)
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pool.map(_render, [(0, height, width)] * workers)  # start the workers before timing
            start = time.perf_counter()
            pool.map(_render, jobs, chunksize=max(1, num // (4 * workers)))
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    result = {
        "bench": "synthetic_render",
        "height": height,
        "width": width,
        "workers": workers,
        "images": num,
        "images_per_s": round(num / seconds, 2),
        "ms_per_image": round(1000 * seconds / num, 2),
        "example_bytes": int(sum(v.nbytes for k, v in example.items() if k != "id")),
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    if workers == 1:  # CPU time is less sensitive to other processes on a shared machine
        result["cpu_ms_per_image"] = round(1000 * cpu_seconds / num, 2)
    return result


def bench_tfds(config: str, data_dir: str) -> dict:
    from keras_mtcl.data.synthetic_builder import SyntheticScenes

    builder = SyntheticScenes(config=config, data_dir=data_dir)
    start = time.perf_counter()
    builder.download_and_prepare()
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in Path(builder.data_dir).rglob("*") if p.is_file())
    splits = {name: split.num_examples for name, split in builder.info.splits.items()}
    return {
        "bench": "synthetic_tfds_prepare",
        "config": config,
        "splits": splits,
        "seconds": round(seconds, 1),
        "images_per_s": round(sum(splits.values()) / seconds, 2),
        "disk_mb": round(size / 2**20, 1),
    }


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
            print(json.dumps(bench(height, width, num, workers)), flush=True)
    if args.tfds:
        print(json.dumps(bench_tfds(args.tfds, args.data_dir)), flush=True)


if __name__ == "__main__":
    main()
