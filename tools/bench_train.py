"""Training throughput: baseline vs the contrastive regularizer, side by side in one process.

    KERAS_BACKEND=jax python tools/bench_train.py --backbone tiny_cnn --size 96 128 --batch 8
    KERAS_BACKEND=jax python tools/bench_train.py --backbone hrnet_w18 --size 448 576 --batch 8 --precision bf16
    KERAS_BACKEND=jax python tools/bench_train.py --backbone hrnet_w18_small_v2 --size 224 288 --batch 4 --steps 5 --rounds 4

With `--rounds R` (R > 1, for shared, noisy machines), every configuration
is built and warmed up first, then timed in R alternating blocks of
`--steps` steps (order reversed each round), and the statistics pool the
blocks of each configuration; peak memory is then the process's peak.

For each configuration (regularizer off, then on, or --configs), the model
is built, compiled and fitted on one in-memory batch repeated (no input
pipeline cost): `--warmup` steps (compilation), then `--steps` timed steps
in one `fit` call. On JAX and PyTorch the batch is converted to backend
tensors once (on the accelerator, if any) and a Python generator yields them
again and again, so TensorFlow is never imported on those backends; on
TensorFlow it is a `tf.data` dataset of the one batch, repeated.

Timing: a callback (`make_step_timer`) records the host clock at the end of
every timed step, once the step's loss is on the host (Keras converts the
logs of each step to Python floats for such a callback, which waits for the
step's device work); `step_ms_median` is the median of the intervals
between consecutive step ends, so it includes the Keras loop, the generator
and the dispatch, as a training run pays them. The per-step wait stops the
host from queueing step n+1 while step n runs, which costs the loop's host
time per step (small next to steps of tens of milliseconds), and it is the
same per-step synchronisation that `tools/bench_reference_torch.py` uses,
so the two compare like for like. (Reading a weight instead would cost
more on JAX, where `Callback.model` first assigns every variable of the
training state: thousands for an HRNet with AdamW, milliseconds per step.)
`step_ms` (the mean) and `images_per_s` come from the wall time of the
whole timed `fit` call, per-step waits included.

Prints one JSON line per configuration: images/s, mean and median step
time, peak memory (accelerator memory where the backend reports it: the
configuration's own peak on PyTorch, the process's peak so far on JAX and
TensorFlow, which includes earlier configurations; else the process's peak
RSS), and the overhead of the regularizer relative to the
baseline run of the same process (from the means, and `overhead_median_vs_baseline`
from the medians).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
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


def make_step_timer():
    """A `keras.callbacks.Callback` that records the wall time of every training step.

    A step counts as ended when its loss is on the host: Keras converts a
    step's logs (loss, metrics) to Python floats before it calls a callback
    that defines `on_train_batch_end`, which waits for the step's device work
    (on JAX the loss is an output of the same executable as the updated
    weights; on PyTorch the copy waits for every kernel queued before it,
    the optimizer's included). Should a Keras version hand over the logs
    unconverted, the callback reads the smallest trainable weight instead.
    The callback's `times` holds the seconds between consecutive step ends,
    the first measured from the start of step 0; `weight_reads` counts the
    steps that needed the weight read.
    """
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []
            self.weight_reads = 0  # steps whose logs were not on the host
            self._last = None
            self._index = 0

        def on_train_begin(self, logs=None):
            self.times, self._last = [], None
            sizes = [math.prod(w.shape) for w in self.model.trainable_weights]
            self._index = sizes.index(min(sizes))

        def on_train_batch_begin(self, batch, logs=None):
            if self._last is None:
                self._last = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if not isinstance((logs or {}).get("loss"), float):
                # `self.model` attaches the JAX training state to the variables (a cost per variable).
                keras.ops.convert_to_numpy(self.model.trainable_weights[self._index])
                self.weight_reads += 1
            now = time.perf_counter()
            self.times.append(now - self._last)
            self._last = now

    return StepTimer()


def make_dataset(x, y):
    """The batch (x, {task: label}) repeated forever, in the form `fit` takes on the current backend.

    TensorFlow: a `tf.data.Dataset`. JAX, PyTorch: a generator of backend
    tensors converted once (no TensorFlow import, no host-to-device copy per step).
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.data.Dataset.from_tensors((x, y)).repeat()
    batch = keras.tree.map_structure(keras.ops.convert_to_tensor, (x, y))

    def repeat():
        while True:
            yield batch

    return repeat()


def build_config(args, contrastive_on: bool):
    """(compiled model, endless batches, warm-up seconds) of one configuration, warmed up."""
    import keras

    from keras_mtcl import backbones, tasks
    from keras_mtcl.model import MultiTaskModel

    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()  # each configuration's own peak
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
    data = make_dataset(x, y)
    start = time.perf_counter()
    if args.warmup:
        model.fit(data, steps_per_epoch=args.warmup, epochs=1, verbose=0, shuffle=False)
        keras.ops.convert_to_numpy(model.trainable_weights[0])
    return model, data, time.perf_counter() - start


def timed_fit(model, data, steps: int) -> tuple[list[float], float]:
    """(per-step seconds, total seconds) of `steps` training steps in one `fit` call."""
    import keras

    timer = make_step_timer()
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
    keras.ops.convert_to_numpy(model.trainable_weights[0])
    return timer.times, time.perf_counter() - start


def report(args, model, contrastive_on: bool, warmup_s: float, times: list[float], elapsed: float) -> dict:
    import keras

    steps = len(times)
    return {
        "backend": keras.backend.backend(),
        "backbone": args.backbone,
        "framework": args.framework,
        "dataset": args.dataset,
        "size": list(args.size),
        "batch": args.batch,
        "precision": args.precision,
        "regularizer": contrastive_on,
        "jit_compile": not args.no_jit,
        "steps": steps,
        "rounds": args.rounds,
        "step_ms": 1000 * elapsed / steps,
        "step_ms_median": 1000 * statistics.median(times),
        "images_per_s": args.batch * steps / elapsed,
        "warmup_s": warmup_s,
        "peak_memory_mb": _peak_memory_mb(),
        "parameters": model.count_params(),
    }


def run_config(args, contrastive_on: bool) -> dict:
    """Builds, warms up and times one configuration on its own (`--rounds 1`)."""
    model, data, warmup_s = build_config(args, contrastive_on)
    times, elapsed = timed_fit(model, data, args.steps)
    return report(args, model, contrastive_on, warmup_s, times, elapsed)


def run_interleaved(args) -> dict:
    """Times every configuration in alternating blocks of `--steps` steps, `--rounds` times.

    All models are built and warmed up first; round r runs the configurations
    in order, round r + 1 in reverse order, so that a slow spell of a shared
    machine falls on both sides of the comparison.
    """
    built = {name: build_config(args, contrastive_on=name == "regularizer") for name in args.configs}
    times = {name: [] for name in args.configs}
    elapsed = dict.fromkeys(args.configs, 0.0)
    for round_index in range(args.rounds):
        order = args.configs if round_index % 2 == 0 else args.configs[::-1]
        for name in order:
            model, data, _ = built[name]
            block, seconds = timed_fit(model, data, args.steps)
            times[name] += block
            elapsed[name] += seconds
    return {
        name: report(args, built[name][0], name == "regularizer", built[name][2], times[name], elapsed[name])
        for name in args.configs
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
    parser.add_argument("--rounds", type=int, default=1,
                        help="> 1: build every config first, then time them in alternating blocks of --steps steps")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error(f"--steps must be >= 1 and --warmup >= 0. Received: --steps {args.steps} --warmup {args.warmup}")
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1. Received: --rounds {args.rounds}")
    results = run_interleaved(args) if args.rounds > 1 else {}
    for name in args.configs:
        if args.rounds == 1:
            results[name] = run_config(args, contrastive_on=name == "regularizer")
        if name == "regularizer" and "baseline" in results:
            base, reg = results["baseline"], results[name]
            reg["overhead_vs_baseline"] = reg["step_ms"] / base["step_ms"] - 1.0
            reg["overhead_median_vs_baseline"] = reg["step_ms_median"] / base["step_ms_median"] - 1.0
        print(json.dumps(results[name]), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
