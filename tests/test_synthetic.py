"""Procedural scenes: determinism, formats, closed-form geometry and label consistency.

Expected values are computed here from the scene description (room, camera,
objects) with the pinhole formulas written out by hand, never by the renderer.
"""

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest

from keras_mtcl import kinds
from keras_mtcl.data import synthetic as S

# Every test is numpy / tfds only (tensorflow pass), except the one that feeds
# the labels to the Keras losses.
numpy_only = pytest.mark.backend_independent

LABEL_KEYS = ("semseg", "depth", "normals", "edge", "saliency", "human_parts")
SEEDS = (0, 1, 2, 3, 4, 5, 6, 7)

PLAIN = S.Material((0.5, 0.4, 0.3), grain=0.0)
# Room X in [-2, 2], Y in [0, 3], Z in [-3, 3]; a level camera looking along -Z.
ROOM = (4.0, 3.0, 6.0)


def level_scene(position=(0.5, 1.2, 2.0), objects=(), hfov=60.0, **kwargs):
    camera = S.Camera(position=position, hfov=math.radians(hfov))
    return S.Scene(room=ROOM, camera=camera, objects=tuple(objects), floor=PLAIN, ceiling=PLAIN, wall=PLAIN,
                   **kwargs)


def pixel_rays(height, width, hfov=math.radians(60.0), principal=(0.5, 0.5)):
    """(H, W) normalised image coordinates x~ = (u + 0.5 - cx) / f and y~ of a pinhole camera."""
    focal = 0.5 * width / math.tan(0.5 * hfov)
    xs = (np.arange(width) + 0.5 - principal[0] * width) / focal
    ys = (np.arange(height) + 0.5 - principal[1] * height) / focal
    return np.broadcast_to(xs[None, :], (height, width)), np.broadcast_to(ys[:, None], (height, width))


def neighbour_pairs(array):
    """Pairs (first, second) of 4-neighbour views: right neighbours, then down neighbours."""
    return [(array[:, :-1], array[:, 1:]), (array[:-1, :], array[1:, :])]


def pair_masks(shape):
    """For each neighbour direction, index views selecting the first / second pixel of each pair."""
    return [((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
            ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))]


# --------------------------------------------------------------------------- formats


@numpy_only
def test_same_seed_gives_identical_bytes_and_other_seeds_differ():
    a, b = S.render_scene(11, 24, 32), S.render_scene(11, 24, 32)
    assert a.keys() == b.keys()
    for key in a:
        if key == "id":
            assert a[key] == b[key] == "synthetic_00000011"
        else:
            assert a[key].tobytes() == b[key].tobytes(), key
    c = S.render_scene(12, 24, 32)
    assert c["id"] != a["id"]
    assert not np.array_equal(c["image"], a["image"])
    assert not np.array_equal(c["depth"], a["depth"])


@numpy_only
@pytest.mark.parametrize("height, width", [(24, 32), (37, 50)])
def test_shapes_dtypes_and_value_ranges(height, width):
    example = S.render_scene(3, height, width)
    expected = {
        "image": ((height, width, 3), np.uint8),
        "semseg": ((height, width, 1), np.uint8),
        "depth": ((height, width, 1), np.float32),
        "normals": ((height, width, 3), np.float32),
        "edge": ((height, width, 1), np.uint8),
        "saliency": ((height, width, 1), np.uint8),
        "human_parts": ((height, width, 1), np.uint8),
    }
    assert set(example) == set(expected) | {"id"}
    assert isinstance(example["id"], str)
    for key, (shape, dtype) in expected.items():
        assert example[key].shape == shape and example[key].dtype == dtype, key
    assert example["semseg"].max() < S.NUM_CLASSES
    assert example["human_parts"].max() < S.NUM_PARTS
    assert set(np.unique(example["edge"])) <= {0, 1} and set(np.unique(example["saliency"])) <= {0, 1}
    assert np.all(np.isfinite(example["depth"])) and example["depth"].min() > 0


