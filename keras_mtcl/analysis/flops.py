"""Parameters and FLOPs: of an inference network, of a SavedModel's serving graph, of the regularizer in training.

Graph FLOPs are counted by TensorFlow's profiler on a graph with its
variables frozen to constants (a multiply-add counts 2), so these functions
run on the TensorFlow backend. The contrastive regularizer adds nothing at
inference; its training cost is counted analytically
(`regularizer_training_flops`): the projectors run on 3 x num_anchors
sampled vectors per image and drawn pair (METHOD.md section 3).
`tools/model_table.py` prints `cost_table` for several backbones and frameworks.

Example:
>>> from keras_mtcl.contrastive import CrossTaskContrastive
>>> layer = CrossTaskContrastive(num_anchors=4, projector_width=8, projection_dim=2)
>>> regularizer_training_flops(layer, {"semseg": 16, "depth": 16})  # 2 pairs x 12 vectors x 2 (16 x 8 + 8 x 2)
6912
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Mapping, Sequence


def frozen_graph(fn: Callable, *specs):
    """The graph of `tf.function(fn)` traced on `specs` (`tf.TensorSpec`s), variables frozen to constants."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = tf.function(fn, autograph=False).get_concrete_function(*specs)
    return convert_variables_to_constants_v2(concrete).graph


def graph_flops(graph) -> int:
    """FLOPs of one run of a frozen graph, from TensorFlow's profiler (multiply-adds count 2)."""
    import tensorflow as tf

    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)


def graph_op_counts(graph) -> dict[str, int]:
    """{op type: count} over a graph and every function in its library."""
    graph_def = graph.as_graph_def()
    counts = collections.Counter(node.op for node in graph_def.node)
    for function in graph_def.library.function:
        counts.update(node.op for node in function.node_def)
    return dict(sorted(counts.items()))


def inference_flops(model, height: int, width: int) -> int:
    """FLOPs of one forward pass of `model` (a `MultiTaskModel`) on a (1, height, width, C) float32 image."""
    import tensorflow as tf

    spec = tf.TensorSpec([1, height, width, model.input_channels], tf.float32)
    return graph_flops(frozen_graph(lambda x: model(x, training=False), spec))


def regularizer_training_flops(contrastive, feature_channels: Mapping[str, int], batch: int = 1) -> int:
    """Projector FLOPs per training step for `batch` images.

    Args:
        contrastive: a `CrossTaskContrastive` (its source selection, anchors
            and projector sizes).
        feature_channels: {task: C_t} of the task features F_t.
        batch: images per step.

    Returns:
        batch x pairs x 3 num_anchors x the mean FLOPs of one projector on one
        vector (two dense layers), with one pair per target for the `random`
        source selection and every ordered pair for `all`.
    """
    tasks = len(feature_channels)
    pairs = tasks if contrastive.source_selection == "random" else tasks * (tasks - 1)
    width, dim = contrastive.projector_width, contrastive.projection_dim
    per_vector = [2 * (c * width + width * dim) for c in feature_channels.values()]
    mean_vector = sum(per_vector) / len(per_vector)
    return int(batch * pairs * 3 * contrastive.num_anchors * mean_vector)


def model_costs(backbone: str, framework: str, dataset: str = "nyud", size: Sequence[int] = (448, 576)) -> dict[str, Any]:
    """Parameters and FLOPs of `framework` on `backbone` (random weights) with the tasks of `dataset`.

    Returns:
        {"backbone", "framework", "params_inference" (the inference model,
        the same with and without the regularizer), "params_training_regularized"
        (the regularized trainer: the model plus the projectors),
        "gflops_inference" at `size`, "gflops_regularizer_training_per_image"}.
    """
    from keras_mtcl import backbones, tasks
    from keras_mtcl.contrastive import CrossTaskContrastive
    from keras_mtcl.model import MultiTaskModel
    from keras_mtcl.trainer import MultiTaskTrainer

    specs = tasks.task_set(dataset)
    baseline = MultiTaskModel(backbones.get_backbone(backbone), specs, decoder=framework)
    # What the regularized run trains: the same network plus the trainer's projectors.
    regularized = MultiTaskTrainer(
        MultiTaskModel(backbones.get_backbone(backbone), specs, decoder=framework), regularizer=CrossTaskContrastive()
    )
    channels = {t: int(s[-1]) for t, s in baseline.task_feature_shapes().items()}
    return {
        "backbone": backbone,
        "framework": framework,
        "params_inference": baseline.count_params(),
        "params_training_regularized": regularized.count_params(),
        "gflops_inference": inference_flops(baseline, *size) / 1e9,
        "gflops_regularizer_training_per_image": regularizer_training_flops(regularized.regularizer, channels) / 1e9,
    }


def cost_table(rows: Sequence[Mapping[str, Any]], size: Sequence[int]) -> str:
    """The README's markdown table of `model_costs` rows computed at `size`."""
    lines = [
        f"| backbone | framework | parameters (inference = with regularizer) | projector parameters (training only) | "
        f"GFLOPs at {size[0]}x{size[1]} (inference) | regularizer GFLOPs per training image |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backbone']} | {r['framework']} | {r['params_inference'] / 1e6:.2f} M | "
            f"{(r['params_training_regularized'] - r['params_inference']) / 1e6:.2f} M | {r['gflops_inference']:.1f} | "
            f"{r['gflops_regularizer_training_per_image']:.3f} |"
        )
    return "\n".join(lines)


__all__ = ["cost_table", "frozen_graph", "graph_flops", "graph_op_counts", "inference_flops", "model_costs",
           "regularizer_training_flops"]
