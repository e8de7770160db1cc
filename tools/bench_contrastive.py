"""Micro-benchmark of the contrastive regularizer: forward + backward time vs feature map size.

    KERAS_BACKEND=jax python tools/bench_contrastive.py --sizes 56x72 112x144 --batch 8
    KERAS_BACKEND=tensorflow python tools/bench_contrastive.py --selections random all --tasks nyud

For each feature map size (h x w) and source selection, the layer
(`CrossTaskContrastive` with the given anchors, pool and projector sizes) is
called on random features and labels of the task set, and the loss is
differentiated with respect to the features and the projector weights, in
one compiled step (`jax.jit`, `tf.function` with `--xla` for XLA, torch
eager). `--warmup` steps (compilation) are followed by `--steps` timed steps,
synchronised on the result. Prints one JSON line per configuration:
milliseconds per step, compile time, and the sizes. Labels are at 4x the
feature resolution, as for a stride-4 decoder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


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


def to_backend(tree):
    import keras

    return keras.tree.map_structure(keras.ops.convert_to_tensor, tree)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(28, 36), (56, 72), (112, 144)])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=64, help="channels C_t of each feature map")
    parser.add_argument("--tasks", choices=["nyud", "pascal"], default="nyud")
    parser.add_argument("--selections", nargs="+", choices=["random", "all"], default=["random", "all"])
    parser.add_argument("--criterion", choices=["threshold", "ranking"], default="threshold")
    parser.add_argument("--num-anchors", type=int, default=256)
    parser.add_argument("--pool-size", type=int, default=1024)
    parser.add_argument("--xla", action="store_true", help="TensorFlow: compile with XLA (jit_compile=True)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)

    import keras

    from keras_mtcl import tasks
    from keras_mtcl.contrastive import CrossTaskContrastive

    specs = tasks.task_set(args.tasks)
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
