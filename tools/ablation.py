"""Ablation of the regularizer on the synthetic scenes, over several seeds (`keras_mtcl.analysis.ablation`).

    KERAS_BACKEND=jax python tools/ablation.py --out runs/ablation
    KERAS_BACKEND=jax python tools/ablation.py --out runs/ablation --seeds 0 1 2 --steps 600
    python tools/ablation.py --out runs/ablation --report-only   # tables from results.jsonl

Trains every configuration (single-task baselines, the multi-task baseline,
the regularizer and its options, PAD-Net with and without it) with the same
data, model, optimizer and step budget, once per seed, and writes:

- `<out>/results.jsonl`: one line per (config, seed) with every metric and
  the training time; runs already there are skipped (`--rerun` forces them).
- `<out>/results.md`: each task's main metric (mean +- std over seeds),
  delta_m against the single-task runs of the same seed, and each
  multi-task configuration's per-seed difference to the multi-task baseline.
- `<out>/models/<config>_seed<seed>.keras` for `--save-models` configs: the
  trained `MultiTaskTrainer` (inputs of `tools/consistency.py`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from keras_mtcl.analysis import ablation


def main(argv=None) -> int:
    defaults = ablation.Setup()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/ablation", help="output folder")
    parser.add_argument("--configs", nargs="+", default=list(ablation.CONFIGS), help=f"subset of {list(ablation.CONFIGS)}")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--size", nargs=2, type=int, default=list(defaults.size), metavar=("H", "W"))
    parser.add_argument("--train-scenes", type=int, default=defaults.train_scenes)
    parser.add_argument("--val-scenes", type=int, default=defaults.val_scenes)
    parser.add_argument("--steps", type=int, default=defaults.steps, help="training steps of every run")
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--widths", nargs=4, type=int, default=list(defaults.widths), help="tiny_cnn stage widths")
    parser.add_argument("--head-channels", type=int, default=defaults.head_channels,
                        help="decoder width (baseline heads, PAD-Net channels)")
    parser.add_argument("--anchors", type=int, default=defaults.anchors, help="regularizer anchors per image")
    parser.add_argument("--pool", type=int, default=defaults.pool, help="regularizer candidate pool per image")
    parser.add_argument("--save-models", nargs="*", default=["mt_baseline", "mt_contrastive"],
                        help="configs whose seed-0 model is saved under <out>/models")
    parser.add_argument("--rerun", action="store_true", help="train runs already in results.jsonl again")
    parser.add_argument("--report-only", action="store_true", help="only rewrite results.md from results.jsonl")
    args = parser.parse_args(argv)
    setup = ablation.Setup(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ablation.Setup)})
    try:
        ablation.check_configs(args.configs)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = ablation.run_ablation(args.out, args.configs, args.seeds, setup, args.save_models, args.rerun,
                                  args.report_only, log=lambda line: print(line, flush=True))
    print(table)
    print(f"Wrote {args.out}/results.jsonl and {args.out}/results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
