"""`MultiTaskTrainer`: trains a multi-task model with its task losses, deep supervision and the regularizer.

The trainer wraps the inference model the way Keras's `Distiller` wraps its
student: `trainer.fit(...)` trains `trainer.model`, the training-only parts
(the regularizer's projectors, loss trackers) live in the trainer, and
`trainer.model` is what is evaluated, exported and served: it cannot contain
a projector by construction.

The trainer protocol: any Keras model `model(images) -> {task: (B, H, W, C)}`
can be trained. Deep supervision and the regularizer need more of one forward
pass, which a model offers in either of two ways:

- a method `training_outputs(images, training=True)` returning
  `{"predictions": {task: (B, H, W, C)}, "features": {task: F_t (B, h, w, C_f)},
  "auxiliary": {group: {task: (B, H, W, C)}}}` and a method
  `task_feature_shapes()` returning `{task: shape of F_t}`
  (`keras_mtcl.model.MultiTaskModel` has both); or
- for a functional model, `feature_layers={task: layer name}`: the layers
  whose outputs are the task features F_t.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import keras
from keras import ops

from keras_mtcl.backend_compat import scale_loss_for_distribution
from keras_mtcl.losses import task_loss
from keras_mtcl.tasks import TaskSpec, validate_tasks


def _repeats_task_loss(task: TaskSpec, metric) -> bool:
    """Whether `metric` streams the task's own loss: the edge loss proxy of a `weighted_bce` task, same weighting.

    During `fit` the trainer logs that loss as `<task>_loss`; the metric
    would log it a second time (`edge_weighted_bce` beside `edge_loss`).
    """
    from keras_mtcl.metrics import EDGE_POS_WEIGHT, EdgeLossProxy

    if not isinstance(metric, EdgeLossProxy) or metric.double_sigmoid or task.loss != "weighted_bce":
        return False
    pos_weight = float(task.loss_options.get("pos_weight", EDGE_POS_WEIGHT))
    return metric.pos_weight == pos_weight and metric.ignore_value == task.ignore_value


@keras.saving.register_keras_serializable(package="keras_mtcl")
class MultiTaskTrainer(keras.Model):
    """Trains `model` with `fit`: weighted task losses, deep supervision and, optionally, the regularizer.

    The total loss is `sum_t w_t L_t(y_t, prediction_t)` over the tasks, plus
    the same weighted losses on every deep-supervision group the model
    returns, plus the regularizer's term (training only), plus the layers'
    own losses. Each task's loss is logged as `<task>_loss`, deep
    supervision as `auxiliary_loss`, the regularizer as
    `contrastive_<task>` and `contrastive_triplet_fraction` (training only).

    Args:
        model: the inference model, `model(images) -> {task: (B, H, W, C)}`.
        tasks: the tasks' `TaskSpec`s; default `model.task_specs`.
        regularizer: a `keras_mtcl.contrastive.CrossTaskContrastive`, or None.
        feature_layers: for a functional model without `training_outputs`:
            {task: name of the layer whose output is F_t}.

    Input shape: (B, H, W, C) images; labels {task: (B, H, W, c)}.

    Example:
    >>> import numpy as np, keras
    >>> from keras_mtcl import backbones, tasks
    >>> from keras_mtcl.contrastive import CrossTaskContrastive
    >>> from keras_mtcl.model import MultiTaskModel
    >>> from keras_mtcl.testing.labels import random_labels
    >>> specs = tasks.task_set("nyud", tasks=["semseg", "depth"])
    >>> model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16)), specs)
    >>> trainer = MultiTaskTrainer(model, regularizer=CrossTaskContrastive(num_anchors=16, pool_size=32, seed=0))
    >>> trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    >>> images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    >>> labels = random_labels(specs, batch=2, height=32, width=32, seed=0)  # {task: (B, H, W, c)}
    >>> history = trainer.fit(images, labels, epochs=1, verbose=0)
    >>> sorted(history.history)  # doctest: +NORMALIZE_WHITESPACE
    ['contrastive_depth', 'contrastive_semseg', 'contrastive_triplet_fraction', 'depth_abs_rel', 'depth_delta1',
     'depth_log_rmse', 'depth_loss', 'depth_rmse', 'loss', 'semseg_loss', 'semseg_miou', 'semseg_pixel_accuracy']
    >>> sorted((name, y.shape) for name, y in model.predict(images, verbose=0).items())  # the trained model
    [('depth', (2, 32, 32, 1)), ('semseg', (2, 32, 32, 40))]
    """

    def __init__(
        self,
        model: keras.Model,
        tasks: Sequence[TaskSpec] | None = None,
        regularizer: keras.layers.Layer | None = None,
        feature_layers: Mapping[str, str] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model):
            raise ValueError(f"`model` must be a keras.Model returning {{task: prediction}}. Received: model={model!r}")
        if tasks is None:
            if not hasattr(model, "task_specs"):
                raise ValueError(
                    "`tasks` is required: the model has no `task_specs`. Pass the tasks' TaskSpecs. Received: tasks=None"
                )
            tasks = model.task_specs
        self.task_specs: tuple[TaskSpec, ...] = tuple(validate_tasks(tasks))
        self.model = model
        self.regularizer = regularizer
        self.feature_layers = None if feature_layers is None else dict(feature_layers)
        self._view = self._training_view()
        if regularizer is not None:
            regularizer.bind(list(self.task_specs))
            regularizer.build(self._feature_shapes())
        self.task_loss_trackers = [keras.metrics.Mean(name=f"{t.name}_loss") for t in self.task_specs]
        self.training_only_trackers = []
        auxiliary_groups = getattr(model, "auxiliary_groups", None)
        if self.feature_layers is None and callable(auxiliary_groups) and auxiliary_groups():
            self.auxiliary_loss_tracker = keras.metrics.Mean(name="auxiliary_loss")
            self.training_only_trackers.append(self.auxiliary_loss_tracker)
        if regularizer is not None:
            self.contrastive_trackers = [keras.metrics.Mean(name=f"contrastive_{t.name}") for t in self.task_specs]
            self.triplet_fraction_tracker = keras.metrics.Mean(name="contrastive_triplet_fraction")
            self.training_only_trackers += self.contrastive_trackers + [self.triplet_fraction_tracker]
        names = [m.name for m in self.task_loss_trackers + self.training_only_trackers]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise ValueError(
                f"Task names make the logged metric names {clashes} ambiguous; rename those tasks. "
                f"Received: tasks={[t.name for t in self.task_specs]}"
            )
        self._regularizing = False
        self.built = True  # every weight exists: the model's and the regularizer's

    # -- the forward pass of training

    def _training_view(self):
        """A callable (images, training) -> {"predictions", "features", "auxiliary"} sharing `model`'s weights."""
        if self.feature_layers is None and hasattr(self.model, "training_outputs"):
            return self.model.training_outputs
        if self.feature_layers is None:
            if self.regularizer is not None:
                raise ValueError(
                    "The regularizer reads each task's feature map, which this model does not offer: give it a "
                    "`training_outputs(images, training)` method (see keras_mtcl.trainer) or pass "
                    f"`feature_layers={{task: layer name}}`. Received: model={type(self.model).__name__}"
                )
            return lambda images, training=True: {"predictions": self.model(images, training=training), "features": {}, "auxiliary": {}}
        missing = [t.name for t in self.task_specs if t.name not in self.feature_layers]
        if missing:
            raise ValueError(f"`feature_layers` lacks tasks {missing}. Received: feature_layers={self.feature_layers}")
        try:
            outputs = {
                "predictions": self.model.output,
                "features": {task: self.model.get_layer(name).output for task, name in self.feature_layers.items()},
            }
            view = keras.Model(self.model.input, outputs, name=f"{self.model.name}_training_view")
        except (AttributeError, ValueError) as error:
            raise ValueError(
                "`feature_layers` needs a functional model whose layers are named in it; a subclassed model "
                f"implements `training_outputs` instead ({error}). Received: feature_layers={self.feature_layers}"
            ) from error
        if not isinstance(view.output["predictions"], Mapping):
            raise ValueError(f"The model must return a dict {{task: prediction}}. Received: output={self.model.output!r}")

        def run(images, training=True):
            outputs = view(images, training=training)
            return {"predictions": outputs["predictions"], "features": outputs["features"], "auxiliary": {}}

        return run

    def _feature_shapes(self) -> dict[str, tuple]:
        if self.feature_layers is None:
            return {k: tuple(v) for k, v in self.model.task_feature_shapes().items()}
        return {task: tuple(self.model.get_layer(name).output.shape) for task, name in self.feature_layers.items()}

    def call(self, images, training=None):
        """Training: the model's training outputs; otherwise its inference outputs, no features or deep supervision."""
        if training:
            return self._view(images, training=True)
        return {"predictions": self.model(images, training=False), "features": {}, "auxiliary": {}}

    # -- losses and metrics

    def compile(self, optimizer="adam", loss=None, metrics="default", **kwargs):
        """Like `keras.Model.compile`, without `loss` (it comes from the TaskSpecs).

        `metrics` defaults to every task's streaming metrics
        (`keras_mtcl.metrics.task_metrics`); pass None for none, or a dict
        {task: [metrics]}. A metric that streams a task's own loss (the
        edge loss proxy of a `weighted_bce` task) is left out: `<task>_loss`
        logs that quantity already.
        """
        if loss is not None:
            raise ValueError(
                "MultiTaskTrainer computes the task losses from the TaskSpecs; change a task's `loss` or "
                f"`loss_weight` there instead of passing `loss` to compile(). Received: loss={loss!r}"
            )
        if isinstance(metrics, str) and metrics == "default":
            from keras_mtcl.metrics import task_metrics

            metrics = {t.name: task_metrics(t, prefix=False) for t in self.task_specs}
        if isinstance(metrics, Mapping):
            # One logged name per quantity: `<task>_loss` already is the mean of the task's loss.
            tasks = {t.name: t for t in self.task_specs}
            metrics = {
                name: [m for m in values if name not in tasks or not _repeats_task_loss(tasks[name], m)]
                if isinstance(values, (list, tuple)) else values
                for name, values in metrics.items()
            }
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        config.pop("loss", None)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _labels(self, y) -> dict:
        names = [t.name for t in self.task_specs]
        if not isinstance(y, Mapping):
            raise ValueError(f"Labels must be a dict {{task: label}} with keys {names}. Received: y of type {type(y).__name__}")
        missing = [name for name in names if name not in y]
        if missing:
            raise ValueError(
                f"Labels are missing for tasks {missing}: the model predicts {names} but the labels have {sorted(y)}. "
                f"Build the model with the dataset's tasks. Received: y keys={sorted(y)}"
            )
        return {name: ops.expand_dims(y[name], -1) if len(y[name].shape) == 3 else y[name] for name in names}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if sample_weight is not None:
            raise ValueError(
                "MultiTaskTrainer does not take sample weights; mark pixels to skip with the ignore value (255). "
                "Received: sample_weight is not None"
            )
        labels = self._labels(y)
        predictions, auxiliary = y_pred["predictions"], y_pred["auxiliary"]
        total = ops.zeros((), "float32")
        auxiliary_total = ops.zeros((), "float32")
        for task, tracker in zip(self.task_specs, self.task_loss_trackers):
            loss = task_loss(task, labels[task.name], predictions[task.name])
            tracker.update_state(loss)
            total = total + task.loss_weight * loss
            for group in auxiliary.values():
                auxiliary_total = auxiliary_total + task.loss_weight * task_loss(task, labels[task.name], group[task.name])
        self._regularizing = bool(training)
        if training and auxiliary:
            self.auxiliary_loss_tracker.update_state(auxiliary_total)
            total = total + auxiliary_total
        if training and self.regularizer is not None:
            regularizer = self.regularizer(y_pred["features"], labels, training=True)
            for task, tracker in zip(self.task_specs, self.contrastive_trackers):
                tracker.update_state(regularizer["per_task"][task.name])
            self.triplet_fraction_tracker.update_state(regularizer["triplet_fraction"])
            total = total + ops.cast(regularizer["loss"], "float32")
        # Losses the layers add themselves (kernel regularizers, add_loss).
        for extra in self.losses:
            total = total + ops.cast(extra, "float32")
        return scale_loss_for_distribution(total)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self._labels(y)  # the same clear error as compute_loss (the torch trainer may build metrics first)
        results = super().compute_metrics(x, y, y_pred["predictions"], sample_weight)
        if not self._regularizing:
            # Evaluation runs neither deep supervision nor the regularizer: their trackers say nothing.
            hidden = {m.name for m in self.training_only_trackers}
            results = {name: value for name, value in results.items() if name not in hidden}
        return results

    # -- serialisation

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "model": keras.saving.serialize_keras_object(self.model),
            "tasks": [t.get_config() for t in self.task_specs],
            "regularizer": None if self.regularizer is None else keras.saving.serialize_keras_object(self.regularizer),
            "feature_layers": self.feature_layers,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        if config.get("regularizer") is not None:
            config["regularizer"] = keras.saving.deserialize_keras_object(config["regularizer"])
        config["tasks"] = [TaskSpec.from_config(t) for t in config["tasks"]]
        return cls(**config)


__all__ = ["MultiTaskTrainer"]
