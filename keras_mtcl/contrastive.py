"""The cross-task contrastive regularizer of "Contrastive Multi-Task Dense Prediction" (AAAI 2023).

Training-only: for every target task t, the labels of a source task s != t
decide which pixels of t's feature map F_t are positives and negatives of
each other, and a triplet loss on projections of F_t pulls positives
together and pushes negatives apart. The specification, with every default,
is the project's METHOD.md; in short, per step:

1. Every source task's labels are brought to the feature resolution without
   interpolating values (nearest sampling; for a task marked `sparse`, thin
   binary structures such as edges, a cell is positive when any of its
   pixels is; `label_resize="nearest"` uses nearest sampling for every
   task) and turned into a validity mask and a label distance delta(i, j).
   All of it is the source task's label kind's (`keras_mtcl.kinds`:
   `LabelKind.feature_labels`, `valid_mask`, `distance`, `thresholds`,
   `ranking_margin`, `discrete`):

   | kind    | delta(i, j)                      | invalid pixels                  |
   |---------|----------------------------------|---------------------------------|
   | classes | 0 if same class else 1           | ignore value, out of range      |
   | binary  | 0 if same value else 1           | ignore value, outside 0..1      |
   | depth   | abs(log d_i - log d_j)           | d <= 0, non-finite, ignore      |
   | normals | angle between vectors, degrees   | zero vector, non-finite, ignore |

2. Per image and source task, `num_anchors` anchors and, independently, a
   pool of `pool_size` candidates are drawn among valid pixels without
   replacement (random scores, invalid pixels at -inf, top-k; a pixel is
   never its own positive or negative). With `balance`, for discrete
   (classes/binary) sources a pixel's score is `-(1 - u) * n_c` (u uniform,
   n_c the pixel count of its class in the image): the pixels drawn from
   each class are those with `(1 - u) < T / n_c` for a common threshold T,
   so every class present contributes about T pixels (a Poisson count) until
   it runs out. This needs only per-class counts: static shapes, no sort.
3. For each anchor, the criterion marks pool pixels as eligible positives
   and negatives (`threshold`: delta <= tau_pos / delta > tau_neg;
   `ranking`: a first candidate c1 is drawn, then a second c2 among the
   candidates whose delta differs from c1's by more than eps, and the closer
   of the two is the positive), and one of each is picked uniformly (random
   scores + argmax). Anchors without a triplet get weight 0.
4. Each target takes the triplets of its drawn source (one gather over the
   stacked per-source indices), gathers the feature vectors of anchors,
   positives and negatives from F_t and only then projects them (Dense ->
   ReLU -> Dense -> L2 normalisation). The projectors of the K (K - 1)
   ordered pairs are one bank of stacked weights; every target gathers its
   drawn pair's slice and all targets project in one batched matmul. The
   cost is O(K B num_anchors pool_size) for sampling and one small batched
   MLP on 3 num_anchors vectors per image and target, whatever the feature
   map size.
5. l(a, p, n) = max(0, ||z_a - z_p||^2 - ||z_a - z_n||^2 + margin); L_t is
   the weighted mean over the step's triplets (0 without any), and the
   regularizer adds `weight * mean_t L_t` to the training loss.

The step has no conditional: every source is sampled once per step (sources
of the same label kind in one batched call; all random numbers of the step,
the source draws included, come from one `keras.random.uniform` call of the
layer's `SeedGenerator`, a non-trainable variable, so the draws change every
step and are reproducible from `seed`, also under JAX's stateless
training), and the drawn sources and pairs select by gathers. Projector
slices of pairs not drawn get an exact zero gradient on every backend (the
gradient of a gather), so optimizers treat them alike everywhere; Adam moves
a slice only through its earlier moments, weight decay shrinks every slice.
Source selection `all` runs the same machinery with every ordered pair as
a row, and averages L_t over the K - 1 sources.

Everything is computed in float32, whatever the dtype of the features
(mixed precision).
"""

from __future__ import annotations

import math
import types
import warnings
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
from keras import ops

from keras_mtcl.kinds import KINDS
from keras_mtcl.losses import l2_normalize, label_map
from keras_mtcl.tasks import TaskSpec, validate_tasks

CRITERIA = ("threshold", "ranking")
SOURCE_SELECTIONS = ("random", "all")
LABEL_RESIZES = ("task", "nearest")

# The label kinds' defaults in the format of the layer's `thresholds` and
# `ranking_margins` options, {kind name: value} (`LabelKind.thresholds`:
# (tau_pos, tau_neg) in the units of the kind's distance; `ranking_margin`:
# the two candidates' distances to the anchor must differ by more than eps).
DEFAULT_THRESHOLDS = types.MappingProxyType({name: kind.thresholds for name, kind in KINDS.items()})
DEFAULT_RANKING_MARGINS = types.MappingProxyType({name: kind.ranking_margin for name, kind in KINDS.items()})


