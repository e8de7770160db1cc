"""The contrastive regularizer alone: step time, triplet fractions and size of the differentiated step.

`time_step`: the layer (`CrossTaskContrastive`) is called on random features
and labels of a task set, and the loss is differentiated with respect to
the features and the projector weights, in one compiled step (`jax.jit`,
`tf.function`, with XLA when asked, torch eager); warm-up steps
(compilation) are followed by timed steps, synchronised on the result.
Labels are at 4x the feature resolution, as for a stride-4 decoder.

`triplet_fractions`: the fraction of anchors that find a triplet, per
source task and criterion (threshold and ranking), on rendered scenes or
random block labels: `sample_triplets` with the layer's defaults and fresh
uniform draws.

`graph_sizes`: the size of the differentiated step for the first 2, 4, ...
tasks: on TensorFlow the nodes of its graph (function library included),
its functions and the CPU-seconds of tracing it; on JAX the size of its
StableHLO text.

`tools/bench_contrastive.py` is the command.

Example:
>>> from keras_mtcl import tasks
>>> features, labels = make_inputs(tasks.task_set("nyud"), batch=2, height=4, width=6, channels=8)
>>> features["depth"].shape, labels["depth"].shape
((2, 4, 6, 8), (2, 16, 24, 1))
"""

from __future__ import annotations

import time
from typing import Callable, Sequence


def make_inputs(specs, batch: int, height: int, width: int, channels: int, seed: int = 0):
    """Random features {task: (B, h, w, C)} float32 and random labels {task: (B, 4h, 4w, c)} of `specs`."""
    import numpy as np

    from keras_mtcl.testing.labels import random_labels

    rng = np.random.default_rng(seed)
    features = {t.name: rng.normal(size=(batch, height, width, channels)).astype("float32") for t in specs}
    return features, random_labels(specs, batch, 4 * height, 4 * width, seed=[seed, 1])


def to_backend(tree):
    """Every array of `tree` as a tensor of the Keras backend."""
    import keras

    return keras.tree.map_structure(keras.ops.convert_to_tensor, tree)


def _jax_value_and_grad(layer):
    """jit(value_and_grad) of the layer's loss w.r.t. its trainable variables and the features, and the state."""
    from keras_mtcl import optional

    jax = optional.import_optional("jax", "jax", "The JAX regularizer step")

    def loss_fn(trainable, non_trainable, features, labels):
        outputs, non_trainable = layer.stateless_call(trainable, non_trainable, features, labels)
        return outputs["loss"], non_trainable

    grad_fn = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 2), has_aux=True))
    return jax, grad_fn, [v.value for v in layer.trainable_variables], [v.value for v in layer.non_trainable_variables]


def _tf_gradient(layer, features, labels):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(features)
        loss = layer(features, labels)["loss"]
    return loss, tape.gradient(loss, (features, layer.trainable_variables))


