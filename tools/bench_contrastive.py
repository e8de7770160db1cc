"""Micro-benchmark of the contrastive regularizer: forward + backward time vs feature map size.

    KERAS_BACKEND=jax python tools/bench_contrastive.py --sizes 56x72 112x144 --batch 8
    KERAS_BACKEND=tensorflow python tools/bench_contrastive.py --selections random all --tasks nyud
    KERAS_BACKEND=jax python tools/bench_contrastive.py --fractions --tasks synthetic --sizes 16x24 --batch 8
    KERAS_BACKEND=tensorflow python tools/bench_contrastive.py --graph-size --tasks synthetic --sizes 16x24 --batch 4

For each feature map size (h x w) and source selection, the layer
(`CrossTaskContrastive` with the given anchors, pool and projector sizes) is
called on random features and labels of the task set, and the loss is
differentiated with respect to the features and the projector weights, in
one compiled step (`jax.jit`, `tf.function` with `--xla` for XLA, torch
eager). `--warmup` steps (compilation) are followed by `--steps` timed steps,
synchronised on the result. Prints one JSON line per configuration:
milliseconds per step, compile time, and the sizes. Labels are at 4x the
feature resolution, as for a stride-4 decoder.

`--fractions` measures instead the fraction of anchors that find a triplet,
per source task and criterion (threshold and ranking), on rendered scenes
(`--tasks synthetic`: the six tasks of `keras_mtcl.data.synthetic`, labels
at 4x the feature size) or random block labels: `sample_triplets` with the
layer's defaults and fresh uniform draws, `--steps` batches of `--batch`
images. `--graph-size` measures the size of the differentiated step
instead, for the first 2, 4, ... of the tasks: on TensorFlow the nodes of
its graph (function library included), its functions and the CPU-seconds
of tracing it; on JAX the size of its StableHLO text. Set
`PYTHONPATH=DIR` to measure another checkout's `keras_mtcl` (e.g. the
previous version) with the same script.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path



def parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes are HxW, e.g. 112x144. Received: {text!r}") from None
    return height, width


def make_inputs(specs, batch: int, height: int, width: int, channels: int, seed: int = 0):
    import numpy as np

    from keras_mtcl.testing.labels import random_labels

    rng = np.random.default_rng(seed)
    features = {t.name: rng.normal(size=(batch, height, width, channels)).astype("float32") for t in specs}
    return features, random_labels(specs, batch, 4 * height, 4 * width, seed=[seed, 1])


def make_step(layer, xla: bool):
    """A compiled function (features, labels) -> (loss, gradients) for the backend."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        state = {"non_trainable": [v.value for v in layer.non_trainable_variables]}
        trainable = [v.value for v in layer.trainable_variables]

        def loss_fn(trainable, non_trainable, features, labels):
            outputs, non_trainable = layer.stateless_call(trainable, non_trainable, features, labels)
            return outputs["loss"], non_trainable

        grad_fn = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 2), has_aux=True))

        def step(features, labels):
            (loss, state["non_trainable"]), grads = grad_fn(trainable, state["non_trainable"], features, labels)
            jax.block_until_ready(grads)
            return loss

        return step
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=xla)
        def compiled(features, labels):
            with tf.GradientTape() as tape:
                tape.watch(features)
                loss = layer(features, labels)["loss"]
            grads = tape.gradient(loss, (features, layer.trainable_variables))
            return loss, grads

        def step(features, labels):
            loss, _ = compiled(features, labels)
            return float(loss)  # synchronises

        return step
    import torch

    def step(features, labels):
        features = {k: v.detach().requires_grad_(True) for k, v in features.items()}
        loss = layer(features, labels)["loss"]
        loss.backward()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return float(loss)

    return step


def task_specs(name: str) -> list:
    if name == "synthetic":
        from keras_mtcl.data.synthetic import synthetic_tasks

        return synthetic_tasks()
    from keras_mtcl import tasks

    return tasks.task_set(name)


def triplet_fractions(specs, args) -> list[dict]:
    """{criterion, source, kind, triplet_fraction} per source task: anchors with a triplet, over `--steps` batches."""
    import numpy as np

    from keras_mtcl.contrastive import sample_triplets
    from keras_mtcl.testing.labels import random_labels

    records = []
    for height, width in args.sizes:
        batches = []
        for step in range(args.steps):
            if args.tasks == "synthetic":
                from keras_mtcl.data.synthetic import make_scenes

                scenes = make_scenes(args.batch, 4 * height, 4 * width, seed=step * args.batch)
                batches.append({t.name: scenes[t.name] for t in specs})
            else:
                batches.append(random_labels(specs, args.batch, 4 * height, 4 * width, seed=[step, 1], block=16))
        for criterion in ("threshold", "ranking"):
            rng = np.random.default_rng(0)
            for source in specs:
                found = []
                for labels in batches:
                    triplets = sample_triplets(
                        source,
                        labels[source.name],
                        (height, width),
                        rng.random((2, args.batch, height * width), dtype="float32"),
                        rng.random((args.batch, args.num_anchors + args.pool_size), dtype="float32"),
                        num_anchors=args.num_anchors,
                        pool_size=args.pool_size,
                        criterion=criterion,
                    )
                    found.append(float(np.mean(np.asarray(triplets["weights"]))))
                records.append(
                    {
                        "criterion": criterion,
                        "source": source.name,
                        "kind": source.kind,
                        "sparse": bool(getattr(source, "sparse", False)),
                        "height": height,
                        "width": width,
                        "triplet_fraction": round(float(np.mean(found)), 4),
                    }
                )
    return records


