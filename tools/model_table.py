"""Parameters and FLOPs of each framework x backbone, for the README's table (`keras_mtcl.analysis.flops`).

    python tools/model_table.py --backbones hrnet_w18 efficientnet_lite0 --size 448 576

Runs on the TensorFlow backend: FLOPs are counted by TensorFlow's profiler
on the inference graph (multiply-adds count 2). The contrastive regularizer
adds nothing at inference; its training cost is counted analytically: the
projectors run on 3 x num_anchors sampled vectors per image and drawn pair
(METHOD.md section 3). Prints JSON lines and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ["KERAS_BACKEND"] = "tensorflow"  # FLOPs are counted on TensorFlow graphs
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_mtcl.analysis import flops  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["tiny_cnn"])
    parser.add_argument("--frameworks", nargs="+", default=["baseline", "padnet", "mtinet"])
    parser.add_argument("--dataset", default="nyud")
    parser.add_argument("--size", nargs=2, type=int, default=[448, 576])
    args = parser.parse_args(argv)
    rows = []
    for backbone in args.backbones:
        for framework in args.frameworks:
            rows.append(flops.model_costs(backbone, framework, args.dataset, args.size))
            print(json.dumps(rows[-1]), flush=True)
    print()
    print(flops.cost_table(rows, args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
