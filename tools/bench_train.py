"""Training throughput: baseline vs the contrastive regularizer, side by side in one process.

    KERAS_BACKEND=jax python tools/bench_train.py --backbone tiny_cnn --size 96 128 --batch 8
    KERAS_BACKEND=jax python tools/bench_train.py --backbone hrnet_w18 --size 448 576 --batch 8 --precision bf16
    KERAS_BACKEND=jax python tools/bench_train.py --backbone hrnet_w18_small_v2 --size 224 288 --batch 4 --steps 5 --rounds 4
    KERAS_BACKEND=tensorflow python tools/bench_train.py --first-step 3 --dataset synthetic --size 64 96 --batch 4 --no-jit

With `--first-step R` the tool measures the first training step instead
(tracing and compilation included, what a user waits for before the first
log line): each configuration runs in a fresh subprocess that builds and
compiles the trainer, then times one `fit` step in CPU-seconds (the
process's user + system time over all threads, steadier than wall time on a
shared machine) and wall seconds. The R repetitions alternate the
configurations (order reversed each repetition); it prints one JSON line per
run and a summary line with the medians and each configuration's ratio to
the baseline. `--compare-root DIR` also runs every configuration with the
`keras_mtcl` package of another checkout (e.g. a copy of the previous
version), interleaved with the current one, for before/after ratios from
one run.

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


def task_specs(dataset: str) -> list:
    """The tasks of `dataset`: a task set of `keras_mtcl.tasks` (nyud, pascal) or the six synthetic tasks."""
    if dataset == "synthetic":
        from keras_mtcl.data.synthetic import synthetic_tasks

        return synthetic_tasks()
    from keras_mtcl import tasks

    return tasks.task_set(dataset)


def make_batch(specs, batch: int, height: int, width: int, seed: int = 0, dataset: str | None = None):
    """One batch: image (B, H, W, 3) float32 and {task: label}.

    `dataset="synthetic"`: rendered scenes (`keras_mtcl.data.synthetic.make_scenes`,
    labels consistent across tasks). Otherwise random labels
    (`keras_mtcl.testing.labels`) constant over 16 x 16 blocks, so that the
    regularizer's anchors find positives and negatives, with some invalid blocks.
    """
    import numpy as np

    from keras_mtcl.testing.labels import random_labels

    if dataset == "synthetic":
        from keras_mtcl.data.synthetic import make_scenes

        scenes = make_scenes(batch, height, width, seed=seed)
        x = (scenes["image"].astype("float32") / 127.5 - 1.0).astype("float32")
        return x, {t.name: scenes[t.name] for t in specs}
    x = np.random.default_rng(seed).normal(size=(batch, height, width, 3)).astype("float32")
    return x, random_labels(specs, batch, height, width, seed=[seed, 1], block=16)


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
    """(compiled trainer, endless batches, warm-up seconds) of one configuration, warmed up.

    The trainer (`keras_mtcl.trainer.MultiTaskTrainer`) holds the inference
    model and, with the regularizer on, the regularizer's projectors.
    """
    import keras

    from keras_mtcl import backbones
    from keras_mtcl.model import MultiTaskModel
    from keras_mtcl.trainer import MultiTaskTrainer

    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()  # each configuration's own peak
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("mixed_bfloat16" if args.precision == "bf16" else "float32")
    specs = task_specs(args.dataset)
    regularizer = None
    if contrastive_on:
        from keras_mtcl.contrastive import CrossTaskContrastive

        regularizer = CrossTaskContrastive(seed=0)
    model = MultiTaskModel(backbones.get_backbone(args.backbone), specs, decoder=args.framework)
    trainer = MultiTaskTrainer(model, regularizer=regularizer)
    trainer.compile(optimizer=keras.optimizers.AdamW(1e-4), jit_compile=not args.no_jit)
    x, y = make_batch(specs, args.batch, *args.size, dataset=args.dataset)
    data = make_dataset(x, y)
    start = time.perf_counter()
    if args.warmup:
        trainer.fit(data, steps_per_epoch=args.warmup, epochs=1, verbose=0, shuffle=False)
        keras.ops.convert_to_numpy(trainer.trainable_weights[0])
    return trainer, data, time.perf_counter() - start


def timed_fit(trainer, data, steps: int) -> tuple[list[float], float]:
    """(per-step seconds, total seconds) of `steps` training steps in one `fit` call."""
    import keras

    timer = make_step_timer()
    start = time.perf_counter()
    trainer.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
    keras.ops.convert_to_numpy(trainer.trainable_weights[0])
    return timer.times, time.perf_counter() - start


def report(args, trainer, contrastive_on: bool, warmup_s: float, times: list[float], elapsed: float) -> dict:
    """One configuration's numbers; `parameters` counts what is trained (the model, and the projectors if any)."""
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
        "parameters": trainer.count_params(),
    }


def run_config(args, contrastive_on: bool) -> dict:
    """Builds, warms up and times one configuration on its own (`--rounds 1`)."""
    trainer, data, warmup_s = build_config(args, contrastive_on)
    times, elapsed = timed_fit(trainer, data, args.steps)
    return report(args, trainer, contrastive_on, warmup_s, times, elapsed)


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
            trainer, data, _ = built[name]
            block, seconds = timed_fit(trainer, data, args.steps)
            times[name] += block
            elapsed[name] += seconds
    return {
        name: report(args, built[name][0], name == "regularizer", built[name][2], times[name], elapsed[name])
        for name in args.configs
    }


