"""Task specifications for multi-task dense prediction.

A `TaskSpec` is plain data: what a task predicts, what its labels look like
and how it is trained and scored. Its label kind (`keras_mtcl.kinds`) gives
every default (output channels, loss, metrics, label conventions), so a task
with any name is trained, scored, exported and drawn like a standard one of
the same kind; the builders below only change what the reference codebases
change (loss weights, the edge loss and metrics).

Default loss weights follow the reference codebases (MTI-Net, ATRC, InvPT):
NYUD semseg 1, depth 1, normals 10, edge 50; PASCAL semseg 1, human_parts 2,
saliency 5, normals 10, edge 50.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Iterable, Mapping, Sequence

from keras_mtcl.kinds import IGNORE_INDEX, KINDS, LabelKind, get_kind

# Keys of a dataset example that are not tasks.
RESERVED_NAMES = ("image", "id")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What one dense prediction task predicts, and how it is trained and scored.

    Args:
        name: task name, the key of its labels and predictions.
        kind: label kind, a name in `keras_mtcl.kinds.KINDS` (`"classes"`,
            `"binary"`, `"depth"`, `"normals"`).
        channels: output channels; required for `classes` (one per class),
            fixed by the kind otherwise.
        loss: loss name in `keras_mtcl.losses.LOSSES`; default the kind's.
        loss_weight: weight of the task's loss in the total loss.
        metrics: metric names reported for the task; default the kind's. The
            first is the main metric, the one `delta_m` reads.
        ignore_value: label value that marks pixels to ignore.
        loss_options: keyword arguments of the loss (e.g. `pos_weight`).
        sparse: labels are thin structures (1-px boundaries): the
            regularizer brings them to the feature resolution with the kind's
            sparse rule (binary: any positive pixel in the cell).

    Example:
    >>> spec = TaskSpec("segmentation", "classes", channels=5)
    >>> spec.loss, spec.main_metric, spec.higher_is_better
    ('cross_entropy', 'miou', True)
    >>> TaskSpec("height", "depth").metrics[0]
    'rmse'
    """

    name: str
    kind: str
    channels: int | None = None
    loss: str | None = None
    loss_weight: float = 1.0
    metrics: tuple[str, ...] | None = None
    ignore_value: int = IGNORE_INDEX
    loss_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    sparse: bool = False

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"`name` must be a non-empty string. Received: name={self.name!r}")
        if self.name in RESERVED_NAMES:
            raise ValueError(
                f"`name` must not be one of {RESERVED_NAMES}, which are keys of every example. Received: name={self.name!r}"
            )
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise ValueError(f"`kind` must be one of {list(KINDS)}. Received: kind={self.kind!r}")
        kind = KINDS[self.kind]
        channels = kind.output_channels if self.channels is None else self.channels
        if channels is None:
            raise ValueError(f"A `{self.kind}` task needs `channels` (one per class). Received: channels=None")
        if isinstance(channels, bool) or int(channels) != channels:
            raise ValueError(f"`channels` must be an integer. Received: channels={channels!r}")
        kind.check_channels(int(channels))
        object.__setattr__(self, "channels", int(channels))
        object.__setattr__(self, "loss", kind.loss if self.loss is None else self.loss)
        metrics = kind.metrics if self.metrics is None else self.metrics
        if isinstance(metrics, str):
            raise ValueError(f"`metrics` must be a sequence of metric names. Received: metrics={metrics!r}")
        object.__setattr__(self, "metrics", tuple(metrics))
        if float(self.loss_weight) < 0:
            raise ValueError(f"`loss_weight` must be >= 0. Received: loss_weight={self.loss_weight}")
        if self.sparse and kind.sparse_resize is None:
            raise ValueError(f"A `{self.kind}` task cannot be `sparse` (no sparse rule for its kind). Received: sparse=True")
        object.__setattr__(self, "loss_options", types.MappingProxyType(dict(self.loss_options)))

    @property
    def label_kind(self) -> LabelKind:
        """The task's `keras_mtcl.kinds.LabelKind`."""
        return get_kind(self.kind)

    @property
    def num_classes(self) -> int:
        """Number of classes of a discrete task (2 for binary)."""
        classes = self.label_kind.num_classes(self.channels)
        if classes is None:
            raise ValueError(f"Task {self.name!r} of kind {self.kind!r} has no classes.")
        return classes

    @property
    def label_channels(self) -> int:
        """Channels of the label tensor (3 for normals, else 1)."""
        return self.label_kind.label_channels

    @property
    def main_metric(self) -> str | None:
        """The metric `delta_m` reads: the first of `metrics` (None without metrics)."""
        return self.metrics[0] if self.metrics else None

    @property
    def higher_is_better(self) -> bool:
        """Whether the main metric improves upwards (`keras_mtcl.metrics.HIGHER_IS_BETTER`)."""
        from keras_mtcl.metrics import HIGHER_IS_BETTER

        if self.main_metric is None:
            raise ValueError(f"Task {self.name!r} has no metric, so no direction. Received: metrics=()")
        return HIGHER_IS_BETTER[self.main_metric]

    def valid_mask(self, labels, xp=None):
        """(...) bool validity of (..., c) labels, the kind's rule (`LabelKind.valid_mask`)."""
        return self.label_kind.valid_mask(labels, self.channels, self.ignore_value, xp=xp)

    def replace(self, **changes) -> "TaskSpec":
        """Returns a copy with some fields changed, e.g. `spec.replace(loss_weight=2.0)`."""
        return dataclasses.replace(self, **changes)

    def get_config(self) -> dict:
        config = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        config["metrics"] = list(self.metrics)
        config["loss_options"] = dict(self.loss_options)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "TaskSpec":
        config = dict(config)
        # v0.1 stored the main metric's direction; it now follows from the metric.
        config.pop("higher_is_better", None)
        if config.get("metrics") is not None:
            config["metrics"] = tuple(config["metrics"])
        return cls(**config)


