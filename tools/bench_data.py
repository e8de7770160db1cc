"""Images per second of the training input pipeline (with augmentation), per dataset.

    python tools/bench_data.py --dataset synthetic --size 480 640 --crop 448 576
    python tools/bench_data.py --dataset nyud --manual-dir ../shared/data/nyud_real10 --data-dir /tmp/tfds --split val

Reads examples once (tfds-prepared datasets, or synthetic scenes rendered in
memory beforehand, which is not timed), then times `--batches` batches of
the training pipeline after one warm-up batch. Prints a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="synthetic", choices=["synthetic", "nyud", "pascal", "folder"])
    parser.add_argument("--split", default="train", help="split whose examples feed the training pipeline")
    parser.add_argument("--manual-dir", default="")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--size", nargs=2, type=int, default=[480, 640], help="synthetic scene size")
    parser.add_argument("--count", type=int, default=32, help="synthetic scenes")
    parser.add_argument("--crop", nargs=2, type=int, default=[448, 576])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args(argv)

    from keras_mtcl.data import pipeline
    from keras_mtcl.data.sources import open_split

    examples, specs = open_split(
        args.dataset, args.split, manual_dir=args.manual_dir, data_dir=args.data_dir,
        synthetic_size=args.size, synthetic_count=args.count,
    )
    examples = examples.cache()
    for _ in examples:  # read or render once, untimed
        pass
    batches = pipeline.train_pipeline(examples.repeat(), specs, batch_size=args.batch, crop_size=tuple(args.crop), seed=0)
    iterator = iter(batches)
    next(iterator)
    start = time.perf_counter()
    for _ in range(args.batches):
        next(iterator)
    elapsed = time.perf_counter() - start
    print(json.dumps({
        "dataset": args.dataset, "tasks": [t.name for t in specs], "crop": args.crop, "batch": args.batch,
        "images_per_s": args.batch * args.batches / elapsed, "cpus": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
