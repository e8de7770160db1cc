"""Training throughput: baseline vs the contrastive regularizer, side by side in one process.

    KERAS_BACKEND=jax python tools/bench_train.py --backbone tiny_cnn --size 96 128 --batch 8
    KERAS_BACKEND=jax python tools/bench_train.py --backbone hrnet_w18 --size 448 576 --batch 8 --precision bf16
    KERAS_BACKEND=jax python tools/bench_train.py --backbone hrnet_w18_small_v2 --size 224 288 --batch 4 --steps 5 --rounds 4
    KERAS_BACKEND=tensorflow python tools/bench_train.py --first-step 3 --dataset synthetic --size 64 96 --batch 4 --no-jit

Each configuration (regularizer off, then on, or --configs) is fitted on one
in-memory batch: --warmup steps, then --steps timed steps; with --rounds R
(R > 1, for shared, noisy machines) all are built first, then timed in R
alternating blocks. Prints one JSON line per configuration: images/s, mean
and median step time, peak memory, parameters, and the regularizer's
overhead relative to the baseline. With --first-step R it times the first
training step instead (compilation included), each configuration in a fresh
process, R alternating repetitions, in CPU-seconds and wall seconds, then a
summary line; --compare-root DIR also runs the keras_mtcl of another
checkout, interleaved. How and what is timed: `keras_mtcl.analysis.train_bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_mtcl.analysis import train_bench  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    train_bench.add_setup_arguments(parser)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--configs", nargs="+", choices=train_bench.CONFIGS, default=list(train_bench.CONFIGS))
    parser.add_argument("--no-jit", action="store_true", help="compile(jit_compile=False)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="> 1: build every config first, then time them in alternating blocks of --steps steps")
    parser.add_argument("--first-step", type=int, default=0, metavar="R",
                        help="time the first training step (compilation included) in R alternating repetitions, "
                        "each configuration in a fresh subprocess")
    parser.add_argument("--compare-root", default=None,
                        help="with --first-step: also run every configuration with the keras_mtcl of this checkout")
    args = parser.parse_args(argv)
    try:
        setup = train_bench.BenchSetup(
            **train_bench.setup_options(args), steps=args.steps, warmup=args.warmup, configs=tuple(args.configs),
            jit_compile=not args.no_jit, rounds=args.rounds,
        )
    except ValueError as error:
        parser.error(str(error))
    emit = lambda record: print(json.dumps(record), flush=True)  # noqa: E731
    if args.first_step:
        emit({"summary": train_bench.run_first_step(setup, args.first_step, args.compare_root, emit)})
    else:
        train_bench.run(setup, emit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
