"""The cross-task contrastive regularizer (METHOD.md section 8 invariants at layer level)."""

import inspect
import math

import keras
import numpy as np
import pytest

from harness import assert_round_trip, to_numpy
from keras_mtcl import kinds, tasks
from keras_mtcl.losses import l2_normalize
from keras_mtcl.testing.harness import eager_unless_jax
from keras_mtcl.contrastive import (
    CrossTaskContrastive,
    criterion_masks,
    feature_labels,
    gather_pixels,
    pair_loss,
    sample_pixels,
    sample_triplets,
    select_triplets,
    triplet_loss,
)

BACKEND = keras.backend.backend()
NYUD = tasks.task_set("nyud", num_classes={"semseg": 4})
H, W, h, w = 16, 20, 8, 10  # labels at input resolution, features at stride 2


def unit(v):
    v = np.asarray(v, "float64")
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def random_labels(specs, batch, height=H, width=W, seed=0):
    """Every pixel valid (`keras_mtcl.testing.labels.random_labels` with no invalid pixels)."""
    from keras_mtcl.testing.labels import random_labels as draw

    return draw(specs, batch, height, width, seed=seed, invalid_fraction=0.0)


def label_distance(kind, a, b):
    """The regularizer's label distance of kind `kind` (a name) between float32 labels."""
    convert = lambda x: keras.ops.convert_to_tensor(np.asarray(x, "float32"))  # noqa: E731
    return kinds.get_kind(kind).distance(convert(a), convert(b))


def random_features(specs, batch, channels=6, seed=1):
    rng = np.random.default_rng(seed)
    return {t.name: rng.normal(size=(batch, h, w, channels)).astype("float32") for t in specs}


def make_layer(specs=NYUD, channels=6, **kwargs):
    options = dict(num_anchors=16, pool_size=32, projector_width=8, projection_dim=4, seed=3)
    options.update(kwargs)
    layer = CrossTaskContrastive(specs, **options)
    layer.build({t.name: (None, h, w, channels) for t in specs})
    return layer


def loss_and_gradients(layer, features, labels):
    """(outputs, {task: d loss / d F_t}, {variable path: gradient or None}) with the backend's own autodiff."""
    variables = layer.trainable_variables
    if BACKEND == "tensorflow":
        import tensorflow as tf

        feats = {k: tf.convert_to_tensor(v) for k, v in features.items()}
        with tf.GradientTape() as tape:
            tape.watch(feats)
            outputs = layer(feats, labels)
        feature_grads, variable_grads = tape.gradient(outputs["loss"], (feats, variables))
    elif BACKEND == "jax":
        import jax

        trainable = [v.value for v in variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def loss_fn(trainable, feats):
            outputs, _ = layer.stateless_call(trainable, non_trainable, feats, labels)
            return outputs["loss"], outputs

        (_, outputs), (variable_grads, feature_grads) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            trainable, {k: jax.numpy.asarray(v) for k, v in features.items()}
        )
    else:
        import torch

        feats = {k: torch.tensor(v, requires_grad=True) for k, v in features.items()}
        outputs = layer(feats, labels)
        outputs["loss"].backward()
        feature_grads = {k: v.grad for k, v in feats.items()}
        variable_grads = [v.value.grad for v in variables]
    as_np = lambda g: None if g is None else np.asarray(keras.ops.convert_to_numpy(g))  # noqa: E731
    return (
        to_numpy(outputs),
        {k: as_np(g) for k, g in feature_grads.items()},
        {v.path: as_np(g) for v, g in zip(variables, variable_grads)},
    )


# ---------------------------------------------------------------------------
# Labels.


def test_label_distance_per_kind_by_hand():
    # classes: same id 0, different 1; binary compares y > 0.5.
    np.testing.assert_array_equal(to_numpy(label_distance("classes", [[3], [3]], [[3], [5]])), [0.0, 1.0])
    np.testing.assert_array_equal(to_numpy(label_distance("binary", [[1], [0]], [[1], [1]])), [0.0, 1.0])
    # depth in log space: |log 2 - log 1| = log 2 = |log 6 - log 3|.
    np.testing.assert_allclose(to_numpy(label_distance("depth", [[1.0], [6.0]], [[2.0], [3.0]])), [math.log(2)] * 2, rtol=1e-6)
    # normals: z vs x is 90 degrees, z vs (0, sin 60, cos 60) is 60; unnormalised vectors are normalised first.
    b = [[2.0, 0.0, 0.0], [0.0, math.sin(math.pi / 3), math.cos(math.pi / 3)]]
    np.testing.assert_allclose(to_numpy(label_distance("normals", [[0.0, 0.0, 1.0]] * 2, b)), [90.0, 60.0], atol=1e-3)
    # Broadcasting: (2, 1, c) against (1, 3, c) gives the (2, 3) table.
    table = to_numpy(label_distance("classes", np.array([[[0]], [[1]]]), np.array([[[0], [1], [1]]])))
    np.testing.assert_array_equal(table, [[0, 1, 1], [1, 0, 0]])


def test_valid_mask_per_kind():
    semseg, depth, normals, edge = NYUD
    np.testing.assert_array_equal(to_numpy(semseg.valid_mask(np.array([[0], [3], [4], [255]]))), [1, 1, 0, 0])
    np.testing.assert_array_equal(to_numpy(edge.valid_mask(np.array([[0], [1], [2], [255]]))), [1, 1, 0, 0])
    np.testing.assert_array_equal(to_numpy(depth.valid_mask(np.array([[2.5], [0.0], [-1.0], [255.0]]))), [1, 0, 0, 0])
    labels = np.array([[0, 0, 1], [0, 0, 0], [255, 255, 255]], "float32")
    np.testing.assert_array_equal(to_numpy(normals.valid_mask(labels)), [1, 0, 0])


def test_feature_labels_of_a_dense_task_read_the_nearest_pixel_centre():
    depth = tasks.depth()
    labels = np.arange(4 * 6).reshape(1, 4, 6, 1)
    # Factor 2: output pixel i reads input 2 i + 1 (floor((i + 0.5) * 2)); no interpolated ids.
    expected = labels[:, 1::2, 1::2]
    np.testing.assert_array_equal(to_numpy(feature_labels(depth, labels, (2, 3))), expected)
    # Factor 5 / 2 on columns: floor((2 i + 1) * 5 / 4) = 1, 3.
    labels = np.arange(5).reshape(1, 1, 5)  # (B, H, W) is accepted too
    np.testing.assert_array_equal(to_numpy(feature_labels(depth, labels, (1, 2)))[0, 0, :, 0], [1, 3])
    # Saliency is a dense binary map: nearest sampling too.
    edges = np.zeros((1, 4, 4, 1), "int32")
    edges[0, 0] = 1
    np.testing.assert_array_equal(to_numpy(feature_labels(tasks.saliency(), edges, (2, 2))), np.zeros((1, 2, 2, 1)))