def make_step(layer, xla: bool = False) -> Callable:
    """A compiled function (features, labels) -> loss that also computes the gradients, for the Keras backend."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        jax, grad_fn, trainable, non_trainable = _jax_value_and_grad(layer)
        state = {"non_trainable": non_trainable}

        def step(features, labels):
            (loss, state["non_trainable"]), grads = grad_fn(trainable, state["non_trainable"], features, labels)
            jax.block_until_ready(grads)
            return loss

        return step
    if backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(lambda f, l: _tf_gradient(layer, f, l), jit_compile=xla)
        return lambda features, labels: float(compiled(features, labels)[0])  # float() synchronises
    from keras_mtcl import optional

    torch = optional.import_optional("torch", "torch", "The PyTorch regularizer step")

    def step(features, labels):
        features = {k: v.detach().requires_grad_(True) for k, v in features.items()}
        loss = layer(features, labels)["loss"]
        loss.backward()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return float(loss)

    return step


def time_step(
    specs,
    size: Sequence[int],
    batch: int,
    channels: int = 64,
    warmup: int = 2,
    steps: int = 10,
    xla: bool = False,
    **layer_options,
) -> dict:
    """Milliseconds per differentiated regularizer step on (batch, h, w, channels) features.

    Args:
        specs: the tasks.
        size: (h, w) of the feature maps.
        batch: images per step.
        channels: channels C_t of each feature map.
        warmup: untimed steps first (compilation).
        steps: timed steps.
        xla: TensorFlow: compile with XLA.
        **layer_options: `CrossTaskContrastive` arguments (num_anchors,
            pool_size, criterion, source_selection, ...).

    Returns:
        {"ms_per_step", "warmup_s"}.
    """
    from keras_mtcl.contrastive import CrossTaskContrastive

    height, width = size
    features, labels = to_backend(make_inputs(specs, batch, height, width, channels))
    layer = CrossTaskContrastive(specs, seed=0, **layer_options)
    layer.build({t.name: (None, height, width, channels) for t in specs})
    step = make_step(layer, xla)
    start = time.perf_counter()
    for _ in range(warmup):
        step(features, labels)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step(features, labels)
    return {"ms_per_step": round((time.perf_counter() - start) / steps * 1000, 2), "warmup_s": round(warmup_s, 2)}


def triplet_fractions(
    specs,
    sizes: Sequence[Sequence[int]],
    batch: int,
    steps: int,
    num_anchors: int = 256,
    pool_size: int = 1024,
    scenes: bool = False,
) -> list[dict]:
    """{criterion, source, kind, sparse, height, width, triplet_fraction} per source task, size and criterion.

    Args:
        specs: the tasks (with `scenes`, among the synthetic tasks).
        sizes: (h, w) feature sizes; labels are at (4h, 4w).
        batch: images per batch.
        steps: batches; the fraction is the mean over them.
        num_anchors, pool_size: the sampler's sizes.
        scenes: rendered scenes (`keras_mtcl.data.synthetic.make_scenes`)
            instead of random labels constant over 16 x 16 blocks.
    """
    import numpy as np

    from keras_mtcl.contrastive import sample_triplets
    from keras_mtcl.testing.labels import random_labels

    records = []
    for height, width in sizes:
        batches = []
        for step in range(steps):
            if scenes:
                from keras_mtcl.data.synthetic import make_scenes

                drawn = make_scenes(batch, 4 * height, 4 * width, seed=step * batch)
                batches.append({t.name: drawn[t.name] for t in specs})
            else:
                batches.append(random_labels(specs, batch, 4 * height, 4 * width, seed=[step, 1], block=16))
        for criterion in ("threshold", "ranking"):
            rng = np.random.default_rng(0)
            for source in specs:
                found = []
                for labels in batches:
                    triplets = sample_triplets(
                        source,
                        labels[source.name],
                        (height, width),
                        rng.random((2, batch, height * width), dtype="float32"),
                        rng.random((batch, num_anchors + pool_size), dtype="float32"),
                        num_anchors=num_anchors,
                        pool_size=pool_size,
                        criterion=criterion,
                    )
                    found.append(float(np.mean(np.asarray(triplets["weights"]))))
                records.append({
                    "criterion": criterion,
                    "source": source.name,
                    "kind": source.kind,
                    "sparse": bool(getattr(source, "sparse", False)),
                    "height": height,
                    "width": width,
                    "triplet_fraction": round(float(np.mean(found)), 4),
                })
    return records


def graph_sizes(specs, size: Sequence[int], batch: int, channels: int = 64, **layer_options) -> list[dict]:
    """Size of the differentiated regularizer step for the first K = 2, 4, ... tasks (see the module docstring).

    Raises:
        ValueError: on the PyTorch backend, which runs eagerly (no graph).
    """
    import keras

    from keras_mtcl.contrastive import CrossTaskContrastive

    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        raise ValueError(f"Graph sizes are measured on TensorFlow graphs or JAX programs; {backend} runs eagerly.")
    height, width = size
    features_all, labels_all = make_inputs(specs, batch, height, width, channels)
    records = []
    for count in range(2, len(specs) + 1, 2):
        subset = specs[:count]
        layer = CrossTaskContrastive(subset, seed=0, **layer_options)
        layer.build({t.name: (None, height, width, channels) for t in subset})
        features = {t.name: features_all[t.name] for t in subset}
        labels = {t.name: labels_all[t.name] for t in subset}
        record = {"tasks": count, "trainable_variables": len(layer.trainable_variables)}
        if backend == "tensorflow":
            import tensorflow as tf

            step = tf.function(lambda f, l: _tf_gradient(layer, f, l)[1])
            start = time.process_time()
            graph = step.get_concrete_function(to_backend(features), to_backend(labels)).graph.as_graph_def()
            record["trace_cpu_s"] = round(time.process_time() - start, 2)
            record["graph_nodes"] = len(graph.node) + sum(len(f.node_def) for f in graph.library.function)
            record["graph_functions"] = len(graph.library.function)
        else:
            _, grad_fn, trainable, non_trainable = _jax_value_and_grad(layer)
            lowered = grad_fn.lower(trainable, non_trainable, features, labels)
            record["stablehlo_mb"] = round(len(lowered.as_text()) / 1e6, 3)
        records.append(record)
    return records


__all__ = ["graph_sizes", "make_inputs", "make_step", "time_step", "to_backend", "triplet_fractions"]
