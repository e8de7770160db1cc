"""Task specifications for multi-task dense prediction.

A `TaskSpec` is plain data: what a task predicts, what its labels look like and
how it is trained and scored. Everything downstream (decoders, losses,
metrics, the contrastive regularizer, data pipelines, export) reads these
fields and never hard-codes a task.

Label conventions (shared by every dataset and pipeline in the package):

| kind      | tasks                | label (per image)          | invalid pixels            |
|-----------|----------------------|----------------------------|---------------------------|
| classes   | semseg, human_parts  | (H, W, 1) int, 0..C-1      | 255                       |
| depth     | depth                | (H, W, 1) float32, metres  | 0 (no measurement) or 255 |
| normals   | normals              | (H, W, 3) float32, unit    | zero vector or 255        |
| binary    | edge, saliency       | (H, W, 1) {0, 1}           | 255                       |

Predictions (model outputs, before any post-processing):

| kind    | output                               |
|---------|--------------------------------------|
| classes | (B, H, W, C) logits                  |
| depth   | (B, H, W, 1) metres                  |
| normals | (B, H, W, 3) unnormalised vectors    |
| binary  | (B, H, W, 1) logits                  |

Default loss weights follow the reference codebases (MTI-Net, ATRC, InvPT):
NYUD semseg 1, depth 1, normals 10, edge 50; PASCAL semseg 1, human_parts 2,
saliency 5, normals 10, edge 50.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Iterable, Mapping, Sequence

IGNORE_INDEX = 255

KINDS = ("classes", "depth", "normals", "binary")

# Names that `MultiTaskModel` uses for its own output groups in training.
RESERVED_NAMES = ("predictions", "features", "auxiliary")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What one dense prediction task predicts, and how it is trained and scored.

    Args:
        name: task name, the key of its labels and predictions.
        kind: label kind, one of `"classes"`, `"depth"`, `"normals"`, `"binary"`.
        channels: number of output channels (classes for `"classes"`).
        loss: name of the loss in `keras_mtcl.losses.LOSSES`.
        loss_weight: weight of the task's loss in the total loss.
        metrics: names of the metrics reported for the task; the first is the
            main metric used for `delta_m`.
        higher_is_better: whether the main metric improves upwards.
        ignore_value: label value that marks pixels to ignore.
        loss_options: keyword arguments of the loss (e.g. `pos_weight`).
    """

    name: str
    kind: str
    channels: int
    loss: str
    loss_weight: float = 1.0
    metrics: tuple[str, ...] = ()
    higher_is_better: bool = True
    ignore_value: int = IGNORE_INDEX
    loss_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"`name` must be a non-empty string. Received: name={self.name!r}")
        if self.name in RESERVED_NAMES:
            raise ValueError(
                f"`name` must not be one of {RESERVED_NAMES}, which name the model's "
                f"output groups. Received: name={self.name!r}"
            )
        if self.kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}. Received: kind={self.kind!r}")
        if int(self.channels) < 1:
            raise ValueError(f"`channels` must be >= 1. Received: channels={self.channels}")
        if self.kind == "classes" and self.channels < 2:
            raise ValueError(
                "A `classes` task needs `channels` >= 2 (one per class). "
                f"Received: channels={self.channels}"
            )
        expected = {"depth": 1, "normals": 3, "binary": 1}.get(self.kind)
        if expected is not None and self.channels != expected:
            raise ValueError(
                f"A `{self.kind}` task has {expected} output channel(s). "
                f"Received: channels={self.channels}"
            )
        if float(self.loss_weight) < 0:
            raise ValueError(f"`loss_weight` must be >= 0. Received: loss_weight={self.loss_weight}")
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "loss_options", types.MappingProxyType(dict(self.loss_options)))

    @property
    def num_classes(self) -> int:
        """Number of classes of a `classes` or `binary` task (2 for binary)."""
        if self.kind == "classes":
            return self.channels
        if self.kind == "binary":
            return 2
        raise ValueError(f"Task {self.name!r} of kind {self.kind!r} has no classes.")

    @property
    def label_channels(self) -> int:
        """Channels of the label tensor: 3 for normals, else 1."""
        return 3 if self.kind == "normals" else 1

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
        config["metrics"] = tuple(config.get("metrics", ()))
        return cls(**config)


def semseg(num_classes: int = 40, loss_weight: float = 1.0) -> TaskSpec:
    """Semantic segmentation: cross-entropy, scored by mIoU."""
    return TaskSpec(
        name="semseg",
        kind="classes",
        channels=num_classes,
        loss="cross_entropy",
        loss_weight=loss_weight,
        metrics=("miou", "pixel_accuracy"),
        higher_is_better=True,
    )


def human_parts(num_classes: int = 7, loss_weight: float = 2.0) -> TaskSpec:
    """Human part segmentation (background + 6 parts): cross-entropy, mIoU."""
    return TaskSpec(
        name="human_parts",
        kind="classes",
        channels=num_classes,
        loss="cross_entropy",
        loss_weight=loss_weight,
        metrics=("miou", "pixel_accuracy"),
        higher_is_better=True,
    )


def depth(loss_weight: float = 1.0) -> TaskSpec:
    """Metric depth: L1 over valid pixels, scored by RMSE (lower is better)."""
    return TaskSpec(
        name="depth",
        kind="depth",
        channels=1,
        loss="depth_l1",
        loss_weight=loss_weight,
        metrics=("rmse", "log_rmse", "abs_rel", "delta1"),
        higher_is_better=False,
    )


def normals(loss_weight: float = 10.0) -> TaskSpec:
    """Surface normals: L1 on normalised vectors, scored by mean angle error (lower is better)."""
    return TaskSpec(
        name="normals",
        kind="normals",
        channels=3,
        loss="normals_l1",
        loss_weight=loss_weight,
        metrics=("mean_angle", "median_angle", "within_11.25", "within_22.5", "within_30"),
        higher_is_better=False,
    )


def edge(loss_weight: float = 50.0, pos_weight: float = 0.95) -> TaskSpec:
    """Boundaries: weighted BCE (positive weight `pos_weight`), scored by odsF."""
    return TaskSpec(
        name="edge",
        kind="binary",
        channels=1,
        loss="weighted_bce",
        loss_weight=loss_weight,
        metrics=("odsf", "edge_loss"),
        higher_is_better=True,
        loss_options={"pos_weight": pos_weight},
    )


def saliency(loss_weight: float = 5.0) -> TaskSpec:
    """Saliency: class-balanced BCE, scored by maxF."""
    return TaskSpec(
        name="saliency",
        kind="binary",
        channels=1,
        loss="balanced_bce",
        loss_weight=loss_weight,
        metrics=("maxf", "miou"),
        higher_is_better=True,
    )


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
