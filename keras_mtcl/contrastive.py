"""The cross-task contrastive regularizer of "Contrastive Multi-Task Dense Prediction" (AAAI 2023).

Training-only: for every target task t, the labels of a source task s != t
decide which pixels of t's feature map F_t are positives and negatives of
each other, and a triplet loss on projections of F_t pulls positives
together and pushes negatives apart. The specification, with every default,
is the project's METHOD.md; in short, per image and (target, source) pair:

1. The source labels are brought to F_t's resolution without interpolating
   values (nearest sampling; for a task marked `sparse`, thin binary
   structures such as edges, a cell is positive when any of its pixels is)
   and turned into a validity mask and a label distance delta(i, j). All of
   it is the source task's label kind's (`keras_mtcl.kinds`:
   `LabelKind.feature_labels`, `valid_mask`, `distance`, `thresholds`,
   `ranking_margin`, `discrete`):

   | kind    | delta(i, j)                      | invalid pixels                  |
   |---------|----------------------------------|---------------------------------|
   | classes | 0 if same class else 1           | ignore value, out of range      |
   | binary  | 0 if same value else 1           | ignore value, outside 0..1      |
   | depth   | abs(log d_i - log d_j)           | d <= 0, non-finite, ignore      |
   | normals | angle between vectors, degrees   | zero vector, non-finite, ignore |

2. `num_anchors` anchors and, independently, a pool of `pool_size`
   candidates are drawn among valid pixels without replacement (random
   scores, invalid pixels at -inf, top-k; a pixel is never its own positive
   or negative). With `balance`, for discrete (classes/binary) sources a pixel's
   score is `-(1 - u) * n_c` (u uniform, n_c the pixel count of its class in
   the image): the pixels drawn from each class are those with
   `(1 - u) < T / n_c` for a common threshold T, so every class present
   contributes about T pixels (a Poisson count) until it runs out. This
   needs only per-class counts: static shapes, no sort.
3. For each anchor, the criterion marks pool pixels as eligible positives
   and negatives (`threshold`: delta <= tau_pos / delta > tau_neg;
   `ranking`: of two random candidates, the closer one is the positive if
   the deltas differ by more than eps), and one of each is picked uniformly
   (random scores + argmax). Anchors without both get weight 0.
4. The feature vectors of anchors, positives and negatives are gathered from
   F_t and only then projected (Dense -> ReLU -> Dense -> L2 normalisation,
   one projector per ordered pair): the cost is O(B * num_anchors *
   pool_size) for sampling and a small MLP on 3 * num_anchors vectors per
   image, whatever the feature map size.
5. l(a, p, n) = max(0, ||z_a - z_p||^2 - ||z_a - z_n||^2 + margin); L_t is
   the weighted mean over the step's triplets (0 without any), and the
   regularizer adds `weight * mean_t L_t` to the training loss.

Source selection `random` (the paper's) draws one source per target per
step from the layer's `keras.random.SeedGenerator` (a non-trainable
variable, so the draw changes every step and is reproducible from `seed`,
also under JAX's stateless training). Only the drawn pair is computed, with
a conditional over the sources (`lax.switch` under JAX, nested `tf.cond` in
TensorFlow graphs, a direct call when eager): projectors of pairs not drawn get a
zero gradient (TensorFlow, JAX) or none (torch) that step. Source selection
`all` averages L_t over every other task as source.

Everything is computed in float32, whatever the dtype of the features
(mixed precision).
"""

from __future__ import annotations

import math
import types
from typing import Any, Callable, Mapping, Sequence

import keras
from keras import ops

from keras_mtcl.kinds import KINDS
from keras_mtcl.losses import label_map
from keras_mtcl.tasks import TaskSpec, validate_tasks

CRITERIA = ("threshold", "ranking")
SOURCE_SELECTIONS = ("random", "all")

# The label kinds' defaults in the format of the layer's `thresholds` and
# `ranking_margins` options, {kind name: value} (`LabelKind.thresholds`:
# (tau_pos, tau_neg) in the units of the kind's distance; `ranking_margin`:
# the two candidates' distances to the anchor must differ by more than eps).
DEFAULT_THRESHOLDS = types.MappingProxyType({name: kind.thresholds for name, kind in KINDS.items()})
DEFAULT_RANKING_MARGINS = types.MappingProxyType({name: kind.ranking_margin for name, kind in KINDS.items()})


# ---------------------------------------------------------------------------
# Labels: the source task's kind says how to bring them to the feature
# resolution, which are valid and how far apart two are.