@numpy_only
def test_make_scenes_stacks_consecutive_seeds():
    batch = S.make_scenes(3, 16, 24, seed=40)
    assert batch["image"].shape == (3, 16, 24, 3) and batch["normals"].shape == (3, 16, 24, 3)
    assert list(batch["id"]) == ["synthetic_00000040", "synthetic_00000041", "synthetic_00000042"]
    for i in range(3):
        single = S.render_scene(40 + i, 16, 24)
        for key in LABEL_KEYS + ("image",):
            np.testing.assert_array_equal(batch[key][i], single[key])


@numpy_only
def test_same_scene_at_any_resolution():
    # Pixel (i, j) of a 16x24 image has its centre where pixel (3i+1, 3j+1) of a
    # 48x72 image has its centre: the labels there are the same.
    low, high = S.render_scene(9, 16, 24), S.render_scene(9, 48, 72)
    for key in ("semseg", "saliency", "human_parts"):
        np.testing.assert_array_equal(low[key], high[key][1::3, 1::3], err_msg=key)
    np.testing.assert_allclose(low["depth"], high["depth"][1::3, 1::3], rtol=1e-5)
    np.testing.assert_allclose(low["normals"], high["normals"][1::3, 1::3], atol=1e-5)


@numpy_only
def test_synthetic_tasks_have_dataset_classes_and_reference_weights():
    specs = S.synthetic_tasks()
    assert [t.name for t in specs] == list(S.SYNTHETIC_TASKS)
    by_name = {t.name: t for t in specs}
    assert by_name["semseg"].channels == 7 == S.NUM_CLASSES == len(S.CLASS_NAMES)
    assert by_name["human_parts"].channels == 7 == S.NUM_PARTS == len(S.PART_NAMES)
    assert {n: t.loss_weight for n, t in by_name.items()} == {
        "semseg": 1, "depth": 1, "normals": 10, "edge": 50, "saliency": 5, "human_parts": 2,
    }
    assert [t.name for t in S.synthetic_tasks(["depth", "semseg"])] == ["depth", "semseg"]


def _class_predictions(spec, labels):
    assert labels.max() < spec.channels
    perfect = 20.0 * np.eye(spec.channels, dtype="float32")[labels[..., 0]]
    return perfect, np.roll(perfect, 1, axis=-1)


def _binary_predictions(spec, labels):
    perfect = 20.0 * (2.0 * labels.astype("float32") - 1.0)
    return perfect, -perfect


# (perfect, wrong) raw predictions from labels, per label kind (keyed by the kind objects).
PREDICTIONS = {
    kinds.CLASSES: _class_predictions,
    kinds.BINARY: _binary_predictions,
    kinds.DEPTH: lambda spec, labels: (labels, labels + 1.0),
    kinds.NORMALS: lambda spec, labels: (3.0 * labels, -labels),
}


def test_labels_fit_the_task_losses_on_every_backend():
    # Runs on each backend: perfect predictions give ~0 loss, shifted ones a large loss.
    from keras import ops

    from keras_mtcl import losses

    batch = S.make_scenes(2, 24, 32, seed=5)
    for spec in S.synthetic_tasks():
        labels = batch[spec.name]
        perfect, wrong = PREDICTIONS[spec.label_kind](spec, labels)
        good = float(losses.task_loss(spec, ops.convert_to_tensor(labels), ops.convert_to_tensor(perfect)))
        bad = float(losses.task_loss(spec, ops.convert_to_tensor(labels), ops.convert_to_tensor(wrong)))
        assert good < 1e-4 and bad > 0.5, (spec.name, good, bad)


@numpy_only
def test_render_scene_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from keras_mtcl.data import synthetic\n"
        "synthetic.make_scenes(1, 16, 16)\n"
        "assert 'tensorflow' not in sys.modules and 'tensorflow_datasets' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))


# --------------------------------------------------------------------------- closed forms


