"""Evaluate a saved model on a dataset split with the reference metrics; write a JSON report.

    mtcl-evaluate runs/quickstart/model.keras --dataset synthetic
    mtcl-evaluate model.keras --dataset nyud --manual-dir /data/NYUD_MT --data-dir ~/tensorflow_datasets \\
        --baselines single_semseg.json single_depth.json --save-edges edges/

Predicts at the padded size, crops each prediction back to its image's
original size, accumulates every metric of the tasks present over the whole
split (mIoU, depth RMSE, normals angles, saliency maxF, boundary odsF/oisF/AP)
and prints a table. Boundaries follow the multi-task SEISM protocol of
`keras_mtcl.edge_eval` (NYUD: label boundaries through seg2bmap and thinning,
tolerance 0.011; PASCAL: the stored label, 0.0075; 8-bit maps, E > t).
`--baselines` (reports of single-task models) adds delta_m; `--save-edges`
writes 8-bit boundary PNGs for the MATLAB SEISM toolbox.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


from keras_mtcl.cli import add_verbose_flag, quiet_tensorflow
from keras_mtcl.data import list_datasets
from keras_mtcl.errors import ConfigError, reports_user_errors, require_positive


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a .keras model file")
    parser.add_argument("--dataset", default="synthetic", choices=list_datasets())
    parser.add_argument("--split", default="val")
    parser.add_argument("--manual-dir", default="", help="the downloaded dataset (or custom folder)")
    parser.add_argument("--data-dir", default="", help="tfds data_dir (default ~/tensorflow_datasets)")
    parser.add_argument("--tasks", default="", help="comma-separated subset of the model's tasks")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--pad-size", type=int, nargs=2, metavar=("H", "W"), help="pad images to at least this size")
    parser.add_argument("--pad-multiple", type=int, default=32, help="then to a multiple of this")
    parser.add_argument("--synthetic-size", type=int, nargs=2, default=[96, 128], metavar=("H", "W"))
    parser.add_argument("--synthetic-count", type=int, default=24)
    edges = parser.add_mutually_exclusive_group()
    edges.add_argument("--edge-tolerance", default=None, choices=["nyud", "pascal"],
                       help="boundary protocol preset: maxDist and label reading (nyud: 0.011, the label "
                            "through seg2bmap and thinning; pascal: 0.0075, the label as stored); "
                            "default: pascal for PASCAL, else nyud")
    edges.add_argument("--edge-max-dist", type=float, default=None, metavar="FRACTION",
                       help="boundary tolerance as a fraction of the image diagonal, labels read as stored "
                            "(custom data; e.g. 0.0075)")
    parser.add_argument("--baselines", nargs="*", default=[], help="single-task reports for delta_m")
    parser.add_argument("--save-edges", help="folder for 8-bit boundary PNGs")
    parser.add_argument("--workers", type=int, default=None, help="processes for the boundary benchmark")
    add_verbose_flag(parser)
    parser.add_argument("--output", help="report path (default: <model folder>/evaluation_<dataset>_<split>.json)")
    return parser.parse_args(argv)


@reports_user_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_tensorflow(args.verbose)
    require_positive(batch_size=args.batch_size, pad_multiple=args.pad_multiple,
                     synthetic_count=args.synthetic_count, workers=args.workers)
    if args.edge_max_dist is not None and not 0 < args.edge_max_dist < 1:
        raise ConfigError(f"--edge-max-dist is a fraction of the image diagonal in (0, 1), e.g. 0.0075. "
                          f"Received: {args.edge_max_dist}")
    model_path = Path(args.model)
    output = Path(args.output or model_path.parent / f"evaluation_{args.dataset}_{args.split}.json")

    from keras_mtcl import evaluation, metrics
    from keras_mtcl.data import get_dataset, pipeline
    from keras_mtcl.data.sources import open_split
    from keras_mtcl.model import load_model

    print(f"Loading {model_path} ...", flush=True)
    model = load_model(model_path, compile=False)
    reads_files = get_dataset(args.dataset).NEEDS_MANUAL_DIR
    if reads_files and not args.manual_dir:
        raise ConfigError(f"dataset {args.dataset!r} is read from its downloaded folder: pass --manual-dir PATH.")
    output.parent.mkdir(parents=True, exist_ok=True)  # an unwritable report folder fails now, not after evaluating
    if reads_files:
        from keras_mtcl.data.sources import DEFAULT_DATA_DIR

        where = args.data_dir or f"{DEFAULT_DATA_DIR} (the default; --data-dir chooses another)"
        print(f"Reading {args.dataset} from {args.manual_dir}, prepared (on first use) in {where} ...", flush=True)
    try:
        examples, data_specs = open_split(
            args.dataset, args.split, manual_dir=args.manual_dir, data_dir=args.data_dir,
            synthetic_size=args.synthetic_size, synthetic_count=args.synthetic_count,
        )
    except ValueError as error:  # unknown split or tasks of a dataset
        raise ConfigError(str(error)) from None
    wanted = [n for n in args.tasks.split(",") if n] or model.task_names
    available = {t.name: t for t in data_specs}
    missing = [n for n in wanted if n not in available or n not in model.task_names]
    if missing:
        raise ConfigError(
            f"tasks {missing} are not both predicted by the model ({model.task_names}) and labelled in the dataset "
            f"({sorted(available)}); choose --tasks from their intersection."
        )
    for spec in model.task_specs:
        labelled = available.get(spec.name)
        if spec.name in wanted and (labelled.kind != spec.kind or labelled.channels != spec.channels):
            raise ConfigError(
                f"the model predicts {spec.name!r} as {spec.kind} with {spec.channels} channels, but the {args.dataset!r} "
                f"dataset labels it as {labelled.kind} with {labelled.channels}: evaluate on the dataset the model was "
                f"trained on, or leave {spec.name!r} out of --tasks."
            )
    specs = [t for t in model.task_specs if t.name in wanted]
    batches = pipeline.eval_pipeline(
        examples, specs, batch_size=args.batch_size,
        pad_size=tuple(args.pad_size) if args.pad_size else None, pad_multiple=args.pad_multiple,
    )
    print(f"Evaluating {', '.join(t.name for t in specs)} on the {args.dataset!r} {args.split!r} split ...", flush=True)
    results = evaluation.evaluate_model(
        model, batches, specs, edge_dataset=args.edge_tolerance or evaluation.edge_protocol(args.dataset),
        edge_max_dist=args.edge_max_dist, save_edges=args.save_edges, workers=args.workers,
    )
    report = {"model": str(model_path), "dataset": args.dataset, "split": args.split, "metrics": results}
    if args.baselines:
        report["delta_m"] = metrics.delta_m(results, evaluation.load_baselines(args.baselines), tasks=specs)
    output.write_text(json.dumps(evaluation.json_safe(report), indent=2))
    print(evaluation.format_table(results))
    if "delta_m" in report:
        print(f"delta_m  {report['delta_m']['delta_m']:+.2f} %")
    print(f"Report: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
