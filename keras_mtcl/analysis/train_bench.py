"""Training throughput of the baseline and of the contrastive regularizer, side by side in one process.

For each configuration (`"baseline"`: regularizer off, `"regularizer"`: on)
the model is built, compiled and fitted on one in-memory batch repeated (no
input pipeline cost): `warmup` steps (compilation), then `steps` timed steps
in one `fit` call (`run_config`). On JAX and PyTorch the batch is converted
to backend tensors once (on the accelerator, if any) and a Python generator
yields them again and again, so TensorFlow is never imported on those
backends; on TensorFlow it is a `tf.data` dataset of the one batch, repeated.
With `rounds` > 1 (for shared, noisy machines) every configuration is built
and warmed up first, then timed in alternating blocks of `steps` steps
(`run_interleaved`, order reversed each round).

Timing: `keras_mtcl.analysis.timing.make_step_timer` records the host clock
at the end of every timed step, once the step's loss is on the host;
`step_ms_median` is the median of the intervals between consecutive step
ends, so it includes the Keras loop, the generator and the dispatch, as a
training run pays them. The per-step wait stops the host from queueing step
n+1 while step n runs (small next to steps of tens of milliseconds), and it
is the per-step synchronisation of `keras_mtcl.analysis.reference_torch`,
so the two compare like for like. `step_ms` (the mean) and `images_per_s`
come from the wall time of the whole timed `fit` call.

Each record holds images/s, mean and median step time, peak memory
(`timing.peak_memory_mb`: the configuration's own peak on PyTorch, the
process's peak so far on JAX and TensorFlow; else the peak RSS), the
parameters trained, and for the regularizer the overhead relative to the
baseline of the same process (`overhead_vs_baseline` from the means,
`overhead_median_vs_baseline` from the medians).

First step (`run_first_step`): the first training step, tracing and
compilation included (what a user waits for before the first log line),
each configuration in a fresh process, in CPU-seconds and wall seconds,
repetitions alternating the configurations. With `compare_root`, every
configuration also runs with the `keras_mtcl` package of another checkout
(e.g. a copy of the previous version), interleaved with this one. That
child process runs this file by path with the other checkout first on
PYTHONPATH, so what `first_step` calls imports only keras_mtcl's public
modules, never `keras_mtcl.analysis`.

`tools/bench_train.py` is the command.

Example:
>>> setup = BenchSetup(dataset="synthetic", size=(32, 48), batch=2)
>>> x, y = make_batch(task_specs(setup.dataset), setup.batch, *setup.size)
>>> x.shape, sorted(y)
((2, 32, 48, 3), ['depth', 'edge', 'human_parts', 'normals', 'saliency', 'semseg'])
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

CONFIGS = ("baseline", "regularizer")
PRECISIONS = ("fp32", "bf16")  # "bf16": Keras's mixed_bfloat16 policy


@dataclasses.dataclass(frozen=True)
class BenchSetup:
    """One training benchmark.

    Args:
        backbone: registered backbone name (random weights).
        framework: decoder name.
        dataset: task set: "nyud", "pascal" or "synthetic" (its six tasks,
            rendered scenes).
        size: (height, width) of the batch.
        batch: images per step.
        precision: "fp32" or "bf16" (Keras's mixed_bfloat16 policy).
        steps: timed steps (per round).
        warmup: untimed steps first (compilation).
        configs: among `CONFIGS`, in order.
        jit_compile: `compile(jit_compile=...)`: True, False or "auto".
        rounds: > 1: build every configuration first, then time them in
            alternating blocks of `steps` steps.
    """

    backbone: str = "tiny_cnn"
    framework: str = "baseline"
    dataset: str = "nyud"
    size: tuple[int, int] = (96, 128)
    batch: int = 8
    precision: str = "fp32"
    steps: int = 20
    warmup: int = 3
    configs: tuple[str, ...] = CONFIGS
    jit_compile: bool | str = True
    rounds: int = 1

    def __post_init__(self):
        if self.steps < 1 or self.warmup < 0 or self.rounds < 1:
            raise ValueError(
                "`steps` and `rounds` must be >= 1 and `warmup` >= 0. "
                f"Received: steps={self.steps}, warmup={self.warmup}, rounds={self.rounds}"
            )
        unknown = [c for c in self.configs if c not in CONFIGS]
        if unknown or self.precision not in PRECISIONS:
            raise ValueError(
                f"`configs` must be among {CONFIGS} and `precision` one of {PRECISIONS}. "
                f"Received: configs={list(self.configs)}, precision={self.precision!r}"
            )


def add_setup_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the flags of the model and batch of a `BenchSetup` (--backbone ... --precision) to `parser`.

    `setup_options(args)` reads them back as `BenchSetup` keyword arguments.
    """
    defaults = BenchSetup()
    parser.add_argument("--backbone", default=defaults.backbone, help="registered backbone (random weights)")
    parser.add_argument("--framework", default=defaults.framework, help="decoder")
    parser.add_argument("--dataset", default=defaults.dataset,
                        help="task set: nyud, pascal or synthetic (its six tasks, rendered scenes)")
    parser.add_argument("--size", nargs=2, type=int, default=list(defaults.size), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=defaults.batch, help="images per step")
    parser.add_argument("--precision", choices=PRECISIONS, default=defaults.precision,
                        help="bf16: Keras's mixed_bfloat16 policy")


def setup_options(args: argparse.Namespace) -> dict:
    """The `BenchSetup` keyword arguments of the flags of `add_setup_arguments`."""
    return dict(backbone=args.backbone, framework=args.framework, dataset=args.dataset, size=tuple(args.size),
                batch=args.batch, precision=args.precision)


def task_specs(dataset: str) -> list:
    """The tasks of `dataset`: a task set of `keras_mtcl.tasks` (nyud, pascal) or the six synthetic tasks."""
    if dataset == "synthetic":
        from keras_mtcl.data.synthetic import synthetic_tasks

        return synthetic_tasks()
    from keras_mtcl import tasks

    return tasks.task_set(dataset)


def make_batch(specs, batch: int, height: int, width: int, seed: int = 0, dataset: str | None = None):
    """One batch: image (B, H, W, 3) float32 and {task: (B, H, W, c) label}.

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


def build_trainer(setup: BenchSetup, regularized: bool):
    """(compiled `MultiTaskTrainer`, endless batches, warm-up seconds) of one configuration, warmed up.

    The trainer holds the inference model and, when `regularized`, the
    regularizer's projectors.
    """
    import keras

    from keras_mtcl import backbones
    from keras_mtcl.model import MultiTaskModel
    from keras_mtcl.trainer import MultiTaskTrainer

    if keras.backend.backend() == "torch":
        from keras_mtcl import optional

        torch = optional.import_optional("torch", "torch", "The PyTorch backend")
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()  # each configuration's own peak
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("mixed_bfloat16" if setup.precision == "bf16" else "float32")
    specs = task_specs(setup.dataset)
    regularizer = None
    if regularized:
        from keras_mtcl.contrastive import CrossTaskContrastive

        regularizer = CrossTaskContrastive(seed=0)
    model = MultiTaskModel(backbones.get_backbone(setup.backbone), specs, decoder=setup.framework)
    trainer = MultiTaskTrainer(model, regularizer=regularizer)
    trainer.compile(optimizer=keras.optimizers.AdamW(1e-4), jit_compile=setup.jit_compile)
    data = make_dataset(*make_batch(specs, setup.batch, *setup.size, dataset=setup.dataset))
    start = time.perf_counter()
    if setup.warmup:
        trainer.fit(data, steps_per_epoch=setup.warmup, epochs=1, verbose=0, shuffle=False)
        keras.ops.convert_to_numpy(trainer.trainable_weights[0])
    return trainer, data, time.perf_counter() - start


def timed_fit(trainer, data, steps: int) -> tuple[list[float], float]:
    """(per-step seconds, total seconds) of `steps` training steps in one `fit` call."""
    import keras

    from keras_mtcl.analysis.timing import make_step_timer

    timer = make_step_timer()
    start = time.perf_counter()
    trainer.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
    keras.ops.convert_to_numpy(trainer.trainable_weights[0])
    return timer.times, time.perf_counter() - start


def report(setup: BenchSetup, trainer, regularized: bool, warmup_s: float, times: list[float], elapsed: float) -> dict:
    """One configuration's record; `parameters` counts what is trained (the model, and the projectors if any)."""
    import keras

    from keras_mtcl.analysis import timing

    return {
        "backend": keras.backend.backend(),
        "backbone": setup.backbone,
        "framework": setup.framework,
        "dataset": setup.dataset,
        "size": list(setup.size),
        "batch": setup.batch,
        "precision": setup.precision,
        "regularizer": regularized,
        "jit_compile": setup.jit_compile,
        **timing.step_statistics(times, setup.batch, elapsed),
        "rounds": setup.rounds,
        "warmup_s": warmup_s,
        "peak_memory_mb": timing.peak_memory_mb(),
        "parameters": trainer.count_params(),
    }


def run_config(setup: BenchSetup, regularized: bool) -> dict:
    """Builds, warms up and times one configuration on its own."""
    trainer, data, warmup_s = build_trainer(setup, regularized)
    times, elapsed = timed_fit(trainer, data, setup.steps)
    return report(setup, trainer, regularized, warmup_s, times, elapsed)


def run_interleaved(setup: BenchSetup) -> dict[str, dict]:
    """Times every configuration in alternating blocks of `steps` steps, `rounds` times (built and warmed up first)."""
    from keras_mtcl.analysis.timing import alternating

    built = {name: build_trainer(setup, regularized=name == "regularizer") for name in setup.configs}
    times = {name: [] for name in setup.configs}
    elapsed = dict.fromkeys(setup.configs, 0.0)
    for order in alternating(setup.configs, setup.rounds):
        for name in order:
            trainer, data, _ = built[name]
            block, seconds = timed_fit(trainer, data, setup.steps)
            times[name] += block
            elapsed[name] += seconds
    return {
        name: report(setup, built[name][0], name == "regularizer", built[name][2], times[name], elapsed[name])
        for name in setup.configs
    }


def run(setup: BenchSetup, emit: Callable[[dict], None] = lambda record: None) -> dict[str, dict]:
    """{config: record} of every configuration (`run_interleaved` when `rounds` > 1), each passed to `emit` when done."""
    results = run_interleaved(setup) if setup.rounds > 1 else {}
    for name in setup.configs:
        if setup.rounds == 1:
            results[name] = run_config(setup, regularized=name == "regularizer")
        if name == "regularizer" and "baseline" in results:
            base, reg = results["baseline"], results[name]
            reg["overhead_vs_baseline"] = reg["step_ms"] / base["step_ms"] - 1.0
            reg["overhead_median_vs_baseline"] = reg["step_ms_median"] / base["step_ms_median"] - 1.0
        emit(results[name])
    return results


def first_step(setup: BenchSetup, config: str) -> dict:
    """Builds and compiles one configuration, then times its first `fit` step (run it in a fresh process).

    Returns:
        `first_step_cpu_s` (user + system CPU time of the process, all
        threads) and `first_step_wall_s` of the first step,
        `second_step_wall_s` of one more step, and the `package` folder the
        `keras_mtcl` in use comes from.
    """
    import keras

    import keras_mtcl

    trainer, data, _ = build_trainer(dataclasses.replace(setup, warmup=0), regularized=config == "regularizer")

    def one_step():
        trainer.fit(data, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)
        keras.ops.convert_to_numpy(trainer.trainable_weights[0])

    # Not `timing.cpu_and_wall`: this runs against other checkouts' keras_mtcl too (module docstring).
    start_cpu, start = time.process_time(), time.perf_counter()
    one_step()
    cpu_s, wall_s = time.process_time() - start_cpu, time.perf_counter() - start
    start = time.perf_counter()
    one_step()
    return {
        "backend": keras.backend.backend(),
        "config": config,
        "package": str(Path(keras_mtcl.__file__).resolve().parents[1]),
        "backbone": setup.backbone,
        "dataset": setup.dataset,
        "tasks": len(task_specs(setup.dataset)),
        "size": list(setup.size),
        "batch": setup.batch,
        "jit_compile": setup.jit_compile,
        "first_step_cpu_s": cpu_s,
        "first_step_wall_s": wall_s,
        "second_step_wall_s": time.perf_counter() - start,
        "trainable_variables": len(trainer.trainable_variables),
    }


# Runs this file as a script by path. `-P -c`: neither the script's folder nor the working directory goes on
# sys.path, so its modules shadow nothing and `keras_mtcl` comes from PYTHONPATH or the installed package.
_CHILD = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"


def run_first_step(
    setup: BenchSetup,
    repetitions: int,
    compare_root: str | os.PathLike | None = None,
    emit: Callable[[dict], None] = lambda record: None,
) -> dict[str, dict]:
    """`repetitions` alternating repetitions of every configuration's `first_step`, each in a fresh process.

    Args:
        setup: the benchmark; its `configs` are measured.
        repetitions: runs per configuration (and per checkout).
        compare_root: another checkout whose `keras_mtcl` is measured too,
            interleaved with this one.
        emit: receives each run's record, tagged with `root` ("current" or
            "compare") and `repetition`.

    Returns:
        {"<config>@<root>": {"first_step_cpu_s_median", "first_step_wall_s_median",
        "trainable_variables"}}, the regularizer's with its `cpu_ratio_vs_baseline`
        and `wall_ratio_vs_baseline` of the same root.
    """
    from keras_mtcl.analysis.timing import alternating

    roots = [("current", None)] + ([("compare", compare_root)] if compare_root else [])
    runs = [(config, label, root) for label, root in roots for config in setup.configs]
    results: dict[tuple[str, str], list[dict]] = {(c, label): [] for c, label, _ in runs}
    fields = {**dataclasses.asdict(setup), "warmup": 0}
    for repetition, order in enumerate(alternating(runs, repetitions)):
        for config, label, root in order:
            env = dict(os.environ)
            if root:
                # Another checkout's keras_mtcl: PYTHONPATH comes before the installed package.
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(root).resolve()), env.get("PYTHONPATH")]))
            command = [sys.executable, "-P", "-c", _CHILD, str(Path(__file__).resolve()), json.dumps(fields), config]
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{config} ({label}) failed:\n{done.stderr[-4000:]}")
            record = json.loads(done.stdout.strip().splitlines()[-1])
            record.update(root=label, repetition=repetition)
            emit(record)
            results[(config, label)].append(record)
    summary = {}
    for (config, label), records in results.items():
        summary[f"{config}@{label}"] = {
            "first_step_cpu_s_median": statistics.median(r["first_step_cpu_s"] for r in records),
            "first_step_wall_s_median": statistics.median(r["first_step_wall_s"] for r in records),
            "trainable_variables": records[0]["trainable_variables"],
        }
    for label, _ in roots:
        base, reg = summary.get(f"baseline@{label}"), summary.get(f"regularizer@{label}")
        if base and reg:
            reg["cpu_ratio_vs_baseline"] = reg["first_step_cpu_s_median"] / base["first_step_cpu_s_median"]
            reg["wall_ratio_vs_baseline"] = reg["first_step_wall_s_median"] / base["first_step_wall_s_median"]
    return summary


__all__ = ["CONFIGS", "PRECISIONS", "BenchSetup", "add_setup_arguments", "build_trainer", "first_step", "make_batch",
           "make_dataset", "report", "run", "run_config", "run_first_step", "run_interleaved", "setup_options",
           "task_specs", "timed_fit"]


def _child(argv: Sequence[str]) -> None:
    fields, config = json.loads(argv[1]), argv[2]
    setup = BenchSetup(**{**fields, "size": tuple(fields["size"]), "configs": tuple(fields["configs"])})
    print(json.dumps(first_step(setup, config)), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _child(sys.argv)