def graph_sizes(specs, args) -> list[dict]:
    """Size of the differentiated regularizer step for the first K = 2, 4, ... tasks (see the module docstring)."""
    import keras

    from keras_mtcl.contrastive import CrossTaskContrastive

    height, width = args.sizes[0]
    features_all, labels_all = make_inputs(specs, args.batch, height, width, args.channels)
    backend = keras.backend.backend()
    records = []
    for count in range(2, len(specs) + 1, 2):
        subset = specs[:count]
        layer = CrossTaskContrastive(subset, num_anchors=args.num_anchors, pool_size=args.pool_size, criterion=args.criterion, seed=0)
        layer.build({t.name: (None, height, width, args.channels) for t in subset})
        features = {t.name: features_all[t.name] for t in subset}
        labels = {t.name: labels_all[t.name] for t in subset}
        record = {"tasks": count, "trainable_variables": len(layer.trainable_variables)}
        if backend == "tensorflow":
            import tensorflow as tf

            @tf.function
            def step(f, l):
                with tf.GradientTape() as tape:
                    tape.watch(f)
                    loss = layer(f, l)["loss"]
                return tape.gradient(loss, (f, layer.trainable_variables))

            start = time.process_time()
            graph = step.get_concrete_function(to_backend(features), to_backend(labels)).graph.as_graph_def()
            record["trace_cpu_s"] = round(time.process_time() - start, 2)
            record["graph_nodes"] = len(graph.node) + sum(len(f.node_def) for f in graph.library.function)
            record["graph_functions"] = len(graph.library.function)
        elif backend == "jax":
            import jax

            trainable = [v.value for v in layer.trainable_variables]
            non_trainable = [v.value for v in layer.non_trainable_variables]

            def loss_fn(trainable, non_trainable, f, l):
                outputs, non_trainable = layer.stateless_call(trainable, non_trainable, f, l)
                return outputs["loss"], non_trainable

            lowered = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 2), has_aux=True)).lower(
                trainable, non_trainable, features, labels
            )
            record["stablehlo_mb"] = round(len(lowered.as_text()) / 1e6, 3)
        else:
            raise SystemExit("--graph-size measures TensorFlow graphs or JAX programs; torch runs eagerly.")
        records.append(record)
    return records


def to_backend(tree):
    import keras

    return keras.tree.map_structure(keras.ops.convert_to_tensor, tree)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(28, 36), (56, 72), (112, 144)])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=64, help="channels C_t of each feature map")
    parser.add_argument("--tasks", choices=["nyud", "pascal", "synthetic"], default="nyud")
    parser.add_argument("--selections", nargs="+", choices=["random", "all"], default=["random", "all"])
    parser.add_argument("--criterion", choices=["threshold", "ranking"], default="threshold")
    parser.add_argument("--num-anchors", type=int, default=256)
    parser.add_argument("--pool-size", type=int, default=1024)
    parser.add_argument("--xla", action="store_true", help="TensorFlow: compile with XLA (jit_compile=True)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--fractions", action="store_true", help="report triplet fractions per source and criterion")
    parser.add_argument("--graph-size", action="store_true", help="report the size of the differentiated step per task count")
    args = parser.parse_args(argv)

    import keras

    from keras_mtcl.contrastive import CrossTaskContrastive

    specs = task_specs(args.tasks)
    if args.fractions or args.graph_size:
        import keras_mtcl

        for record in (triplet_fractions if args.fractions else graph_sizes)(specs, args):
            record.update(backend=keras.backend.backend(), package=str(Path(keras_mtcl.__file__).resolve().parents[1]))
            print(json.dumps(record), flush=True)
        return
    for height, width in args.sizes:
        features, labels = make_inputs(specs, args.batch, height, width, args.channels)
        features, labels = to_backend(features), to_backend(labels)
        for selection in args.selections:
            layer = CrossTaskContrastive(
                specs,
                num_anchors=args.num_anchors,
                pool_size=args.pool_size,
                criterion=args.criterion,
                source_selection=selection,
                seed=0,
            )
            layer.build({t.name: (None, height, width, args.channels) for t in specs})
            step = make_step(layer, args.xla)
            start = time.perf_counter()
            for _ in range(args.warmup):
                step(features, labels)
            compile_s = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(args.steps):
                step(features, labels)
            ms = (time.perf_counter() - start) / args.steps * 1000
            print(
                json.dumps(
                    {
                        "backend": keras.backend.backend(),
                        "xla": bool(args.xla) if keras.backend.backend() == "tensorflow" else None,
                        "tasks": args.tasks,
                        "source_selection": selection,
                        "criterion": args.criterion,
                        "batch": args.batch,
                        "height": height,
                        "width": width,
                        "channels": args.channels,
                        "num_anchors": args.num_anchors,
                        "pool_size": args.pool_size,
                        "ms_per_step": round(ms, 2),
                        "warmup_s": round(compile_s, 2),
                        "cpu_count": os.cpu_count(),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