def spread_seed(seed: int) -> int:
    """A user seed hashed to a 31-bit generator seed (SplitMix64's finaliser), so neighbouring seeds are far apart.

    Keras's `SeedGenerator` keeps the state (seed, counter) and adds 1 to the
    counter per draw; on PyTorch the generator is seeded with seed +
    counter, so seeds 7 and 8 would give the same stream shifted by one
    step. Hashed seeds are spread over [0, 2^31): two seeds' streams meet
    only if their hashes lie within the number of steps of each other
    (probability about steps / 2^31). TensorFlow and JAX mix both words of
    the state, and get the hashed seed too.

    Example:
    >>> spread_seed(7) != spread_seed(8) and abs(spread_seed(7) - spread_seed(8)) > 10**6
    True
    """
    mask = (1 << 64) - 1
    z = (int(seed) + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return int((z ^ (z >> 31)) & 0x7FFFFFFF)


# ---------------------------------------------------------------------------
# Labels: the source task's kind says how to bring them to the feature
# resolution, which are valid and how far apart two are.


def feature_labels(task: TaskSpec, labels, size, sparse: bool | None = None):
    """`task`'s labels at the feature resolution `size` = (h, w), by its kind's rule.

    Args:
        task: the source `TaskSpec` (its kind, channels, ignore value and `sparse`).
        labels: (B, H, W) or (B, H, W, c) labels, any dtype.
        size: (h, w) (ints, or scalar tensors in a TF graph for a non-sparse task).
        sparse: use the kind's sparse rule; default `task.sparse`. False gives
            nearest sampling for any task.

    Returns:
        (B, h, w, c) float32: nearest sampling, or for a sparse task the
        kind's sparse rule (binary: 1 where any valid pixel of the cell is 1).
    """
    sparse = task.sparse if sparse is None else bool(sparse)
    return task.label_kind.feature_labels(label_map(labels), size, task.channels, task.ignore_value, sparse=sparse)


def criterion_masks(delta, tau_pos: float, tau_neg: float):
    """The `threshold` criterion: (positive, negative) masks, delta <= tau_pos and delta > tau_neg."""
    return delta <= tau_pos, delta > tau_neg


# ---------------------------------------------------------------------------
# Sampling (static shapes).


def gather_pixels(values, index):
    """Per-image gather of pixels: values[b, index[b, n]].

    Args:
        values: (B, h, w, c) or (B, P, c).
        index: (B, N) int pixel indices into the flattened (h * w) map.

    Returns:
        (B, N, c), in the dtype of `values`.
    """
    shape = ops.shape(values)
    channels = values.shape[-1]
    pixels = shape[1] * shape[2] if len(values.shape) == 4 else shape[1]
    batch = shape[0]
    flat = ops.reshape(values, (-1, channels))
    offsets = ops.expand_dims(ops.arange(batch, dtype="int32") * pixels, 1)
    rows = ops.reshape(ops.cast(index, "int32") + offsets, (-1,))
    return ops.reshape(ops.take(flat, rows, axis=0), (batch, -1, channels))


def sampling_scores(task: TaskSpec, labels, valid, uniform, balance: bool = True, num_classes: int | None = None):
    """Scores whose top-k are the sampled pixels: random, -inf on invalid pixels.

    Args:
        task: the source `TaskSpec` (or any task of the source's label kind).
        labels: (B, P, c) source labels per pixel (B may stack several
            sources of one kind: their images are independent rows).
        valid: (B, P) bool validity of the labels.
        uniform: (..., B, P) uniform draws in [0, 1).
        balance: for discrete (classes/binary) sources, score `-(1 - u) * n_c` with n_c
            the pixel count of the pixel's class in its image, so that each
            class present gets about the same number of the top-k pixels.
        num_classes: class ids are below this; default `task.num_classes`.

    Returns:
        (..., B, P) float32.
    """
    uniform = ops.cast(uniform, "float32")
    if balance and task.label_kind.discrete:
        # Valid ids are integers (binary 0/1): rounding keeps them and
        # matches binary's distance (y > 0.5) on any value in [0, 1].
        classes = ops.cast(ops.where(valid, ops.round(labels[..., 0]), 0.0), "int32")
        # Per-image class counts with one segment sum over (image, class) ids:
        # O(B P), where a one-hot would be O(B P C).
        num_classes = task.num_classes if num_classes is None else int(num_classes)
        shape = ops.shape(classes)
        ids = classes + ops.expand_dims(ops.arange(shape[0], dtype="int32") * num_classes, 1)
        ids = ops.reshape(ids, (-1,))
        counts = ops.segment_sum(
            ops.reshape(ops.cast(valid, "float32"), (-1,)), ids, num_segments=shape[0] * num_classes
        )
        class_count = ops.reshape(ops.take(counts, ids), shape)  # (B, P)
        scores = (uniform - 1.0) * class_count
    else:
        scores = uniform
    return ops.where(valid, scores, -math.inf)


def sample_pixels(scores, num: int):
    """Draws `num` pixels per image without replacement: the top-`num` scores.

    Args:
        scores: (B, P) from `sampling_scores` (-inf = never drawn).
        num: number of pixels to draw (N_a for anchors, M for the pool).

    Returns:
        (index (B, num) int32, ok (B, num) bool): pixel indices in 0..P-1
        and whether a valid pixel was drawn (with fewer valid pixels than
        `num`, the last slots are not ok and point at pixel 0). Works for
        P < num and for a P unknown until run time.
    """
    num_pixels = scores.shape[1]
    if num_pixels is None or num_pixels < num:
        # Pads with never-drawn slots so that top-k has `num` entries at any P.
        padding = ops.full((ops.shape(scores)[0], num), -math.inf, dtype=scores.dtype)
        scores = ops.concatenate([scores, padding], axis=1)
    values, index = ops.top_k(scores, num)
    ok = values > -math.inf
    return ops.where(ok, ops.cast(index, "int32"), 0), ok


def select_triplets(
    delta,
    candidate_ok,
    uniform,
    criterion: str = "threshold",
    thresholds: tuple[float, float] = (0.0, 0.0),
    ranking_margin: float = 0.0,
):
    """Picks one positive and one negative pool pixel per anchor.

    Args:
        delta: (B, N, M) label distances anchor x pool.
        candidate_ok: bool, broadcastable to (B, N, M): the pool pixel may
            serve the anchor (valid, and not the anchor pixel itself).
        uniform: (B, N, M) uniform draws in [0, 1).
        criterion: `"threshold"`: positives have delta <= tau_pos, negatives
            delta > tau_neg, each chosen uniformly among the eligible pool
            pixels (the sets are disjoint, so one draw serves both);
            `"ranking"`: a first candidate c1 drawn uniformly among the
            eligible pool pixels, a second c2 uniformly among those whose
            delta differs from c1's by more than `ranking_margin`, and the
            closer of the two is the positive. (Two independent candidates
            rank only when their deltas happen to differ: with a class
            label, when exactly one shares the anchor's class, 35 % of
            semseg and 20 % of edge anchors on the synthetic scenes; drawing
            c2 among c1's rankable partners is the limit of redrawing c2
            until the pair ranks, and costs the same two argmax passes.)
        thresholds: (tau_pos, tau_neg) of the threshold criterion.
        ranking_margin: eps of the ranking criterion.

    Returns:
        (positive (B, N) int32, negative (B, N) int32, found (B, N) bool):
        positions in the pool, and whether the anchor has a triplet.
    """
    # Scores of ineligible candidates are -1, below any draw: one pass, then
    # argmax picks the best eligible candidate, and its score says whether
    # there was one.
    scores = ops.where(candidate_ok, ops.cast(uniform, "float32"), -1.0)  # (B, N, M)

    def best(candidate_scores):
        # The maximum is the score at the argmax: a reduction, cheaper to trace and run than a gather.
        index = ops.cast(ops.argmax(candidate_scores, axis=-1), "int32")
        return index, ops.max(candidate_scores, axis=-1) >= 0.0

    if criterion == "threshold":
        positive_mask, negative_mask = criterion_masks(delta, *thresholds)
        positive, has_positive = best(ops.where(positive_mask, scores, -1.0))
        negative, has_negative = best(ops.where(negative_mask, scores, -1.0))
        return positive, negative, ops.logical_and(has_positive, has_negative)
    if criterion == "ranking":
        # c1: the best eligible candidate; c2: the best of those whose delta differs from c1's by more than eps.
        first, has_first = best(scores)
        delta_first = ops.take_along_axis(delta, ops.expand_dims(first, -1), axis=-1)  # (B, N, 1)
        rankable = ops.abs(ops.subtract(delta, delta_first)) > ranking_margin
        second, has_second = best(ops.where(rankable, scores, -1.0))
        delta_first = delta_first[..., 0]
        delta_second = ops.take_along_axis(delta, ops.expand_dims(second, -1), axis=-1)[..., 0]
        first_closer = delta_first <= delta_second
        positive = ops.where(first_closer, first, second)
        negative = ops.where(first_closer, second, first)
        return positive, negative, ops.logical_and(has_first, has_second)
    raise ValueError(f"Unknown criterion. Expected one of {CRITERIA}. Received: criterion={criterion!r}")


def sample_triplets(
    task: TaskSpec,
    labels,
    size,
    uniform_pixels,
    uniform_pairs,
    num_anchors: int = 256,
    pool_size: int = 1024,
    balance: bool = True,
    criterion: str = "threshold",
    thresholds: tuple[float, float] | None = None,
    ranking_margin: float | None = None,
    sparse: bool | None = None,
) -> dict:
    """Samples (anchor, positive, negative) pixels of a feature map from a source task's labels.

    Deterministic given the uniform draws, so that it can be driven and
    compared across backends.

    Args:
        task: the source `TaskSpec`.
        labels: (B, H, W[, c]) source labels at input resolution.
        size: (h, w) of the target feature map.
        uniform_pixels: (2, B, h * w) uniform draws in [0, 1): pixel scores
            of the anchors ([0]) and of the candidate pool ([1]), drawn
            independently (a pixel may be both; it is never its own
            positive or negative).
        uniform_pairs: (B, num_anchors + pool_size) uniform draws in [0, 1),
            r_n for the anchors then c_m for the pool: the positive and the
            negative of anchor n are picked by the scores frac(r_n + c_m),
            which are i.i.d. uniform over m for each anchor (a random
            rotation of the pool's scores), so every eligible pool pixel is
            equally likely; one (B, N + M) draw instead of (B, N, M).
        num_anchors, pool_size, balance, criterion: as in `CrossTaskContrastive`.
        thresholds: (tau_pos, tau_neg); default the kind's (`LabelKind.thresholds`).
        ranking_margin: eps; default the kind's (`LabelKind.ranking_margin`).
        sparse: as in `feature_labels` (default `task.sparse`).

    Returns:
        {"anchor", "positive", "negative": (B, num_anchors) int32 pixel
        indices into the flattened (h * w) map, "weights": (B, num_anchors)
        float32, 1 where the anchor is valid and has a triplet, else 0}.
    """
    labels = feature_labels(task, labels, size, sparse=sparse)
    shape = ops.shape(labels)
    labels = ops.reshape(labels, (shape[0], -1, labels.shape[-1]))
    return sample_label_triplets(
        task,
        labels,
        task.valid_mask(labels),
        uniform_pixels,
        uniform_pairs,
        num_anchors=num_anchors,
        pool_size=pool_size,
        balance=balance,
        criterion=criterion,
        thresholds=thresholds,
        ranking_margin=ranking_margin,
    )


def sample_label_triplets(
    task: TaskSpec,
    labels,
    valid,
    uniform_pixels,
    uniform_pairs,
    num_anchors: int = 256,
    pool_size: int = 1024,
    balance: bool = True,
    criterion: str = "threshold",
    thresholds: tuple[float, float] | None = None,
    ranking_margin: float | None = None,
    num_classes: int | None = None,
) -> dict:
    """The pure sampling core: triplets of label maps already at the feature resolution.

    Rows are independent: (B, P) may stack the images of several source
    tasks of one label kind, which are then sampled in one call.

    Args:
        task: a task of the labels' kind (its kind gives the distance, the
            default thresholds and margin; its classes the balance's ids).
        labels: (B, P, c) float32 labels per feature pixel.
        valid: (B, P) bool validity (`task.valid_mask(labels)`).
        uniform_pixels, uniform_pairs, num_anchors, pool_size, balance,
            criterion, thresholds, ranking_margin: as in `sample_triplets`.
        num_classes: class ids are below this (balance); default `task.num_classes`.

    Returns:
        As `sample_triplets`.
    """
    kind = task.label_kind
    thresholds = kind.thresholds if thresholds is None else tuple(thresholds)
    ranking_margin = kind.ranking_margin if ranking_margin is None else ranking_margin
    scores = sampling_scores(task, labels, valid, uniform_pixels, balance, num_classes)  # (2, B, P)
    anchor, anchor_ok = sample_pixels(scores[0], num_anchors)
    pool, pool_ok = sample_pixels(scores[1], pool_size)
    picked = gather_pixels(labels, ops.concatenate([anchor, pool], axis=1))  # (B, N + M, c), one gather
    anchor_labels, pool_labels = picked[:, :num_anchors], picked[:, num_anchors:]
    delta = kind.distance(ops.expand_dims(anchor_labels, 2), ops.expand_dims(pool_labels, 1))
    candidate_ok = ops.logical_and(
        ops.expand_dims(pool_ok, 1), ops.expand_dims(pool, 1) != ops.expand_dims(anchor, 2)
    )  # (B, N, M)
    uniform_pairs = ops.cast(uniform_pairs, "float32")
    pair_scores = ops.mod(
        ops.expand_dims(uniform_pairs[:, :num_anchors], 2) + ops.expand_dims(uniform_pairs[:, num_anchors:], 1), 1.0
    )  # (B, N, M), in [0, 1)
    positive, negative, found = select_triplets(
        delta, candidate_ok, pair_scores, criterion, thresholds, ranking_margin
    )
    chosen = ops.take_along_axis(pool, ops.concatenate([positive, negative], axis=1), axis=1)  # (B, 2 N)
    return {
        "anchor": anchor,
        "positive": chosen[:, :num_anchors],
        "negative": chosen[:, num_anchors:],
        "weights": ops.cast(ops.logical_and(found, anchor_ok), "float32"),
    }


# ---------------------------------------------------------------------------
# Projection and loss.


def triplet_loss(z_a, z_p, z_n, weights, margin: float = 0.5):
    """Weighted mean of max(0, ||z_a - z_p||^2 - ||z_a - z_n||^2 + margin).

    Args:
        z_a, z_p, z_n: (..., D) projections (unit vectors).
        weights: (...) triplet weights (0 = no triplet).
        margin: the triplet margin.

    Returns:
        float32 scalar; 0 when the weights sum to 0.
    """
    z_a, z_p, z_n = (ops.cast(z, "float32") for z in (z_a, z_p, z_n))
    weights = ops.cast(weights, "float32")
    d_positive = ops.sum(ops.square(z_a - z_p), axis=-1)
    d_negative = ops.sum(ops.square(z_a - z_n), axis=-1)
    losses = ops.relu(d_positive - d_negative + margin)
    total = ops.sum(ops.where(weights > 0, losses * weights, 0.0))
    count = ops.sum(weights)
    return total / ops.where(count > 0, count, 1.0)


def pair_loss(features, anchor, positive, negative, weights, projector: Callable, margin: float = 0.5):
    """The triplet loss of given pixel triplets of a feature map.

    Gathers the feature vectors first, then projects them.

    Args:
        features: (B, h, w, C) or (B, P, C) target feature map (any float dtype).
        anchor, positive, negative: (B, N) int pixel indices into the
            flattened (h * w) map.
        weights: (B, N) triplet weights.
        projector: maps (rows, C) float32 vectors to (rows, D) unit vectors.
        margin: the triplet margin.

    Returns:
        float32 scalar, the weighted mean triplet loss.
    """
    num = anchor.shape[1]
    index = ops.concatenate([anchor, positive, negative], axis=1)  # (B, 3 N)
    gathered = ops.cast(gather_pixels(features, index), "float32")  # (B, 3 N, C)
    # Rows of a 2-D matrix: Dense is then a plain matmul (a tensordot with a
    # dynamic batch size inside a conditional does not compile under XLA).
    z = projector(ops.reshape(gathered, (-1, gathered.shape[-1])))
    z = ops.reshape(z, (-1, 3 * num, z.shape[-1]))  # (B, 3 N, D)
    return triplet_loss(z[:, :num], z[:, num : 2 * num], z[:, 2 * num :], weights, margin)


# ---------------------------------------------------------------------------
# The layer.


def bank_triplet_losses(feature_vectors, bank, pair_index, weights, margin: float = 0.5):
    """Per-row triplet losses of gathered feature vectors, each row projected by its slice of a projector bank.

    Args:
        feature_vectors: (R, B, 3 N, C) float32: per row (a (target, source)
            pair), the target's feature vectors of the anchors, positives and
            negatives (in that order along the third axis).
        bank: (hidden_kernel (P, C, H), hidden_bias (P, H), output_kernel
            (P, H, D), output_bias (P, D)), the stacked weights of P projectors.
        pair_index: (R,) int, the bank slice of each row.
        weights: (R, B, N) triplet weights.
        margin: the triplet margin.

    Returns:
        (R,) float32: each row's weighted mean triplet loss (0 without triplets).
    """
    three_n, channels = feature_vectors.shape[2], feature_vectors.shape[3]
    shape = ops.shape(feature_vectors)
    num = three_n // 3
    pair_index = ops.cast(pair_index, "int32")
    kernel_1, bias_1, kernel_2, bias_2 = (ops.take(w, pair_index, axis=0) for w in bank)
    x = ops.reshape(feature_vectors, (shape[0], -1, channels))  # (R, B 3N, C)
    hidden = ops.relu(ops.matmul(x, kernel_1) + ops.expand_dims(bias_1, 1))
    z = l2_normalize(ops.matmul(hidden, kernel_2) + ops.expand_dims(bias_2, 1))
    z = ops.reshape(z, (shape[0], shape[1], three_n, z.shape[-1]))  # (R, B, 3N, D)
    z_a, z_p, z_n = z[:, :, :num], z[:, :, num : 2 * num], z[:, :, 2 * num :]
    d_positive = ops.sum(ops.square(z_a - z_p), axis=-1)
    d_negative = ops.sum(ops.square(z_a - z_n), axis=-1)
    losses = ops.relu(d_positive - d_negative + margin)  # (R, B, N)
    weights = ops.cast(weights, "float32")
    total = ops.sum(ops.where(weights > 0, losses * weights, 0.0), axis=(1, 2))
    count = ops.sum(weights, axis=(1, 2))
    return total / ops.where(count > 0, count, 1.0)


class ProjectorView:
    """The projector of one ordered pair (target, source): a view of its slice of the layer's bank.

    Callable: (..., C_t) vectors -> (..., D) unit vectors, Dense -> ReLU -> Dense -> L2 normalisation
    (float32), with the slice's current weights. `get_weights()` returns
    copies [hidden kernel (C_t, H), hidden bias (H,), output kernel (H, D),
    output bias (D,)]; `set_weights` writes them into the bank; `weights`
    holds the same four slices as tensors. It owns no variable (the bank's
    variables are the layer's).
    """

    def __init__(self, layer: "CrossTaskContrastive", target: str, source: str):
        self.layer, self.target, self.source = layer, target, source
        self.index = layer.pair_index(target, source)
        self.channels = layer.feature_channels[target]

    def __repr__(self) -> str:
        return f"<ProjectorView {self.target}<-{self.source}, slice {self.index} of {self.layer.name}>"

    @property
    def weights(self) -> list:
        kernel_1, bias_1, kernel_2, bias_2 = (v.value for v in self.layer.bank)
        i, c = self.index, self.channels
        return [kernel_1[i, :c], bias_1[i], kernel_2[i], bias_2[i]]

    def get_weights(self) -> list[np.ndarray]:
        return [np.array(keras.ops.convert_to_numpy(w)) for w in self.weights]

    def set_weights(self, weights: Sequence) -> None:
        expected = [tuple(w.shape) for w in self.weights]
        given = [tuple(np.shape(w)) for w in weights]
        if given != expected:
            raise ValueError(f"Projector {self.target}<-{self.source} takes weights of shapes {expected}. Received: shapes {given}")
        for part, (variable, value) in enumerate(zip(self.layer.bank, weights)):
            full = np.array(keras.ops.convert_to_numpy(variable.value))
            if part == 0:
                full[self.index, : self.channels] = value
            else:
                full[self.index] = value
            variable.assign(full)

    def __call__(self, inputs):
        kernel_1, bias_1, kernel_2, bias_2 = self.weights
        x = ops.cast(inputs, "float32")
        return l2_normalize(ops.matmul(ops.relu(ops.matmul(x, kernel_1) + bias_1), kernel_2) + bias_2)


def _check_per_kind(name: str, value, check: Callable[[Any], Any]) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"`{name}` must be None or a dict {{kind: value}} over kinds {list(KINDS)}. Received: {name}={value!r}")
    unknown = [k for k in value if k not in KINDS]
    if unknown:
        raise ValueError(f"`{name}` has unknown label kinds {unknown}; expected kinds among {list(KINDS)}. Received: {name}={value!r}")
    return {k: check(v) for k, v in value.items()}