def test_sparse_rule_on_cells_of_unequal_size_matches_its_definition():
    # 7 x 10 pixels to 3 x 4 cells: cell i covers rows [floor(7 i / 3), floor(7 (i + 1) / 3)), and the
    # same for columns; integer factors take a pooled view instead, held to the same rule above.
    rng = np.random.default_rng(5)
    labels = rng.choice([0, 0, 0, 0, 1, 255], size=(2, 7, 10, 1)).astype("int32")
    small = to_numpy(feature_labels(tasks.edge(), labels, (3, 4)))[..., 0]
    expected = np.empty((2, 3, 4))
    for i in range(3):
        for j in range(4):
            cell = labels[:, 7 * i // 3 : 7 * (i + 1) // 3, 10 * j // 4 : 10 * (j + 1) // 4, 0].reshape(2, -1)
            expected[:, i, j] = np.where((cell == 1).any(-1), 1, np.where((cell == 0).any(-1), 0, 255))
    np.testing.assert_array_equal(small, expected)


def test_sparse_edge_source_at_stride_4_keeps_every_cell_with_an_edge_pixel():
    # METHOD.md section 1: a 1-px boundary at stride 4 keeps every 4 x 4 cell it crosses (nearest
    # sampling reads pixel 4 i + 2 and would keep none of this line, which sits on row and column 1).
    edge = tasks.edge()
    assert edge.sparse
    labels = np.zeros((2, 16, 20, 1), "int32")
    labels[0, 1, :] = 1  # a horizontal line through row 1: the top row of cells
    labels[1, :, 1] = 1  # a vertical line through column 1: the left column of cells
    labels[1, 8:12, 8:12] = 255  # an all-ignored cell: stays ignored
    labels[1, 12:16, 12] = 255  # a cell of 0 and ignored pixels: 0
    small = to_numpy(feature_labels(edge, labels, (4, 5)))[..., 0]
    expected = labels[..., 0].reshape(2, 4, 4, 5, 4).transpose(0, 1, 3, 2, 4).reshape(2, 4, 5, 16)
    expected_max = np.where((expected == 1).any(-1), 1, np.where((expected == 0).any(-1), 0, 255))
    np.testing.assert_array_equal(small, expected_max)
    np.testing.assert_array_equal(small[0, 0], [1] * 5)
    np.testing.assert_array_equal(small[1, :, 0], [1] * 4)
    assert small[1, 2, 2] == 255 and small[1, 3, 3] == 0 and small[0, 1:].sum() == 0
    nearest = to_numpy(feature_labels(edge.replace(sparse=False), labels, (4, 5)))
    assert (nearest == 1).sum() == 0  # what the any-positive rule rescues
    # The sampled triplets follow the cells: an anchor in the kept line has its positive on it.
    u1 = keras.random.uniform((2, 2, 4 * 5), seed=4)
    u2 = keras.random.uniform((2, 8 + 20), seed=5)
    t = to_numpy(sample_triplets(edge, labels, (4, 5), u1, u2, num_anchors=8, pool_size=20))
    flat = small.reshape(2, -1)
    take = lambda idx: np.take_along_axis(flat, idx, axis=1)  # noqa: E731
    used = t["weights"] > 0
    assert used.sum() > 0 and (take(t["anchor"])[used] == 1).any()
    np.testing.assert_array_equal(take(t["anchor"])[used], take(t["positive"])[used])
    assert (take(t["anchor"])[used] != take(t["negative"])[used]).all()
    assert (take(t["anchor"])[t["weights"] > 0] != 255).all()


# ---------------------------------------------------------------------------
# Criterion and sampling.


def test_threshold_criterion_on_crafted_depth_and_normals():
    # Anchor depth 2 m; candidates 3% away (positive), 10% (neither), 50% (negative), invalid.
    depth_delta = label_distance("depth", np.array([[[[2.0]]]]), np.array([[[[2.06], [2.2], [3.0], [0.0]]]]))
    positive, negative = criterion_masks(to_numpy(depth_delta), math.log(1.05), math.log(1.25))
    np.testing.assert_array_equal(positive, [[[True, False, False, False]]])
    np.testing.assert_array_equal(negative[..., :3], [[[False, False, True]]])
    candidate_ok = np.array([[[True, True, True, False]]])
    uniform = np.full((1, 1, 4), 0.5, "float32")
    pos, neg, found = to_numpy(select_triplets(depth_delta, candidate_ok, uniform, "threshold", (math.log(1.05), math.log(1.25))))
    assert (pos[0, 0], neg[0, 0], found[0, 0]) == (0, 2, True)
    # Normals: 5 degrees positive, 20 neither, 45 negative (thresholds 10 / 30).
    angles = np.radians([5.0, 20.0, 45.0])
    pool = np.stack([np.zeros(3), np.sin(angles), np.cos(angles)], -1)[None, None]
    normals_delta = label_distance("normals", np.array([[[[0.0, 0.0, 1.0]]]]), pool)
    positive, negative = criterion_masks(to_numpy(normals_delta), 10.0, 30.0)
    np.testing.assert_array_equal(positive, [[[True, False, False]]])
    np.testing.assert_array_equal(negative, [[[False, False, True]]])
    # Only "neither" candidates: no triplet.
    _, _, found = to_numpy(select_triplets(normals_delta[..., 1:2], np.ones((1, 1, 1), bool), uniform[..., :1], "threshold", (10.0, 30.0)))
    assert not found[0, 0]


def test_ranking_criterion_picks_the_closer_candidate():
    # Three anchors, two candidates each (pool of 2). Depth deltas in log space.
    delta = np.log(np.array([[[1.02, 1.6], [1.6, 1.02], [1.02, 1.03]]], "float32"))
    ok = np.ones((1, 3, 2), bool)
    uniform = np.array([[[0.9, 0.1], [0.2, 0.7], [0.3, 0.4]]], "float32")
    pos, neg, found = to_numpy(select_triplets(delta, ok, uniform, "ranking", ranking_margin=math.log(1.05)))
    np.testing.assert_array_equal(pos[0, :2], [0, 1])  # the closer one, whatever the draw order
    np.testing.assert_array_equal(neg[0, :2], [1, 0])
    np.testing.assert_array_equal(found[0], [True, True, False])  # 1.02 vs 1.03: within eps
    # Discrete kinds (eps = 0): one same and one different label is a triplet, two same labels are not.
    delta = np.array([[[0.0, 1.0], [0.0, 0.0]]], "float32")
    pos, neg, found = to_numpy(select_triplets(delta, np.ones((1, 2, 2), bool), uniform[:, :2], "ranking", ranking_margin=0.0))
    assert (pos[0, 0], neg[0, 0]) == (0, 1)
    np.testing.assert_array_equal(found[0], [True, False])
    # Invalid candidates are never drawn.
    _, _, found = to_numpy(select_triplets(delta[:, :1], np.array([[[True, False]]]), uniform[:, :1], "ranking"))
    assert not found[0, 0]


def test_sample_pixels_draws_valid_pixels_without_replacement_and_pads():
    scores = np.array([[0.1, -np.inf, 0.7, 0.3], [-np.inf] * 4], "float32")
    index, ok = to_numpy(sample_pixels(scores, 6))  # more than the 4 pixels: padded slots are not ok
    np.testing.assert_array_equal(index[0, :3], [2, 3, 0])
    np.testing.assert_array_equal(ok, [[True] * 3 + [False] * 3, [False] * 6])


def test_balance_gives_a_rare_class_about_half_the_anchors():
    edge = tasks.edge()
    labels = np.zeros((4, H, W, 1), "int32")
    labels[:, :, 0] = 1  # one column of W = 20: 5% edge pixels
    uniform_pixels = keras.random.uniform((2, 4, H * W), seed=1)
    uniform_pairs = keras.random.uniform((4, 16 + 32), seed=2)
    shares = {}
    for balance in (True, False):
        triplets = to_numpy(
            sample_triplets(edge, labels, (H, W), uniform_pixels, uniform_pairs, 16, 32, balance=balance)
        )
        shares[balance] = np.mean(triplets["anchor"] % W == 0)
    # Balanced: each class gets about 8 of the 16 anchors per image; unbalanced: about 5%.
    assert 0.3 < shares[True] < 0.7, shares
    assert shares[False] < 0.15, shares


def test_sampled_triplets_obey_the_source_labels():
    specs = NYUD
    labels = random_labels(specs, 2)
    u1 = keras.random.uniform((2, 2, h * w), seed=4)
    u2 = keras.random.uniform((2, 16 + 32), seed=5)
    for source in specs:
        t = to_numpy(sample_triplets(source, labels[source.name], (h, w), u1, u2, 16, 32))
        small = to_numpy(feature_labels(source, labels[source.name], (h, w))).reshape(2, h * w, -1)
        take = lambda idx: np.take_along_axis(small, idx[..., None], axis=1)  # noqa: E731
        a, p, n = take(t["anchor"]), take(t["positive"]), take(t["negative"])
        used = t["weights"] > 0
        assert used.sum() >= 3, source.name  # random unit normals: few pool pixels within 10 degrees
        tau_pos, tau_neg = source.label_kind.thresholds
        d_ap, d_an = to_numpy(label_distance(source.kind, a, p)), to_numpy(label_distance(source.kind, a, n))
        assert (d_ap[used] <= tau_pos + 1e-4).all() and (d_an[used] > tau_neg - 1e-4).all(), source.name
        assert (t["anchor"] != t["positive"])[used].all()


def test_positives_and_negatives_are_drawn_uniformly_among_eligible_pixels():
    # 4000 images of 1 x 4 pixels with classes [0, 0, 0, 1]; one anchor, the pool is every pixel.
    batch = 4000
    labels = np.broadcast_to(np.array([0, 0, 0, 1]).reshape(1, 1, 4, 1), (batch, 1, 4, 1))
    u1 = keras.random.uniform((2, batch, 4), seed=6)
    u2 = keras.random.uniform((batch, 1 + 4), seed=7)
    t = to_numpy(sample_triplets(tasks.semseg(num_classes=2), labels, (1, 4), u1, u2, num_anchors=1, pool_size=4))
    anchor, positive, negative = t["anchor"][:, 0], t["positive"][:, 0], t["negative"][:, 0]
    assert (t["weights"][anchor < 3] == 1).all()  # class 0 anchors: two positives, one negative
    assert (t["weights"][anchor == 3] == 0).all()  # the class 1 anchor has no positive
    # Balance: scores -(1 - u) n_c, i.e. x = n_c (1 - u) ~ U(0, n_c), smallest x drawn. The class 1 pixel
    # (x ~ U(0, 1)) beats the three class 0 pixels (x ~ U(0, 3)) with probability
    # int_0^1 (1 - t / 3)^3 dt = 3 / 4 (1 - (2 / 3)^4) = 0.602 (0.25 without balance).
    assert abs(np.mean(anchor == 3) - 0.602) < 0.03
    from_0 = positive[anchor == 0]
    assert set(from_0) == {1, 2} and 0.4 < np.mean(from_0 == 1) < 0.6
    assert (negative[anchor < 3] == 3).all()


# ---------------------------------------------------------------------------
# Loss.


def test_triplet_loss_by_hand():
    z_a = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    z_p = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    z_n = np.array([[-1.0, 0.0], [0.6, 0.8], [1.0, 0.0]])
    weights = np.array([1.0, 1.0, 0.0])
    # Triplet 1: ||a-p||^2 = 2, ||a-n||^2 = 4: max(0, 2 - 4 + 0.5) = 0.
    # Triplet 2: ||a-p||^2 = 2, ||a-n||^2 = 0.4^2 + 0.8^2 = 0.8: 2 - 0.8 + 0.5 = 1.7.
    # Triplet 3 has weight 0. Weighted mean: (0 + 1.7) / 2 = 0.85.
    assert float(triplet_loss(z_a, z_p, z_n, weights, margin=0.5)) == pytest.approx(0.85, abs=1e-6)
    assert float(triplet_loss(z_a, z_p, z_n, np.zeros(3), margin=0.5)) == 0.0  # no triplet: 0, not NaN


def test_pair_loss_by_hand_gathers_then_projects():
    # A 2 x 2 map; an L2-normalising projector maps the pixels to (1, 0), (0, 1), (0.6, 0.8), (-1, 0).
    features = np.array([[[[2.0, 0.0], [0.0, 3.0]], [[3.0, 4.0], [-1.0, 0.0]]]], "float32")
    anchor, positive, negative = np.array([[0, 0]]), np.array([[1, 1]]), np.array([[2, 3]])
    # (0, 1, 2): 2 - 0.8 + 0.5 = 1.7; (0, 1, 3): 2 - 4 + 0.5 < 0 -> 0; mean 0.85.
    loss = pair_loss(features, anchor, positive, negative, np.ones((1, 2)), l2_normalize, margin=0.5)
    assert float(loss) == pytest.approx(0.85, abs=1e-6)


def numpy_pair_loss(features, anchor, positive, negative, weights, kernels, margin):
    k1, b1, k2, b2 = (np.asarray(x, "float64") for x in kernels)
    flat = features.reshape(features.shape[0], -1, features.shape[-1]).astype("float64")
    rows = np.arange(flat.shape[0])[:, None]

    def project(index):
        z = np.maximum(flat[rows, index] @ k1 + b1, 0.0) @ k2 + b2
        return z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)

    z_a, z_p, z_n = project(anchor), project(positive), project(negative)
    losses = np.maximum(((z_a - z_p) ** 2).sum(-1) - ((z_a - z_n) ** 2).sum(-1) + margin, 0.0)
    return (losses * weights).sum() / weights.sum()


