"""Training throughput of a plain-PyTorch reference of the multi-task HRNet baseline.

    python tools/bench_reference_torch.py --model hrnet_w18 --size 448 576 --batch 8
    python tools/bench_reference_torch.py --model hrnet_w48 --modes bf16 compile --steps 30
    python tools/bench_reference_torch.py --model tiny --size 64 64 --batch 2 --modes fp32 --device cpu

The yardstick for `tools/bench_train.py`: the same network (a timm HRNet
with random weights, or the timm-free `tiny`), losses, optimiser and
synthetic batch, written the way a PyTorch user would write it
(`keras_mtcl.analysis.reference_torch`). Modes: fp32 eager, bf16 autocast +
channels_last, and compile (bf16 + torch.compile). Prints one JSON line per
mode with the keys of `tools/bench_train.py` where they overlap (step_ms,
step_ms_median, images_per_s, peak_memory_mb, parameters) and the loss of
every timed step. Needs torch (the `torch` extra), and timm for the HRNets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_mtcl.analysis import reference_torch as reference  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hrnet_w18",
                        help=f"timm HRNet name ({', '.join(reference.TIMM_MODELS)}) or 'tiny'")
    parser.add_argument("--dataset", default="nyud", help="task set of keras_mtcl.tasks: nyud or pascal")
    parser.add_argument("--size", nargs=2, type=int, default=[448, 576], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--modes", nargs="+", choices=reference.MODES, default=list(reference.MODES))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument(
        "--no-cudnn-benchmark", dest="cudnn_benchmark", action="store_false",
        help="leave torch.backends.cudnn.benchmark off (on by default: the input size is fixed)",
    )
    args = parser.parse_args(argv)
    try:
        setup = reference.ReferenceSetup(args.model, args.dataset, tuple(args.size), args.batch, args.steps,
                                         args.warmup, args.lr, args.seed, args.cudnn_benchmark)
        device = reference.resolve_device(args.device)
        if args.model != "tiny":
            reference.build_backbone(args.model)  # a missing timm or a wrong network fails before any timing
    except (ValueError, ImportError) as error:
        parser.error(str(error))
    for mode in args.modes:
        print(json.dumps(reference.run_mode(setup, mode, device)), flush=True)
        reference.release(device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