class _SliceInitializer:
    """Glorot-uniform per bank slice with its true fan-in (the padded input rows of a narrower target start at 0)."""

    def __init__(self, fan_in: Sequence[int], fan_out: int, padded_rows: Sequence[int] | None = None):
        self.fan_in, self.fan_out, self.padded_rows = list(fan_in), int(fan_out), padded_rows

    def __call__(self, shape, dtype=None):
        limits = np.sqrt(6.0 / (np.asarray(self.fan_in, "float64") + self.fan_out)).astype("float32")
        scale = np.broadcast_to(limits.reshape(-1, 1, 1), shape).copy()
        if self.padded_rows is not None:
            for i, rows in enumerate(self.padded_rows):
                scale[i, rows:] = 0.0
        values = keras.random.uniform(shape, -1.0, 1.0, dtype=dtype)
        return values * ops.convert_to_tensor(scale, dtype=dtype)


def _legacy_projector_weights(store, pairs: int) -> list[list[np.ndarray]] | None:
    """The per-pair projector weights of a file written by keras_mtcl <= 0.2, or None if `store` holds none.

    keras_mtcl <= 0.2 kept one `Projector` layer per ordered pair in a dict attribute
    `projectors` (target-major, each target's sources in task order, the
    order of `CrossTaskContrastive.pairs`); Keras saved them as
    `<layer path>/projectors/projector[_i]/{hidden,output_layer}/vars/{0,1}`.
    """
    h5_file, path = getattr(store, "h5_file", None), getattr(store, "_h5_entry_path", None)
    if h5_file is None or path is None:
        return None
    group_path = f"{path}/projectors" if path else "projectors"
    if group_path not in h5_file:
        return None
    group = h5_file[group_path]
    names = ["projector"] + [f"projector_{i}" for i in range(1, pairs)]
    if sorted(group.keys()) != sorted(names):
        raise ValueError(
            f"This file holds {len(group.keys())} per-pair projectors (keras_mtcl <= 0.2); the layer has {pairs} task pairs. "
            f"Received: projectors {sorted(group.keys())}"
        )
    out = []
    for name in names:
        out.append([np.asarray(group[name][part]["vars"][key]) for part in ("hidden", "output_layer") for key in ("0", "1")])
    return out