def test_pair_loss_for_given_indices_matches_a_numpy_reference():
    # The same indices, features and projector weights give the same loss on every backend.
    rng = np.random.default_rng(7)
    layer = make_layer(projector_width=8, projection_dim=4)
    projector = layer.get_projector("semseg", "depth")
    kernels = [rng.normal(size=(6, 8)), rng.normal(size=8) * 0.1, rng.normal(size=(8, 4)), rng.normal(size=4) * 0.1]
    projector.set_weights([k.astype("float32") for k in kernels])
    features = rng.normal(size=(2, h, w, 6)).astype("float32")
    anchor, positive, negative = (rng.integers(0, h * w, (2, 12)) for _ in range(3))
    weights = (rng.uniform(size=(2, 12)) < 0.7).astype("float32")
    expected = numpy_pair_loss(features, anchor, positive, negative, weights, kernels, margin=0.8)
    actual = pair_loss(features, anchor, positive, negative, weights, projector, margin=0.8)
    assert float(actual) == pytest.approx(expected, abs=1e-5)
    np.testing.assert_array_equal(to_numpy(gather_pixels(features, anchor)), features.reshape(2, -1, 6)[np.arange(2)[:, None], anchor])


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="PyTorch's convolutions can hand back channels-last views "
                    "of channels-first storage; the other backends have no strided views")
