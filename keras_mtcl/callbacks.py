"""The reporting callbacks of a training run: a compact progress bar and what TensorBoard shows.

- `CompactProgress`: the progress bar shows the total loss and one metric per
  task (`progress_keys`); every other logged quantity still reaches
  `history.csv` (`keras.callbacks.CSVLogger`) and TensorBoard. Pass
  `verbose=0` to `fit` so that Keras adds no bar of its own.
- `RunTensorBoard`: Keras' TensorBoard callback without the second copy of
  every validation scalar (`evaluation_<name>_vs_iterations`, the same
  values as `epoch_<name>` of the validation run).
- `PredictionImages`: prediction panels of a few validation images, as
  TensorBoard images, at the end of every epoch.
- `write_final_metrics`: the final evaluation (every scalar of metrics.json,
  per-class IoU, a text table) in TensorBoard.

TensorBoard files are written by `tf.summary`, whatever Keras' backend:
TensorFlow is always installed with the package's data pipeline.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

import keras
import numpy as np

from keras_mtcl.tasks import TaskSpec

# The folders under a run's `logs/` that this module writes (Keras' TensorBoard writes `train/` and `validation/`).
PANELS_RUN = "predictions"
FINAL_RUN = "final"


def progress_keys(specs: Sequence[TaskSpec], logged: Sequence[str]) -> list[str]:
    """The names the progress bar shows: `loss`, then one per task, each only if `logged` has it.

    A task's name is its first metric that is logged (`<task>_<metric>`, the
    main metric unless it is computed after training only, as a boundary
    task's odsF), else its loss (`<task>_loss`).

    Example:
    >>> from keras_mtcl import tasks
    >>> progress_keys([tasks.semseg(), tasks.edge()], ["loss", "semseg_loss", "semseg_miou", "edge_loss"])
    ['loss', 'semseg_miou', 'edge_loss']
    """
    keys = ["loss"] if "loss" in logged else []
    for task in specs:
        candidates = [f"{task.name}_{metric}" for metric in task.metrics] + [f"{task.name}_loss"]
        chosen = next((name for name in candidates if name in logged), None)
        if chosen is not None:
            keys.append(chosen)
    return keys


class CompactProgress(keras.callbacks.Callback):
    """A progress bar (`keras.utils.Progbar`) of the total loss and one metric per task (`progress_keys`).

    At the end of an epoch the line also shows the validation values of the
    same names (`val_<name>`). Use it with `fit(..., verbose=0)`.

    Args:
        specs: the trained tasks.
        verbose: 1: a bar updated in place; 2: one line per epoch. Default:
            2 when the environment variable `CI` is set or stdout is not a
            terminal (a log file then gets one line per epoch, not every
            redraw), else 1.
    """

    def __init__(self, specs: Sequence[TaskSpec], verbose: int | None = None):
        super().__init__()
        if verbose is None:
            interactive = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
            verbose = 2 if os.environ.get("CI") or not interactive else 1
        if verbose not in (1, 2):
            raise ValueError(f"`verbose` must be 1 or 2. Received: verbose={verbose!r}")
        self.specs = list(specs)
        self.verbose = verbose
        self.keys: list[str] | None = None
        self._bar = None
        self._seen = 0

    def on_epoch_begin(self, epoch, logs=None):
        epochs = self.params.get("epochs", 1)
        if epochs > 1:
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        self._seen = 0
        # Every logged value is already a running mean over the epoch: the bar shows it as it is.
        self._bar = keras.utils.Progbar(self.params.get("steps"), verbose=self.verbose, unit_name="step",
                                        stateless_metrics=set())

    def _values(self, logs, prefixes=("",)):
        logs = logs or {}
        if self.keys is None:
            self.keys = progress_keys(self.specs, list(logs))
        # The values go to the bar as Keras' own bar passes them (it reduces them with numpy).
        return [(prefix + k, logs[prefix + k]) for prefix in prefixes for k in self.keys if prefix + k in logs]

    def on_train_batch_end(self, batch, logs=None):
        self._seen = batch + 1
        self._bar.update(self._seen, self._values(logs), finalize=False)

    def on_epoch_end(self, epoch, logs=None):
        if self._bar.target is None:
            self._bar.target = self._seen
        self._bar.update(self._bar.target, self._values(logs, ("", "val_")), finalize=True)


class RunTensorBoard(keras.callbacks.TensorBoard):
    """`keras.callbacks.TensorBoard` that writes each validation scalar once.

    Keras writes the validation logs of an epoch twice: `epoch_<name>` at
    the epoch and `evaluation_<name>_vs_iterations` at the optimizer step,
    the same values. This keeps `epoch_<name>` only, so the train and
    validation runs have the same tags.
    """

    def on_test_end(self, logs=None):
        super().on_test_end({})  # no `evaluation_*_vs_iterations` copies; the writer bookkeeping still runs


class PredictionImages(keras.callbacks.Callback):
    """At the end of every epoch, writes prediction panels of the first `count` images as TensorBoard images.

    The panels are those of `pictures/` (`keras_mtcl.training.prediction_panels`:
    image, predictions and labels, cropped to each image's size), one tag per
    image, `predictions/<index>`, in `<log_dir>/predictions/`. The model
    predicted is the trained one (`trainer.model` on a `MultiTaskTrainer`).

    Args:
        log_dir: the run's TensorBoard folder.
        batches: evaluation batches (images, labels, meta), as
            `keras_mtcl.data.pipeline.eval_pipeline` gives.
        specs: the tasks drawn.
        count: images per epoch (0: none).
    """

    def __init__(self, log_dir: str | os.PathLike, batches, specs: Sequence[TaskSpec], count: int):
        super().__init__()
        self.directory = Path(log_dir) / PANELS_RUN
        self.batches = batches
        self.specs = list(specs)
        self.count = int(count)
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self.count <= 0:
            return
        import tensorflow as tf

        from keras_mtcl.training import prediction_panels  # training imports this module

        panels = prediction_panels(getattr(self.model, "model", self.model), self.batches, self.specs, self.count)
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.directory))
        with self._writer.as_default():
            for index, panel in enumerate(panels):
                tf.summary.image(f"predictions/{index:03d}", np.asarray(panel, "uint8")[None], step=epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def final_scalars(metrics: Mapping[str, object]) -> dict[str, float]:
    """{tag: value} of the final evaluation: each finite number, and each class of `<task>_per_class_iou` lists.

    Example:
    >>> final_scalars({"edge_odsf": 71.0, "num_images": 4, "semseg_per_class_iou": [50.0, float("nan")], "x": None})
    {'final/edge_odsf': 71.0, 'final/num_images': 4.0, 'final/semseg_per_class_iou/0': 50.0}
    """
    scalars = {}
    for key, value in sorted(metrics.items()):
        values = value if isinstance(value, (list, tuple)) else [value]
        for index, item in enumerate(values):
            if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
                continue  # NaN: no valid pixel of that class; nested or non-numeric values have no scalar
            tag = f"final/{key}/{index}" if isinstance(value, (list, tuple)) else f"final/{key}"
            scalars[tag] = float(item)
    return scalars


def write_final_metrics(log_dir: str | os.PathLike, metrics: Mapping[str, object], step: int) -> Path:
    """Writes the final evaluation to TensorBoard, in `<log_dir>/final/`; returns that folder.

    Scalars are `final_scalars(metrics)` (odsF, oisF, AP, per-class IoU and
    every other number of metrics.json) at `step` (a run writes them at its
    last epoch, counted from 0 as Keras' TensorBoard does); the text
    `final/metrics` is a Markdown table of them.
    """
    import tensorflow as tf

    directory = Path(log_dir) / FINAL_RUN
    scalars = final_scalars(metrics)
    rows = [f"| {tag[len('final/'):]} | {value:.4f} |" for tag, value in scalars.items()]
    writer = tf.summary.create_file_writer(str(directory))
    with writer.as_default():
        for tag, value in scalars.items():
            tf.summary.scalar(tag, value, step=step)
        tf.summary.text("final/metrics", "\n".join(["| metric | value |", "|---|---|", *rows]), step=step)
    writer.close()
    return directory


__all__ = [
    "CompactProgress",
    "FINAL_RUN",
    "PANELS_RUN",
    "PredictionImages",
    "RunTensorBoard",
    "final_scalars",
    "progress_keys",
    "write_final_metrics",
]
