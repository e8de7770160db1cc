"""Inference cost of the exported SavedModel, trained without and with the contrastive regularizer.

The paper's claim, checked on the deployed artefact: the regularizer costs
nothing at inference. Two models are built from one RunConfig
(`make_config`), one with `contrastive=False` and one with
`contrastive=True`; each is trained a few steps on synthetic scenes by its
`MultiTaskTrainer` (`train_pair`: the regularized run's trainer holds the
projectors and reports its contrastive loss and triplet fraction, so they
were used) and the trained inference model (`trainer.model`) is exported
with `keras_mtcl.export.export_saved_model`. Then, per model
(`describe_saved_model`):

- parameters of the inference model and FLOPs of one (1, H, W, 3) forward
  pass (`keras_mtcl.analysis.flops`), FLOPs of the SavedModel's serving
  signature on a (1, H, W, 3) uint8 image (normalisation, padding and
  post-processing included) and its graph's op-type counts;
- serving outputs (name, shape, dtype), SavedModel variables (count and
  scalars) and size on disk;
- latency at batch 1 (median, p90) and throughput at a larger batch, timed
  on both SavedModels loaded in one process, interleaved
  (`time_saved_models`): blocks of calls alternate between the models
  (A B, then B A, ...) so that machine noise hits both alike.

`compare` does all of it and says which of the `CHECKED` facts are equal.
Runs on the TensorFlow backend (SavedModels are written from TensorFlow).
`tools/bench_infer.py` is the command.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

MODEL_NAMES = ("baseline", "regularized")
# Facts that must be equal for the two models; a difference is a failure.
CHECKED = ("parameters", "flops", "serving_flops", "outputs", "variables", "serving_graph_ops")


def make_config(
    preset: str = "smoke",
    overrides: Sequence[str] = (),
    backbone: str | None = None,
    framework: str | None = None,
    size: Sequence[int] | None = None,
    batch_size: int = 2,
    train_steps: int = 3,
):
    """The RunConfig both models are built from (`contrastive` is set per model later).

    A `backbone` other than the preset's drops the preset's backbone options
    (its own defaults, random weights, apply); `--set` overrides come last.
    """
    from keras_mtcl import presets

    config = presets.get_preset(preset)
    changes: dict[str, Any] = {"batch_size": batch_size, "synthetic_train": max(batch_size * train_steps, batch_size)}
    if backbone is not None and backbone != config.model.backbone:
        changes.update(backbone=backbone, backbone_options={})
    if framework is not None:
        changes["framework"] = framework
    if size is not None:
        changes.update(image_size=tuple(size), synthetic_size=tuple(size))
    return presets.apply_overrides(config.replace(**changes), overrides)


def train_pair(config, train_steps: int) -> tuple[dict, dict]:
    """Builds and trains the baseline and the regularized model of `config` on the same synthetic batches.

    Returns:
        ({name: trained inference MultiTaskModel}, {name: training facts})
        with names `MODEL_NAMES`; the facts hold the parameter count of what
        was trained (the trainer's: the model and, if any, the projectors)
        and the last step's losses (`contrastive_<task>`,
        `contrastive_triplet_fraction` for the regularized model).
    """
    import keras

    from keras_mtcl import training
    from keras_mtcl.data import pipeline
    from keras_mtcl.data.sources import open_split

    if train_steps < 1:
        raise ValueError(f"`train_steps` must be >= 1. Received: train_steps={train_steps}")
    data = config.data
    examples, specs = open_split(
        data.dataset, "train", manual_dir=data.manual_dir, data_dir=data.data_dir, tasks=data.tasks,
        synthetic_size=data.synthetic_size, synthetic_count=data.synthetic_train, seed=config.seed,
    )
    batches = pipeline.train_pipeline(
        examples, specs, batch_size=data.batch_size, crop_size=tuple(data.image_size), seed=config.seed
    ).repeat()
    models, facts = {}, {}
    for name in MODEL_NAMES:
        keras.utils.set_random_seed(config.seed)
        run_config = config.replace(contrastive=name == "regularized")
        model = training.build_model(run_config, specs)
        trainer = training.build_trainer(run_config, model)
        trainer.compile(optimizer=training.build_optimizer(config, train_steps))
        start = time.perf_counter()
        history = trainer.fit(batches, steps_per_epoch=train_steps, epochs=1, verbose=0, shuffle=False).history
        last = {key: float(values[-1]) for key, values in history.items()}
        record = {
            "train_steps": train_steps,
            "train_s": time.perf_counter() - start,
            "training_parameters": trainer.count_params(),
            "loss": last["loss"],
        }
        if trainer.regularizer is not None:
            record["projectors"] = len(trainer.regularizer.projectors)
            record["contrastive"] = {k: v for k, v in last.items() if k.startswith("contrastive_")}
        models[name], facts[name] = trainer.model, record
    return models, facts


def describe_saved_model(model, directory: str | os.PathLike, height: int, width: int) -> dict:
    """Exports `model` to `directory` and reports what the SavedModel serves and costs to store.

    Args:
        model: a `MultiTaskModel` (or a `MultiTaskTrainer`: its inference model is exported).
        directory: where the SavedModel is written.
        height, width: image size of the FLOP counts.

    Returns:
        {"parameters": inference model's parameter count, "flops": FLOPs of
        the network on (1, H, W, 3), "serving_flops": FLOPs of the serving
        signature on (1, H, W, 3) uint8, "serving_graph_ops": {op type: count},
        "outputs": {name: [shape, dtype]} from a run of the signature,
        "variables": count, "variable_scalars": total size,
        "saved_model_bytes": size on disk, "saved_model": directory}.
    """
    import tensorflow as tf

    from keras_mtcl import export
    from keras_mtcl.analysis import flops

    directory = Path(directory)
    served = export.inference_model(model)
    export.export_saved_model(model, directory)
    loaded = tf.saved_model.load(str(directory))
    signature = loaded.signatures["serving_default"]
    image = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype="uint8")
    outputs = signature(images=tf.constant(image))
    graph = flops.frozen_graph(lambda images: signature(images=images), tf.TensorSpec([1, height, width, 3], tf.uint8))
    return {
        "parameters": served.count_params(),
        "flops": flops.inference_flops(served, height, width),
        "serving_flops": flops.graph_flops(graph),
        "serving_graph_ops": flops.graph_op_counts(graph),
        "outputs": {k: [list(v.shape), v.dtype.name] for k, v in sorted(outputs.items())},
        "variables": len(loaded.variables),
        "variable_scalars": int(sum(np.prod(v.shape) for v in loaded.variables)),
        "saved_model_bytes": sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()),
        "saved_model": str(directory),
    }


def time_saved_models(
    directories: Mapping[str, str | os.PathLike],
    height: int,
    width: int,
    iterations: int = 50,
    warmup: int = 5,
    block: int = 5,
    throughput_batch: int = 8,
    seed: int = 0,
) -> dict[str, dict]:
    """Times the serving signatures of SavedModels loaded side by side, interleaved.

    For batch 1 and then `throughput_batch`, each model gets `warmup`
    untimed calls, then `iterations` timed calls in blocks of `block`; the
    blocks alternate between the models, and the order within each round is
    reversed every round (A B, B A, ...). A call is timed until its outputs
    are numpy arrays. Every model sees the same uint8 images.

    Returns:
        {name: {"latency_ms_median", "latency_ms_p90": batch-1 call times,
        "throughput_images_per_s": throughput_batch * calls / time spent in
        them, "throughput_batch", "iterations"}}.
    """
    import tensorflow as tf

    for name, value, minimum in (("iterations", iterations, 1), ("warmup", warmup, 0), ("block", block, 1),
                                 ("throughput_batch", throughput_batch, 1)):
        if value < minimum:
            raise ValueError(f"`{name}` must be >= {minimum}. Received: {name}={value}")
    from keras_mtcl.analysis.timing import alternating

    names = list(directories)
    signatures = {n: tf.saved_model.load(str(directories[n])).signatures["serving_default"] for n in names}
    rng = np.random.default_rng(seed)
    times: dict[int, dict[str, list[float]]] = {}
    for batch in (1, throughput_batch):
        images = tf.constant(rng.integers(0, 256, (batch, height, width, 3), dtype="uint8"))

        def call(name):
            start = time.perf_counter()
            outputs = signatures[name](images=images)
            for value in outputs.values():
                value.numpy()
            return time.perf_counter() - start

        for name in names:
            for _ in range(warmup):
                call(name)
        times[batch] = {n: [] for n in names}
        for order in alternating(names, -(-iterations // block)):
            for name in order:
                for _ in range(min(block, iterations - len(times[batch][name]))):
                    times[batch][name].append(call(name))
    results = {}
    for name in names:
        latency = np.asarray(times[1][name]) * 1000
        results[name] = {
            "latency_ms_median": float(np.median(latency)),
            "latency_ms_p90": float(np.percentile(latency, 90)),
            "throughput_images_per_s": throughput_batch * len(times[throughput_batch][name])
            / float(np.sum(times[throughput_batch][name])),
            "throughput_batch": throughput_batch,
            "iterations": iterations,
        }
    return results


def compare(models: Mapping[str, Any], workdir: str | os.PathLike, height: int, width: int, **timing: int) -> dict:
    """Exports, describes and times two models.

    Args:
        models: {"baseline": model, "regularized": model} (`MultiTaskModel`s;
            any two names, the first is the reference of the ratios).
        workdir: folder for the SavedModels (`<workdir>/<name>`).
        height, width: image size for FLOPs and timing.
        **timing: `iterations`, `warmup`, `block`, `throughput_batch` of `time_saved_models`.

    Returns:
        {"models": {name: describe_saved_model(...) | time_saved_models(...)[name]},
        "identical": {fact: bool for fact in CHECKED},
        "ratios": {timing: second / first}, "all_identical": bool}.
    """
    if len(models) != 2:
        raise ValueError(f"`models` must hold two models to compare. Received: models with keys {list(models)}")
    names = list(models)
    records = {n: describe_saved_model(models[n], Path(workdir) / n, height, width) for n in names}
    timings = time_saved_models({n: records[n]["saved_model"] for n in names}, height, width, **timing)
    for name in names:
        records[name].update(timings[name])
    first, second = (records[n] for n in names)
    identical = {fact: first[fact] == second[fact] for fact in CHECKED}
    ratios = {
        key: second[key] / first[key]
        for key in ("latency_ms_median", "latency_ms_p90", "throughput_images_per_s", "saved_model_bytes")
    }
    return {"models": records, "identical": identical, "ratios": ratios, "all_identical": all(identical.values())}


__all__ = ["CHECKED", "MODEL_NAMES", "compare", "describe_saved_model", "make_config", "time_saved_models",
           "train_pair"]