def test_gather_of_a_channels_first_map_gives_the_same_vectors_and_gradient():
    import torch

    rng = np.random.default_rng(3)
    storage = rng.normal(size=(2, 5, 4, 3)).astype("float32")  # (B, C, h, w)
    index = rng.integers(0, 12, (2, 7))
    upstream = rng.normal(size=(2, 7, 5)).astype("float32")
    expected = storage.transpose(0, 2, 3, 1).reshape(2, 12, 5)[np.arange(2)[:, None], index]
    expected_gradient = np.zeros((2, 12, 5), "float32")
    np.add.at(expected_gradient, (np.arange(2)[:, None], index), upstream)  # repeated indices accumulate
    for channels_first in (True, False):
        leaf = torch.tensor(storage if channels_first else storage.transpose(0, 2, 3, 1).copy(), requires_grad=True)
        view = leaf.permute(0, 2, 3, 1) if channels_first else leaf  # (B, h, w, C) either way
        gathered = gather_pixels(view, index)
        (gathered * torch.tensor(upstream)).sum().backward()
        np.testing.assert_array_equal(to_numpy(gathered), expected)
        gradient = to_numpy(leaf.grad)
        gradient = gradient.transpose(0, 2, 3, 1) if channels_first else gradient
        # A pixel's gradient sums at most 7 float32 terms, in another order than np.add.at.
        tolerance = 7 * 7 * np.finfo("float32").eps * np.abs(upstream).max()
        np.testing.assert_allclose(gradient.reshape(2, 12, 5), expected_gradient, rtol=0, atol=tolerance)


# ---------------------------------------------------------------------------
# The layer.


def test_layer_outputs_and_triplet_fraction():
    layer = make_layer(margin=4.0)
    out = to_numpy(layer(random_features(NYUD, 2), random_labels(NYUD, 2)))
    names = [t.name for t in NYUD]
    assert set(out["per_task"]) == set(names) and set(out["sources"]) == set(names)
    for index, name in enumerate(names):
        assert out["sources"][name] != index and 0 <= out["sources"][name] < len(names)
        # margin 4 >= any ||a-p||^2 - ||a-n||^2 of unit vectors: every triplet's loss is positive.
        assert out["per_task"][name] > 0
    assert out["loss"] == pytest.approx(0.1 * np.mean([out["per_task"][n] for n in names]), rel=1e-6)
    assert 0.3 < out["triplet_fraction"] <= 1.0
    assert out["loss"].dtype == np.float32


@pytest.mark.parametrize("criterion", ["threshold", "ranking"])
def test_all_sources_averages_every_other_task(criterion):
    specs = NYUD[:3]
    layer = make_layer(specs, source_selection="all", criterion=criterion)
    out = to_numpy(layer(random_features(specs, 2), random_labels(specs, 2)))
    assert all(v == -1 for v in out["sources"].values())
    assert np.isfinite(out["loss"]) and out["loss"] > 0
    drawn = to_numpy(make_layer(specs, source_selection="all", criterion=criterion).sample(random_features(specs, 2), random_labels(specs, 2)))
    np.testing.assert_array_equal(drawn["depth"]["sources"], [0, 2])
    assert drawn["depth"]["anchor"].shape == (2, 2, 16)


def degenerate_labels(case):
    """Labels of the NYUD tasks (batch 2) that leave no valid triplet at all."""
    labels = random_labels(NYUD, 2)
    if case == "all_ignore":
        labels = {
            "semseg": np.full((2, H, W, 1), 255, "int32"),
            "depth": np.zeros((2, H, W, 1), "float32"),
            "normals": np.zeros((2, H, W, 3), "float32"),
            "edge": np.full((2, H, W, 1), 255, "int32"),
        }
    elif case == "one_valid_pixel":
        for name, value in (("semseg", 255), ("depth", 0.0), ("normals", 0.0), ("edge", 255)):
            labels[name] = np.full_like(labels[name], value)
        labels["semseg"][:, 1, 1] = 2  # pixel (1, 1) is read by feature pixel (0, 0)
        labels["depth"][:, 1, 1] = 3.0
        labels["normals"][:, 1, 1] = [0.0, 0.0, 1.0]
        labels["edge"][:, 1, 1] = 1
    return labels


@pytest.mark.parametrize("case", ["all_ignore", "one_valid_pixel"])
def test_no_valid_triplet_gives_zero_loss_and_finite_gradients(case):
    layer = make_layer()
    out, feature_grads, variable_grads = loss_and_gradients(layer, random_features(NYUD, 2), degenerate_labels(case))
    assert out["loss"] == 0.0 and out["triplet_fraction"] == 0.0
    for grad in list(feature_grads.values()) + list(variable_grads.values()):
        assert grad is None or (np.isfinite(grad).all() and not grad.any())


