"""One-command training benchmark: the PyTorch reference and keras_mtcl on JAX and PyTorch, side by side.

    python tools/gpu_bench.py --out bench.jsonl                       # everything, in priority order
    python tools/gpu_bench.py --groups reference --models hrnet_w18   # a part
    python tools/gpu_bench.py --dry-run                               # print the plan
    GPU_BENCH_SMOKE=1 python tools/gpu_bench.py --models tiny         # every command at 64x64, 1 step
    python tools/gpu_bench.py --device cpu --precisions fp32 --modes fp32 --models hrnet_w18_small_v2 \
        --groups reference jax tensorflow torch --size 224 288 --batch 4 --steps 5 --warmup 2 --rounds 2 \
        --reference-python /path/to/venv-with-timm/bin/python          # the CPU comparison

Commands model by model (--models, default hrnet_w18, hrnet_w18_small_v2,
hrnet_w48), then group by group (--groups: reference, jax, torch; torch-jit
on request), all at --size 448 576, --batch 8, --steps timed steps after
--warmup; what each group runs: `keras_mtcl.analysis.gpu_bench`. Each
command runs with TensorFlow unimportable, under --timeout-s and an overall
--budget-s; every JSON line goes to --out (the first describes the
environment), full output to --log. `--resume PREVIOUS.jsonl` keeps the
successful lines of an earlier run and skips their commands. `--rounds R`
runs the plan R times in alternating order. Two tables are printed last
(every line; each of ours over the best reference mode, medians over rounds);
the exit status is 1 if any command failed.
`GPU_BENCH_SMOKE=1` shrinks every command to 64x64, batch 2, 1 warm-up and
1 timed step; `--models tiny` maps to the reference's `tiny` network and
Keras's `tiny_cnn` backbone.

On a machine with JAX or PyTorch but no Keras (the wheels to carry, the call
to make): `keras_mtcl.analysis.gpu_bench`.
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
    parser.add_argument("--precisions", nargs="+", default=list(gpu_bench.DEFAULT_PRECISIONS),
                        choices=gpu_bench.PRECISIONS, help="of keras_mtcl's commands")
    parser.add_argument("--modes", nargs="+", default=list(gpu_bench.REFERENCE_MODES),
                        choices=gpu_bench.REFERENCE_MODES, help="of the reference")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto", help="of the reference")
    parser.add_argument("--reference-python", default="", help="interpreter of the reference (default: this one)")
    parser.add_argument("--rounds", type=int, default=1, help="run the plan this many times, in alternating order")
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
    try:
        commands = gpu_bench.in_rounds(gpu_bench.plan(args.models, args.groups, args.size, args.batch, args.steps,
                                                      args.warmup, args.precisions, args.modes, args.device,
                                                      args.reference_python), args.rounds)
    except ValueError as error:
        parser.error(str(error))
    if args.dry_run:
        for command in commands:
            print(f"{command.bench_id}: {command.shell()}")
        return 0
    header = {"smoke": smoke, "size": list(args.size), "batch": args.batch, "steps": args.steps, "rounds": args.rounds}
    results = gpu_bench.run_plan(commands, args.out, ROOT, args.log, args.resume, args.timeout_s, args.budget_s, header,
                                 progress=lambda line: print(line, flush=True))
    print(gpu_bench.summary(results), gpu_bench.ratio_table(gpu_bench.ratios(results)), sep="\n\n", flush=True)
    failed = [r["bench_id"] for r in results if "error" in r]
    if failed:
        print(f"failed: {', '.join(failed)} (see {args.log or Path(args.out).with_suffix('.log')})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
