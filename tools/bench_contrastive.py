"""Micro-benchmark of the contrastive regularizer: forward + backward time vs feature map size.

    KERAS_BACKEND=jax python tools/bench_contrastive.py --sizes 56x72 112x144 --batch 8
    KERAS_BACKEND=tensorflow python tools/bench_contrastive.py --selections random all --tasks nyud
    KERAS_BACKEND=jax python tools/bench_contrastive.py --fractions --tasks synthetic --sizes 16x24 --batch 8
    KERAS_BACKEND=tensorflow python tools/bench_contrastive.py --graph-size --tasks synthetic --sizes 16x24 --batch 4

For each feature map size (h x w) and source selection, the layer is called
on random features and labels of the task set and differentiated in one
compiled step: --warmup steps, then --steps timed steps; one JSON line per
configuration. `--fractions` reports instead the fraction of anchors that
find a triplet, per source task and criterion (rendered scenes with
`--tasks synthetic`); `--graph-size` the size of the differentiated step
for the first 2, 4, ... tasks. See `keras_mtcl.analysis.contrastive_bench`.
Set `PYTHONPATH=DIR` to measure another checkout's `keras_mtcl`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from keras_mtcl.analysis import contrastive_bench
from keras_mtcl.analysis.train_bench import task_specs


def parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes are HxW, e.g. 112x144. Received: {text!r}") from None
    return height, width


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(28, 36), (56, 72), (112, 144)])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=64, help="channels C_t of each feature map")
    parser.add_argument("--tasks", choices=["nyud", "pascal", "synthetic"], default="nyud")
    parser.add_argument("--selections", nargs="+", choices=["random", "all"], default=["random", "all"])
    parser.add_argument("--criterion", choices=["threshold", "ranking"], default="threshold")
    parser.add_argument("--num-anchors", type=int, default=256)
    parser.add_argument("--pool-size", type=int, default=1024)
    parser.add_argument("--xla", action="store_true", help="TensorFlow: compile with XLA (jit_compile=True)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--fractions", action="store_true", help="report triplet fractions per source and criterion")
    parser.add_argument("--graph-size", action="store_true", help="report the size of the differentiated step per task count")
    args = parser.parse_args(argv)

    import keras

    import keras_mtcl

    specs = task_specs(args.tasks)
    backend = keras.backend.backend()
    sizes = {"num_anchors": args.num_anchors, "pool_size": args.pool_size}
    if args.fractions or args.graph_size:
        if args.fractions:
            records = contrastive_bench.triplet_fractions(specs, args.sizes, args.batch, args.steps, **sizes,
                                                          scenes=args.tasks == "synthetic")
        else:
            try:
                records = contrastive_bench.graph_sizes(specs, args.sizes[0], args.batch, args.channels, **sizes,
                                                        criterion=args.criterion)
            except ValueError as error:
                parser.error(str(error))
        for record in records:
            record.update(backend=backend, package=str(Path(keras_mtcl.__file__).resolve().parents[1]))
            print(json.dumps(record), flush=True)
        return
    for size in args.sizes:
        for selection in args.selections:
            timed = contrastive_bench.time_step(specs, size, args.batch, args.channels, args.warmup, args.steps,
                                                args.xla, criterion=args.criterion, source_selection=selection, **sizes)
            print(json.dumps({
                "backend": backend, "xla": bool(args.xla) if backend == "tensorflow" else None, "tasks": args.tasks,
                "source_selection": selection, "criterion": args.criterion, "batch": args.batch, "height": size[0],
                "width": size[1], "channels": args.channels, **sizes, **timed, "cpu_count": os.cpu_count(),
            }), flush=True)


if __name__ == "__main__":
    main()