def test_one_class_everywhere_gives_zero_loss():
    specs = [tasks.semseg(num_classes=4), tasks.edge()]
    labels = {"semseg": np.ones((2, H, W, 1), "int32"), "edge": np.zeros((2, H, W), "int32")}
    out = to_numpy(make_layer(specs)(random_features(specs, 2), labels))
    assert out["loss"] == 0.0 and out["triplet_fraction"] == 0.0


def test_batch_of_one_and_zero_features_are_finite():
    layer = make_layer(margin=4.0)
    out, feature_grads, _ = loss_and_gradients(layer, random_features(NYUD, 1), random_labels(NYUD, 1))
    assert np.isfinite(out["loss"]) and out["loss"] > 0
    assert all(np.isfinite(g).all() and g.any() for g in feature_grads.values())
    # Zero features project to the zero vector (biases start at 0): d_ap = d_an = 0, loss = margin.
    zeros = {k: np.zeros_like(v) for k, v in random_features(NYUD, 1).items()}
    out, feature_grads, variable_grads = loss_and_gradients(make_layer(margin=0.5), zeros, random_labels(NYUD, 1))
    assert out["per_task"]["depth"] == pytest.approx(0.5)
    assert all(g is None or np.isfinite(g).all() for g in list(feature_grads.values()) + list(variable_grads.values()))


@pytest.mark.parametrize("selection", ["random", "all"])
def test_gradients_reach_the_features_and_only_the_drawn_bank_slices(selection):
    # METHOD.md section 8: gradients reach F_t and the projector of the drawn pair only. The bank's
    # variables get a gradient on every backend (torch included: no "Gradients do not exist"), exactly
    # zero on the slices of pairs not drawn.
    layer = make_layer(margin=4.0, source_selection=selection)
    out, feature_grads, variable_grads = loss_and_gradients(layer, random_features(NYUD, 2), random_labels(NYUD, 2))
    names = [t.name for t in NYUD]
    for name in names:
        assert np.abs(feature_grads[name]).sum() > 0, name
    assert [v.path for v in layer.trainable_variables] == [v.path for v in layer.bank]
    assert all(variable_grads[v.path] is not None for v in layer.bank)
    assert len(layer.pairs) == 12 and all(v.shape[0] == 12 for v in layer.bank)
    for index, (target, source) in enumerate(layer.pairs):
        assert layer.pair_index(target, source) == index
        grads = [variable_grads[v.path][index] for v in layer.bank]
        drawn = selection == "all" or names[int(out["sources"][target])] == source
        if drawn:
            assert all(np.abs(g).sum() > 0 for g in grads), (target, source)
        else:
            assert all(not g.any() for g in grads), (target, source)


def test_same_seed_gives_the_same_indices_and_loss_and_the_state_advances():
    features, labels = random_features(NYUD, 2), random_labels(NYUD, 2)
    first, second = make_layer(seed=11), make_layer(seed=11)
    second.set_weights(first.get_weights())
    samples = [to_numpy(layer.sample(features, labels)) for layer in (first, second)]
    for name in samples[0]:
        for key, value in samples[0][name].items():
            np.testing.assert_array_equal(value, samples[1][name][key])
    losses = [[float(layer(features, labels)["loss"]) for _ in range(3)] for layer in (first, second)]
    assert losses[0] == losses[1]
    assert len(set(losses[0])) == 3  # a new draw each step
    # Another seed, the same projector weights: other draws, another loss.
    other = make_layer(seed=12)
    for key, projector in other.projectors.items():
        projector.set_weights(first.projectors[key].get_weights())
    assert float(other(features, labels)["loss"]) != losses[0][0]


def test_neighbouring_seeds_give_unrelated_draws():
    # METHOD.md section 8: seeds s and s + 1 give unrelated draws on every backend. Keras's SeedGenerator
    # state is (seed, step) and torch seeds its generator with seed + step: unhashed, seed 8 would replay
    # seed 7's stream one step later.
    from keras_mtcl.contrastive import spread_seed

    features, labels = random_features(NYUD, 2), random_labels(NYUD, 2)
    steps = 4
    draws = {}
    for seed in (7, 8):
        layer = make_layer(seed=seed)
        draws[seed] = [to_numpy(layer.sample(features, labels)["depth"]["anchor"]) for _ in range(steps)]
    for i in range(steps):
        for j in range(steps):
            same = np.mean(draws[7][i] == draws[8][j])
            assert same < 0.2, (i, j, same)  # 16 anchors of 80 pixels: chance agreement is about 1/80 per slot
    # The random streams themselves: every draw of one step, seeds 7 and 8, steps 0..3, are uncorrelated.
    streams = {}
    for seed in (7, 8):
        layer = make_layer(seed=seed)
        streams[seed] = [to_numpy(layer._draw(2, h * w, 2 * h * w + 48)[1]).reshape(-1) for _ in range(steps)]
    for i in range(steps):
        for j in range(steps):
            assert abs(np.corrcoef(streams[7][i], streams[8][j])[0, 1]) < 0.05, (i, j)
    assert abs(spread_seed(7) - spread_seed(8)) > 10**6 and 0 <= spread_seed(7) < 2**31


def test_mixed_precision_features_give_a_float32_loss():
    keras.config.set_dtype_policy("mixed_bfloat16")  # restored by the autouse fixture
    layer = make_layer()
    features = {k: keras.ops.cast(v, "bfloat16") for k, v in random_features(NYUD, 2).items()}
    out = layer(features, random_labels(NYUD, 2))
    assert keras.backend.standardize_dtype(out["loss"].dtype) == "float32"
    assert np.isfinite(float(out["loss"]))
    assert all(v.dtype == "float32" for v in layer.trainable_variables)


def test_config_round_trip_keeps_non_defaults_and_serialisation_keeps_weights():
    specs = NYUD[:2]
    layer = make_layer(
        specs,
        weight=0.3,
        criterion="ranking",
        thresholds={"depth": (0.1, 0.2)},
        ranking_margins={"normals": 5.0},
        balance=False,
        margin=0.7,
        source_selection="all",
    )
    config = assert_round_trip(
        layer,
        weight=0.3,
        criterion="ranking",
        thresholds={"depth": [0.1, 0.2]},
        ranking_margins={"normals": 5.0},
        num_anchors=16,
        pool_size=32,
        balance=False,
        projector_width=8,
        projection_dim=4,
        margin=0.7,
        source_selection="all",
        seed=3,
    ).get_config()
    signature = [p for p in inspect.signature(CrossTaskContrastive.__init__).parameters if p not in ("self", "kwargs")]
    assert set(signature) <= set(config)
    assert [t["name"] for t in config["tasks"]] == ["semseg", "depth"]
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, CrossTaskContrastive) and restored.built
    assert [v.path for v in restored.weights] == [v.path for v in layer.weights]
    restored.set_weights(layer.get_weights())
    features, labels = random_features(specs, 2), random_labels(specs, 2)
    assert float(restored(features, labels)["loss"]) == float(layer(features, labels)["loss"])


