"""Inference cost of the exported SavedModel, trained without and with the contrastive regularizer.

    python tools/bench_infer.py
    python tools/bench_infer.py --backbone tiny_cnn --size 96 128 --iterations 100
    python tools/bench_infer.py --backbone hrnet_w18 --framework mtinet --size 448 576 --iterations 20

Two models from one RunConfig (the preset, default "smoke", with --backbone,
--framework and --size), one trained with the regularizer and one without
(--train-steps steps each), exported as SavedModels, then described
(parameters, FLOPs of the network and of the serving signature, outputs,
variables, size on disk) and timed side by side in alternating blocks of
--block calls (latency at batch 1, throughput at --throughput-batch); see
`keras_mtcl.analysis.inference_cost`. Prints one JSON line per model and a
final line with the ratios (regularized / baseline) and which checks held.
Exits with status 1 if the parameters, FLOPs, outputs, variables or serving
graph differ. Runs on the TensorFlow backend (set here for this process).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

os.environ["KERAS_BACKEND"] = "tensorflow"  # SavedModel export runs on TensorFlow
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_mtcl.analysis import inference_cost  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="smoke", help="RunConfig preset the models are built from")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a config field")
    parser.add_argument("--backbone", default="efficientnet_lite0", help="backbone (random weights)")
    parser.add_argument("--framework", default="baseline", help="decoder: baseline, padnet, mtinet")
    parser.add_argument("--size", nargs=2, type=int, default=[192, 256], metavar=("H", "W"),
                        help="training crop, FLOP and timing image size")
    parser.add_argument("--train-steps", type=int, default=3, help="training steps per model")
    parser.add_argument("--train-batch", type=int, default=2, help="training batch size")
    parser.add_argument("--iterations", type=int, default=50, help="timed calls per model and batch size")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per model and batch size")
    parser.add_argument("--block", type=int, default=5, help="consecutive calls of one model before switching")
    parser.add_argument("--throughput-batch", type=int, default=8, help="batch size of the throughput timing")
    parser.add_argument("--workdir", help="where the SavedModels are written (default: a temporary folder)")
    args = parser.parse_args(argv)

    import keras

    config = inference_cost.make_config(args.preset, args.set, args.backbone, args.framework, args.size,
                                        args.train_batch, args.train_steps)
    models, training_facts = inference_cost.train_pair(config, args.train_steps)
    with tempfile.TemporaryDirectory() as temporary:
        result = inference_cost.compare(models, args.workdir or temporary, *args.size, iterations=args.iterations,
                                        warmup=args.warmup, block=args.block, throughput_batch=args.throughput_batch)
    common = {"backend": keras.backend.backend(), "backbone": config.model.backbone, "framework": config.model.framework,
              "tasks": list(models["baseline"].task_names), "size": list(args.size)}
    for name in inference_cost.MODEL_NAMES:
        record = dict(result["models"][name])
        ops_total = sum(record.pop("serving_graph_ops").values())
        if not args.workdir:
            record.pop("saved_model")
        print(json.dumps({"model": name, **common, **training_facts[name], **record, "serving_graph_op_count": ops_total}),
              flush=True)
    print(json.dumps({"ratios_regularized_over_baseline": result["ratios"], "identical": result["identical"]}),
          flush=True)
    if not result["all_identical"]:
        differing = [fact for fact, same in result["identical"].items() if not same]
        print(f"error: the regularized model's SavedModel differs from the baseline's in {differing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
