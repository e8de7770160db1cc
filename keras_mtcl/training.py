"""Training runs from a `RunConfig`: model, optimizer, data, callbacks, outputs.

The apps are thin wrappers over these functions, so a run can be scripted:

    from keras_mtcl import presets, training
    result = training.train(presets.get_preset("smoke"))
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_mtcl import backbones
from keras_mtcl.callbacks import CompactProgress, PredictionImages, RunTensorBoard, write_final_metrics
from keras_mtcl.errors import ConfigError
from keras_mtcl.evaluation import edge_protocol, evaluate_model, format_table, json_safe
from keras_mtcl.metrics import task_metrics
from keras_mtcl.model import MultiTaskModel
from keras_mtcl.presets import RunConfig
from keras_mtcl.tasks import TaskSpec
from keras_mtcl.trainer import MultiTaskTrainer


# Keyword arguments every Keras layer takes (a decoder passes its `**kwargs` on to keras.layers.Layer).
_LAYER_KEYWORDS = ("name", "dtype", "trainable", "autocast")


def _check_keywords(field: str, function, options, exclude: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> None:
    """Refuses keys of `options` that `function` does not take, or that the run sets itself (`exclude`).

    `extra`: the keywords its `**kwargs` accepts; without it, a function with `**kwargs` takes any key.
    """
    parameters = inspect.signature(function).parameters
    variadic = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    named = [n for n, p in parameters.items() if p.kind not in variadic and n not in exclude] + list(extra)
    open_ended = not extra and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = [k for k in options if k in exclude or (not open_ended and k not in named)]
    if unknown:
        raise ConfigError(f"`{field}` has unknown keys {unknown}; it takes {sorted(named)}. Received: {field}={dict(options)}")


def _dataset_layout(config: RunConfig) -> tuple[list[str] | None, list[str] | None]:
    """(task names, split names) of the dataset of `config`; (None, None): a folder dataset without `manual_dir`."""
    from keras_mtcl.data import get_dataset

    return get_dataset(config.data.dataset).tasks_and_splits(config.data.manual_dir)


def check_config(config: RunConfig) -> None:
    """Checks the names and options of `config` against the registries, before any data is read or model built.

    `RunConfig` checks each field's type and range by itself; this adds what
    needs the package: the backbone, decoder and task names, the keys of
    `backbone_options` and `decoder_options`, the `CrossTaskContrastive`
    arguments in `contrastive_options` (by constructing the layer, which
    validates them), two tasks for the regularizer and a backend for
    `distribute`.

    Raises:
        ConfigError: the message names the field, what it takes and the value received.
    """
    from keras_mtcl import decoders

    if config.model.backbone not in backbones.list_backbones():
        raise ConfigError(
            f"`model.backbone` must be one of {backbones.list_backbones()}. Received: model.backbone={config.model.backbone!r}"
        )
    _check_keywords("model.backbone_options", backbones.backbone_builder(config.model.backbone), config.model.backbone_options)
    if config.model.framework not in decoders.list_decoders():
        raise ConfigError(
            f"`model.framework` must be one of {decoders.list_decoders()}. Received: model.framework={config.model.framework!r}"
        )
    _check_keywords("model.decoder_options", decoders.decoder_class(config.model.framework).__init__, config.model.decoder_options,
                    exclude=("self", "tasks"), extra=_LAYER_KEYWORDS)
    available, splits = _dataset_layout(config)
    if splits is not None and config.data.eval_split not in splits:
        source = f" (the `splits` of {Path(config.data.manual_dir) / 'manifest.json'})" if config.data.dataset == "folder" else ""
        raise ConfigError(
            f"`data.eval_split` must be a split of the {config.data.dataset!r} dataset, which has {splits}{source}. "
            f"Received: data.eval_split={config.data.eval_split!r}"
        )
    unknown = [t for t in config.data.tasks if available is not None and t not in available]
    if unknown or len(set(config.data.tasks)) != len(config.data.tasks):
        raise ConfigError(
            f"`data.tasks` must be distinct tasks of the {config.data.dataset!r} dataset, which has {available} (empty: all of them). "
            f"Received: data.tasks={','.join(config.data.tasks)}"
        )
    if config.model.contrastive:
        from keras_mtcl.contrastive import CrossTaskContrastive

        count = len(config.data.tasks or available or ())
        if count == 1:
            raise ConfigError(
                "The contrastive regularizer needs at least two tasks (each task's source is another task): add a task "
                f"or set model.contrastive=false. Received: data.tasks={','.join(config.data.tasks or available)}"
            )
        # The run binds the tasks and sets the seed; every other argument is the layer's, checked by its constructor.
        _check_keywords("model.contrastive_options", CrossTaskContrastive.__init__, config.model.contrastive_options,
                        exclude=("self", "tasks"), extra=_LAYER_KEYWORDS)
        try:
            CrossTaskContrastive(**{"seed": config.seed, **dict(config.model.contrastive_options)})
        except (TypeError, ValueError) as error:
            raise ConfigError(f"`model.contrastive_options` (the arguments of CrossTaskContrastive): {error}") from None
    if config.distribute and keras.backend.backend() not in ("jax", "tensorflow"):
        raise ConfigError(
            "`distribute` trains on the JAX or TensorFlow backend; Keras has no data-parallel training for "
            f"{keras.backend.backend()}. Start with KERAS_BACKEND=jax or tensorflow, or set distribute=false. "
            "Received: distribute=true"
        )


def build_model(config: RunConfig, task_specs: list[TaskSpec]) -> MultiTaskModel:
    """The inference `MultiTaskModel` of `config` for `task_specs`."""
    backbone = backbones.get_backbone(config.model.backbone, **dict(config.model.backbone_options))
    return MultiTaskModel(backbone, task_specs, decoder=config.model.framework, decoder_options=dict(config.model.decoder_options))


def build_trainer(config: RunConfig, model: MultiTaskModel) -> MultiTaskTrainer:
    """The `MultiTaskTrainer` of `config` around `model` (with the regularizer if `config.model.contrastive`)."""
    regularizer = None
    if config.model.contrastive:
        from keras_mtcl.contrastive import CrossTaskContrastive

        if len(model.task_specs) < 2:
            raise ConfigError(
                "The contrastive regularizer needs at least two tasks (each task's source is another task). "
                f"Received: tasks={model.task_names}"
            )
        regularizer = CrossTaskContrastive(**{"seed": config.seed, **dict(config.model.contrastive_options)})
    return MultiTaskTrainer(model, regularizer=regularizer)


def build_optimizer(config: RunConfig, total_steps: int) -> keras.optimizers.Optimizer:
    """Adam / AdamW / SGD(0.9) with a per-step poly decay or a constant rate (PEERS.md 3)."""
    learning_rate: Any = config.optimizer.learning_rate
    if config.optimizer.schedule == "poly":
        learning_rate = keras.optimizers.schedules.PolynomialDecay(
            config.optimizer.learning_rate, decay_steps=max(total_steps, 1), end_learning_rate=0.0, power=config.optimizer.poly_power
        )
    common = {"learning_rate": learning_rate}
    if config.optimizer.clipnorm:
        common["clipnorm"] = config.optimizer.clipnorm
    if config.optimizer.name == "sgd":
        return keras.optimizers.SGD(momentum=0.9, weight_decay=config.optimizer.weight_decay or None, **common)
    if config.optimizer.name == "adamw":
        return keras.optimizers.AdamW(weight_decay=config.optimizer.weight_decay, **common)
    return keras.optimizers.Adam(weight_decay=config.optimizer.weight_decay or None, **common)


def load_data(config: RunConfig):
    """(train examples, `config.data.eval_split` examples, task specs): tf.data datasets of dict examples.

    Examples are in the package's example format (`keras_mtcl.data`).
    """
    from keras_mtcl.data.sources import open_split

    common = dict(
        manual_dir=config.data.manual_dir,
        data_dir=config.data.data_dir,
        tasks=config.data.tasks,
        synthetic_size=config.data.synthetic_size,
        seed=config.seed,
    )
    start = time.time()
    if config.data.dataset == "synthetic":
        height, width = config.data.synthetic_size
        print(f"Rendering {config.data.synthetic_train} + {config.data.synthetic_val} synthetic scenes at {height}x{width} ...")
    train_ds, specs = open_split(config.data.dataset, "train", synthetic_count=config.data.synthetic_train, **common)
    val_ds, _ = open_split(config.data.dataset, config.data.eval_split, synthetic_count=config.data.synthetic_val, **common)
    print(f"Data ready in {time.time() - start:.1f} s: tasks {[t.name for t in specs]}")
    return train_ds, val_ds, specs


def data_image_size(examples) -> tuple[int, int]:
    """(height, width) of the first image of an example dataset."""
    for example in examples.take(1):
        return tuple(int(n) for n in example["image"].shape[:2])
    raise ConfigError("The training split has no examples: add images or fix its split file.")


def make_pipelines(config: RunConfig, train_ds, val_ds, specs: list[TaskSpec]):
    """(training batches, evaluation batches) of `config` from example datasets.

    Training: shuffled, augmented by `config.augment`, cropped
    to `config.data.image_size` (empty: the first training image's size),
    batched. Evaluation: padded to `config.data.eval_size` (or `image_size`; with
    both empty, to each batch's largest image) and a multiple of 32, with
    each image's original size in the batch's meta.
    """
    from keras_mtcl.data import pipeline

    crop = tuple(config.data.image_size)
    if not crop:
        crop = data_image_size(train_ds)
        print(f"Training crop {crop[0]}x{crop[1]}: the size of the first training image (data.image_size is empty).")
    train = pipeline.train_pipeline(
        train_ds, specs, batch_size=config.data.batch_size, crop_size=crop, seed=config.seed, augment=config.augment
    )
    pad = tuple(config.data.eval_size or config.data.image_size) or None
    val = pipeline.eval_pipeline(val_ds, specs, batch_size=config.data.batch_size, pad_size=pad, pad_multiple=32)
    return train, val


class RunFolderError(ValueError):
    """The output folder holds a run that this config may not continue (another config, or an unreadable one)."""


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss became NaN or infinite; the last good checkpoint was kept."""


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training at the first NaN or infinite loss (as `keras.callbacks.TerminateOnNaN`) and records where.

    Put it first among the callbacks: the checkpoint and backup callbacks of
    this module given it as `guard` save nothing once it has fired, so the
    NaN weights never replace the last good checkpoint.
    """

    def __init__(self):
        super().__init__()
        self.stopped_at = None  # (epoch, batch or None, loss value)
        self._epoch = 0

    def _check(self, batch, logs):
        loss = (logs or {}).get("loss")
        if loss is None or self.stopped_at is not None:
            return
        value = float(np.asarray(keras.ops.convert_to_numpy(loss)).mean())
        if not math.isfinite(value):
            self.stopped_at = (self._epoch, batch, value)
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._check(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._check(None, logs)

    @property
    def fired(self) -> bool:
        return self.stopped_at is not None


class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose backup survives a kill or a full disk at any moment.

    Each save writes the weights and the metadata to temporary names and
    renames them over `latest.weights.h5` / `training_metadata.json` after
    moving the current pair to `previous.weights.h5` /
    `previous_metadata.json`. On start, the latest readable pair is restored;
    a truncated or half-written pair is skipped (one line says so), and when
    no pair is readable the run starts from the beginning. Nothing is saved
    once `guard` (a `NonFiniteLossGuard`) has fired.
    """

    def __init__(self, backup_dir: str, guard: NonFiniteLossGuard | None = None):
        super().__init__(backup_dir, double_checkpoint=True, delete_checkpoint=False)
        self.guard = guard
        self._prev_weights_path = os.path.join(backup_dir, "previous.weights.h5")
        self._prev_training_metadata_path = os.path.join(backup_dir, "previous_metadata.json")

    def _pairs(self):
        return [
            (self._weights_path, self._training_metadata_path),
            (self._prev_weights_path, self._prev_training_metadata_path),
        ]

    def on_train_begin(self, logs=None):
        pairs = [pair for pair in self._pairs() if any(os.path.exists(path) for path in pair)]
        if not pairs:
            return
        if not self.model.built:
            raise ValueError(f"BackupAndRestore needs a built model before `fit()`. Received: unbuilt model {self.model}")
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        variables = list(self.model.weights) + (list(optimizer.variables) if optimizer is not None else [])
        snapshot = [keras.ops.convert_to_numpy(v) for v in variables]
        problems = []
        for weights, metadata in pairs:
            try:
                epoch = int(json.loads(Path(metadata).read_text())["epoch"])
                self.model.load_weights(weights)
            except Exception as error:  # truncated, half-written or missing: try the previous pair
                for variable, value in zip(variables, snapshot):
                    variable.assign(value)
                problems.append(f"{weights} ({type(error).__name__})")
                continue
            if problems:
                print(f"Backup {problems[0]} is unreadable (a kill or a full disk during its write?): "
                      f"resuming from the previous backup {weights} (epoch {epoch}).")
            self.model._initial_epoch = epoch
            return
        print(f"No readable backup in {self.backup_dir} ({', '.join(problems)}): the run starts again from epoch 1.")

    def _save_model(self):
        if self.guard is not None and self.guard.fired:
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        incoming_weights = os.path.join(self.backup_dir, ".incoming.weights.h5")
        incoming_metadata = os.path.join(self.backup_dir, ".incoming_metadata.json")
        self.model.save_weights(filepath=incoming_weights, overwrite=True)
        with open(incoming_metadata, "w") as f:
            f.write(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))
            f.flush()
            os.fsync(f.fileno())
        # The current pair becomes the fallback, then the new pair takes its place: every step is a rename.
        for latest, previous in ((self._weights_path, self._prev_weights_path),
                                 (self._training_metadata_path, self._prev_training_metadata_path)):
            if os.path.exists(latest):
                os.replace(latest, previous)
        os.replace(incoming_weights, self._weights_path)
        os.replace(incoming_metadata, self._training_metadata_path)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class RunHistory(keras.callbacks.CSVLogger):
    """`CSVLogger` (append mode) whose file holds one row per finished epoch across kills and resumes.

    Put it before the backup callback: an epoch's row is written before its
    backup, so an epoch that a backup records always has its row. At the
    first epoch of a (resumed) fit, rows of that epoch and later ones, left
    by a run killed after writing them but before their backup, are dropped,
    since those epochs run again.
    """

    def __init__(self, filename: str):
        super().__init__(filename, append=True)
        self._trimmed = False

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._trimmed = False

    def on_epoch_begin(self, epoch, logs=None):
        if self._trimmed:
            return
        self._trimmed = True
        path = Path(self.filename)
        if not path.is_file():
            return
        self.csv_file.close()
        lines = path.read_text().splitlines(keepends=True)
        kept = lines[:1] + [line for line in lines[1:] if _row_epoch(line) < epoch]
        if len(kept) != len(lines):
            _write_atomically(path, "".join(kept))
        self.csv_file = open(self.filename, "a")


def _row_epoch(line: str) -> float:
    """The epoch of a history.csv row (its first field); an unreadable row counts as a later epoch."""
    try:
        return int(line.split(",", 1)[0])
    except ValueError:
        return math.inf


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """Saves the inference model to `<dir>/last.keras` every epoch and `<dir>/best.keras` on improvement.

    The callback runs on a `MultiTaskTrainer`; it saves `trainer.model`, the
    network without the training-only parts. Each file is written to a
    temporary name and renamed, so an interrupted run never leaves a
    truncated checkpoint behind. Nothing is saved once `guard` (a
    `NonFiniteLossGuard`) has fired.
    """

    def __init__(
        self, directory: str, monitor: str = "val_loss", mode: str = "min", guard: NonFiniteLossGuard | None = None
    ):
        super().__init__()
        self.guard = guard
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
        if self.guard is not None and self.guard.fired:
            return  # NaN weights never replace the last good checkpoint
        self._save("last.keras")
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        better = value < self.best if self.mode == "min" else value > self.best
        if better:
            self.best = float(value)
            self._save("best.keras")


# What a run writes in its folder (removed by `overwrite=True`).
RUN_OUTPUTS = ("config.json", "model.keras", "metrics.json", "history.csv", "backup", "checkpoints", "logs", "pictures", "serving")


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_run_folder(config: RunConfig, resume: bool = False, evaluate: bool = True) -> dict | None:
    """Compares `config` with the `config.json` of a run already in `config.run_dir`, writing nothing.

    Returns None when the run may start or continue there (no earlier run,
    the same config, or with `resume` the same config but more epochs), or
    the earlier run's result dict (`"finished": True`) when that run is
    finished with this very config (a model, and `metrics.json` unless `evaluate` is false).

    Raises:
        RunFolderError: the folder holds a run with another config (the
            message names the differing fields), or an unreadable config.json.
    """
    run_dir = Path(config.run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        return None
    try:
        # Read as a config: a flat config.json of releases up to 0.4 compares equal to the same config grouped.
        previous = RunConfig.from_dict(json.loads(path.read_text())).flat_dict()
    except (OSError, ValueError, TypeError) as error:
        raise RunFolderError(
            f"{path} of the run already in {run_dir} is unreadable ({error}): pass --overwrite to start again there, "
            "or another --output-dir."
        ) from None
    current = config.flat_dict()
    differing = [k for k in sorted(current) if k != "output_dir" and current[k] != previous.get(k)]
    options = "--resume to continue it with more epochs (--set epochs=N), --overwrite to start again, or another --output-dir"
    blocking = [k for k in differing if not (resume and k == "epochs")]
    if blocking:
        changes = ", ".join(f"{k} {_short(previous.get(k))} -> {_short(current[k])}" for k in blocking)
        raise RunFolderError(f"{run_dir} holds a run with another config ({changes}): pass {options}.")
    if "epochs" in differing and config.epochs < previous["epochs"]:
        raise RunFolderError(
            f"--resume continues {run_dir} with more epochs, but epochs={config.epochs} is fewer than its {previous['epochs']}: "
            f"pass --set epochs=N with N > {previous['epochs']}, --overwrite to start again, or another --output-dir."
        )
    scored = (run_dir / "metrics.json").is_file()
    finished = (run_dir / "model.keras").is_file() and (scored or not evaluate)
    if finished and not differing:
        return {
            "run_dir": str(run_dir),
            "model": str(run_dir / "model.keras"),
            "metrics": json.loads((run_dir / "metrics.json").read_text()) if scored else None,
            "pictures": sorted(str(p) for p in (run_dir / "pictures").glob("*.png")),
            "finished": True,
        }
    return None


def _remove_run_outputs(run_dir: Path) -> None:
    for name in RUN_OUTPUTS:
        target = run_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def _run_callbacks(run_dir: Path, guard: NonFiniteLossGuard, specs: list[TaskSpec], val_batches, num_pictures: int) -> list:
    """The callbacks of a run in `run_dir`, `guard` first: the checkpoint callbacks skip saving once it fires."""
    return [
        guard,
        # The bar shows the loss and one metric per task (its epoch line before the saving); history.csv and
        # TensorBoard get every metric.
        CompactProgress(specs),
        RunHistory(str(run_dir / "history.csv")),  # before the backup: a backed-up epoch has its row
        SafeBackupAndRestore(str(run_dir / "backup"), guard=guard),
        AtomicModelCheckpoint(str(run_dir / "checkpoints"), guard=guard),
        RunTensorBoard(str(run_dir / "logs"), write_graph=False),
        PredictionImages(run_dir / "logs", val_batches, specs, num_pictures),
    ]


def train(config: RunConfig, resume: bool = False, overwrite: bool = False, evaluate: bool = True) -> dict:
    """Trains, evaluates and writes everything of a run under `config.run_dir`.

    Writes `config.json`, `checkpoints/{last,best}.keras`, `model.keras`
    (final weights), `history.csv`, TensorBoard logs in `logs/`, a resumable
    backup in `backup/`, `metrics.json` and prediction pictures in
    `pictures/`. An interrupted run started again with the same config and
    output directory resumes from its last completed epoch.

    Before anything is written, `config` is compared with the `config.json`
    of a run already in the folder (`check_run_folder`): a finished run with
    the same config is left as it is (one line says so; the result has
    `"finished": True`), and another config is refused unless only `epochs`
    grew and `resume` is true, or `overwrite` is true (the earlier run's
    outputs are deleted first).

    Training stops at the first NaN or infinite loss: the last good
    checkpoint and backup are kept and `NonFiniteLossError` is raised.

    With `evaluate=False`, the final evaluation on `config.data.eval_split`
    (the boundary benchmark included) is skipped and no `metrics.json` is
    written; the same run started again with `evaluate=True` trains nothing
    more and evaluates.

    Returns:
        Dict of output paths and the final validation metrics (None when
        `evaluate` is false).

    Raises:
        RunFolderError: the folder holds a run of another config.
        NonFiniteLossError: the loss became NaN or infinite.
    """
    if resume and overwrite:
        raise ValueError("Pass either `resume` or `overwrite`, not both. Received: resume=True, overwrite=True")
    check_config(config)  # before anything is written, read or built
    run_dir = Path(config.run_dir)
    if overwrite:
        _remove_run_outputs(run_dir)
    else:
        done = check_run_folder(config, resume=resume, evaluate=evaluate)
        if done is not None:
            print(f"The run in {run_dir} is already finished with this config: nothing to do (--resume --set epochs=N "
                  "trains it further, --overwrite trains it again).")
            return done
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.config.set_dtype_policy("mixed_bfloat16")
    train_ds, val_ds, specs = load_data(config)
    train_batches, val_batches = make_pipelines(config, train_ds, val_ds, specs)
    steps_per_epoch = config.steps_per_epoch or int(train_batches.cardinality())
    if steps_per_epoch < 1:
        # RunConfig refuses negative steps_per_epoch: here the split really is smaller than one batch.
        raise ConfigError(
            f"The training split gives no full batch of {config.data.batch_size}: lower data.batch_size or add data. "
            f"Received: data.batch_size={config.data.batch_size}"
        )
    # Written once the data is readable: a run that failed on its data leaves no config that would refuse
    # a corrected one. It marks the folder as this config's run from here on.
    _write_atomically(run_dir / "config.json", config.to_json())
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
            f"Model: backbone {config.model.backbone}, decoder {config.model.framework}, tasks {[t.name for t in specs]}, "
            f"{model.count_params():,} parameters, regularizer {'on' if config.model.contrastive else 'off'}, "
            f"backend {keras.backend.backend()}, {replicas} replica(s)"
        )
        guard = NonFiniteLossGuard()
        callbacks = _run_callbacks(run_dir, guard, specs, val_batches, config.num_pictures)
        val_for_fit = pipeline.strip_meta(val_batches)
        trainer.fit(
            train_batches.repeat() if config.steps_per_epoch else train_batches,
            epochs=config.epochs,
            steps_per_epoch=config.steps_per_epoch or None,
            validation_data=val_for_fit,
            callbacks=callbacks,
            verbose=0,  # CompactProgress is the progress bar (one line per epoch under CI or into a file)
            shuffle=False,  # the pipeline shuffles
        )
    if guard.fired:
        epoch, batch, value = guard.stopped_at
        where = f"epoch {epoch + 1}" + (f", batch {batch + 1}" if batch is not None else "")
        kept = run_dir / "checkpoints" / "last.keras"
        raise NonFiniteLossError(
            f"Training stopped: the loss became {value} at {where}; nothing was saved after it "
            + (f"(the last good checkpoint {kept} is kept)" if kept.is_file() else "(no epoch had finished)")
            + f". Lower optimizer.learning_rate (now {config.optimizer.learning_rate}) or set optimizer.clipnorm, then run again."
        )
    model_path = run_dir / "model.keras"
    model.save(model_path)
    metrics = None
    if evaluate:
        print(f"Evaluating on the {config.data.eval_split!r} split (reference protocol, boundaries included) ...")
        metrics = evaluate_model(model, val_batches, specs, edge_dataset=edge_protocol(config.data.dataset),
                                 edge_max_dist=config.data.edge_max_dist or None)
        (run_dir / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2, sort_keys=True))
        write_final_metrics(run_dir / "logs", metrics, step=config.epochs - 1)  # at the last epoch's step
    else:
        print("Final evaluation skipped (the validation metrics of the last epoch are in history.csv).")
    pictures = write_pictures(model, val_batches, specs, run_dir / "pictures", config.num_pictures)
    if metrics is not None:
        print(format_table({k: v for k, v in metrics.items() if not isinstance(v, list)}))
    scored = f"metrics {run_dir / 'metrics.json'}, " if metrics is not None else ""
    print(f"Wrote: model {model_path}, checkpoints {run_dir / 'checkpoints'}, logs {run_dir / 'logs'}, "
          f"history {run_dir / 'history.csv'}, {scored}pictures {run_dir / 'pictures'}")
    return {"run_dir": str(run_dir), "model": str(model_path), "metrics": metrics, "pictures": pictures}