def feature_labels(task: TaskSpec, labels, size):
    """`task`'s labels at the feature resolution `size` = (h, w), by its kind's rule.

    Args:
        task: the source `TaskSpec` (its kind, channels, ignore value and `sparse`).
        labels: (B, H, W) or (B, H, W, c) labels, any dtype.
        size: (h, w) (ints, or scalar tensors in a TF graph for a non-sparse task).

    Returns:
        (B, h, w, c) float32: nearest sampling, or for a `sparse` task the
        kind's sparse rule (binary: 1 where any valid pixel of the cell is 1).
    """
    return task.label_kind.feature_labels(
        label_map(labels), size, task.channels, task.ignore_value, sparse=task.sparse
    )


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


def sampling_scores(task: TaskSpec, labels, valid, uniform, balance: bool = True):
    """Scores whose top-k are the sampled pixels: random, -inf on invalid pixels.

    Args:
        task: the source `TaskSpec`.
        labels: (B, P, c) source labels per pixel.
        valid: (B, P) bool validity of the labels.
        uniform: (..., B, P) uniform draws in [0, 1).
        balance: for discrete (classes/binary) sources, score `-(1 - u) * n_c` with n_c
            the pixel count of the pixel's class in its image, so that each
            class present gets about the same number of the top-k pixels.

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
        num_classes = task.num_classes
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
            `"ranking"`: two distinct random pool pixels, the closer one is
            the positive if the deltas differ by more than `ranking_margin`.
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
        index = ops.cast(ops.argmax(candidate_scores, axis=-1), "int32")
        value = ops.take_along_axis(candidate_scores, ops.expand_dims(index, -1), axis=-1)[..., 0]
        return index, value >= 0.0

    if criterion == "threshold":
        positive_mask, negative_mask = criterion_masks(delta, *thresholds)
        positive, has_positive = best(ops.where(positive_mask, scores, -1.0))
        negative, has_negative = best(ops.where(negative_mask, scores, -1.0))
        return positive, negative, ops.logical_and(has_positive, has_negative)
    if criterion == "ranking":
        # The two highest-scoring eligible candidates: two argmax passes
        # (top_k with k = 2 sorts, several times slower on CPU).
        first, _ = best(scores)
        is_first = ops.arange(scores.shape[-1], dtype="int32") == ops.expand_dims(first, -1)
        second, has_second = best(ops.where(is_first, -1.0, scores))
        delta_first = ops.take_along_axis(delta, ops.expand_dims(first, -1), axis=-1)[..., 0]
        delta_second = ops.take_along_axis(delta, ops.expand_dims(second, -1), axis=-1)[..., 0]
        first_closer = delta_first <= delta_second
        positive = ops.where(first_closer, first, second)
        negative = ops.where(first_closer, second, first)
        found = ops.logical_and(has_second, ops.abs(delta_first - delta_second) > ranking_margin)
        return positive, negative, found
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

    Returns:
        {"anchor", "positive", "negative": (B, num_anchors) int32 pixel
        indices into the flattened (h * w) map, "weights": (B, num_anchors)
        float32, 1 where the anchor is valid and has a triplet, else 0}.
    """
    kind = task.label_kind
    thresholds = kind.thresholds if thresholds is None else tuple(thresholds)
    ranking_margin = kind.ranking_margin if ranking_margin is None else ranking_margin
    labels = feature_labels(task, labels, size)
    shape = ops.shape(labels)
    labels = ops.reshape(labels, (shape[0], -1, labels.shape[-1]))
    valid = task.valid_mask(labels)
    scores = sampling_scores(task, labels, valid, uniform_pixels, balance)  # (2, B, P)
    anchor, anchor_ok = sample_pixels(scores[0], num_anchors)
    pool, pool_ok = sample_pixels(scores[1], pool_size)
    anchor_labels = gather_pixels(labels, anchor)  # (B, N, c)
    pool_labels = gather_pixels(labels, pool)  # (B, M, c)
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
    return {
        "anchor": anchor,
        "positive": ops.take_along_axis(pool, positive, axis=1),
        "negative": ops.take_along_axis(pool, negative, axis=1),
        "weights": ops.cast(ops.logical_and(found, anchor_ok), "float32"),
    }


# ---------------------------------------------------------------------------
# Projection and loss.


def l2_normalize_safe(x, axis: int = -1, epsilon: float = 1e-12):
    """x / max(||x||, epsilon), with a finite gradient at x = 0 (no sqrt of 0)."""
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), epsilon**2))


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


