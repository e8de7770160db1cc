"""Where a training step's time goes, per operation, on JAX or PyTorch.

    KERAS_BACKEND=jax python tools/profile_step.py --backbone hrnet_w18_small_v2 --size 224 288 --batch 4
    KERAS_BACKEND=torch python tools/profile_step.py --backbone hrnet_w18_small_v2 --size 224 288 --batch 4 --regularizer

The step of `tools/bench_train.py` (same model, batch and optimiser), after
--warmup untimed steps, profiled over --steps steps by the backend's own
profiler (JAX: XLA instructions of a Perfetto trace; PyTorch: operators'
self time). Prints a table of the --top operations, then one JSON line; how
the times are read: `keras_mtcl.analysis.step_profile`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_mtcl.analysis import step_profile, train_bench  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    train_bench.add_setup_arguments(parser)
    parser.add_argument("--regularizer", action="store_true", help="with the contrastive regularizer")
    parser.add_argument("--no-jit", action="store_true",
                        help="compile(jit_compile=False); default 'auto' (compiled on JAX, eager on PyTorch)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation)")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps")
    parser.add_argument("--top", type=int, default=15, help="operations listed")
    args = parser.parse_args(argv)
    try:
        setup = train_bench.BenchSetup(**train_bench.setup_options(args), warmup=args.warmup,
                                       jit_compile=False if args.no_jit else "auto")
        profile = step_profile.profile_step(setup, args.regularizer, args.steps, args.top)
    except ValueError as error:
        parser.error(str(error))
    print(step_profile.table(profile))
    print(json.dumps(profile), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