def test_bind_sets_or_checks_the_tasks():
    layer = CrossTaskContrastive(seed=0)
    assert layer.get_config()["tasks"] is None
    with pytest.raises(ValueError, match="has no tasks.*Received: tasks=None"):
        layer.build({"semseg": (None, h, w, 4)})
    layer.bind(NYUD)
    layer.bind([t.get_config() for t in NYUD])  # the same tasks as configs
    with pytest.raises(ValueError, match=r"cannot be used with other tasks. Received: tasks=\[\('semseg', 'classes'\)"):
        layer.bind(NYUD[:1] + NYUD[2:])
    with pytest.raises(ValueError, match=r"at least two tasks.*Received: tasks=\['depth'\]"):
        CrossTaskContrastive([tasks.depth()])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weight": -1.0}, "Received: weight=-1.0"),
        ({"criterion": "cosine"}, "Received: criterion='cosine'"),
        ({"source_selection": "one"}, "Received: source_selection='one'"),
        ({"num_anchors": 0}, "`num_anchors` must be an integer >= 1. Received: num_anchors=0"),
        ({"pool_size": 1}, "`pool_size` must be an integer >= 2. Received: pool_size=1"),
        ({"projector_width": 2.5}, "Received: projector_width=2.5"),
        ({"projection_dim": True}, "Received: projection_dim=True"),
        ({"margin": -0.1}, "Received: margin=-0.1"),
        ({"seed": "a"}, "Received: seed='a'"),
        ({"thresholds": {"depth": (0.3, 0.1)}}, r"0 <= tau_pos <= tau_neg. Received: thresholds="),
        ({"thresholds": {"colour": (0.1, 0.2)}}, r"unknown label kinds \['colour'\]"),
        ({"thresholds": [0.1, 0.2]}, r"must be None or a dict"),
        ({"ranking_margins": {"depth": -1}}, r"number >= 0. Received: ranking_margins="),
    ],
)
def test_bad_arguments_raise_keras_style_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CrossTaskContrastive(NYUD, **kwargs)


def test_bad_inputs_raise_clear_errors():
    layer = make_layer()
    features, labels = random_features(NYUD, 2), random_labels(NYUD, 2)
    with pytest.raises(ValueError, match=r"`labels` lacks tasks \['edge'\]"):
        layer(features, {k: v for k, v in labels.items() if k != "edge"})
    with pytest.raises(ValueError, match=r"Labels of task 'normals' must have shape \(B, H, W, 3\)"):
        layer(features, {**labels, "normals": labels["normals"][..., :1]})
    with pytest.raises(ValueError, match=r"`feature_shapes` lacks tasks \['edge'\]"):
        CrossTaskContrastive(NYUD).build({t.name: (None, h, w, 6) for t in NYUD[:3]})
    with pytest.raises(ValueError, match=r"`features` must be a dict"):
        layer([features["semseg"]], labels)
    layer.build({t.name: (None, None, None, 6) for t in NYUD})  # built again with the same channels: kept
    with pytest.raises(ValueError, match=r"built for 6 feature channels of task 'semseg'"):
        layer.build({t.name: (None, h, w, 5) for t in NYUD})
    with pytest.raises(ValueError, match=r"channels of task 'semseg'.*must be known"):
        CrossTaskContrastive(NYUD).build({t.name: (None, h, w, None) for t in NYUD})


def test_compiles_with_static_shapes():
    layer = make_layer()
    features, labels = random_features(NYUD, 2), random_labels(NYUD, 2)
    if BACKEND == "jax":
        import jax

        @jax.jit
        def step(trainable, non_trainable, features, labels):
            return layer.stateless_call(trainable, non_trainable, features, labels)

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]
        out, new_state = step(trainable, non_trainable, features, labels)
        out2, _ = step(trainable, new_state, features, labels)
        assert np.isfinite(float(out["loss"])) and float(out["loss"]) != float(out2["loss"])
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        # Three tasks: two sources per target, so the drawn-source conditional is exercised.
        specs = NYUD[:3]
        layer = make_layer(specs)
        features, labels = random_features(specs, 2), random_labels(specs, 2)

        # XLA with a batch size unknown until run time, differentiated (as in `fit` on GPU).
        def loss_and_grads(f, l):
            with tf.GradientTape() as tape:
                tape.watch(f)
                loss = layer(f, l)["loss"]
            return loss, tape.gradient(loss, f)

        batch_spec = {k: tf.TensorSpec((None,) + v.shape[1:]) for k, v in features.items()}
        label_batch_spec = {k: tf.TensorSpec((None,) + v.shape[1:], v.dtype) for k, v in labels.items()}
        compiled = tf.function(loss_and_grads, jit_compile=True, input_signature=(batch_spec, label_batch_spec))
        loss, grads = compiled(features, labels)
        assert np.isfinite(float(loss)) and all(np.abs(g.numpy()).sum() > 0 for g in grads.values())
        # Spatial sizes unknown until run time (no XLA): the padded sampling path.
        spec = {k: tf.TensorSpec((None, None, None, 6)) for k in features}
        label_spec = {k: tf.TensorSpec((None, None, None, v.shape[-1]), v.dtype) for k, v in labels.items()}
        out = tf.function(lambda f, l: layer(f, l), input_signature=(spec, label_spec))(features, labels)
        assert np.isfinite(float(out["loss"])) and float(out["triplet_fraction"]) > 0
    else:
        out = layer(features, labels)
        assert np.isfinite(float(out["loss"]))


