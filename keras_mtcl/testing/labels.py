"""Random labels in the package's label conventions, for tests and benchmarks.

Needs only numpy: each task's kind (`keras_mtcl.kinds`) draws valid values
(`LabelKind.random`) and says what an invalid pixel holds
(`LabelKind.pad_value`: the ignore value of discrete kinds, 0 for depth, the
zero vector for normals), so every kind, present or future, is drawn the same
way.

Example:
>>> from keras_mtcl import tasks
>>> specs = [tasks.semseg(num_classes=5), tasks.depth(), tasks.normals(), tasks.edge()]
>>> labels = random_labels(specs, batch=2, height=8, width=12, seed=0)
>>> {name: (label.shape, label.dtype.name) for name, label in labels.items()}
... # doctest: +NORMALIZE_WHITESPACE
{'semseg': ((2, 8, 12, 1), 'int32'), 'depth': ((2, 8, 12, 1), 'float32'),
 'normals': ((2, 8, 12, 3), 'float32'), 'edge': ((2, 8, 12, 1), 'int32')}
>>> sorted(set(labels["semseg"].ravel().tolist()))
[0, 1, 2, 3, 4, 255]
>>> bool(specs[1].valid_mask(random_labels(specs, 2, 8, 12, invalid_fraction=0.0)["depth"], xp=np).all())
True
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# Share of pixels set invalid by default: some, so that consumers meet the ignore rule.
INVALID_FRACTION = 0.1


def random_labels(
    tasks: Sequence,
    batch: int,
    height: int,
    width: int,
    seed: int | Sequence[int] = 0,
    invalid_fraction: float = INVALID_FRACTION,
    block: int = 1,
) -> dict[str, np.ndarray]:
    """Random labels of `tasks`, {task name: (batch, height, width, label_channels) numpy array}.

    Each label is drawn by its kind (`LabelKind.random`: class ids 0..C-1,
    binary 0/1 with about 20 % ones, depth metres in [0.5, 5), unit normals),
    in the kind's `label_dtype` (int32 or float32); then about
    `invalid_fraction` of the pixels are set to the kind's invalid value
    (`LabelKind.pad_value`: the task's ignore value for discrete kinds, 0 for
    depth, the zero vector for normals), so `task.valid_mask` is False there
    and True everywhere else.

    Args:
        tasks: `keras_mtcl.tasks.TaskSpec`s, in the order the draws are made.
        batch: examples.
        height: label height.
        width: label width.
        seed: seed of the numpy Generator (`np.random.default_rng`); the
            same arguments give the same arrays.
        invalid_fraction: chance of each pixel (each block) to be invalid;
            0 makes every pixel valid and draws nothing for it.
        block: labels are constant over `block` x `block` squares (blobs
            where samplers find both equal and different pairs); 1 = every
            pixel drawn on its own.

    Returns:
        {task name: array} with shape (batch, height, width, label_channels).

    Raises:
        ValueError: a negative size, `invalid_fraction` outside [0, 1], a
            `block` < 1, or a kind without a `random` rule.
    """
    if min(batch, height, width) < 0 or not 0.0 <= invalid_fraction <= 1.0 or block < 1:
        raise ValueError(
            "`batch`, `height` and `width` must be >= 0, `invalid_fraction` in [0, 1] and `block` >= 1. "
            f"Received: batch={batch}, height={height}, width={width}, invalid_fraction={invalid_fraction}, "
            f"block={block}"
        )
    rng = np.random.default_rng(seed)
    shape = (batch, -(-height // block), -(-width // block))
    labels = {}
    for task in tasks:
        kind = task.label_kind
        if kind.random is None:
            raise ValueError(f"Label kind `{kind.name}` has no `random` rule. Received: task={task.name!r}")
        label = np.asarray(kind.random(rng, shape, task.channels)).astype(kind.label_dtype)
        if invalid_fraction > 0:
            invalid = rng.uniform(size=shape) < invalid_fraction
            label[invalid] = kind.pad_value(task.ignore_value)
        if block > 1:
            label = np.repeat(np.repeat(label, block, axis=1), block, axis=2)[:, :height, :width]
        labels[task.name] = label
    return labels


__all__ = ["INVALID_FRACTION", "random_labels"]
