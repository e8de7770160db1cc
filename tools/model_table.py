"""Parameters and FLOPs of each framework x backbone, for the README's table.

    python tools/model_table.py --backbones hrnet_w18 efficientnet_lite0 --size 448 576

Runs on the TensorFlow backend: FLOPs are counted by TensorFlow's profiler
on the inference graph (multiply-adds count 2). The contrastive regularizer
adds nothing at inference; its training cost is counted analytically: the
projectors run on 3 x num_anchors sampled vectors per image and drawn pair
(METHOD.md section 3). Prints a markdown table and JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def inference_flops(model, height: int, width: int) -> int:
    """FLOPs of one forward pass on a (1, height, width, C) image, from TensorFlow's profiler."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([1, height, width, model.input_channels], tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    info = tf.compat.v1.profiler.profile(graph=frozen.graph, options=options)
    return int(info.total_float_ops)


def regularizer_training_flops(contrastive, feature_channels: dict, batch: int = 1) -> int:
    """Projector FLOPs per training step for `batch` images (random source: one pair per target)."""
    pairs = len(feature_channels) if contrastive.source_selection == "random" else len(feature_channels) * (len(feature_channels) - 1)
    per_vector = {t: 2 * (c * contrastive.projector_width + contrastive.projector_width * contrastive.projection_dim) for t, c in feature_channels.items()}
    mean_vector = sum(per_vector.values()) / len(per_vector)
    return int(batch * pairs * 3 * contrastive.num_anchors * mean_vector)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["tiny_cnn"])
    parser.add_argument("--frameworks", nargs="+", default=["baseline", "padnet", "mtinet"])
    parser.add_argument("--dataset", default="nyud")
    parser.add_argument("--size", nargs=2, type=int, default=[448, 576])
    args = parser.parse_args(argv)

    from keras_mtcl import backbones, tasks
    from keras_mtcl.contrastive import CrossTaskContrastive
    from keras_mtcl.model import MultiTaskModel
    from keras_mtcl.trainer import MultiTaskTrainer

    rows = []
    for backbone_name in args.backbones:
        for framework in args.frameworks:
            specs = tasks.task_set(args.dataset)
            baseline = MultiTaskModel(backbones.get_backbone(backbone_name), specs, decoder=framework)
            # What the regularized run trains: the same network plus the trainer's projectors.
            regularized = MultiTaskTrainer(
                MultiTaskModel(backbones.get_backbone(backbone_name), specs, decoder=framework),
                regularizer=CrossTaskContrastive(),
            )
            feature_shapes = baseline.task_feature_shapes()
            row = {
                "backbone": backbone_name,
                "framework": framework,
                "params_inference": baseline.count_params(),
                "params_training_regularized": regularized.count_params(),
                "gflops_inference": inference_flops(baseline, *args.size) / 1e9,
                "gflops_regularizer_training_per_image": regularizer_training_flops(
                    regularized.regularizer, {t: int(s[-1]) for t, s in feature_shapes.items()}
                )
                / 1e9,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n| backbone | framework | parameters (inference = with regularizer) | projector parameters (training only) | GFLOPs at {args.size[0]}x{args.size[1]} (inference) | regularizer GFLOPs per training image |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backbone']} | {r['framework']} | {r['params_inference'] / 1e6:.2f} M | "
            f"{(r['params_training_regularized'] - r['params_inference']) / 1e6:.2f} M | {r['gflops_inference']:.1f} | "
            f"{r['gflops_regularizer_training_per_image']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