@keras.saving.register_keras_serializable(package="keras_mtcl")
class Projector(keras.layers.Layer):
    """Dense -> ReLU -> Dense -> L2 normalisation, in float32 (no batch normalisation).

    Args:
        width: hidden units H.
        projection_dim: output dimension D.

    Input shape: (..., C). Output shape: (..., D) unit vectors.
    """

    def __init__(self, width: int = 256, projection_dim: int = 128, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(int(width), activation="relu", name="hidden", dtype=self.dtype_policy)
        self.output_layer = keras.layers.Dense(int(projection_dim), name="output", dtype=self.dtype_policy)
        self.width = int(width)
        self.projection_dim = int(projection_dim)

    def build(self, input_shape):
        self.hidden.build(input_shape)
        self.output_layer.build(tuple(input_shape[:-1]) + (self.width,))

    def call(self, inputs):
        return l2_normalize_safe(self.output_layer(self.hidden(inputs)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.projection_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(width=self.width, projection_dim=self.projection_dim)
        return config


# ---------------------------------------------------------------------------
# The layer.


def _switch(index, branches, *operands):
    """`keras.ops.switch(index, branches, *operands)`, with two backend-specific paths.

    - Eagerly (torch, or layer calls outside a compiled step) the drawn
      branch is called directly: the same result, without JAX compiling a
      fresh `lax.switch` at every eager call.
    - In a TensorFlow graph, a chain of `ops.cond` replaces `tf.switch_case`:
      in TF 2.21, differentiating a `switch_case` whose operands have a
      dynamic batch size inside an XLA-compiled function (`jit_compile=True`,
      the default `fit` on GPU) aborts the process with heap corruption
      ("malloc_consolidate(): invalid chunk size"); nested `tf.cond` compiles
      and runs.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        if not isinstance(index, jax.core.Tracer):
            return branches[int(index)](*operands)
        return ops.switch(index, branches, *operands)
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.executing_eagerly():
            return branches[int(index)](*operands)

        def chain(i):
            if i == len(branches) - 1:
                return branches[i](*operands)
            return ops.cond(ops.equal(index, i), lambda: branches[i](*operands), lambda: chain(i + 1))

        return chain(0)
    return branches[int(index)](*operands)


def _check_per_kind(name: str, value, check: Callable[[Any], Any]) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"`{name}` must be None or a dict {{kind: value}} over kinds {list(KINDS)}. Received: {name}={value!r}")
    unknown = [k for k in value if k not in KINDS]
    if unknown:
        raise ValueError(f"`{name}` has unknown label kinds {unknown}; expected kinds among {list(KINDS)}. Received: {name}={value!r}")
    return {k: check(v) for k, v in value.items()}


@keras.saving.register_keras_serializable(package="keras_mtcl")
class CrossTaskContrastive(keras.layers.Layer):
    """Cross-task contrastive regularizer (METHOD.md): one projector per ordered task pair.

    Args:
        tasks: list of `TaskSpec` (or their configs), at least two; may be
            None and bound later with `bind` (`MultiTaskModel` does).
        weight: lambda, the weight of `mean_t L_t` in the training loss (0.1).
        criterion: `"threshold"` (default) or `"ranking"` positive/negative criterion.
        thresholds: optional {kind: (tau_pos, tau_neg)} overriding
            `DEFAULT_THRESHOLDS` (classes/binary 0/0, depth log(1.05)/log(1.25),
            normals 10/30 degrees); 0 <= tau_pos <= tau_neg.
        ranking_margins: optional {kind: eps} overriding
            `DEFAULT_RANKING_MARGINS` (classes/binary 0, depth log(1.05),
            normals 10 degrees).
        num_anchors: N_a anchors per image and pair (256).
        pool_size: M candidate pixels per image and pair (1024), >= 2.
        balance: draw an equal share of anchors (and candidates) from each
            class present, for classes/binary sources (True).
        projector_width: hidden units of the projectors (256).
        projection_dim: output dimension of the projectors (128).
        margin: triplet margin (0.5).
        source_selection: `"random"` (one source per target per step, the
            paper) or `"all"` (L_t averaged over every other task).
        seed: int seed of the layer's random generator, or None.

    The layer is training-only (`MultiTaskModel.compute_loss` calls it): its
    projectors never run at inference. With `source_selection="random"`,
    the projectors of pairs not drawn in a step get a zero gradient
    (TensorFlow, JAX) or none (torch); an optimizer with momentum or weight
    decay still moves them.

    Call arguments:
        features: {task: (B, h, w, C_t)} target feature maps F_t.
        labels: {task: (B, H, W, 1) or (B, H, W, 3) for normals} labels at
            input resolution, in the conventions of `keras_mtcl.tasks`;
            extra keys are ignored.

    Returns:
        {"loss": weight * mean_t L_t (float32 scalar),
        "per_task": {task: L_t, unweighted},
        "triplet_fraction": fraction of anchors (over all targets and pairs
        computed) that found a triplet,
        "sources": {task: int32 scalar, index in `tasks` of the source drawn
        this step (-1 with `source_selection="all"`)}}.

    Example:
    >>> from keras_mtcl import tasks
    >>> layer = CrossTaskContrastive(tasks.task_set("nyud", tasks=["semseg", "depth"]), seed=0)
    >>> layer.build({"semseg": (None, 8, 8, 16), "depth": (None, 8, 8, 16)})
    >>> sorted(layer.projectors)
    ['depth_from_semseg', 'semseg_from_depth']
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
        seed: int | None = None,
        **kwargs,
    ):
        # Labels (depth in metres, normals) must not be cast to float16 by
        # autocasting; everything here is computed in float32.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if float(weight) < 0:
            raise ValueError(f"`weight` must be >= 0. Received: weight={weight}")
        if criterion not in CRITERIA:
            raise ValueError(f"`criterion` must be one of {CRITERIA}. Received: criterion={criterion!r}")
        if source_selection not in SOURCE_SELECTIONS:
            raise ValueError(
                f"`source_selection` must be one of {SOURCE_SELECTIONS}. Received: source_selection={source_selection!r}"
            )
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
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")
        self.task_specs: tuple[TaskSpec, ...] | None = None
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

    def _require_tasks(self) -> tuple[TaskSpec, ...]:
        if self.task_specs is None:
            raise ValueError(
                "CrossTaskContrastive has no tasks: pass `tasks=` or call `bind(tasks)` (MultiTaskModel does) "
                "before building or calling it. Received: tasks=None"
            )
        return self.task_specs

    def build(self, feature_shapes):
        """Creates one projector per ordered (target, source) pair.

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
        if getattr(self, "projectors", None):
            # Already built (deserialised, then built again by the model): check the channels, keep the weights.
            for target in specs:
                channels = tuple(feature_shapes[target.name])[-1]
                source = next(s for s in specs if s.name != target.name)
                built = self.get_projector(target.name, source.name).hidden.kernel.shape[0]
                if channels is not None and int(channels) != built:
                    raise ValueError(
                        f"This CrossTaskContrastive layer was built for {built} feature channels of task "
                        f"{target.name!r}. Received: feature_shapes[{target.name!r}]={tuple(feature_shapes[target.name])}"
                    )
            return
        self.projectors = {}
        for target in specs:
            channels = tuple(feature_shapes[target.name])[-1]
            if channels is None:
                raise ValueError(
                    f"The channels of task {target.name!r}'s feature map must be known. "
                    f"Received: feature_shapes[{target.name!r}]={tuple(feature_shapes[target.name])}"
                )
            for source in specs:
                if source.name == target.name:
                    continue
                projector = Projector(
                    self.projector_width, self.projection_dim, name=f"projector_{target.name}_from_{source.name}"
                )
                projector.build((None, int(channels)))
                self.projectors[f"{target.name}_from_{source.name}"] = projector

    def get_projector(self, target: str, source: str) -> Projector:
        """The projector of the ordered pair (target, source)."""
        return self.projectors[f"{target}_from_{source}"]

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

    def _pair_terms(self, target: TaskSpec, source: TaskSpec, feature_map, labels, uniform_pixels, uniform_pairs):
        """(L_{t,s}, number of anchors with a triplet, triplet indices) for one pair."""
        size = ops.shape(feature_map)[1:3]
        # The options are configuration {kind name: value}; the kind gives the defaults.
        thresholds = (self.thresholds or {}).get(source.kind, source.label_kind.thresholds)
        ranking_margin = (self.ranking_margins or {}).get(source.kind, source.label_kind.ranking_margin)
        triplets = sample_triplets(
            source,
            labels[source.name],
            size,
            uniform_pixels,
            uniform_pairs,
            num_anchors=self.num_anchors,
            pool_size=self.pool_size,
            balance=self.balance,
            criterion=self.criterion,
            thresholds=thresholds,
            ranking_margin=ranking_margin,
        )
        loss = pair_loss(
            feature_map,
            triplets["anchor"],
            triplets["positive"],
            triplets["negative"],
            triplets["weights"],
            self.get_projector(target.name, source.name),
            self.margin,
        )
        return loss, ops.sum(triplets["weights"]), triplets

    def _target_terms(self, index: int, features, labels, source_draws):
        """Loss terms of target `index`: one drawn source (`random`) or every other task (`all`)."""
        specs = self._require_tasks()
        target = specs[index]
        others = [s for s in specs if s.name != target.name]
        feature_map = features[target.name]
        shape = ops.shape(feature_map)
        batch, pixels = shape[0], shape[1] * shape[2]

        def draws():
            uniform_pixels = keras.random.uniform((2, batch, pixels), seed=self.seed_generator)
            uniform_pairs = keras.random.uniform((batch, self.num_anchors + self.pool_size), seed=self.seed_generator)
            return uniform_pixels, uniform_pairs

        if self.source_selection == "all":
            results = [self._pair_terms(target, s, feature_map, labels, *draws()) for s in others]
            loss = ops.mean(ops.stack([r[0] for r in results]))
            found = sum(r[1] for r in results)
            return loss, found, len(others), ops.convert_to_tensor(-1, "int32"), [r[2] for r in results]

        uniform_pixels, uniform_pairs = draws()
        # Every branch has the same output structure; only the drawn one runs.
        branches = [
            (lambda f, up, uq, s=s: self._pair_terms(target, s, f, labels, up, uq)) for s in others
        ]
        drawn = source_draws[index]
        loss, found, triplets = _switch(drawn, branches, feature_map, uniform_pixels, uniform_pairs)
        source_index = drawn + ops.cast(drawn >= index, "int32")
        return loss, found, 1, source_index, [triplets]

    def _draw_sources(self):
        num_tasks = len(self._require_tasks())
        if self.source_selection == "all":
            return None
        # Index among the K - 1 other tasks, per target.
        return ops.cast(
            keras.random.randint((num_tasks,), 0, num_tasks - 1, seed=self.seed_generator), "int32"
        )

    def call(self, features, labels, training=None):
        self._check_inputs(features, labels)
        specs = self._require_tasks()
        source_draws = self._draw_sources()
        per_task, sources = {}, {}
        found_total = ops.zeros((), "float32")
        pairs_total = 0
        batch = ops.cast(ops.shape(features[specs[0].name])[0], "float32")
        for index, target in enumerate(specs):
            loss, found, pairs, source, _ = self._target_terms(index, features, labels, source_draws)
            per_task[target.name] = loss
            sources[target.name] = source
            found_total = found_total + found
            pairs_total += pairs
        mean_loss = ops.mean(ops.stack([per_task[t.name] for t in specs]))
        return {
            "loss": self.weight * mean_loss,
            "per_task": per_task,
            "triplet_fraction": found_total / (batch * float(pairs_total * self.num_anchors)),
            "sources": sources,
        }

    def sample(self, features, labels) -> dict:
        """The triplets a call would draw now, for inspection (advances the random state like a call).

        Args: as `call`.

        Returns:
            {target: {"sources": (S,) int32 indices in `tasks`,
            "anchor", "positive", "negative", "weights": (S, B, num_anchors)}}
            with S = 1 (`random`) or K - 1 (`all`); pixel indices index the
            flattened (h * w) feature map.
        """
        self._check_inputs(features, labels)
        if not self.built:
            self.build({name: tuple(features[name].shape) for name in self.task_names})
        specs = self._require_tasks()
        source_draws = self._draw_sources()
        out = {}
        for index, target in enumerate(specs):
            _, _, _, source, triplets = self._target_terms(index, features, labels, source_draws)
            if self.source_selection == "all":
                source = ops.convert_to_tensor([i for i, s in enumerate(specs) if i != index], "int32")
            else:
                source = ops.reshape(source, (1,))
            out[target.name] = {"sources": source}
            for key in ("anchor", "positive", "negative", "weights"):
                out[target.name][key] = ops.stack([t[key] for t in triplets])
        return out

    def compute_output_spec(self, features, labels, training=None):
        names = self.task_names
        return {
            "loss": keras.KerasTensor((), "float32"),
            "per_task": {n: keras.KerasTensor((), "float32") for n in names},
            "triplet_fraction": keras.KerasTensor((), "float32"),
            "sources": {n: keras.KerasTensor((), "int32") for n in names},
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
            seed=self.seed,
        )
        return config


__all__ = [
    "CRITERIA",
    "CrossTaskContrastive",
    "DEFAULT_RANKING_MARGINS",
    "DEFAULT_THRESHOLDS",
    "Projector",
    "SOURCE_SELECTIONS",
    "criterion_masks",
    "feature_labels",
    "gather_pixels",
    "l2_normalize_safe",
    "pair_loss",
    "sample_pixels",
    "sample_triplets",
    "sampling_scores",
    "select_triplets",
    "triplet_loss",
]