@numpy_only
def test_empty_room_seen_by_level_camera_matches_pinhole_formulas():
    height, width = 33, 49
    out = S.render(level_scene(position=(0.45, 1.2, 2.0)), height, width, instances=True)
    x, y = pixel_rays(height, width)
    # Camera at x=0.45, 1.2 m above the floor, 2.0 + 3.0 = 5 m from the far wall Z=-3;
    # z-depth of each plane along the ray (x~ t, -y~ t, -t) from the camera.
    with np.errstate(divide="ignore"):
        candidates = np.stack([
            np.where(y > 0, 1.2 / y, np.inf),        # floor
            np.where(y < 0, 1.8 / -y, np.inf),       # ceiling
            np.where(x < 0, 2.45 / -x, np.inf),      # wall X = -2 (image left)
            np.where(x > 0, 1.55 / x, np.inf),       # wall X = +2 (image right)
            np.full(x.shape, 5.0),                   # far wall Z = -3
        ])
    nearest = candidates.argmin(axis=0)
    np.testing.assert_allclose(out["depth"][..., 0], candidates.min(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(out["semseg"][..., 0], np.array([0, 1, 2, 2, 2])[nearest])
    # Camera frame x right, y down, z forward: normals face the camera.
    normals = np.array([[0, -1, 0], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, -1]], np.float32)
    np.testing.assert_allclose(out["normals"], normals[nearest], atol=1e-6)
    assert out["saliency"].max() == 0 and out["human_parts"].max() == 0
    # Edges: the ceiling / far wall / floor borders are horizontal lines, so a
    # column showing only those three (as do its neighbours) holds exactly two
    # edge pixels, one next to each border.
    edge = out["edge"][..., 0]
    checked = 0
    for col in range(1, width - 1):
        if all(set(nearest[:, c]) == {0, 1, 4} for c in (col - 1, col, col + 1)):
            labels = nearest[:, col]
            far = np.flatnonzero(labels == 4)
            assert edge[:, col].sum() == 2
            assert edge[far[0], col] + edge[far[0] - 1, col] == 1
            assert edge[far[-1], col] + edge[far[-1] + 1, col] == 1
            checked += 1
    assert checked >= 10


@numpy_only
def test_sphere_on_the_optical_axis_matches_closed_form():
    height, width = 33, 49  # odd sizes: the optical axis goes through the centre of pixel (16, 24)
    sphere = S.Primitive("sphere", center=(0.0, -1.0), size=(1.0, 1.0, 1.0), yaw=0.0, material=PLAIN)
    out = S.render(level_scene(position=(0.0, 0.5, 2.0), objects=[sphere]), height, width)
    # Sphere centre 3 m ahead on the axis, radius 0.5: on row 16 the ray (x~ t, 0, t)
    # (camera frame) meets it where t^2 (1 + x~^2) - 6 t + 8.75 = 0 has roots.
    x, _ = pixel_rays(height, width)
    xr = x[16]
    a = 1 + xr**2
    disc = 9 - a * 8.75
    on = disc > 0
    focal = 24.5 / math.tan(math.radians(30.0))
    radius_px = focal * 0.5 / math.sqrt(8.75)  # tangent rays: tan(angle) = r / sqrt(D^2 - r^2)
    assert on.sum() == 2 * math.floor(radius_px) + 1
    t = (3 - np.sqrt(disc[on])) / a[on]
    np.testing.assert_allclose(out["depth"][16, on, 0], t, rtol=1e-5)
    expected_normals = np.stack([t * xr[on], np.zeros_like(t), t - 3], axis=1) / 0.5
    np.testing.assert_allclose(out["normals"][16, on], expected_normals, atol=1e-5)
    assert out["depth"][16, 24, 0] == pytest.approx(2.5, rel=1e-6)
    np.testing.assert_array_equal(out["semseg"][16, :, 0], np.where(on, 5, 2))
    np.testing.assert_array_equal(out["saliency"][16, :, 0], on)
    # Upper half (image rows above the centre) is part 3, lower half part 4.
    assert out["human_parts"][12, 24, 0] == 3 and out["human_parts"][20, 24, 0] == 4
    # The contour is on the sphere (the nearer side of the depth jump), not on the wall.
    row = np.flatnonzero(on)
    assert out["edge"][16, row[0], 0] == 1 and out["edge"][16, row[-1], 0] == 1
    assert out["edge"][16, row[0] - 1, 0] == 0 and out["edge"][16, row[-1] + 1, 0] == 0
    assert out["edge"][16, row[1]:row[-1], 0].sum() == 0


@numpy_only
def test_lambertian_shading_and_box_shadow_match_closed_form():
    height, width = 65, 97
    light = (0.5, 1.6, -2.0)
    box = S.Primitive("box", center=(0.5, -0.3), size=(0.6, 0.4, 0.6), yaw=0.0, material=PLAIN)
    scene = level_scene(position=(0.5, 1.0, 2.8), objects=[box], hfov=90.0, light_position=light,
                        light_power=2.0, ambient=0.3, noise_std=0.0)
    out = S.render(scene, height, width)
    x, y = pixel_rays(height, width, hfov=math.radians(90.0))
    depth = out["depth"][..., 0].astype(np.float64)
    # World points of floor pixels: camera (0.5, 1.0, 2.8), ray (x~, -y~, -1) * depth.
    floor = out["semseg"][..., 0] == 0
    px, pz = 0.5 + x * depth, 2.8 - depth
    to_light = np.stack([light[0] - px, light[1] - np.zeros_like(px), light[2] - pz], -1)
    dist = np.linalg.norm(to_light, axis=-1)
    cosine = to_light[..., 1] / dist  # floor normal is +Y
    # Shadowed where the segment to the light crosses the box [0.2, 0.8] x [0, 0.4] x [-0.6, 0].
    s = np.stack([px, np.zeros_like(px), pz], -1)
    lo, hi = np.array([0.2, 0.0, -0.6]), np.array([0.8, 0.4, 0.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (lo - s) / to_light, (hi - s) / to_light
    t_near = np.nanmax(np.minimum(t1, t2), axis=-1)
    t_far = np.nanmin(np.maximum(t1, t2), axis=-1)
    shadow = (t_near <= t_far) & (t_near > 1e-6) & (t_near < 1)
    irradiance = 0.3 + 2.0 * cosine * (1 - shadow) / (1 + (dist / 3.0) ** 2)
    linear = np.asarray(PLAIN.color) * irradiance[..., None]
    expected = np.rint(255 * (1 - np.exp(-1.4 * linear)) ** (1 / 2.2))
    assert (floor & shadow).sum() > 30 and (floor & ~shadow).sum() > 500
    np.testing.assert_allclose(out["image"][floor], expected[floor], atol=1)
    # Box top faces up (part 1), its front face faces the camera (part 2).
    parts = out["human_parts"][..., 0]
    assert {1, 2} == set(np.unique(parts[out["semseg"][..., 0] == 4]))
    np.testing.assert_allclose(out["normals"][parts == 1], [[0, -1, 0]] * (parts == 1).sum(), atol=1e-6)
    np.testing.assert_allclose(out["depth"][parts == 2], 2.8, rtol=1e-5)  # front face Z = 0


# --------------------------------------------------------------------------- random scenes


@pytest.fixture(scope="module")
def rendered():
    height, width = 48, 64
    out = []
    for seed in SEEDS:
        scene = S.sample_scene(seed)
        out.append((scene, S.render(scene, height, width, instances=True)))
    return out


def camera_points(scene, example):
    """(H, W, 3) camera-frame points of every pixel from depth and the pinhole model."""
    h, w = example["depth"].shape[:2]
    x, y = pixel_rays(h, w, scene.camera.hfov, scene.camera.principal)
    depth = example["depth"][..., 0].astype(np.float64)
    return np.stack([x * depth, y * depth, depth], axis=-1)


@numpy_only
def test_random_scenes_normals_are_unit_and_face_the_camera(rendered):
    for scene, ex in rendered:
        normals = ex["normals"].astype(np.float64)
        np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-5)
        points = camera_points(scene, ex)
        assert np.all(np.einsum("hwc,hwc->hw", normals, points) < 0)


@numpy_only
def test_random_scenes_room_planes_agree_with_depth_and_normals(rendered):
    for scene, ex in rendered:
        semseg, inst = ex["semseg"][..., 0], ex["instance"][..., 0]
        normals = ex["normals"].astype(np.float64)
        floor = semseg == 0
        assert floor.sum() > 20
        up = normals[floor][0]
        # A plane is seen with one normal; the floor's points up: -y is up in the
        # camera frame and the camera is pitched at most 25 degrees, rolled 4.
        np.testing.assert_allclose(normals[floor], np.broadcast_to(up, (floor.sum(), 3)), atol=1e-6)
        assert up[1] < -0.85
        ceiling = semseg == 1
        np.testing.assert_allclose(normals[ceiling], np.broadcast_to(-up, (ceiling.sum(), 3)), atol=1e-6)
        walls = (semseg == 2) | (semseg == 3)
        assert np.all(np.abs(normals[walls] @ up) < 1e-5)
        # Each plane's points satisfy n . X = -(distance from the camera to the plane).
        cam_x, cam_y, cam_z = scene.camera.position
        width, height, length = scene.room
        distances = {1: cam_y, 2: height - cam_y, 3: cam_x + width / 2, 4: width / 2 - cam_x,
                     5: cam_z + length / 2, 6: length / 2 - cam_z}
        points = camera_points(scene, ex)
        offsets = np.einsum("hwc,hwc->hw", normals, points)
        for instance_id, distance in distances.items():
            on = inst == instance_id
            np.testing.assert_allclose(offsets[on], -distance, atol=1e-4 * (1 + distance))
        # Depth grows towards the image top along the floor, in every column.
        depth = ex["depth"][..., 0]
        both = floor[:-1] & floor[1:]
        assert np.all(depth[:-1][both] > depth[1:][both])


@numpy_only
def test_random_scenes_objects_agree_with_their_geometry(rendered):
    for scene, ex in rendered:
        semseg, parts, inst = ex["semseg"][..., 0], ex["human_parts"][..., 0], ex["instance"][..., 0]
        normals = ex["normals"].astype(np.float64)
        up = normals[semseg == 0][0]  # the floor's normal
        points = camera_points(scene, ex)
        first_object = 7 + len(scene.pictures)
        for index, obj in enumerate(scene.objects):
            on = inst == first_object + index
            if not on.any():
                continue
            kind_class = {"box": 4, "sphere": 5, "cylinder": 6}[obj.kind]
            assert np.all(semseg[on] == kind_class)
            allowed = {"box": {1, 2}, "sphere": {3, 4}, "cylinder": {5, 6}}[obj.kind]
            assert set(np.unique(parts[on])) <= allowed
            top = on & np.isin(parts, (1, 5))
            side = on & np.isin(parts, (2, 6))
            np.testing.assert_allclose(normals[top] @ up, 1.0, atol=1e-6)
            assert np.all(np.abs(normals[side] @ up) < 1e-5)
            # Tops are the plane at the object's height: n . X = -(camera height - object height).
            offset = scene.camera.position[1] - obj.size[1]
            np.testing.assert_allclose(np.einsum("nc,nc->n", normals[top], points[top]), -offset, atol=1e-4)
            if obj.kind == "sphere":
                r = obj.size[0] / 2
                centres = points[on] - r * normals[on]
                np.testing.assert_allclose(centres, np.broadcast_to(centres.mean(0), centres.shape), atol=1e-3)
                world = np.array([obj.center[0], r, obj.center[1]]) - np.asarray(scene.camera.position)
                assert np.linalg.norm(centres.mean(0)) == pytest.approx(np.linalg.norm(world), abs=1e-3)
                assert np.all((normals[on & (parts == 3)] @ up) >= -1e-6)
                assert np.all((normals[on & (parts == 4)] @ up) <= 1e-6)


@numpy_only
def test_random_scenes_saliency_and_parts_cover_exactly_the_objects(rendered):
    for _, ex in rendered:
        objects = np.isin(ex["semseg"], (4, 5, 6))
        np.testing.assert_array_equal(ex["saliency"], objects.astype(np.uint8))
        np.testing.assert_array_equal(ex["human_parts"] > 0, objects)
        assert not np.any(ex["semseg"] == 255) and not np.any(ex["human_parts"] == 255)


@numpy_only
def test_random_scenes_edges_are_thin_instance_boundaries(rendered):
    for _, ex in rendered:
        edge = ex["edge"][..., 0].astype(bool)
        inst = ex["instance"][..., 0]
        semseg = ex["semseg"][..., 0]
        depth = ex["depth"][..., 0]
        boundary = np.zeros_like(edge)
        for (first, second), (a, b) in zip(pair_masks(edge.shape), neighbour_pairs(inst)):
            differ = a != b
            boundary[first] |= differ
            boundary[second] |= differ
            # Every pair of different instances has an edge on one of its pixels.
            assert np.all((edge[first] | edge[second])[differ])
        assert np.all(boundary[edge]), "edge pixels lie on instance boundaries"
        for (first, second), (a, b), (da, db) in zip(
            pair_masks(edge.shape), neighbour_pairs(semseg), neighbour_pairs(depth)
        ):
            # Semantic changes and depth discontinuities are all marked, the
            # latter on the nearer side. (A slanted surface sampled every pixel
            # steps by up to ~40% at 48x64, so a discontinuity is a 50% step.)
            assert np.all((edge[first] | edge[second])[a != b])
            jump = np.maximum(da, db) > 1.5 * np.minimum(da, db)
            assert jump.any()
            nearer_first = da < db
            assert np.all(np.where(nearer_first, edge[first], edge[second])[jump])
        assert edge.mean() < 0.25


# --------------------------------------------------------------------------- errors


@numpy_only
@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: S.render_scene(-1, 16, 16), "Received: seed=-1"),
        (lambda: S.render_scene(1.5, 16, 16), "Received: seed=1.5"),
        (lambda: S.render_scene(0, 4, 16), "Received: height=4"),
        (lambda: S.render_scene(0, 16, True), "Received: width=True"),
        (lambda: S.make_scenes(0, 16, 16), "Received: num=0"),
        (lambda: S.synthetic_tasks(["depth", "albedo"]), "Received: tasks=['depth', 'albedo']"),
        (lambda: S.render(level_scene(position=(3.0, 1.0, 0.0)), 16, 16), "Received: position=(3.0, 1.0, 0.0)"),
        (lambda: S.render(level_scene(objects=[S.Primitive("cone", (0.0, 0.0), (1.0, 1.0, 1.0), 0.0, PLAIN)]),
                          16, 16), "Received: kind='cone'"),
        (lambda: S.render(level_scene(objects=[S.Primitive("sphere", (0.0, 0.0), (1.0, 0.5, 1.0), 0.0, PLAIN)]),
                          16, 16), "Received: size=(1.0, 0.5, 1.0)"),
        (lambda: S.render(level_scene(objects=[S.Primitive("box", (0.5, 2.0), (1.0, 2.0, 1.0), 0.0, PLAIN)]),
                          16, 16), "inside box"),
        (lambda: S.render(dataclasses.replace(level_scene(), floor=S.Material((0.5, 0.5, 0.5), pattern="dots")),
                          16, 16), "Received: pattern='dots'"),
    ],
)
def test_bad_arguments_raise_keras_style_errors(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


# --------------------------------------------------------------------------- tfds builder


@numpy_only
def test_tfds_builder_prepares_tiny_config_offline(tmp_path):
    import tensorflow_datasets as tfds

    from keras_mtcl.data.synthetic_builder import SyntheticScenes

    builder = SyntheticScenes(config="tiny", data_dir=str(tmp_path))
    builder.download_and_prepare()
    assert builder.num_classes == {"semseg": 7, "human_parts": 7}
    assert builder.tasks == S.SYNTHETIC_TASKS
    assert [t.name for t in builder.task_specs()] == list(S.SYNTHETIC_TASKS)
    assert builder.info.splits["train"].num_examples == 64
    assert builder.info.splits["val"].num_examples == 16
    assert not [p for p in tmp_path.rglob("*") if "downloads" in p.parts and p.is_file()]
    for split, offset, count in (("train", 0, 64), ("val", 1_000_000_000, 16)):
        examples = list(tfds.as_numpy(builder.as_dataset(split=split)))
        seeds = sorted(int(e["id"].decode().split("_")[1]) for e in examples)
        assert seeds == list(range(offset, offset + count))
        for example in examples:
            seed = int(example["id"].decode().split("_")[1])
            expected = S.render_scene(seed, 64, 80)
            for key in LABEL_KEYS + ("image",):
                assert example[key].dtype == expected[key].dtype, key
                np.testing.assert_array_equal(example[key], expected[key], err_msg=key)


@numpy_only
def test_tfds_config_rejects_bad_sizes():
    from keras_mtcl.data.synthetic_builder import SyntheticScenesConfig

    with pytest.raises(ValueError, match=r"Received: height=2"):
        SyntheticScenesConfig(name="bad", height=2, width=16)
    with pytest.raises(ValueError, match=r"Received: num_val=0"):
        SyntheticScenesConfig(name="bad", num_val=0)
