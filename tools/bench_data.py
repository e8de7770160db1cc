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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data_bench.add_pipeline_arguments(parser)
    args = parser.parse_args(argv)
    print(json.dumps(data_bench.pipeline_speed(args.dataset, args.split, args.manual_dir, args.data_dir, args.size,
                                               args.count, args.crop, args.batch, args.batches)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