def test_fit_through_the_trainer_advances_the_seed_and_reports_metrics(tmp_path):
    from keras_mtcl import backbones
    from keras_mtcl.model import MultiTaskModel
    from keras_mtcl.trainer import MultiTaskTrainer

    specs = tasks.task_set("nyud", tasks=["semseg", "depth"], num_classes={"semseg": 4})
    regularizer = CrossTaskContrastive(num_anchors=16, pool_size=32, projector_width=8, projection_dim=4, seed=5)
    model = MultiTaskModel(
        backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16)), specs, decoder_options={"head_channels": 8}
    )
    trainer = MultiTaskTrainer(model, regularizer=regularizer)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    y = random_labels(specs, 2, 32, 32)
    state = to_numpy(regularizer.seed_generator.state.value)
    trainer.compile(optimizer="adam", run_eagerly=eager_unless_jax())
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = trainer.fit(x, y, epochs=2, verbose=0).history
    # Every bank variable has a gradient each step (zero on undrawn slices), on torch too: no warning.
    assert not [w for w in caught if "Gradients do not exist" in str(w.message)]
    for name in ("contrastive_semseg", "contrastive_depth", "contrastive_triplet_fraction"):
        assert np.isfinite(history[name]).all(), name
    assert min(history["contrastive_triplet_fraction"]) > 0
    # The random state moved on (under JAX, the stateless train step returned it).
    assert not np.array_equal(to_numpy(regularizer.seed_generator.state.value), state)
    path = tmp_path / "trainer.keras"
    trainer.save(path)
    restored = keras.saving.load_model(path)
    assert restored.regularizer.get_config()["num_anchors"] == 16
    for a, b in zip(restored.regularizer.get_weights(), regularizer.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# Version 2: per-source sampling, the projector bank, no conditional in the step.

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"


def random_triplets(names, batch, num, pixels, seed):
    rng = np.random.default_rng(seed)
    return {
        n: {
            "anchor": rng.integers(0, pixels, (batch, num)).astype("int32"),
            "positive": rng.integers(0, pixels, (batch, num)).astype("int32"),
            "negative": rng.integers(0, pixels, (batch, num)).astype("int32"),
            "weights": (rng.uniform(size=(batch, num)) < 0.7).astype("float32"),
        }
        for n in names
    }


@pytest.mark.parametrize("selection", ["random", "all"])
def test_per_target_losses_equal_v1_pair_loss_on_fixed_triplets(selection):
    # On fixed triplets, each target's loss is version 1's `pair_loss` of its drawn source's triplets with
    # that pair's projector (`numpy_pair_loss` is a float64 reference of it); feature maps of different
    # widths share the bank (its input rows padded to the widest).
    specs = NYUD[:3]
    channels = {"semseg": 6, "depth": 4, "normals": 5}
    layer = CrossTaskContrastive(specs, num_anchors=12, pool_size=16, projector_width=8, projection_dim=4, margin=0.8, source_selection=selection)
    layer.build({n: (None, h, w, c) for n, c in channels.items()})
    rng = np.random.default_rng(3)
    kernels = {}
    for target, source in layer.pairs:
        c = channels[target]
        kernels[target, source] = [rng.normal(size=(c, 8)), rng.normal(size=8) * 0.1, rng.normal(size=(8, 4)), rng.normal(size=4) * 0.1]
        layer.get_projector(target, source).set_weights([k.astype("float32") for k in kernels[target, source]])
    features = {n: rng.normal(size=(2, h, w, c)).astype("float32") for n, c in channels.items()}
    triplets = random_triplets(channels, 2, 12, h * w, seed=4)
    sources = {"semseg": "normals", "depth": "semseg", "normals": "semseg"}
    out = to_numpy(layer.triplet_losses(features, triplets, None if selection == "all" else sources))

    def reference(target, source):
        t = triplets[source]
        return numpy_pair_loss(features[target], t["anchor"], t["positive"], t["negative"], t["weights"], kernels[target, source], 0.8)

    for target in channels:
        drawn = [s for s in channels if s != target] if selection == "all" else [sources[target]]
        expected = np.mean([reference(target, s) for s in drawn])
        assert out["per_task"][target] == pytest.approx(expected, abs=1e-5), target
        # v1's own function on the pair's projector (a view of its bank slice) agrees.
        t = triplets[drawn[0]]
        v1 = pair_loss(features[target], t["anchor"], t["positive"], t["negative"], t["weights"], layer.get_projector(target, drawn[0]), 0.8)
        assert float(keras.ops.convert_to_numpy(v1)) == pytest.approx(reference(target, drawn[0]), abs=1e-5)
    assert out["loss"] == pytest.approx(0.1 * np.mean(list(out["per_task"].values())), rel=1e-6)
    for source in channels:
        assert out["triplet_fraction_per_source"][source] == pytest.approx(triplets[source]["weights"].mean())


def v1_fixture():
    return np.load(FIXTURES / "legacy" / "v1_trainer_regularized.npz")


def test_sampling_core_draws_version_1s_triplets_from_the_same_uniforms():
    # The fixture holds version 1's `sample_triplets` output for fixed uniform draws (semseg and depth
    # sources, threshold criterion); the version-2 core, which samples sources of one kind in one call,
    # draws the same triplets from them.
    reference = v1_fixture()
    specs = tasks.task_set("nyud", tasks=["semseg", "depth"], num_classes={"semseg": 4})
    size = reference["features_semseg"].shape[1:3]
    for source in specs:
        n = source.name
        t = to_numpy(
            sample_triplets(source, reference[f"labels_{n}"], size, reference[f"uniform_pixels_{n}"], reference[f"uniform_pairs_{n}"], 8, 16)
        )
        for key in ("anchor", "positive", "negative", "weights"):
            np.testing.assert_array_equal(t[key], reference[f"{key}_{n}"], err_msg=f"{n} {key}")


def test_a_version_1_trainer_file_loads_its_per_pair_projectors_into_the_bank():
    # tests/fixtures/legacy/v1_trainer_regularized.keras: a MultiTaskTrainer saved by version 1 (one
    # Projector layer per pair; written by tests/fixtures/legacy/make_v1_trainer_fixture.py with the version-1 code).
    import keras_mtcl.metrics  # noqa: F401  (registers the compiled metrics)
    import keras_mtcl.trainer  # noqa: F401  (registers MultiTaskTrainer)
    from keras_mtcl.model import load_model  # registers the model's serialisable classes first

    reference = v1_fixture()
    with pytest.warns(UserWarning, match="loaded the 2 per-pair projectors of a keras_mtcl <= 0.2 file"):
        trainer = load_model(FIXTURES / "legacy" / "v1_trainer_regularized.keras", compile=True)
    regularizer = trainer.regularizer
    assert [tuple(v.shape) for v in regularizer.bank] == [(2, 6, 5), (2, 5), (2, 5, 3), (2, 3)]
    features = {n: reference[f"features_{n}"] for n in ("semseg", "depth")}
    model_features = to_numpy(trainer.model.training_outputs(reference["x"], training=True)["features"])
    for name, value in features.items():
        np.testing.assert_allclose(model_features[name], value, rtol=1e-4, atol=1e-4)
    triplets = {n: {k: reference[f"{k}_{n}"] for k in ("anchor", "positive", "negative", "weights")} for n in features}
    out = to_numpy(regularizer.triplet_losses(features, triplets, {"semseg": "depth", "depth": "semseg"}))
    assert out["per_task"]["semseg"] == pytest.approx(float(reference["loss_semseg_from_depth"]), abs=1e-5)
    assert out["per_task"]["depth"] == pytest.approx(float(reference["loss_depth_from_semseg"]), abs=1e-5)
    # It trains on from there.
    labels = {n: reference[f"labels_{n}"] for n in features}
    trainer.compile(optimizer="adam")
    history = trainer.fit(reference["x"], labels, epochs=1, verbose=0).history
    assert np.isfinite(history["contrastive_semseg"]).all()


def test_version_1_projectors_that_do_not_fit_fail_with_one_message(tmp_path):
    # The fixture's weights (projector width 5) loaded into a trainer whose projectors are 7 wide.
    import zipfile

    from keras_mtcl import backbones
    from keras_mtcl.model import MultiTaskModel
    from keras_mtcl.trainer import MultiTaskTrainer

    with zipfile.ZipFile(FIXTURES / "legacy" / "v1_trainer_regularized.keras") as archive:
        (tmp_path / "v1.weights.h5").write_bytes(archive.read("model.weights.h5"))
    specs = tasks.task_set("nyud", tasks=["semseg", "depth"], num_classes={"semseg": 4})
    model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(4, 4, 8, 8)), specs, decoder_options={"head_channels": 6})
    regularizer = CrossTaskContrastive(num_anchors=8, pool_size=16, projector_width=7, projection_dim=3, name="cross_task_contrastive")
    trainer = MultiTaskTrainer(model, regularizer=regularizer)
    with pytest.raises(ValueError, match=r"keras_mtcl <= 0.2 projector of the pair \('semseg', 'depth'\) has weights of shapes"):
        trainer.load_weights(tmp_path / "v1.weights.h5")
    # A store that is not an HDF5 file cannot be searched for version-1 projectors: one message says so.
    with pytest.raises(ValueError, match=r"only an HDF5 store .* can be searched for the per-pair projectors of keras_mtcl <= 0.2"):
        make_layer(NYUD[:2]).load_own_variables({})


