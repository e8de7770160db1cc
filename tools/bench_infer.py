"""Inference cost of the exported SavedModel, trained without and with the contrastive regularizer.

    python tools/bench_infer.py
    python tools/bench_infer.py --backbone tiny_cnn --size 96 128 --iterations 100
    python tools/bench_infer.py --backbone hrnet_w18 --framework mtinet --size 448 576 --iterations 20

The paper's claim, checked on the deployed artefact: the regularizer costs
nothing at inference. Two models are built from one RunConfig (the preset,
default "smoke", with --backbone, --framework and --size), one with
`contrastive=False` and one with `contrastive=True`; each is trained
--train-steps steps on synthetic scenes by its `MultiTaskTrainer` (the
regularized run's trainer holds the projectors and reports its contrastive
loss and triplet fraction, so they were used) and the trained inference
model (`trainer.model`) is exported with
`keras_mtcl.export.export_saved_model`. Then, per model:

- parameters of the inference model and FLOPs of one (1, H, W, 3) forward
  pass (`tools/model_table.py`'s counter), FLOPs of the SavedModel's serving
  signature on a (1, H, W, 3) uint8 image (normalisation, padding and
  post-processing included) and its graph's op-type counts;
- serving outputs (name, shape, dtype), SavedModel variables (count and
  scalars) and size on disk;
- latency at batch 1 (median, p90) and throughput at --throughput-batch,
  timed on both SavedModels loaded in this process, interleaved: blocks of
  --block calls alternate between the models (A B, then B A, ...) so that
  machine noise hits both alike.

Prints one JSON line per model and a final line with the ratios
(regularized / baseline) and which checks held. Exits with status 1 if the
parameters, FLOPs, outputs, variables or serving graph differ.

Runs on the TensorFlow backend (this script sets KERAS_BACKEND=tensorflow
for itself): SavedModels are written from TensorFlow.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

os.environ["KERAS_BACKEND"] = "tensorflow"  # SavedModel export runs on TensorFlow
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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
    if backbone is not None and backbone != config.backbone:
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
    examples, specs = open_split(
        config.dataset, "train", manual_dir=config.manual_dir, data_dir=config.data_dir, tasks=config.tasks,
        synthetic_size=config.synthetic_size, synthetic_count=config.synthetic_train, seed=config.seed,
    )
    batches = pipeline.train_pipeline(
        examples, specs, batch_size=config.batch_size, crop_size=tuple(config.image_size), seed=config.seed
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


def _frozen_serving_graph(signature, height: int, width: int):
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda images: signature(images=images), autograph=False)
    concrete = fn.get_concrete_function(tf.TensorSpec([1, height, width, 3], tf.uint8))
    return convert_variables_to_constants_v2(concrete).graph


def _graph_op_counts(graph) -> dict[str, int]:
    """Op types and their counts over a graph and every function in its library."""
    graph_def = graph.as_graph_def()
    counts = collections.Counter(node.op for node in graph_def.node)
    for function in graph_def.library.function:
        counts.update(node.op for node in function.node_def)
    return dict(sorted(counts.items()))


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
    from tools.model_table import inference_flops

    directory = Path(directory)
    served = export.inference_model(model)
    export.export_saved_model(model, directory)
    loaded = tf.saved_model.load(str(directory))
    signature = loaded.signatures["serving_default"]
    image = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype="uint8")
    outputs = signature(images=tf.constant(image))
    graph = _frozen_serving_graph(signature, height, width)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    serving_flops = int(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)
    return {
        "parameters": served.count_params(),
        "flops": inference_flops(served, height, width),
        "serving_flops": serving_flops,
        "serving_graph_ops": _graph_op_counts(graph),
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
        for round_index in range(-(-iterations // block)):
            order = names if round_index % 2 == 0 else names[::-1]
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


def compare(
    models: Mapping[str, Any],
    workdir: str | os.PathLike,
    height: int,
    width: int,
    iterations: int = 50,
    warmup: int = 5,
    block: int = 5,
    throughput_batch: int = 8,
) -> dict:
    """Exports, describes and times two models; the core of this tool.

    Args:
        models: {"baseline": model, "regularized": model} (`MultiTaskModel`s;
            any two names, the first is the reference of the ratios).
        workdir: folder for the SavedModels (`<workdir>/<name>`).
        height, width: image size for FLOPs and timing.
        iterations, warmup, block, throughput_batch: as in `time_saved_models`.

    Returns:
        {"models": {name: describe_saved_model(...) | time_saved_models(...)[name]},
        "identical": {fact: bool for fact in CHECKED},
        "ratios": {timing: second / first}, "all_identical": bool}.
    """
    if len(models) != 2:
        raise ValueError(f"`models` must hold two models to compare. Received: models with keys {list(models)}")
    names = list(models)
    records = {n: describe_saved_model(models[n], Path(workdir) / n, height, width) for n in names}
    timings = time_saved_models(
        {n: records[n]["saved_model"] for n in names}, height, width, iterations, warmup, block, throughput_batch
    )
    for name in names:
        records[name].update(timings[name])
    first, second = (records[n] for n in names)
    identical = {fact: first[fact] == second[fact] for fact in CHECKED}
    ratios = {
        key: second[key] / first[key]
        for key in ("latency_ms_median", "latency_ms_p90", "throughput_images_per_s", "saved_model_bytes")
    }
    return {"models": records, "identical": identical, "ratios": ratios, "all_identical": all(identical.values())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="smoke", help="RunConfig preset the models are built from")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a config field")
    parser.add_argument("--backbone", default="efficientnet_lite0", help="backbone (random weights)")
    parser.add_argument("--framework", default="baseline", help="decoder: baseline, padnet, mtinet")
    parser.add_argument("--size", nargs=2, type=int, default=[192, 256], metavar=("H", "W"),
                        help="training crop, FLOP and timing image size")
    parser.add_argument("--train-steps", type=int, default=3, help="training steps per model")
    parser.add_argument("--train-batch", type=int, default=2, help="training batch size")
    parser.add_argument("--iterations", type=int, default=50, help="timed calls per model and batch size")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per model and batch size")
    parser.add_argument("--block", type=int, default=5, help="consecutive calls of one model before switching")
    parser.add_argument("--throughput-batch", type=int, default=8, help="batch size of the throughput timing")
    parser.add_argument("--workdir", help="where the SavedModels are written (default: a temporary folder)")
    args = parser.parse_args(argv)

    import keras

    config = make_config(args.preset, args.set, args.backbone, args.framework, args.size, args.train_batch,
                         args.train_steps)
    models, training_facts = train_pair(config, args.train_steps)
    with tempfile.TemporaryDirectory() as temporary:
        result = compare(models, args.workdir or temporary, *args.size, iterations=args.iterations,
                         warmup=args.warmup, block=args.block, throughput_batch=args.throughput_batch)
    common = {"backend": keras.backend.backend(), "backbone": config.backbone, "framework": config.framework,
              "tasks": list(models["baseline"].task_names), "size": list(args.size)}
    for name in MODEL_NAMES:
        record = dict(result["models"][name])
        ops_total = sum(record.pop("serving_graph_ops").values())
        if not args.workdir:
            record.pop("saved_model")
        print(json.dumps({"model": name, **common, **training_facts[name], **record, "serving_graph_op_count": ops_total}),
              flush=True)
    print(json.dumps({"ratios_regularized_over_baseline": result["ratios"], "identical": result["identical"]}),
          flush=True)
    if not result["all_identical"]:
        differing = [fact for fact, same in result["identical"].items() if not same]
        print(f"error: the regularized model's SavedModel differs from the baseline's in {differing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
