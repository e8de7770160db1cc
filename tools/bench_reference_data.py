"""Images per second per core of the training input pipeline against the reference numpy / OpenCV DataLoader.

    python tools/bench_reference_data.py --dataset synthetic --size 480 640 --count 16 --crop 448 576 --batch 8 --batches 6
    python tools/bench_reference_data.py --dataset nyud --manual-dir ../shared/data/nyud_real10 --data-dir /tmp/tfds --split val --count 8

Reads the examples once (untimed), then times ours (tf.data, 1 and 2 threads)
and the reference chain of MTL-PyTorch / ATRC / InvPT in a PyTorch DataLoader
(1 and 2 workers) in alternating order
(`keras_mtcl.analysis.data_bench.compare_with_reference`). Prints one JSON
object; `ratio_per_core` is ours / reference. Needs torch and OpenCV
(`pip install torch opencv-python-headless`).
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
    parser.add_argument("--cores", nargs="+", type=int, default=[1, 2], help="tf.data threads / DataLoader workers")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the alternating order")
    parser.add_argument("--tasks", nargs="+", default=["semseg", "depth", "normals", "edge"])
    args = parser.parse_args(argv)
    result = data_bench.compare_with_reference(
        args.dataset, args.split, args.manual_dir, args.data_dir, args.size, args.count, args.crop, args.batch,
        args.batches, args.cores, args.rounds, args.tasks,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