def semseg(num_classes: int = 40, loss_weight: float = 1.0) -> TaskSpec:
    """Semantic segmentation: cross-entropy, scored by mIoU."""
    return TaskSpec(name="semseg", kind="classes", channels=num_classes, loss_weight=loss_weight)


def human_parts(num_classes: int = 7, loss_weight: float = 2.0) -> TaskSpec:
    """Human part segmentation (background + 6 parts): cross-entropy, mIoU."""
    return TaskSpec(name="human_parts", kind="classes", channels=num_classes, loss_weight=loss_weight)


def depth(loss_weight: float = 1.0) -> TaskSpec:
    """Metric depth: L1 over valid pixels, scored by RMSE (lower is better)."""
    return TaskSpec(name="depth", kind="depth", loss_weight=loss_weight)


def normals(loss_weight: float = 10.0) -> TaskSpec:
    """Surface normals: L1 on normalised vectors, scored by mean angle error (lower is better)."""
    return TaskSpec(name="normals", kind="normals", loss_weight=loss_weight)


def edge(loss_weight: float = 50.0, pos_weight: float = 0.95) -> TaskSpec:
    """Boundaries: weighted BCE (positive weight `pos_weight`), scored by odsF."""
    return TaskSpec(
        name="edge",
        kind="binary",
        loss="weighted_bce",
        loss_weight=loss_weight,
        metrics=("odsf", "weighted_bce"),
        loss_options={"pos_weight": pos_weight},
        sparse=True,
    )


def saliency(loss_weight: float = 5.0) -> TaskSpec:
    """Saliency: class-balanced BCE, scored by maxF."""
    return TaskSpec(name="saliency", kind="binary", loss_weight=loss_weight)


# Builders of the six standard tasks, by name.
TASK_BUILDERS = types.MappingProxyType(
    {
        "semseg": semseg,
        "depth": depth,
        "normals": normals,
        "edge": edge,
        "saliency": saliency,
        "human_parts": human_parts,
    }
)

# Tasks and class counts of the standard benchmarks.
TASK_SETS = types.MappingProxyType(
    {
        "nyud": types.MappingProxyType(
            {"tasks": ("semseg", "depth", "normals", "edge"), "num_classes": {"semseg": 40}}
        ),
        "pascal": types.MappingProxyType(
            {
                "tasks": ("semseg", "human_parts", "saliency", "normals", "edge"),
                "num_classes": {"semseg": 21, "human_parts": 7},
            }
        ),
    }
)


def get_task(name: str, **kwargs) -> TaskSpec:
    """Builds a standard task by name, e.g. `get_task("semseg", num_classes=21)`."""
    if name not in TASK_BUILDERS:
        raise ValueError(f"Unknown task. Expected one of {sorted(TASK_BUILDERS)}. Received: name={name!r}")
    return TASK_BUILDERS[name](**kwargs)


def task_set(
    dataset: str,
    tasks: Sequence[str] | None = None,
    num_classes: Mapping[str, int] | None = None,
) -> list[TaskSpec]:
    """The tasks of a benchmark with its class counts and default loss weights.

    Args:
        dataset: `"nyud"` or `"pascal"`.
        tasks: optional subset of the dataset's tasks, in the given order.
        num_classes: optional class counts overriding the dataset's.

    Returns:
        A list of `TaskSpec`.

    Example:
    >>> [t.name for t in task_set("nyud")]
    ['semseg', 'depth', 'normals', 'edge']
    >>> task_set("pascal", tasks=["semseg"])[0].channels
    21
    """
    if dataset not in TASK_SETS:
        raise ValueError(f"Unknown task set. Expected one of {sorted(TASK_SETS)}. Received: dataset={dataset!r}")
    available = TASK_SETS[dataset]["tasks"]
    names = tuple(tasks) if tasks is not None else available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(
            f"Tasks {unknown} are not part of the {dataset!r} task set {available}. Received: tasks={list(names)}"
        )
    classes = dict(TASK_SETS[dataset]["num_classes"])
    classes.update(num_classes or {})
    return [get_task(n, num_classes=classes[n]) if n in classes else get_task(n) for n in names]


def validate_tasks(tasks: Iterable[TaskSpec]) -> list[TaskSpec]:
    """Checks a task list (TaskSpecs or their configs) and returns it as TaskSpecs."""
    specs = [t if isinstance(t, TaskSpec) else TaskSpec.from_config(t) for t in tasks]
    if not specs:
        raise ValueError("`tasks` must name at least one task. Received: tasks=[]")
    names = [t.name for t in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"Task names must be unique. Received: tasks={names}")
    return specs