def first_step_child(args) -> dict:
    """In a fresh process: builds and compiles one configuration, then times its first `fit` step.

    Returns `cpu_s` (user + system CPU time of the process, all threads) and
    `wall_s` of the first step, and `second_step_wall_s` of one more step.
    """
    import keras

    from keras_mtcl.trainer import MultiTaskTrainer  # noqa: F401  (import cost outside the timing)

    args.warmup = 0
    trainer, data, _ = build_config(args, contrastive_on=args.configs[0] == "regularizer")
    start_cpu, start = time.process_time(), time.perf_counter()
    trainer.fit(data, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)
    keras.ops.convert_to_numpy(trainer.trainable_weights[0])
    cpu_s, wall_s = time.process_time() - start_cpu, time.perf_counter() - start
    start = time.perf_counter()
    trainer.fit(data, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)
    keras.ops.convert_to_numpy(trainer.trainable_weights[0])
    import keras_mtcl

    return {
        "backend": keras.backend.backend(),
        "config": args.configs[0],
        "package": str(Path(keras_mtcl.__file__).resolve().parents[1]),
        "backbone": args.backbone,
        "dataset": args.dataset,
        "tasks": len(task_specs(args.dataset)),
        "size": list(args.size),
        "batch": args.batch,
        "jit_compile": not args.no_jit,
        "first_step_cpu_s": cpu_s,
        "first_step_wall_s": wall_s,
        "second_step_wall_s": time.perf_counter() - start,
        "trainable_variables": len(trainer.trainable_variables),
    }


def run_first_step(args, argv) -> dict:
    """`--first-step R`: R alternating repetitions of every configuration, each in a fresh subprocess."""
    import subprocess

    child_argv = [a for a in argv]
    # Drop the parent-only options (and their values) from the child's command line.
    for option, takes_value in (("--first-step", True), ("--compare-root", True), ("--configs", None)):
        while option in child_argv:
            i = child_argv.index(option)
            end = i + 1
            if takes_value:
                end = i + 2
            else:
                while end < len(child_argv) and not child_argv[end].startswith("--"):
                    end += 1
            del child_argv[i:end]
    roots = [("current", None)] + ([("compare", args.compare_root)] if args.compare_root else [])
    runs = [(config, label, root) for label, root in roots for config in args.configs]
    results: dict[tuple[str, str], list[dict]] = {(c, label): [] for c, label, _ in runs}
    for repetition in range(args.first_step):
        order = runs if repetition % 2 == 0 else runs[::-1]
        for config, label, root in order:
            env = dict(os.environ)
            if root:
                # Another checkout's keras_mtcl: PYTHONPATH comes before the installed package.
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(root).resolve()), env.get("PYTHONPATH")]))
            command = [sys.executable, str(Path(__file__).resolve()), "--first-step-child", "--configs", config] + child_argv
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{config} ({label}) failed:\n{done.stderr[-4000:]}")
            record = json.loads(done.stdout.strip().splitlines()[-1])
            record.update(root=label, repetition=repetition)
            print(json.dumps(record), flush=True)
            results[(config, label)].append(record)
    summary = {}
    for (config, label), records in results.items():
        summary[f"{config}@{label}"] = {
            "first_step_cpu_s_median": statistics.median(r["first_step_cpu_s"] for r in records),
            "first_step_wall_s_median": statistics.median(r["first_step_wall_s"] for r in records),
            "trainable_variables": records[0]["trainable_variables"],
        }
    for label, _ in roots:
        base = summary.get(f"baseline@{label}")
        reg = summary.get(f"regularizer@{label}")
        if base and reg:
            reg["cpu_ratio_vs_baseline"] = reg["first_step_cpu_s_median"] / base["first_step_cpu_s_median"]
            reg["wall_ratio_vs_baseline"] = reg["first_step_wall_s_median"] / base["first_step_wall_s_median"]
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="tiny_cnn")
    parser.add_argument("--framework", default="baseline")
    parser.add_argument("--dataset", default="nyud", help="task set: nyud, pascal or synthetic (its six tasks, rendered scenes)")
    parser.add_argument("--size", nargs=2, type=int, default=[96, 128])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--configs", nargs="+", choices=["baseline", "regularizer"], default=["baseline", "regularizer"])
    parser.add_argument("--no-jit", action="store_true", help="compile(jit_compile=False)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="> 1: build every config first, then time them in alternating blocks of --steps steps")
    parser.add_argument("--first-step", type=int, default=0, metavar="R",
                        help="time the first training step (compilation included) in R alternating repetitions, "
                        "each configuration in a fresh subprocess")
    parser.add_argument("--compare-root", default=None,
                        help="with --first-step: also run every configuration with the keras_mtcl of this checkout")
    parser.add_argument("--first-step-child", action="store_true", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.first_step_child:
        print(json.dumps(first_step_child(args)), flush=True)
        return 0
    if args.first_step:
        print(json.dumps({"summary": run_first_step(args, argv)}), flush=True)
        return 0
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