def test_the_step_has_no_conditional():
    # Sources are sampled once per step and selected by gathers: the differentiated step holds no
    # cond / switch / while (v1 had a chain of K - 1 conditionals per target).
    layer = make_layer()
    features, labels = random_features(NYUD, 2), random_labels(NYUD, 2)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(f, l):
            with tf.GradientTape() as tape:
                tape.watch(f)
                loss = layer(f, l)["loss"]
            return tape.gradient(loss, (f, layer.trainable_variables))

        graph = step.get_concrete_function(features, labels).graph.as_graph_def()
        ops_used = {n.op for n in graph.node} | {n.op for fn in graph.library.function for n in fn.node_def}
        control = {"If", "StatelessIf", "Case", "StatelessCase", "While", "StatelessWhile"} & ops_used
        assert not control, control
    elif BACKEND == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def loss(trainable, f):
            return layer.stateless_call(trainable, non_trainable, f, labels)[0]["loss"]

        text = str(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(trainable, features))
        for primitive in ("cond", "switch", "while"):
            assert f" {primitive}[" not in text, primitive
    else:
        pytest.skip("torch runs eagerly: there is no graph to inspect (the same code path as the other backends)")


def test_sparse_edge_labels_take_the_any_positive_rule_and_nearest_stays_an_option():
    # One-pixel lines on rows 1 and column 1: at stride 4, nearest sampling reads pixel 4 i + 2 and sees
    # no edge at all (one class: no triplet); the any-positive rule keeps the cells the lines cross.
    specs = [tasks.semseg(num_classes=4), tasks.edge()]
    labels = {"semseg": random_labels(specs[:1], 2, 16, 20)["semseg"], "edge": np.zeros((2, 16, 20, 1), "int32")}
    labels["edge"][:, 1, :] = 1
    labels["edge"][:, :, 1] = 1
    features = {t.name: np.random.default_rng(0).normal(size=(2, 4, 5, 6)).astype("float32") for t in specs}
    fractions = {}
    for rule in ("task", "nearest"):
        layer = CrossTaskContrastive(specs, num_anchors=8, pool_size=20, projector_width=8, projection_dim=4, label_resize=rule, seed=0)
        layer.build({t.name: (None, 4, 5, 6) for t in specs})
        fractions[rule] = float(to_numpy(layer(features, labels))["triplet_fraction_per_source"]["edge"])
    assert fractions["task"] > 0.9 and fractions["nearest"] == 0.0, fractions
    assert CrossTaskContrastive.from_config(layer.get_config()).label_resize == "nearest"
    with pytest.raises(ValueError, match="Received: label_resize='max'"):
        CrossTaskContrastive(specs, label_resize="max")


def test_ranking_finds_a_triplet_for_most_anchors():
    # Version 1 drew two independent candidates: with class labels one had to share the anchor's class
    # and one not (35 % of semseg, 20 % of edge anchors on the synthetic scenes). Drawing the second
    # among the first's rankable partners finds a triplet wherever the pool holds one.
    layer = CrossTaskContrastive(NYUD, criterion="ranking", num_anchors=32, pool_size=64, projector_width=8, projection_dim=4, seed=0)
    layer.build({t.name: (None, 16, 20, 6) for t in NYUD})
    features = {t.name: np.random.default_rng(0).normal(size=(2, 16, 20, 6)).astype("float32") for t in NYUD}
    from keras_mtcl.testing.labels import random_labels as draw

    out = to_numpy(layer(features, draw(NYUD, 2, 32, 40, seed=0, block=8)))
    for source, fraction in out["triplet_fraction_per_source"].items():
        assert fraction > 0.9, (source, fraction)
    # The triplets obey the ranking: the positive is closer to the anchor than the negative, by more than eps.
    sample = to_numpy(layer.sample(features, draw(NYUD, 2, 32, 40, seed=0, block=8)))
    depth_labels = to_numpy(feature_labels(tasks.depth(), draw(NYUD, 2, 32, 40, seed=0, block=8)["depth"], (16, 20))).reshape(2, -1)
    for target, drawn in sample.items():
        if NYUD[int(drawn["sources"][0])].name != "depth":
            continue
        used = drawn["weights"][0] > 0
        take = lambda i: np.take_along_axis(depth_labels, drawn[i][0], axis=1)  # noqa: E731
        d_p = np.abs(np.log(take("anchor")) - np.log(take("positive")))
        d_n = np.abs(np.log(take("anchor")) - np.log(take("negative")))
        assert (d_n[used] - d_p[used] > math.log(1.05) - 1e-5).all(), target