def prediction_panels(model, batches, specs: list[TaskSpec], count: int) -> list[np.ndarray]:
    """Panels (image, predictions, labels) of the first `count` images of evaluation batches.

    Args:
        model: the inference model, `model(images) -> {task: (B, H, W, C)}`.
        batches: (images, labels, meta) batches of `keras_mtcl.data.pipeline.eval_pipeline`.
        specs: the tasks drawn.
        count: at most this many panels.

    Returns:
        (H', W', 3) uint8 arrays (`keras_mtcl.visualize.prediction_panel`),
        each drawn at its image's original size.
    """
    from keras_mtcl.data.pipeline import crop_to_original
    from keras_mtcl.preprocessing import denormalize
    from keras_mtcl.visualize import prediction_panel

    panels = []
    if count <= 0:
        return panels
    for images, labels, meta in batches.as_numpy_iterator():
        predictions = model.predict_on_batch(images)
        predictions = {k: keras.ops.convert_to_numpy(v) for k, v in predictions.items()}
        images = crop_to_original(images, meta)
        predictions = {t.name: crop_to_original(predictions[t.name], meta) for t in specs}
        labels = {t.name: crop_to_original(labels[t.name], meta) for t in specs}
        for i in range(len(images)):
            if len(panels) >= count:
                return panels
            panels.append(prediction_panel(
                denormalize(images[i]),
                specs,
                {t.name: predictions[t.name][i] for t in specs},
                {t.name: labels[t.name][i] for t in specs},
            ))
    return panels


def write_pictures(model, batches, specs: list[TaskSpec], directory: Path, count: int) -> list[str]:
    """Writes `count` PNG panels (image, predictions, labels) from evaluation batches (`prediction_panels`)."""
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for index, panel in enumerate(prediction_panels(model, batches, specs, count)):
        path = directory / f"{index:03d}.png"
        Image.fromarray(panel).save(path)
        written.append(str(path))
    return written


__all__ = [
    "AtomicModelCheckpoint",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "RunFolderError",
    "RunHistory",
    "SafeBackupAndRestore",
    "build_model",
    "build_optimizer",
    "check_config",
    "check_run_folder",
    "load_data",
    "make_pipelines",
    "prediction_panels",
    "train",
    "write_pictures",
]
