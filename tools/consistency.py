"""Cross-task consistency of feature distances (the paper's Figure 1), see `keras_mtcl.analysis.consistency`.

    python tools/consistency.py runs/baseline/model.keras runs/contrastive/model.keras --out consistency.png
    python tools/consistency.py runs/ablation/models/mt_contrastive_seed0.keras --space features projected --target depth
    KERAS_BACKEND=jax python tools/consistency.py runs/smoke/model.keras --size 64 96 --count 8

For each model and source task, triplets drawn from the source's labels by
the regularizer's sampler, measured in the target's feature space
(`features`, any model) or the projector's (`projected`, the `.keras` file
of a regularized run's trainer). Prints a JSON line per (model, space,
source) and a table; writes a PNG of the distance histograms (--out).
Data: synthetic validation scenes at --size, or the validation split of a
run's dataset (--run-config).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_mtcl.analysis import consistency  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+",
                        help=".keras files of models or trainers (e.g. a baseline and a regularized run; the "
                             "projected space needs a trainer's file, which holds the projectors)")
    parser.add_argument("--names", nargs="+", help="display names of the models (default: file names)")
    parser.add_argument("--target", default="semseg", help="task whose features are measured")
    parser.add_argument("--space", nargs="+", choices=consistency.SPACES, default=["features"],
                        help="features: normalised F_t (any model); projected: Proj_{t,s} (regularized trainers)")
    parser.add_argument("--mode", choices=consistency.MODES, default="inference",
                        help="batch-norm mode of the feature maps")
    parser.add_argument("--size", nargs=2, type=int, default=[96, 128], metavar=("H", "W"), help="synthetic scene size")
    parser.add_argument("--count", type=int, default=16, help="number of validation scenes")
    parser.add_argument("--batch", type=int, default=8, help="images per batch")
    parser.add_argument("--run-config", help="a run's config.json: use its dataset's validation split")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes and of the triplet draws")
    parser.add_argument("--out", default="consistency.png", help="PNG to write")
    args = parser.parse_args(argv)
    try:
        models = consistency.load_models(args.models, args.names)
        consistency.check_request(models, args.target, args.space)
        tasks = consistency.network(next(iter(models.values()))).task_names
        batches = consistency.load_batches(args.size, args.count, args.batch, tasks, args.seed, args.run_config)
        entries, distances = consistency.consistency_report(models, batches, args.target, args.space, args.mode,
                                                            args.seed)
        path = consistency.plot_distances(entries, distances, args.out)
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for entry in entries:
        print(json.dumps(entry), flush=True)
    print()
    print(consistency.format_table(entries))
    print(f"\nPlot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
