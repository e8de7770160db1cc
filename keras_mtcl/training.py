"""Training runs from a `RunConfig`: model, optimizer, data, callbacks, outputs.

The apps are thin wrappers over these functions, so a run can be scripted:

    from keras_mtcl import presets, training
    result = training.train(presets.get_preset("smoke"))
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_mtcl import backbones
from keras_mtcl.evaluation import evaluate_model, format_table
from keras_mtcl.metrics import task_metrics
from keras_mtcl.model import MultiTaskModel
from keras_mtcl.presets import RunConfig
from keras_mtcl.tasks import TaskSpec
from keras_mtcl.trainer import MultiTaskTrainer


def build_model(config: RunConfig, task_specs: list[TaskSpec]) -> MultiTaskModel:
    """The inference `MultiTaskModel` of `config` for `task_specs`."""
    backbone = backbones.get_backbone(config.backbone, **dict(config.backbone_options))
    return MultiTaskModel(backbone, task_specs, decoder=config.framework, decoder_options=dict(config.decoder_options))


def build_trainer(config: RunConfig, model: MultiTaskModel) -> MultiTaskTrainer:
    """The `MultiTaskTrainer` of `config` around `model` (with the regularizer if `config.contrastive`)."""
    regularizer = None
    if config.contrastive:
        from keras_mtcl.contrastive import CrossTaskContrastive

        if len(model.task_specs) < 2:
            raise ValueError(
                "The contrastive regularizer needs at least two tasks (each task's source is another task). "
                f"Received: tasks={model.task_names}"
            )
        regularizer = CrossTaskContrastive(**{"seed": config.seed, **dict(config.contrastive_options)})
    return MultiTaskTrainer(model, regularizer=regularizer)


def build_optimizer(config: RunConfig, total_steps: int) -> keras.optimizers.Optimizer:
    """Adam / AdamW / SGD(0.9) with a per-step poly decay or a constant rate (PEERS.md 3)."""
    learning_rate: Any = config.learning_rate
    if config.schedule == "poly":
        learning_rate = keras.optimizers.schedules.PolynomialDecay(
            config.learning_rate, decay_steps=max(total_steps, 1), end_learning_rate=0.0, power=config.poly_power
        )
    common = {"learning_rate": learning_rate}
    if config.clipnorm:
        common["clipnorm"] = config.clipnorm
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=0.9, weight_decay=config.weight_decay or None, **common)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(weight_decay=config.weight_decay, **common)
    return keras.optimizers.Adam(weight_decay=config.weight_decay or None, **common)


def load_data(config: RunConfig):
    """(train examples, val examples, task specs): tf.data datasets of dict examples.

    Examples are in the package's example format (`keras_mtcl.data`).
    """
    from keras_mtcl.data.sources import open_split

    common = dict(
        manual_dir=config.manual_dir,
        data_dir=config.data_dir,
        tasks=config.tasks,
        synthetic_size=config.synthetic_size,
        seed=config.seed,
    )
    start = time.time()
    if config.dataset == "synthetic":
        height, width = config.synthetic_size
        print(f"Rendering {config.synthetic_train} + {config.synthetic_val} synthetic scenes at {height}x{width} ...")
    train_ds, specs = open_split(config.dataset, "train", synthetic_count=config.synthetic_train, **common)
    val_ds, _ = open_split(config.dataset, "val", synthetic_count=config.synthetic_val, **common)
    print(f"Data ready in {time.time() - start:.1f} s: tasks {[t.name for t in specs]}")
    return train_ds, val_ds, specs


def make_pipelines(config: RunConfig, train_ds, val_ds, specs: list[TaskSpec]):
    """(training batches, evaluation batches) of `config` from example datasets.

    Training: shuffled, augmented (unless `config.augment` is false), cropped
    to `config.image_size`, batched. Evaluation: padded to `config.eval_size`
    (or `image_size`) with each image's original size in the batch's meta.
    """
    from keras_mtcl.data import pipeline

    # Without augmentation: no rescaling, flip or colour changes; crops only (to the training size).
    plain = {} if config.augment else {"scale_range": (1.0, 1.0), "flip_probability": 0.0, "photometric": False}
    train = pipeline.train_pipeline(
        train_ds, specs, batch_size=config.batch_size, crop_size=tuple(config.image_size), seed=config.seed, **plain
    )
    val = pipeline.eval_pipeline(
        val_ds, specs, batch_size=config.batch_size, pad_size=tuple(config.eval_size or config.image_size), pad_multiple=32
    )
    return train, val


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """Saves the inference model to `<dir>/last.keras` every epoch and `<dir>/best.keras` on improvement.

    The callback runs on a `MultiTaskTrainer`; it saves `trainer.model`, the
    network without the training-only parts. Each file is written to a
    temporary name and renamed, so an interrupted run never leaves a
    truncated checkpoint behind.
    """

    def __init__(self, directory: str, monitor: str = "val_loss", mode: str = "min"):
        super().__init__()
        self.directory = Path(directory)
        self.monitor = monitor
        self.mode = mode
        self.best = np.inf if mode == "min" else -np.inf

    def _save(self, name: str):
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / name
        temporary = self.directory / f".{name}.tmp.keras"
        getattr(self.model, "model", self.model).save(temporary)
        os.replace(temporary, final)

    def on_epoch_end(self, epoch, logs=None):
        self._save("last.keras")
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        better = value < self.best if self.mode == "min" else value > self.best
        if better:
            self.best = float(value)
            self._save("best.keras")


def train(config: RunConfig) -> dict:
    """Trains, evaluates and writes everything of a run under `config.run_dir`.

    Writes `config.json`, `checkpoints/{last,best}.keras`, `model.keras`
    (final weights), `history.csv`, TensorBoard logs in `logs/`, a resumable
    backup in `backup/`, `metrics.json` and prediction pictures in
    `pictures/`. An interrupted run started again with the same config and
    output directory resumes from its last completed epoch.

    Returns:
        Dict of output paths and the final validation metrics.
    """
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(config.to_json())
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.config.set_dtype_policy("mixed_bfloat16")
    train_ds, val_ds, specs = load_data(config)
    train_batches, val_batches = make_pipelines(config, train_ds, val_ds, specs)
    steps_per_epoch = config.steps_per_epoch or int(train_batches.cardinality())
    if steps_per_epoch < 1:
        raise ValueError(
            f"The training split gives no full batch of {config.batch_size}: lower batch_size or add data. "
            f"Received: batch_size={config.batch_size}"
        )
    from keras_mtcl.data import pipeline
    from keras_mtcl.distribute import data_parallel

    scope = data_parallel() if config.distribute else contextlib.nullcontext(1)
    with scope as replicas:
        model = build_model(config, specs)
        trainer = build_trainer(config, model)
        trainer.compile(
            optimizer=build_optimizer(config, steps_per_epoch * config.epochs),
            # Streaming validation metrics per task (Keras prefixes them with the task name).
            metrics={t.name: task_metrics(t, prefix=False) for t in specs},
        )
        print(
            f"Model: backbone {config.backbone}, decoder {config.framework}, tasks {[t.name for t in specs]}, "
            f"{model.count_params():,} parameters, regularizer {'on' if config.contrastive else 'off'}, "
            f"backend {keras.backend.backend()}, {replicas} replica(s)"
        )
        callbacks = [
            keras.callbacks.BackupAndRestore(str(run_dir / "backup"), delete_checkpoint=False),
            AtomicModelCheckpoint(str(run_dir / "checkpoints")),
            keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
            keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False),
        ]
        val_for_fit = pipeline.strip_meta(val_batches)
        trainer.fit(
            train_batches.repeat() if config.steps_per_epoch else train_batches,
            epochs=config.epochs,
            steps_per_epoch=config.steps_per_epoch or None,
            validation_data=val_for_fit,
            callbacks=callbacks,
            verbose=2 if os.environ.get("CI") else "auto",
            shuffle=False,  # the pipeline shuffles
        )
    model_path = run_dir / "model.keras"
    model.save(model_path)
    print("Evaluating on the validation split (reference protocol, boundaries included) ...")
    metrics = evaluate_model(model, val_batches, specs, edge_dataset="pascal" if config.dataset == "pascal" else "nyud")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    pictures = write_pictures(model, val_batches, specs, run_dir / "pictures", config.num_pictures)
    print(format_table({k: v for k, v in metrics.items() if not isinstance(v, list)}))
    print(f"Wrote: model {model_path}, checkpoints {run_dir / 'checkpoints'}, logs {run_dir / 'logs'}, "
          f"history {run_dir / 'history.csv'}, metrics {run_dir / 'metrics.json'}, pictures {run_dir / 'pictures'}")
    return {"run_dir": str(run_dir), "model": str(model_path), "metrics": metrics, "pictures": pictures}


def write_pictures(model, batches, specs: list[TaskSpec], directory: Path, count: int) -> list[str]:
    """Writes `count` PNG panels (image, predictions, labels) from evaluation batches."""
    from PIL import Image

    from keras_mtcl.data.pipeline import crop_to_original
    from keras_mtcl.preprocessing import denormalize
    from keras_mtcl.visualize import prediction_panel

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for images, labels, meta in batches.as_numpy_iterator():
        predictions = model.predict_on_batch(images)
        predictions = {k: keras.ops.convert_to_numpy(v) for k, v in predictions.items()}
        images = crop_to_original(images, meta)
        predictions = {t.name: crop_to_original(predictions[t.name], meta) for t in specs}
        labels = {t.name: crop_to_original(labels[t.name], meta) for t in specs}
        for i in range(len(images)):
            if len(written) >= count:
                return written
            panel = prediction_panel(
                denormalize(images[i]),
                specs,
                {t.name: predictions[t.name][i] for t in specs},
                {t.name: labels[t.name][i] for t in specs},
            )
            path = directory / f"{len(written):03d}.png"
            Image.fromarray(panel).save(path)
            written.append(str(path))
    return written


__all__ = ["AtomicModelCheckpoint", "build_model", "build_optimizer", "load_data", "make_pipelines", "train", "write_pictures"]
