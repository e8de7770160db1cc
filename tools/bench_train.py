"""Training throughput: baseline vs the contrastive regularizer, side by side in one process.

    KERAS_BACKEND=jax python tools/bench_train.py --backbone tiny_cnn --size 96 128 --batch 8
    KERAS_BACKEND=jax python tools/bench_train.py --backbone hrnet_w18 --size 448 576 --batch 8 --precision bf16

For each configuration (regularizer off, then on, or --configs), the model
is built, compiled and fitted on one in-memory batch repeated (no input
pipeline cost): `--warmup` steps (compilation), then `--steps` timed steps
in one `fit` call, synchronised at the end by reading a weight. Prints one
JSON line per configuration: images/s, mean step time, peak memory
(accelerator memory where the backend reports it, else the process's peak
RSS), and the overhead of the regularizer relative to the baseline run of
the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _peak_memory_mb() -> float:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            if "peak_bytes_in_use" in stats:
                return stats["peak_bytes_in_use"] / 2**20
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.max_memory_allocated() / 2**20
        if backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except Exception:  # memory statistics are best effort; fall back to the process RSS
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_batch(specs, batch: int, height: int, width: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, height, width, 3)).astype("float32")
    y = {}
    for t in specs:
        shape = (batch, height, width, 1)
        if t.kind == "classes":
            # Blocky labels, so that anchors find positives and negatives.
            blocks = rng.integers(0, t.channels, (batch, height // 16 + 1, width // 16 + 1, 1))
            y[t.name] = np.repeat(np.repeat(blocks, 16, 1), 16, 2)[:, :height, :width].astype("int32")
        elif t.kind == "binary":
            y[t.name] = (rng.uniform(size=shape) < 0.1).astype("int32")
        elif t.kind == "depth":
            y[t.name] = rng.uniform(0.5, 8.0, shape).astype("float32")
        else:
            v = rng.normal(size=(batch, height, width, 3))
            y[t.name] = (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype("float32")
    return x, y


def run_config(args, contrastive_on: bool) -> dict:
    import keras
    import tensorflow as tf

    from keras_mtcl import backbones, tasks
    from keras_mtcl.model import MultiTaskModel

    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("mixed_bfloat16" if args.precision == "bf16" else "float32")
    specs = tasks.task_set(args.dataset)
    contrastive = None
    if contrastive_on:
        from keras_mtcl.contrastive import CrossTaskContrastive

        contrastive = CrossTaskContrastive(seed=0)
    model = MultiTaskModel(
        backbones.get_backbone(args.backbone), specs, framework=args.framework, contrastive=contrastive
    )
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), jit_compile=not args.no_jit)
    x, y = make_batch(specs, args.batch, *args.size)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=args.warmup, epochs=1, verbose=0)
    keras.ops.convert_to_numpy(model.trainable_weights[0])
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
    keras.ops.convert_to_numpy(model.trainable_weights[0])
    elapsed = time.perf_counter() - start
    return {
        "backend": keras.backend.backend(),
        "backbone": args.backbone,
        "framework": args.framework,
        "dataset": args.dataset,
        "size": list(args.size),
        "batch": args.batch,
        "precision": args.precision,
        "regularizer": contrastive_on,
        "steps": args.steps,
        "step_ms": 1000 * elapsed / args.steps,
        "images_per_s": args.batch * args.steps / elapsed,
        "warmup_s": warmup_s,
        "peak_memory_mb": _peak_memory_mb(),
        "parameters": model.count_params(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="tiny_cnn")
    parser.add_argument("--framework", default="baseline")
    parser.add_argument("--dataset", default="nyud", help="task set: nyud or pascal")
    parser.add_argument("--size", nargs=2, type=int, default=[96, 128])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--configs", nargs="+", choices=["baseline", "regularizer"], default=["baseline", "regularizer"])
    parser.add_argument("--no-jit", action="store_true", help="compile(jit_compile=False)")
    args = parser.parse_args(argv)
    results = {}
    for name in args.configs:
        results[name] = run_config(args, contrastive_on=name == "regularizer")
        if name == "regularizer" and "baseline" in results:
            results[name]["overhead_vs_baseline"] = results[name]["step_ms"] / results["baseline"]["step_ms"] - 1.0
        print(json.dumps(results[name]), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