@keras.saving.register_keras_serializable(package="keras_mtcl")
class CrossTaskContrastive(keras.layers.Layer):
    """Cross-task contrastive regularizer (METHOD.md): a bank of K (K - 1) projectors, no per-pair control flow.

    Args:
        tasks: list of `TaskSpec` (or their configs), at least two; may be
            None and bound later with `bind` (`MultiTaskTrainer` does).
        weight: lambda, the weight of `mean_t L_t` in the training loss (0.1).
        criterion: `"threshold"` (default) or `"ranking"` positive/negative criterion.
        thresholds: optional {kind: (tau_pos, tau_neg)} overriding
            `DEFAULT_THRESHOLDS` (classes/binary 0/0, depth log(1.05)/log(1.25),
            normals 10/30 degrees); 0 <= tau_pos <= tau_neg.
        ranking_margins: optional {kind: eps} overriding
            `DEFAULT_RANKING_MARGINS` (classes/binary 0, depth log(1.05),
            normals 10 degrees).
        num_anchors: N_a anchors per image and source (256).
        pool_size: M candidate pixels per image and source (1024), >= 2.
        balance: draw an equal share of anchors (and candidates) from each
            class present, for classes/binary sources (True).
        projector_width: hidden units of the projectors (256).
        projection_dim: output dimension of the projectors (128).
        margin: triplet margin (0.5).
        source_selection: `"random"` (one source per target per step, the
            paper) or `"all"` (L_t averaged over every other task).
        label_resize: how source labels reach the feature resolution:
            `"task"` (default: each task's rule, any positive pixel in the
            cell for tasks marked `sparse` such as edge, nearest sampling
            otherwise) or `"nearest"` (nearest sampling for every task).
        seed: int seed of the layer's random generator, or None. It is
            hashed (`spread_seed`), so neighbouring seeds give unrelated draws.

    The layer is training-only (`MultiTaskTrainer.compute_loss` calls it):
    its projectors never run at inference. All task feature maps must have
    the same spatial size (h, w) (every source's triplets index it); their
    channels may differ (the bank's input rows are padded to the widest).

    Call arguments:
        features: {task: (B, h, w, C_t)} target feature maps F_t.
        labels: {task: (B, H, W, 1) or (B, H, W, 3) for normals} labels at
            input resolution, in the conventions of `keras_mtcl.tasks`;
            extra keys are ignored.

    Returns:
        {"loss": weight * mean_t L_t (float32 scalar),
        "per_task": {task: L_t, unweighted},
        "triplet_fraction": fraction of the anchors of the computed
        (target, source) pairs that found a triplet,
        "triplet_fraction_per_source": {task: fraction of that source's
        anchors that found a triplet this step (every source is sampled)},
        "sources": {task: int32 scalar, index in `tasks` of the source drawn
        this step (-1 with `source_selection="all"`)}}.

    Example:
    >>> from keras_mtcl import tasks
    >>> layer = CrossTaskContrastive(tasks.task_set("nyud", tasks=["semseg", "depth"]), seed=0)
    >>> layer.build({"semseg": (None, 8, 8, 16), "depth": (None, 8, 8, 16)})
    >>> layer.pairs
    [('semseg', 'depth'), ('depth', 'semseg')]
    >>> [tuple(v.shape) for v in layer.bank]
    [(2, 16, 256), (2, 256), (2, 256, 128), (2, 128)]
    """

    def __init__(
        self,
        tasks: Sequence[TaskSpec] | None = None,
        weight: float = 0.1,
        criterion: str = "threshold",
        thresholds: Mapping[str, Sequence[float]] | None = None,
        ranking_margins: Mapping[str, float] | None = None,
        num_anchors: int = 256,
        pool_size: int = 1024,
        balance: bool = True,
        projector_width: int = 256,
        projection_dim: int = 128,
        margin: float = 0.5,
        source_selection: str = "random",
        label_resize: str = "task",
        seed: int | None = None,
        **kwargs,
    ):
        # Labels (depth in metres, normals) must not be cast to float16 by
        # autocasting, and the bank is read in float32 under a mixed policy:
        # everything here is computed in float32.
        kwargs.setdefault("autocast", False)
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if float(weight) < 0:
            raise ValueError(f"`weight` must be >= 0. Received: weight={weight}")
        if criterion not in CRITERIA:
            raise ValueError(f"`criterion` must be one of {CRITERIA}. Received: criterion={criterion!r}")
        if source_selection not in SOURCE_SELECTIONS:
            raise ValueError(
                f"`source_selection` must be one of {SOURCE_SELECTIONS}. Received: source_selection={source_selection!r}"
            )
        if label_resize not in LABEL_RESIZES:
            raise ValueError(f"`label_resize` must be one of {LABEL_RESIZES}. Received: label_resize={label_resize!r}")
        for name, value, minimum in (
            ("num_anchors", num_anchors, 1),
            ("pool_size", pool_size, 2),
            ("projector_width", projector_width, 1),
            ("projection_dim", projection_dim, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
        if float(margin) < 0:
            raise ValueError(f"`margin` must be >= 0. Received: margin={margin}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an integer or None. Received: seed={seed!r}")

        def check_pair(value):
            pair = tuple(float(v) for v in value) if isinstance(value, (list, tuple)) else ()
            if len(pair) != 2 or not 0 <= pair[0] <= pair[1]:
                raise ValueError(
                    "Each entry of `thresholds` must be a pair (tau_pos, tau_neg) with 0 <= tau_pos <= tau_neg. "
                    f"Received: thresholds={thresholds!r}"
                )
            return pair

        def check_margin(value):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"Each entry of `ranking_margins` must be a number >= 0. Received: ranking_margins={ranking_margins!r}")
            return float(value)

        self.thresholds = _check_per_kind("thresholds", thresholds, check_pair)
        self.ranking_margins = _check_per_kind("ranking_margins", ranking_margins, check_margin)
        self.weight = float(weight)
        self.criterion = criterion
        self.num_anchors = num_anchors
        self.pool_size = pool_size
        self.balance = bool(balance)
        self.projector_width = projector_width
        self.projection_dim = projection_dim
        self.margin = float(margin)
        self.source_selection = source_selection
        self.label_resize = label_resize
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(None if seed is None else spread_seed(seed), name="seed_generator")
        self.task_specs: tuple[TaskSpec, ...] | None = None
        self.bank: tuple | None = None
        self.feature_channels: dict[str, int] = {}
        if tasks is not None:
            self.bind(tasks)

    # -- tasks and weights ---------------------------------------------------

    def bind(self, tasks: Sequence[TaskSpec]) -> None:
        """Sets the tasks (TaskSpecs or configs) if unset; else checks they have the same names and kinds.

        Raises:
            ValueError: fewer than two tasks, or tasks that differ from those
                already bound.
        """
        specs = tuple(validate_tasks(tasks))
        if len(specs) < 2:
            raise ValueError(
                "The contrastive regularizer needs at least two tasks: each target task's positives and "
                f"negatives come from another (source) task. Received: tasks={[t.name for t in specs]}"
            )
        if self.task_specs is None:
            self.task_specs = specs
            return
        bound = [(t.name, t.kind) for t in self.task_specs]
        given = [(t.name, t.kind) for t in specs]
        if bound != given:
            raise ValueError(
                f"This CrossTaskContrastive layer is bound to tasks {bound} (name, kind); it cannot be used "
                f"with other tasks. Received: tasks={given}"
            )

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self._require_tasks()]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The ordered (target, source) pairs in bank order: target-major, each target's sources in task order."""
        names = self.task_names
        return [(t, s) for t in names for s in names if s != t]

    def pair_index(self, target: str, source: str) -> int:
        """The bank slice of the pair (target, source)."""
        names = self.task_names
        if target not in names or source not in names or target == source:
            raise ValueError(f"No projector for the pair ({target!r}, {source!r}): pairs are {self.pairs}.")
        t, s = names.index(target), names.index(source)
        return t * (len(names) - 1) + s - (s > t)

    def _require_tasks(self) -> tuple[TaskSpec, ...]:
        if self.task_specs is None:
            raise ValueError(
                "CrossTaskContrastive has no tasks: pass `tasks=` or call `bind(tasks)` (MultiTaskTrainer does) "
                "before building or calling it. Received: tasks=None"
            )
        return self.task_specs

    def build(self, feature_shapes):
        """Creates the projector bank: stacked weights of the K (K - 1) ordered pairs.

        Args:
            feature_shapes: {task: (B, h, w, C_t)}; only C_t is used.
        """
        specs = self._require_tasks()
        if not isinstance(feature_shapes, Mapping):
            raise ValueError(
                f"`feature_shapes` must be a dict {{task: (B, h, w, C)}} over tasks {self.task_names}. "
                f"Received: feature_shapes={feature_shapes!r}"
            )
        missing = [t.name for t in specs if t.name not in feature_shapes]
        if missing:
            raise ValueError(
                f"`feature_shapes` lacks tasks {missing}; expected {self.task_names}. "
                f"Received: feature_shapes keys={sorted(feature_shapes)}"
            )
        channels = {}
        for target in specs:
            value = tuple(feature_shapes[target.name])[-1]
            if value is None and self.bank is None:
                raise ValueError(
                    f"The channels of task {target.name!r}'s feature map must be known. "
                    f"Received: feature_shapes[{target.name!r}]={tuple(feature_shapes[target.name])}"
                )
            channels[target.name] = value
        if self.bank is not None:
            # Already built (deserialised, then built again by the trainer): check the channels, keep the weights.
            for name, value in channels.items():
                if value is not None and int(value) != self.feature_channels[name]:
                    raise ValueError(
                        f"This CrossTaskContrastive layer was built for {self.feature_channels[name]} feature channels "
                        f"of task {name!r}. Received: feature_shapes[{name!r}]={tuple(feature_shapes[name])}"
                    )
            return
        self.feature_channels = {name: int(value) for name, value in channels.items()}
        widest = max(self.feature_channels.values())
        fan_in = [self.feature_channels[target] for target, _ in self.pairs]
        num_pairs, width, dim = len(fan_in), self.projector_width, self.projection_dim
        self.bank = (
            self.add_weight(
                (num_pairs, widest, width), initializer=_SliceInitializer(fan_in, width, fan_in), name="hidden_kernel"
            ),
            self.add_weight((num_pairs, width), initializer="zeros", name="hidden_bias"),
            self.add_weight(
                (num_pairs, width, dim), initializer=_SliceInitializer([width] * num_pairs, dim), name="output_kernel"
            ),
            self.add_weight((num_pairs, dim), initializer="zeros", name="output_bias"),
        )

    def get_projector(self, target: str, source: str) -> ProjectorView:
        """The projector of the ordered pair (target, source): a callable view of its bank slice."""
        if self.bank is None:
            raise ValueError("The layer is not built: it has no projectors yet. Call `build(feature_shapes)` first.")
        return ProjectorView(self, target, source)

    @property
    def projectors(self) -> dict[str, ProjectorView]:
        """{"<target>_from_<source>": the pair's `ProjectorView`}, in bank order (empty before `build`)."""
        if self.bank is None:
            return {}
        return {f"{t}_from_{s}": ProjectorView(self, t, s) for t, s in self.pairs}

    def load_own_variables(self, store):
        """Loads the bank; a file of keras_mtcl <= 0.2 (one `Projector` layer per pair) is loaded into the bank's slices."""
        if self.bank is not None and len(store.keys()) == 0:
            try:
                self._load_per_pair_projectors(store)
                return
            except ValueError as error:
                # Keras visits the layer once per path that reaches it (`layers/<name>`, then the trainer's
                # attribute): keep the first, telling error for the later visits.
                self._load_error = getattr(self, "_load_error", None) or error
                raise self._load_error from None
        super().load_own_variables(store)

    def _load_per_pair_projectors(self, store) -> None:
        if getattr(store, "h5_file", None) is None:
            raise ValueError(
                "The weights file holds no projector bank, and only an HDF5 store (.keras, .weights.h5) can be searched "
                "for the per-pair projectors of keras_mtcl <= 0.2 (one Projector layer per task pair). Re-save the file "
                "as .keras with keras_mtcl 0.2, or copy each pair's weights with `get_projector(target, source)"
                f".set_weights(...)`. Received: a {type(store).__name__} without the bank's variables"
            )
        legacy = _legacy_projector_weights(store, len(self.pairs))
        if legacy is None:
            raise ValueError(
                f"Layer {self.name!r} expects its projector bank ({len(self.bank)} variables) or the per-pair "
                f"projectors of a keras_mtcl <= 0.2 file; the weights file has neither for it. Received: no variables at "
                f"{getattr(store, '_h5_entry_path', '?')!r}"
            )
        for (target, source), weights in zip(self.pairs, legacy):
            expected = [tuple(w.shape) for w in ProjectorView(self, target, source).weights]
            if [w.shape for w in weights] != expected:
                raise ValueError(
                    f"The keras_mtcl <= 0.2 projector of the pair ({target!r}, {source!r}) has weights of shapes "
                    f"{[w.shape for w in weights]}; this layer expects {expected} (its feature channels, "
                    f"`projector_width` and `projection_dim`). Received: a file saved with other sizes"
                )
        values = [np.array(keras.ops.convert_to_numpy(v.value)) for v in self.bank]
        for index, ((target, _), weights) in enumerate(zip(self.pairs, legacy)):
            values[0][index, : self.feature_channels[target]] = weights[0]
            for part in (1, 2, 3):
                values[part][index] = weights[part]
        for variable, value in zip(self.bank, values):
            variable.assign(value)
        self._load_error = None
        warnings.warn(
            f"{self.name}: loaded the {len(legacy)} per-pair projectors of a keras_mtcl <= 0.2 file into the "
            "projector bank. The optimizer state of such a file does not match the bank's variables and is "
            "not restored (Keras warns that it skips it).",
            stacklevel=2,
        )

    # -- the loss ------------------------------------------------------------

    def _check_inputs(self, features, labels):
        for name, value in (("features", features), ("labels", labels)):
            if not isinstance(value, Mapping):
                raise ValueError(
                    f"`{name}` must be a dict {{task: tensor}} over tasks {self.task_names}. "
                    f"Received: {name} of type {type(value).__name__}"
                )
            missing = [t for t in self.task_names if t not in value]
            if missing:
                raise ValueError(
                    f"`{name}` lacks tasks {missing}; the regularizer is bound to {self.task_names}. "
                    f"Received: {name} keys={sorted(value)}"
                )
        for task in self._require_tasks():
            shape = tuple(labels[task.name].shape)
            channels = shape[-1] if len(shape) == 4 else 1
            if len(shape) not in (3, 4) or channels != task.label_channels:
                raise ValueError(
                    f"Labels of task {task.name!r} must have shape (B, H, W, {task.label_channels})"
                    f"{'' if task.label_channels == 3 else ' or (B, H, W)'}. "
                    f"Received: labels[{task.name!r}].shape={shape}"
                )
            if len(features[task.name].shape) != 4:
                raise ValueError(
                    f"Features of task {task.name!r} must have shape (B, h, w, C). "
                    f"Received: features[{task.name!r}].shape={tuple(features[task.name].shape)}"
                )
        sizes = {t: tuple(features[t].shape[1:3]) for t in self.task_names}
        known = {t: s for t, s in sizes.items() if None not in s}
        if len(set(known.values())) > 1:
            raise ValueError(
                "Every task feature map must have the same spatial size: each source's triplets index all of them. "
                f"Received: feature sizes {known}"
            )

    def _kind_options(self, source: TaskSpec) -> tuple[tuple[float, float], float]:
        # The options are configuration {kind name: value}; the kind gives the defaults.
        thresholds = (self.thresholds or {}).get(source.kind, source.label_kind.thresholds)
        ranking_margin = (self.ranking_margins or {}).get(source.kind, source.label_kind.ranking_margin)
        return tuple(thresholds), float(ranking_margin)

    def _draw(self, batch, pixels, per_source):
        """Every random number of a step, in one call: (source draws (K,), per-source draws (K, B, 2P + N + M))."""
        num_tasks = len(self._require_tasks())
        uniform = keras.random.uniform((num_tasks + num_tasks * batch * per_source,), seed=self.seed_generator)
        return uniform[:num_tasks], ops.reshape(uniform[num_tasks:], (num_tasks, batch, per_source))

    def _sample_sources(self, labels, size, draws, pixels, per_source) -> dict:
        """Triplets of every source task, {key: (K, B, N)} in task order; sources of one label kind in one call."""
        specs = self._require_tasks()
        groups: dict[tuple, list[int]] = {}
        for index, task in enumerate(specs):
            groups.setdefault((task.kind, self._kind_options(task)), []).append(index)
        sampled, order = [], []
        for (_, (thresholds, ranking_margin)), members in groups.items():
            stacked_labels, stacked_valid = [], []
            for index in members:
                task = specs[index]
                sparse = task.sparse if self.label_resize == "task" else False
                small = feature_labels(task, labels[task.name], size, sparse=sparse)
                shape = ops.shape(small)
                small = ops.reshape(small, (shape[0], -1, small.shape[-1]))
                stacked_labels.append(small)
                stacked_valid.append(task.valid_mask(small))
            group_labels = ops.concatenate(stacked_labels, axis=0) if len(members) > 1 else stacked_labels[0]
            group_valid = ops.concatenate(stacked_valid, axis=0) if len(members) > 1 else stacked_valid[0]
            group_draws = ops.take(draws, ops.convert_to_tensor(members, "int32"), axis=0) if len(members) > 1 else draws[members[0]]
            group_draws = ops.reshape(group_draws, (-1, per_source))  # (G B, 2P + N + M)
            uniform_pixels = ops.stack([group_draws[:, :pixels], group_draws[:, pixels : 2 * pixels]])
            task = specs[members[0]]
            num_classes = None
            if task.label_kind.discrete:
                num_classes = max(specs[i].num_classes for i in members)
            triplets = sample_label_triplets(
                task,
                group_labels,
                group_valid,
                uniform_pixels,
                group_draws[:, 2 * pixels :],
                num_anchors=self.num_anchors,
                pool_size=self.pool_size,
                balance=self.balance,
                criterion=self.criterion,
                thresholds=thresholds,
                ranking_margin=ranking_margin,
                num_classes=num_classes,
            )
            sampled.append({k: ops.reshape(v, (len(members), -1, self.num_anchors)) for k, v in triplets.items()})
            order += members
        if len(sampled) == 1 and order == list(range(len(specs))):
            return sampled[0]
        inverse = ops.convert_to_tensor([order.index(i) for i in range(len(specs))], "int32")
        return {k: ops.take(ops.concatenate([s[k] for s in sampled], axis=0), inverse, axis=0) for k in sampled[0]}

    def _rows(self, source_draws):
        """(row targets (static list), row sources (R,) int32, row pairs (R,) int32) of the step's (target, source) rows."""
        num_tasks = len(self._require_tasks())
        if self.source_selection == "all":
            targets = [t for t in range(num_tasks) for s in range(num_tasks) if s != t]
            sources = [s for t in range(num_tasks) for s in range(num_tasks) if s != t]
            return targets, ops.convert_to_tensor(sources, "int32"), ops.arange(len(sources), dtype="int32")
        # Index among the K - 1 other tasks, per target: floor(u (K - 1)).
        drawn = ops.minimum(ops.cast(ops.floor(source_draws * (num_tasks - 1)), "int32"), num_tasks - 2)
        targets = list(range(num_tasks))
        target_index = ops.arange(num_tasks, dtype="int32")
        sources = drawn + ops.cast(drawn >= target_index, "int32")
        return targets, sources, target_index * (num_tasks - 1) + drawn

    def _row_losses(self, features, triplets, row_targets, row_sources, row_pairs):
        """(per-row losses (R,), per-row weights (R, B, N)) of the rows' triplets on their targets' features."""
        specs = self._require_tasks()
        widest = max(self.feature_channels.values())
        taken = {k: ops.take(v, row_sources, axis=0) for k, v in triplets.items()}  # (R, B, N)
        index = ops.concatenate([taken["anchor"], taken["positive"], taken["negative"]], axis=2)  # (R, B, 3N)
        vectors = []
        for t, task in enumerate(specs):
            rows = [r for r, target in enumerate(row_targets) if target == t]
            own = index[rows[0] : rows[-1] + 1]  # rows of one target are consecutive
            count = len(rows)
            own = ops.reshape(ops.transpose(own, (1, 0, 2)), (ops.shape(own)[1], -1))  # (B, count 3N)
            gathered = ops.cast(gather_pixels(features[task.name], own), "float32")  # (B, count 3N, C_t)
            gathered = ops.reshape(gathered, (ops.shape(gathered)[0], count, 3 * self.num_anchors, gathered.shape[-1]))
            gathered = ops.transpose(gathered, (1, 0, 2, 3))  # (count, B, 3N, C_t)
            if gathered.shape[-1] < widest:
                gathered = ops.pad(gathered, [(0, 0), (0, 0), (0, 0), (0, widest - gathered.shape[-1])])
            vectors.append(gathered)
        vectors = ops.concatenate(vectors, axis=0) if len(vectors) > 1 else vectors[0]
        losses = bank_triplet_losses(vectors, self.bank, row_pairs, taken["weights"], self.margin)
        return losses, taken["weights"]

    def _outputs(self, losses, row_weights, row_sources, triplets, batch, all_pairs: bool):
        specs = self._require_tasks()
        num_tasks = len(specs)
        if all_pairs:
            per_target = ops.mean(ops.reshape(losses, (num_tasks, num_tasks - 1)), axis=1)
            sources = {t.name: ops.convert_to_tensor(-1, "int32") for t in specs}
        else:
            per_target = losses
            sources = {t.name: row_sources[i] for i, t in enumerate(specs)}
        per_task = {t.name: per_target[i] for i, t in enumerate(specs)}
        rows = row_weights.shape[0]
        anchors = ops.cast(batch, "float32") * float(self.num_anchors)
        per_source = ops.sum(triplets["weights"], axis=(1, 2)) / anchors
        return {
            "loss": self.weight * ops.mean(per_target),
            "per_task": per_task,
            "triplet_fraction": ops.sum(row_weights) / (anchors * float(rows)),
            "triplet_fraction_per_source": {t.name: per_source[i] for i, t in enumerate(specs)},
            "sources": sources,
        }

    def _step(self, features, labels):
        self._check_inputs(features, labels)
        specs = self._require_tasks()
        first = features[specs[0].name]
        shape = ops.shape(first)
        batch, size = shape[0], (shape[1], shape[2])
        pixels = size[0] * size[1]
        per_source = 2 * pixels + self.num_anchors + self.pool_size
        source_draws, draws = self._draw(batch, pixels, per_source)
        triplets = self._sample_sources(labels, size, draws, pixels, per_source)
        row_targets, row_sources, row_pairs = self._rows(source_draws)
        return triplets, row_targets, row_sources, row_pairs, batch

    def call(self, features, labels, training=None):
        triplets, row_targets, row_sources, row_pairs, batch = self._step(features, labels)
        losses, row_weights = self._row_losses(features, triplets, row_targets, row_sources, row_pairs)
        return self._outputs(losses, row_weights, row_sources, triplets, batch, self.source_selection == "all")

    def triplet_losses(self, features, triplets: Mapping[str, Mapping[str, Any]], sources: Mapping[str, str] | None = None):
        """The layer's output for given triplets: the loss of a step whose sampling is fixed.

        Args:
            features: {task: (B, h, w, C_t)}.
            triplets: {source task: {"anchor", "positive", "negative",
                "weights": (B, N)}} (pixel indices into the flattened h * w
                map), for every task.
            sources: {target: source task} for `source_selection="random"`;
                None (or with `"all"`) computes every ordered pair.

        Returns:
            As `call` (`sources` holds the given sources, or -1).
        """
        specs = self._require_tasks()
        names = [t.name for t in specs]
        stacked = {k: ops.stack([ops.convert_to_tensor(triplets[n][k]) for n in names]) for k in ("anchor", "positive", "negative", "weights")}
        stacked = {k: ops.cast(v, "float32" if k == "weights" else "int32") for k, v in stacked.items()}
        all_pairs = sources is None or self.source_selection == "all"
        if all_pairs:
            row_targets = [t for t in range(len(names)) for s in range(len(names)) if s != t]
            row_sources = ops.convert_to_tensor([s for t in range(len(names)) for s in range(len(names)) if s != t], "int32")
            row_pairs = ops.arange(len(row_targets), dtype="int32")
        else:
            row_targets = list(range(len(names)))
            row_sources = ops.convert_to_tensor([names.index(sources[n]) for n in names], "int32")
            row_pairs = ops.convert_to_tensor([self.pair_index(n, sources[n]) for n in names], "int32")
        losses, row_weights = self._row_losses(features, stacked, row_targets, row_sources, row_pairs)
        return self._outputs(losses, row_weights, row_sources, stacked, ops.shape(features[names[0]])[0], all_pairs)

    def sample(self, features, labels) -> dict:
        """The triplets a call would draw now, for inspection (advances the random state like a call).

        Args: as `call`.

        Returns:
            {target: {"sources": (S,) int32 indices in `tasks`,
            "anchor", "positive", "negative", "weights": (S, B, num_anchors)}}
            with S = 1 (`random`) or K - 1 (`all`); pixel indices index the
            flattened (h * w) feature map.
        """
        if not self.built:
            self._check_inputs(features, labels)
            self.build({name: tuple(features[name].shape) for name in self.task_names})
        triplets, row_targets, row_sources, _, _ = self._step(features, labels)
        out = {}
        for t, name in enumerate(self.task_names):
            rows = [r for r, target in enumerate(row_targets) if target == t]
            picked = ops.take(row_sources, ops.convert_to_tensor(rows, "int32"), axis=0)
            out[name] = {"sources": picked}
            for key in ("anchor", "positive", "negative", "weights"):
                out[name][key] = ops.take(triplets[key], picked, axis=0)
        return out

    def compute_output_spec(self, features, labels, training=None):
        names = self.task_names
        scalar = lambda dtype="float32": keras.KerasTensor((), dtype)  # noqa: E731
        return {
            "loss": scalar(),
            "per_task": {n: scalar() for n in names},
            "triplet_fraction": scalar(),
            "triplet_fraction_per_source": {n: scalar() for n in names},
            "sources": {n: scalar("int32") for n in names},
        }

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            tasks=None if self.task_specs is None else [t.get_config() for t in self.task_specs],
            weight=self.weight,
            criterion=self.criterion,
            thresholds=None if self.thresholds is None else {k: list(v) for k, v in self.thresholds.items()},
            ranking_margins=None if self.ranking_margins is None else dict(self.ranking_margins),
            num_anchors=self.num_anchors,
            pool_size=self.pool_size,
            balance=self.balance,
            projector_width=self.projector_width,
            projection_dim=self.projection_dim,
            margin=self.margin,
            source_selection=self.source_selection,
            label_resize=self.label_resize,
            seed=self.seed,
        )
        return config


__all__ = [
    "CRITERIA",
    "CrossTaskContrastive",
    "DEFAULT_RANKING_MARGINS",
    "DEFAULT_THRESHOLDS",
    "LABEL_RESIZES",
    "ProjectorView",
    "SOURCE_SELECTIONS",
    "bank_triplet_losses",
    "criterion_masks",
    "feature_labels",
    "gather_pixels",
    "pair_loss",
    "sample_label_triplets",
    "sample_pixels",
    "sample_triplets",
    "sampling_scores",
    "select_triplets",
    "spread_seed",
    "triplet_loss",
]
