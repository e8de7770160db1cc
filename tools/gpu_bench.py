"""One-command GPU training benchmark: the PyTorch reference and keras_mtcl on JAX and PyTorch, side by side.

    python tools/gpu_bench.py --out bench.jsonl                       # everything, in priority order
    python tools/gpu_bench.py --groups reference --models hrnet_w18   # a part
    python tools/gpu_bench.py --dry-run                               # print the plan
    GPU_BENCH_SMOKE=1 python tools/gpu_bench.py --models tiny         # every command at 64x64, 1 step

Commands model by model (--models, default hrnet_w18, hrnet_w18_small_v2,
hrnet_w48), then group by group (--groups: reference, jax, torch; torch-jit
on request), all at --size 448 576, --batch 8, --steps timed steps after
--warmup; what each group runs: `keras_mtcl.analysis.gpu_bench`. Each
command runs with TensorFlow unimportable, under --timeout-s and an overall
--budget-s; every JSON line goes to --out (the first describes the
environment), full output to --log. `--resume PREVIOUS.jsonl` keeps the
successful lines of an earlier run and skips their commands. A table is
printed last; the exit status is 1 if any command failed.
`GPU_BENCH_SMOKE=1` shrinks every command to 64x64, batch 2, 1 warm-up and
1 timed step; `--models tiny` maps to the reference's `tiny` network and
Keras's `tiny_cnn` backbone.

On the device machine (`run` tool): it has JAX, PyTorch and timm, no
TensorFlow and no Keras. Keras travels as wheels, fetched once on a machine
with pip, in the repository root:

    echo /.whl/ >> .git/info/exclude
    P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \\
       --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl"
    python3 -m pip download $P keras==3.15.1 namex==0.1.0 optree==0.20.0

(Keras's other needs, absl-py, numpy, rich, h5py, ml-dtypes and packaging, and
what keras_mtcl imports, scipy, pillow and matplotlib, are on the machine.)
Then the `run` call, with `carry: [".whl"]` and `timeout_s: 600`:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \\
      .whl/*.whl && export PYTHONPATH=/tmp/site || exit; \\
    PYTHONUNBUFFERED=1 python3 tools/gpu_bench.py --out $OUT/bench.jsonl --budget-s 500

One call does not hold everything (each hrnet compiles for a minute or more
per configuration, a call lasts at most 10 minutes): the order puts
hrnet_w18 first. To go on in a later call, copy the returned bench.jsonl
into an ignored folder of the repository (e.g. `.bench/`, added to
.git/info/exclude), carry it with `.whl`, and add `--resume
.bench/bench.jsonl`; the new `$OUT/bench.jsonl` holds the old lines and the new ones.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Sequence

from keras_mtcl.analysis import gpu_bench

ROOT = Path(__file__).resolve().parents[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(gpu_bench.DEFAULT_MODELS), choices=sorted(gpu_bench.MODELS))
    parser.add_argument("--groups", nargs="+", default=list(gpu_bench.DEFAULT_GROUPS), choices=gpu_bench.GROUPS)
    parser.add_argument("--size", nargs=2, type=int, default=[448, 576], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "bench.jsonl"))
    parser.add_argument("--log", default=None, help="full output of every command (default: --out with .log)")
    parser.add_argument("--resume", default=None, help="an earlier --out: keep its successful lines, skip their commands")
    parser.add_argument("--timeout-s", type=float, default=420.0, help="limit of one command")
    parser.add_argument("--budget-s", type=float, default=math.inf,
                        help="overall limit: the command running then is stopped (an error line), later ones are skipped")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    args = parser.parse_args(argv)
    smoke = os.environ.get("GPU_BENCH_SMOKE", "") not in ("", "0")
    if smoke:
        args.size, args.batch, args.steps, args.warmup = [64, 64], 2, 1, 1
    commands = gpu_bench.plan(args.models, args.groups, args.size, args.batch, args.steps, args.warmup)
    if args.dry_run:
        for command in commands:
            print(f"{command.bench_id}: {command.shell()}")
        return 0
    header = {"smoke": smoke, "size": list(args.size), "batch": args.batch, "steps": args.steps}
    results = gpu_bench.run_plan(commands, args.out, ROOT, args.log, args.resume, args.timeout_s, args.budget_s, header,
                                 progress=lambda line: print(line, flush=True))
    print(gpu_bench.summary(results), flush=True)
    failed = [r["bench_id"] for r in results if "error" in r]
    if failed:
        print(f"failed: {', '.join(failed)} (see {args.log or Path(args.out).with_suffix('.log')})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
