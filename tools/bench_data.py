"""Images per second of the training input pipeline (with augmentation), per dataset.

    python tools/bench_data.py --dataset synthetic --size 480 640 --crop 448 576
    python tools/bench_data.py --dataset nyud --manual-dir ../shared/data/nyud_real10 --data-dir /tmp/tfds --split val

Reads examples once (tfds-prepared datasets, or synthetic scenes rendered in
memory beforehand, which is not timed), then times `--batches` batches of
the training pipeline after one warm-up batch
(`keras_mtcl.analysis.data_bench.pipeline_speed`). Prints a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_mtcl.analysis import data_bench  # noqa: E402
from keras_mtcl.data import list_datasets  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="synthetic", choices=list_datasets())
    parser.add_argument("--split", default="train", help="split whose examples feed the training pipeline")
    parser.add_argument("--manual-dir", default="")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--size", nargs=2, type=int, default=[480, 640], help="synthetic scene size")
    parser.add_argument("--count", type=int, default=32, help="synthetic scenes")
    parser.add_argument("--crop", nargs=2, type=int, default=[448, 576])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args(argv)
    print(json.dumps(data_bench.pipeline_speed(args.dataset, args.split, args.manual_dir, args.data_dir, args.size,
                                               args.count, args.crop, args.batch, args.batches)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
