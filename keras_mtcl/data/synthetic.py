"""Procedural indoor scenes: the embedded default dataset (no download).

Each scene is a box-shaped room (floor, ceiling, four walls, a few pictures
on the walls) with boxes, spheres and cylinders standing on the floor, seen
by a pinhole camera and lit by one point light (Lambertian shading, ambient
term, cast shadows) with procedural textures and sensor noise. Every pixel
is ray cast exactly against the analytic surfaces (vectorised numpy), so the
labels of all six tasks are consistent with each other and with the image.

Only numpy is needed: this module never imports TensorFlow. The
tensorflow-datasets builder `SyntheticScenes`, the dataset `"synthetic"` of
the registry, lives in `keras_mtcl.data.synthetic_builder`, which imports
this module (never the other way round).

Labels (the package conventions of `keras_mtcl.tasks`; nothing is ignored,
every pixel of every task is valid):

- `semseg` (H, W, 1) uint8, one class per surface type, `CLASS_NAMES`:
  0 floor, 1 ceiling, 2 wall, 3 picture, 4 box, 5 sphere, 6 cylinder.
- `depth` (H, W, 1) float32: z-depth in metres (distance along the optical
  axis, as in NYUD-v2), > 0 everywhere since the room is closed.
- `normals` (H, W, 3) float32: unit surface normals in the camera frame,
  x right, y down, z forward (the OpenCV frame; the frame the image
  axes follow, so a horizontal flip negates x). Normals face the camera
  (n . ray < 0): a level camera sees the floor as (0, -1, 0).
- `edge` (H, W, 1) uint8 in {0, 1}: instance boundaries, 1 px wide. Each
  room plane (floor, ceiling, each wall), each picture and each object is
  one instance; for every pair of 4-neighbours whose instances differ, the
  nearer pixel of the two (smaller depth; on a tie, the larger instance id)
  is an edge. Every surface is convex as seen from the camera (the room from
  inside, the objects from outside), so every depth discontinuity is an
  instance boundary and is in the map. Creases inside one object (between
  two faces of a box, a cylinder's top and side) are not edges; wall
  corners are, each wall being its own instance.
- `saliency` (H, W, 1) uint8 in {0, 1}: 1 on the objects (box, sphere,
  cylinder), 0 on the room and the pictures.
- `human_parts` (H, W, 1) uint8, object parts playing the role of human
  parts, `PART_NAMES`: 0 background (room, pictures), 1 box top, 2 box side,
  3 sphere upper half, 4 sphere lower half, 5 cylinder top, 6 cylinder side.
  7 classes, like PASCAL-Context's human parts.

World frame (used only to describe scenes): metres, Y up, the floor is
Y = 0, the room spans X in [-W/2, W/2], Y in [0, H], Z in [-L/2, L/2]. A
camera with yaw = pitch = roll = 0 looks along -Z with its x axis along +X.

Scenes depend only on the seed, not on the resolution: `render_scene(s, 60,
80)` and `render_scene(s, 480, 640)` show the same room from the same camera
(the horizontal field of view is fixed; only the sensor noise differs).
Same seed and size give identical bytes.

Example:
>>> example = render_scene(seed=3, height=48, width=64)
>>> example["image"].shape, example["depth"].dtype
((48, 64, 3), dtype('float32'))
>>> batch = make_scenes(4, 48, 64, seed=0)
>>> batch["semseg"].shape
(4, 48, 64, 1)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

CLASS_NAMES = ("floor", "ceiling", "wall", "picture", "box", "sphere", "cylinder")
NUM_CLASSES = len(CLASS_NAMES)
OBJECT_CLASSES = (4, 5, 6)  # semseg ids of the salient objects

PART_NAMES = (
    "background",
    "box_top",
    "box_side",
    "sphere_upper",
    "sphere_lower",
    "cylinder_top",
    "cylinder_side",
)
NUM_PARTS = len(PART_NAMES)

# Task names of the dataset, in the order of `synthetic_tasks()`.
SYNTHETIC_TASKS = ("semseg", "depth", "normals", "edge", "saliency", "human_parts")

# Per-split offsets of the scene seeds: example i of a split is rendered from
# seed offset + i, so splits never share a scene (up to 10**9 examples).
SPLIT_SEED_OFFSETS = {"train": 0, "val": 1_000_000_000}

PRIMITIVE_KINDS = ("box", "sphere", "cylinder")
PATTERNS = ("plain", "checker", "stripes", "planks")
MIN_SIZE = 8  # smallest height / width rendered

_KIND_CLASS = {"box": 4, "sphere": 5, "cylinder": 6}
_FLOOR, _CEILING, _WALL, _PICTURE = 0, 1, 2, 3
_EPS = 1e-6
# Per-pixel arrays are float32: exact enough for metres at room scale and
# twice as fast as float64. Small matrices are applied with einsum, not `@`,
# which would start BLAS threads for (P, 3) x (3, 3) products.
_F = np.float32


@dataclasses.dataclass(frozen=True)
class Material:
    """A procedural texture, evaluated on 3D points (solid texture).

    Args:
        color: linear RGB albedo in [0, 1].
        color2: second albedo of `"checker"` and `"stripes"`.
        pattern: one of `PATTERNS`: `"plain"`, `"checker"` (3D cells of
            `scale` metres), `"stripes"` (period `scale` along `axis`) or
            `"planks"` (floor boards `scale` wide that run along `axis`, 0
            or 2, each with its own shade, dark gaps and grain).
        scale: pattern period in metres.
        axis: axis (0, 1, 2 of the surface's texture frame) of the pattern.
        grain: amplitude of a smooth multiplicative shading variation.
        phase: phase of that variation and of the plank shades.
    """

    color: tuple[float, float, float]
    color2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pattern: str = "plain"
    scale: float = 0.5
    axis: int = 0
    grain: float = 0.05
    phase: float = 0.0


@dataclasses.dataclass(frozen=True)
class Primitive:
    """An object standing on the floor.

    Args:
        kind: `"box"`, `"sphere"` or `"cylinder"`.
        center: (x, z) of the footprint centre on the floor, metres.
        size: full extents (sx, sy, sz) of the object's bounding box in its
            own frame: a box's sides; a sphere (d, d, d); an upright
            cylinder (d, h, d).
        yaw: rotation about the vertical axis, radians.
        material: its texture, in the object's own frame (centred).
    """

    kind: str
    center: tuple[float, float]
    size: tuple[float, float, float]
    yaw: float
    material: Material


@dataclasses.dataclass(frozen=True)
class Picture:
    """A flat rectangle on a wall (semantic class "picture").

    Args:
        wall: 0 (X = -W/2), 1 (X = W/2), 2 (Z = -L/2) or 3 (Z = L/2).
        center: (position along the wall (Z for walls 0/1, X for 2/3),
            height above the floor), metres.
        size: (width, height), metres.
        material: its texture.
    """

    wall: int
    center: tuple[float, float]
    size: tuple[float, float]
    material: Material


@dataclasses.dataclass(frozen=True)
class Camera:
    """A pinhole camera.

    Args:
        position: (x, y, z) in the world frame, metres.
        yaw: turn to the right about the vertical (0 looks along -Z), radians.
        pitch: look up (> 0) or down (< 0), radians.
        roll: rotation about the optical axis (clockwise in the image), radians.
        hfov: horizontal field of view, radians; fx = fy = (W / 2) / tan(hfov / 2).
        principal: principal point as fractions (of width, of height).
    """

    position: tuple[float, float, float]
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    hfov: float = math.radians(60.0)
    principal: tuple[float, float] = (0.5, 0.5)

    def rotation(self) -> np.ndarray:
        """(3, 3) camera-to-world rotation; columns are the camera x, y, z axes."""
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        forward = np.array([math.sin(self.yaw) * cp, sp, -math.cos(self.yaw) * cp])
        right = np.cross(np.array([0.0, -1.0, 0.0]), forward)
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        right, down = cr * right + sr * down, -sr * right + cr * down
        return np.stack([right, down, forward], axis=1)

    def intrinsics(self, height: int, width: int) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in pixels for an image of `height` x `width`."""
        focal = 0.5 * width / math.tan(0.5 * self.hfov)
        return focal, focal, self.principal[0] * width, self.principal[1] * height


@dataclasses.dataclass(frozen=True)
class Scene:
    """Everything `render` needs; `sample_scene(seed)` draws one.

    Args:
        room: (W, H, L): extents along X, Y (ceiling height) and Z, metres.
        camera: the `Camera`, inside the room.
        objects: the `Primitive`s, inside the room, not overlapping.
        pictures: the `Picture`s on the walls.
        floor, ceiling, wall: materials of the room (texture frame = world).
        light_position: (x, y, z) of the point light, inside the room.
        light_power: diffuse strength of the light.
        light_color: linear RGB tint of the light.
        ambient: ambient term (fraction of the albedo lit everywhere).
        noise_std: standard deviation of the additive Gaussian sensor noise,
            in 0..255 units.
        noise_seed: seed of the sensor noise.
    """

    room: tuple[float, float, float]
    camera: Camera
    objects: tuple[Primitive, ...] = ()
    pictures: tuple[Picture, ...] = ()
    floor: Material = Material((0.45, 0.33, 0.22))
    ceiling: Material = Material((0.85, 0.85, 0.82))
    wall: Material = Material((0.7, 0.68, 0.6))
    light_position: tuple[float, float, float] = (0.0, 2.5, 0.0)
    light_power: float = 1.0
    light_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ambient: float = 0.35
    noise_std: float = 0.0
    noise_seed: int = 0


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


# ---------------------------------------------------------------------------
# Scene sampling


def _color(rng: np.random.Generator, hue_range=(0.0, 1.0), sat=(0.1, 0.3), val=(0.5, 0.8)) -> tuple:
    """A linear RGB albedo from a random hue / saturation / value."""
    h = rng.uniform(*hue_range) % 1.0
    s = rng.uniform(*sat)
    v = rng.uniform(*val)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    rgb = v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return tuple(float(c) for c in rgb**2.2)  # sRGB-ish to linear


def _material(rng: np.random.Generator, patterns: Sequence[str], **color_ranges) -> Material:
    color = _color(rng, **color_ranges)
    contrast = rng.uniform(0.45, 0.8)
    return Material(
        color=color,
        color2=tuple(float(c * contrast) for c in _color(rng, **color_ranges)),
        pattern=str(patterns[rng.integers(len(patterns))]),
        scale=float(rng.uniform(0.1, 0.6)),
        axis=int(rng.integers(3)),
        grain=float(rng.uniform(0.02, 0.1)),
        phase=float(rng.uniform(0.0, 100.0)),
    )


def sample_scene(seed: int) -> Scene:
    """Draws a random scene; the same seed gives the same scene.

    Room 3.5-7 m wide, 4-8 m long, 2.5-3.2 m high; camera 1.0-1.7 m above
    the floor near one end wall, looking into the room (pitch -25..+3
    degrees, roll +-4 degrees, horizontal field of view 55-70 degrees,
    principal point within 3% of the centre); 2-7 objects drawn and placed
    in the camera's view 1-5.5 m away, apart from each other and the walls
    (one that finds no free spot in 20 tries is left out); 0-3 pictures;
    one point light 0.3-0.8 m below the ceiling; sensor noise 1-5 (of 255).

    Args:
        seed: non-negative integer.

    Returns:
        A `Scene`.
    """
    seed = _check_int("seed", seed, 0)
    rng = np.random.default_rng(seed)
    width, height, length = rng.uniform(3.5, 7.0), rng.uniform(2.5, 3.2), rng.uniform(4.0, 8.0)
    cam_x = rng.uniform(-0.5, 0.5) * (width - 1.2)
    cam_z = 0.5 * length - rng.uniform(0.3, 1.0)
    yaw = -0.5 * math.atan2(cam_x, length) + math.radians(rng.uniform(-20.0, 20.0))
    camera = Camera(
        position=(float(cam_x), float(rng.uniform(1.0, 1.7)), float(cam_z)),
        yaw=float(yaw),
        pitch=math.radians(rng.uniform(-25.0, 3.0)),
        roll=math.radians(rng.uniform(-4.0, 4.0)),
        hfov=math.radians(rng.uniform(55.0, 70.0)),
        principal=(float(0.5 + rng.uniform(-0.03, 0.03)), float(0.5 + rng.uniform(-0.03, 0.03))),
    )

    objects: list[Primitive] = []
    footprints: list[tuple[float, float, float]] = []  # (x, z, radius)
    for _ in range(int(rng.integers(2, 8))):
        kind = PRIMITIVE_KINDS[rng.integers(3)]
        if kind == "box":
            size = (rng.uniform(0.3, 1.3), rng.uniform(0.3, 1.2), rng.uniform(0.3, 1.3))
        elif kind == "sphere":
            d = rng.uniform(0.3, 1.0)
            size = (d, d, d)
        else:
            d = rng.uniform(0.2, 0.8)
            size = (d, rng.uniform(0.3, 1.5), d)
        radius = 0.5 * math.hypot(size[0], size[2])
        material = _material(rng, PATTERNS[:3], sat=(0.4, 0.9), val=(0.45, 0.95))
        obj_yaw = rng.uniform(0.0, math.pi)
        for _attempt in range(20):  # rejection sampling of a free spot in view
            angle = yaw + rng.uniform(-0.45, 0.45) * camera.hfov
            dist = rng.uniform(1.0, 5.5)
            x = cam_x + dist * math.sin(angle)
            z = cam_z - dist * math.cos(angle)
            inside = abs(x) + radius + 0.02 < 0.5 * width and abs(z) + radius + 0.02 < 0.5 * length
            clear = math.hypot(x - cam_x, z - cam_z) > radius + 0.6
            free = all(math.hypot(x - fx, z - fz) > radius + fr + 0.05 for fx, fz, fr in footprints)
            if inside and clear and free:
                footprints.append((x, z, radius))
                objects.append(
                    Primitive(kind, (float(x), float(z)), tuple(float(s) for s in size), float(obj_yaw), material)
                )
                break

    pictures = []
    for _ in range(int(rng.integers(0, 4))):
        wall = int(rng.integers(4))
        span = length if wall < 2 else width
        w, h = rng.uniform(0.4, 1.5), rng.uniform(0.3, 1.0)
        along = rng.uniform(-0.5, 0.5) * (span - w - 0.4)
        center_y = rng.uniform(1.2, min(2.0, height - 0.5 * h - 0.1))
        material = _material(rng, ("checker", "stripes", "plain"), sat=(0.3, 0.9), val=(0.3, 0.95))
        pictures.append(Picture(wall, (float(along), float(center_y)), (float(w), float(h)), material))

    floor_hue = rng.uniform(0.02, 0.12)
    floor = _material(rng, ("planks", "checker", "plain"), hue_range=(floor_hue, floor_hue + 0.04),
                      sat=(0.2, 0.6), val=(0.35, 0.75))
    floor = dataclasses.replace(floor, axis=int(rng.choice([0, 2])), scale=float(rng.uniform(0.15, 0.6)))
    wall_mat = _material(rng, ("plain", "plain", "stripes"), sat=(0.05, 0.35), val=(0.6, 0.9))
    # Wallpaper stripes, vertical (axis 0: along the wall) or horizontal (axis 1).
    wall_mat = dataclasses.replace(
        wall_mat, axis=int(rng.choice([0, 1])), color2=tuple(c * 0.85 for c in wall_mat.color)
    )
    ceiling = Material(_color(rng, sat=(0.0, 0.08), val=(0.8, 0.95)), grain=0.02)
    light = (
        float(rng.uniform(-0.35, 0.35) * width),
        float(height - rng.uniform(0.3, 0.8)),
        float(rng.uniform(-0.35, 0.35) * length),
    )
    return Scene(
        room=(float(width), float(height), float(length)),
        camera=camera,
        objects=tuple(objects),
        pictures=tuple(pictures),
        floor=floor,
        ceiling=ceiling,
        wall=wall_mat,
        light_position=light,
        light_power=float(rng.uniform(2.0, 4.0)),
        light_color=tuple(float(c) for c in 1.0 + rng.uniform(-0.08, 0.08, size=3)),
        ambient=float(rng.uniform(0.25, 0.45)),
        noise_std=float(rng.uniform(1.0, 5.0)),
        noise_seed=int(rng.integers(2**31)),
    )


# ---------------------------------------------------------------------------
# Ray casting. Rays are origin + t * direction with direction's camera-frame
# z component = 1, so the hit parameter t is the z-depth.


def _rotation_y(angle: float) -> np.ndarray:
    """Object-to-world rotation about the vertical axis (row vectors: world = local @ R.T)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _object_frame(obj: Primitive) -> tuple[np.ndarray, np.ndarray]:
    """(centre (3,), rotation (3, 3)) of the object's bounding box."""
    center = np.array([obj.center[0], 0.5 * obj.size[1], obj.center[1]])
    return center, _rotation_y(obj.yaw)


def _transform(vectors: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(..., 3) row vectors times a (3, 3) matrix, in float32."""
    return np.einsum("...k,kj->...j", vectors, matrix.astype(_F))


def _intersect(obj: Primitive, origin: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First hit of rays with an object, from outside it.

    Args:
        origin: (..., 3) or (3,) ray origins, world frame.
        direction: (..., 3) ray directions (not normalised).

    Returns:
        (t, face): (...,) hit parameters (inf where missed) and int8 face
        codes (box: 0..5 = axis * 2 + (normal positive); sphere: 0;
        cylinder: 0 side, 1 top).
    """
    center, rot = _object_frame(obj)
    o = _transform(origin - center.astype(_F), rot)  # world -> object frame (rot is orthonormal)
    d = _transform(direction, rot)
    half = (0.5 * np.asarray(obj.size)).astype(_F)
    if obj.kind == "box":
        d_safe = np.where(np.abs(d) < 1e-12, 1e-12, d)
        inv = 1.0 / d_safe
        t1 = (-half - o) * inv
        t2 = (half - o) * inv
        t_min = np.minimum(t1, t2)
        t_near = t_min.max(axis=-1)
        t_far = np.maximum(t1, t2).min(axis=-1)
        hit = (t_near <= t_far) & (t_near > _EPS)
        axis = t_min.argmax(axis=-1)
        positive = np.take_along_axis(d, axis[..., None], axis=-1)[..., 0] < 0
        face = (axis * 2 + positive).astype(np.int8)
        return np.where(hit, t_near, np.inf), face
    if obj.kind == "sphere":
        r = half[0]
        a = np.einsum("...i,...i->...", d, d)
        b = np.einsum("...i,...i->...", d, o)
        c = np.einsum("...i,...i->...", o, o) - r * r
        disc = b * b - a * c
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        hit = (disc >= 0) & (t > _EPS)
        return np.where(hit, t, np.inf), np.zeros(t.shape, np.int8)
    # Upright cylinder: the side (quadratic in x, z) or the top cap.
    r, h = half[0], half[1]
    ox, oy, oz = o[..., 0], o[..., 1], o[..., 2]
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    a = np.maximum(dx * dx + dz * dz, 1e-24)
    b = dx * ox + dz * oz
    c = ox * ox + oz * oz - r * r
    disc = b * b - a * c
    t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    y_side = oy + t_side * dy
    side = (disc >= 0) & (t_side > _EPS) & (np.abs(y_side) <= h)
    dy_safe = np.where(np.abs(dy) < 1e-12, 1e-12, dy)
    t_top = (h - oy) / dy_safe
    x_top, z_top = ox + t_top * dx, oz + t_top * dz
    top = (oy > h) & (t_top > _EPS) & (x_top * x_top + z_top * z_top <= r * r)
    t = np.where(side, t_side, np.inf)
    use_top = top & (t_top < t)
    return np.where(use_top, t_top, t), use_top.astype(np.int8)


def _object_surface(obj: Primitive, points: np.ndarray, face: np.ndarray):
    """World normals (M, 3), part ids (M,) and object-frame points (M, 3) of hits."""
    center, rot = _object_frame(obj)
    local = _transform(points - center.astype(_F), rot)
    half = (0.5 * np.asarray(obj.size)).astype(_F)
    if obj.kind == "box":
        axis = face.astype(np.int64) // 2
        sign = np.where(face % 2 == 1, _F(1), _F(-1))
        normal = np.zeros_like(local)
        np.put_along_axis(normal, axis[:, None], sign[:, None], axis=1)
        part = np.where((axis == 1) & (sign > 0), 1, 2)
    elif obj.kind == "sphere":
        normal = local / half[0]
        part = np.where(local[:, 1] >= 0, 3, 4)
    else:
        normal = np.stack([local[:, 0], np.zeros_like(local[:, 0]), local[:, 2]], axis=1) / half[0]
        normal[face == 1] = (0.0, 1.0, 0.0)
        part = np.where(face == 1, 5, 6)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return _transform(normal, rot.T), part, local


def _screen_box(obj: Primitive, camera: Camera, rot_cw: np.ndarray, intr, height: int, width: int):
    """(v0, v1, u0, u1): pixel rectangle that holds the object's projection."""
    center, rot = _object_frame(obj)
    half = 0.5 * np.asarray(obj.size)
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    corners = center + (signs * half) @ rot.T
    cam = (corners - np.asarray(camera.position)) @ rot_cw  # world -> camera frame
    if np.any(cam[:, 2] < 0.05):  # partly behind the camera: cast every pixel
        return 0, height, 0, width
    fx, fy, cx, cy = intr
    u = fx * cam[:, 0] / cam[:, 2] + cx
    v = fy * cam[:, 1] / cam[:, 2] + cy
    u0, u1 = max(int(math.floor(u.min())) - 1, 0), min(int(math.ceil(u.max())) + 1, width)
    v0, v1 = max(int(math.floor(v.min())) - 1, 0), min(int(math.ceil(v.max())) + 1, height)
    return v0, max(v1, v0), u0, max(u1, u0)


def _texture(material: Material, points: np.ndarray) -> np.ndarray:
    """(M, 3) albedo of a material at (M, 3) texture-frame points."""
    color = np.asarray(material.color, _F)
    color2 = np.asarray(material.color2, _F)
    s = material.scale
    a = material.axis
    if material.pattern == "checker":
        cells = np.floor(points / s).astype(np.int64).sum(axis=1)
        albedo = np.where((cells % 2 == 0)[:, None], color, color2)
    elif material.pattern == "stripes":
        albedo = np.where((np.sin(2 * math.pi * points[:, a] / s) > 0)[:, None], color, color2)
    elif material.pattern == "planks":
        across = points[:, 2 - a]  # boards run along `axis`, side by side across the other floor axis
        board = np.floor(across / s)
        shade = 0.75 + 0.5 * np.modf(np.abs(np.sin(board * 12.9898 + material.phase)) * 43758.5453)[0]
        gap = np.modf(across / s - board)[0] < 0.04
        fibre = 1.0 + 0.06 * np.sin(37.0 * points[:, a] + 5.0 * board + 3.0 * np.sin(2.3 * points[:, a]))
        albedo = color * (shade * fibre * np.where(gap, 0.55, 1.0))[:, None]
    else:
        albedo = np.broadcast_to(color, points.shape)
    p = material.phase
    smooth = np.sin(1.3 * points[:, 0] + 0.7 * points[:, 1] + p) * np.sin(
        0.9 * points[:, 2] - 1.1 * points[:, 1] + 1.7 * p
    )
    return albedo * (1.0 + material.grain * smooth)[:, None]


def _on_plane(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Texture coordinates on the axis-aligned room planes.

    Args:
        points: (M, 3) world points on the planes.
        normals: (M, 3) axis-aligned normals of the planes.

    Returns:
        (M, 3): (x, 0, z) on the floor and ceiling, (position along the
        wall, height, 0) on the walls, so that texture axis 0 runs
        horizontally along every wall. The coordinate across the plane is
        dropped: hit points carry rounding noise across their plane, and
        a solid texture would flip cells of `floor(coordinate / scale)` there.
    """
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    across_x, across_y = normals[:, 0] != 0, normals[:, 1] != 0
    zero = np.zeros_like(x)
    return np.stack(
        [np.where(across_x, z, x), np.where(across_y, zero, y), np.where(across_y, z, zero)], axis=1
    )


def _edges(instance: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """(H, W) uint8: the nearer pixel of each 4-neighbour pair of different instances."""
    edge = np.zeros(instance.shape, bool)
    for axis in (0, 1):
        first = [slice(None), slice(None)]
        second = [slice(None), slice(None)]
        first[axis], second[axis] = slice(None, -1), slice(1, None)
        first, second = tuple(first), tuple(second)
        differ = instance[first] != instance[second]
        d1, d2 = depth[first], depth[second]
        first_nearer = (d1 < d2) | ((d1 == d2) & (instance[first] > instance[second]))
        edge[first] |= differ & first_nearer
        edge[second] |= differ & ~first_nearer
    return edge.astype(np.uint8)


def _validate_scene(scene: Scene) -> None:
    """Raises ValueError where a scene breaks the assumptions of the renderer."""
    if not isinstance(scene, Scene):
        raise ValueError(f"`scene` must be a `Scene`. Received: scene={scene!r}")
    room = np.asarray(scene.room, float)
    if room.shape != (3,) or np.any(room <= 0):
        raise ValueError(f"`room` must be 3 positive extents (W, H, L) in metres. Received: room={scene.room!r}")
    cam = np.asarray(scene.camera.position, float)
    half = np.array([0.5 * room[0], 0.5 * room[1], 0.5 * room[2]])
    if np.any(np.abs(cam - [0.0, half[1], 0.0]) >= half):
        raise ValueError(
            f"The camera must be strictly inside the room {scene.room}. Received: position={scene.camera.position!r}"
        )
    if not 0 < scene.camera.hfov < math.pi:
        raise ValueError(f"`hfov` must be in (0, pi) radians. Received: hfov={scene.camera.hfov!r}")
    if 7 + len(scene.pictures) + len(scene.objects) > 256:
        raise ValueError(
            "A scene holds at most 249 pictures and objects together (uint8 instance ids). "
            f"Received: {len(scene.pictures)} pictures and {len(scene.objects)} objects"
        )
    materials = [scene.floor, scene.ceiling, scene.wall] + [p.material for p in scene.pictures]
    for obj in scene.objects:
        materials.append(obj.material)
        if obj.kind not in PRIMITIVE_KINDS:
            raise ValueError(f"`kind` must be one of {PRIMITIVE_KINDS}. Received: kind={obj.kind!r}")
        size = np.asarray(obj.size, float)
        if size.shape != (3,) or np.any(size <= 0):
            raise ValueError(f"`size` must be 3 positive extents in metres. Received: size={obj.size!r}")
        if obj.kind == "sphere" and not (size[0] == size[1] == size[2]):
            raise ValueError(f"A sphere's `size` is (d, d, d). Received: size={obj.size!r}")
        if obj.kind == "cylinder" and size[0] != size[2]:
            raise ValueError(f"A cylinder's `size` is (d, h, d). Received: size={obj.size!r}")
        local = (cam - [obj.center[0], 0.5 * size[1], obj.center[1]]) @ _rotation_y(obj.yaw)
        if np.all(np.abs(local) <= 0.5 * size):
            raise ValueError(
                f"The camera must be outside every object. Received: position={scene.camera.position!r} "
                f"inside {obj.kind} at center={obj.center!r}"
            )
    for pic in scene.pictures:
        if pic.wall not in (0, 1, 2, 3):
            raise ValueError(f"`wall` must be 0, 1, 2 or 3. Received: wall={pic.wall!r}")
    for material in materials:
        if material.pattern not in PATTERNS:
            raise ValueError(f"`pattern` must be one of {PATTERNS}. Received: pattern={material.pattern!r}")
        if material.scale <= 0:
            raise ValueError(f"`scale` must be > 0 metres. Received: scale={material.scale!r}")


def render(scene: Scene, height: int, width: int, instances: bool = False) -> dict[str, np.ndarray]:
    """Renders a scene: the image and the labels of every task.

    Pixel (row v, column u) samples the ray through (u + 0.5, v + 0.5). Its
    colour, per RGB channel, is

        x = albedo * (ambient + light_power * max(0, n . l) * shadow
                      / (1 + (dist / 3 m)^2)) * light_color
        image = round(255 * (1 - exp(-1.4 x)) ** (1 / 2.2) + noise_std * N(0, 1))

    clipped to 0..255, with `l` the unit vector to the light, `dist` its
    distance, `shadow` 0 where an object blocks the light else 1, and the
    albedo of the surface's `Material` (a soft exposure curve, then gamma).

    Args:
        scene: the `Scene`.
        height: image height in pixels, >= `MIN_SIZE`.
        width: image width in pixels, >= `MIN_SIZE`.
        instances: also return `"instance"` (H, W, 1) uint8: 1 floor,
            2 ceiling, 3-6 walls 0-3, then one id per picture, then one per
            object in `scene.objects` order.

    Returns:
        A dict of numpy arrays: `"image"` (H, W, 3) uint8, `"semseg"`
        (H, W, 1) uint8, `"depth"` (H, W, 1) float32, `"normals"`
        (H, W, 3) float32, `"edge"`, `"saliency"`, `"human_parts"`
        (H, W, 1) uint8 (see the module docstring).

    Raises:
        ValueError: for a bad size or a scene that breaks the rules of
            `Scene` (camera outside the room or inside an object, unknown
            kinds or patterns, a sphere that is not round...).
    """
    height = _check_int("height", height, MIN_SIZE)
    width = _check_int("width", width, MIN_SIZE)
    _validate_scene(scene)
    camera = scene.camera
    origin = np.asarray(camera.position, _F)
    rot_cw = camera.rotation()
    intr = camera.intrinsics(height, width)
    fx, fy, cx, cy = intr
    u = (np.arange(width) + 0.5 - cx) / fx
    v = (np.arange(height) + 0.5 - cy) / fy
    rays_cam = np.empty((height, width, 3), _F)
    rays_cam[..., 0] = u[None, :]
    rays_cam[..., 1] = v[:, None]
    rays_cam[..., 2] = 1.0
    rays = _transform(rays_cam, rot_cw.T)  # (H, W, 3) world directions; t = z-depth

    # Room: the exit point of the box [-W/2, W/2] x [0, H] x [-L/2, L/2],
    # the nearest of the three planes the ray heads to (one per axis).
    half_w, room_h, half_l = 0.5 * scene.room[0], scene.room[1], 0.5 * scene.room[2]
    bounds = ((-half_w, half_w), (0.0, room_h), (-half_l, half_l))
    t_axes = []
    for k in range(3):
        d = rays[..., k]
        d = np.where(np.abs(d) < 1e-12, 1e-12, d)
        t_axes.append((np.where(d > 0, _F(bounds[k][1]), _F(bounds[k][0])) - origin[k]) / d)
    tx, ty, tz = t_axes
    on_y = (ty <= tx) & (ty <= tz)
    on_x = ~on_y & (tx <= tz)
    depth = np.where(on_y, ty, np.where(on_x, tx, tz))
    # Instance ids: floor 1, ceiling 2, walls 3 (X-), 4 (X+), 5 (Z-), 6 (Z+).
    instance = np.where(
        on_y, np.where(rays[..., 1] > 0, 2, 1), np.where(on_x, 3 + (rays[..., 0] > 0), 5 + (rays[..., 2] > 0))
    )
    points = origin + depth[..., None] * rays

    # Pictures: rectangles on the wall planes.
    first_picture = 7
    for index, pic in enumerate(scene.pictures):
        along = points[..., 2] if pic.wall < 2 else points[..., 0]
        inside = (
            (instance == 3 + pic.wall)
            & (np.abs(along - pic.center[0]) <= 0.5 * pic.size[0])
            & (np.abs(points[..., 1] - pic.center[1]) <= 0.5 * pic.size[1])
        )
        instance[inside] = first_picture + index

    # Objects: z-buffer over each object's screen rectangle.
    first_object = first_picture + len(scene.pictures)
    faces = np.zeros((height, width), np.int8)
    for index, obj in enumerate(scene.objects):
        v0, v1, u0, u1 = _screen_box(obj, camera, rot_cw, intr, height, width)
        if v0 == v1 or u0 == u1:
            continue
        t, face = _intersect(obj, origin, rays[v0:v1, u0:u1])
        win = t < depth[v0:v1, u0:u1]
        depth[v0:v1, u0:u1][win] = t[win]
        instance[v0:v1, u0:u1][win] = first_object + index
        faces[v0:v1, u0:u1][win] = face[win]
    points = origin + depth[..., None] * rays

    flat_instance = instance.reshape(-1)
    flat_points = points.reshape(-1, 3)
    flat_faces = faces.reshape(-1)
    num = height * width
    # Per-instance normals and classes of the room and pictures; objects overwrite theirs.
    room_normals = ((0, 1, 0), (0, -1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, 1), (0, 0, -1))
    normal_table = np.zeros((first_object + len(scene.objects), 3), _F)
    normal_table[1:7] = room_normals
    class_table = np.zeros(len(normal_table), np.uint8)
    class_table[1:7] = (_FLOOR, _CEILING, _WALL, _WALL, _WALL, _WALL)
    for index, pic in enumerate(scene.pictures):
        normal_table[first_picture + index] = room_normals[2 + pic.wall]
        class_table[first_picture + index] = _PICTURE
    for index, obj in enumerate(scene.objects):
        class_table[first_object + index] = _KIND_CLASS[obj.kind]
    normal_w = normal_table[flat_instance]
    semseg = class_table[flat_instance]
    parts = np.zeros(num, np.uint8)
    albedo = np.zeros((num, 3), _F)
    surfaces = [(flat_instance == 1, scene.floor), (flat_instance == 2, scene.ceiling)]
    surfaces.append(((flat_instance >= 3) & (flat_instance <= 6), scene.wall))
    surfaces += [(flat_instance == first_picture + i, pic.material) for i, pic in enumerate(scene.pictures)]
    for mask, material in surfaces:
        albedo[mask] = _texture(material, _on_plane(flat_points[mask], normal_w[mask]))
    for index, obj in enumerate(scene.objects):
        mask = flat_instance == first_object + index
        if not mask.any():
            continue
        n, part, local = _object_surface(obj, flat_points[mask], flat_faces[mask])
        normal_w[mask] = n
        parts[mask] = part
        if obj.kind == "box":  # a face is a plane of the object frame
            np.put_along_axis(local, (flat_faces[mask].astype(np.int64) // 2)[:, None], 0.0, axis=1)
        albedo[mask] = _texture(obj.material, local)

    # Lambertian shading from the point light, with cast shadows of the objects.
    light_position = np.asarray(scene.light_position, _F)
    light = light_position - flat_points
    dist = np.sqrt(np.einsum("ij,ij->i", light, light))
    cosine = np.maximum(np.einsum("ij,ij->i", normal_w, light) / dist, 0.0)
    lit = cosine > 0
    for index, obj in enumerate(scene.objects):
        # Only rays inside the cone from the light around the object's
        # bounding sphere can be blocked; convex objects never shadow themselves.
        center, _ = _object_frame(obj)
        radius = 0.5 * math.sqrt(sum(x * x for x in obj.size))
        to_center = center.astype(_F) - light_position
        center_dist = float(np.linalg.norm(to_center))
        candidates = lit & (flat_instance != first_object + index)
        if center_dist > radius:
            cos_cone = math.sqrt(1.0 - (radius / center_dist) ** 2)
            along = -np.einsum("ij,j->i", light, to_center)  # (P - L) . (C - L)
            candidates &= (along >= dist * center_dist * cos_cone) & (dist >= center_dist - radius)
        candidates = np.flatnonzero(candidates)
        t, _ = _intersect(obj, flat_points[candidates], light[candidates])
        lit[candidates[t < 1.0]] = False
    falloff = 1.0 / (1.0 + (dist / 3.0) ** 2)
    irradiance = scene.ambient + scene.light_power * cosine * falloff * lit
    radiance = albedo * irradiance[:, None] * np.asarray(scene.light_color, _F)
    # A soft exposure curve keeps highlights near the lamp from clipping flat.
    srgb = (1.0 - np.exp(-1.4 * radiance)) ** (1.0 / 2.2) * 255.0
    noise = np.random.default_rng(scene.noise_seed).standard_normal((num, 3), dtype=np.float32)
    image = np.clip(np.rint(srgb + scene.noise_std * noise), 0, 255).astype(np.uint8)

    normals_cam = _transform(normal_w, rot_cw)  # world -> camera frame
    shape = (height, width)
    instance = instance.astype(np.uint8)
    depth = depth.astype(np.float32)
    example = {
        "image": image.reshape(*shape, 3),
        "semseg": semseg.reshape(*shape, 1),
        "depth": depth.reshape(*shape, 1),
        "normals": normals_cam.reshape(*shape, 3),
        "edge": _edges(instance, depth)[..., None],
        "saliency": (parts > 0).astype(np.uint8).reshape(*shape, 1),
        "human_parts": parts.reshape(*shape, 1),
    }
    if instances:
        example["instance"] = instance[..., None]
    return example


def scene_id(seed: int) -> str:
    """The example id of the scene of `seed`, e.g. `"synthetic_00000042"`."""
    return f"synthetic_{seed:08d}"


def render_scene(seed: int, height: int, width: int) -> dict[str, np.ndarray | str]:
    """Renders the scene of `seed` as one dataset example.

    Args:
        seed: non-negative integer; the same seed and size give identical bytes.
        height: image height in pixels, >= `MIN_SIZE`.
        width: image width in pixels, >= `MIN_SIZE`.

    Returns:
        A dict: `"image"` (H, W, 3) uint8, `"id"` str, `"semseg"` (H, W, 1)
        uint8, `"depth"` (H, W, 1) float32, `"normals"` (H, W, 3) float32,
        `"edge"`, `"saliency"`, `"human_parts"` (H, W, 1) uint8.

    Raises:
        ValueError: if `seed`, `height` or `width` is not a valid integer.
    """
    example = render(sample_scene(seed), height, width)
    example["id"] = scene_id(seed)
    return example


def make_scenes(num: int, height: int, width: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Renders scenes `seed`, `seed + 1`, ..., `seed + num - 1`, stacked.

    For in-memory use without tfds, e.g.
    `tf.data.Dataset.from_tensor_slices(make_scenes(64, 120, 160))`. One
    example takes H * W * 23 bytes (1.8 MB at 240x320); for thousands of
    large scenes, prepare the `SyntheticScenes` builder instead. Seeds
    `SPLIT_SEED_OFFSETS[split] + i` give the builder's splits.

    Args:
        num: number of scenes, >= 1.
        height: image height in pixels, >= `MIN_SIZE`.
        width: image width in pixels, >= `MIN_SIZE`.
        seed: seed of the first scene, >= 0.

    Returns:
        A dict of arrays with a leading batch axis B = `num`: `"image"`
        (B, H, W, 3) uint8, `"id"` (B,) str, `"semseg"` (B, H, W, 1) uint8,
        `"depth"` (B, H, W, 1) float32, `"normals"` (B, H, W, 3) float32,
        `"edge"`, `"saliency"`, `"human_parts"` (B, H, W, 1) uint8.
    """
    num = _check_int("num", num, 1)
    seed = _check_int("seed", seed, 0)
    height = _check_int("height", height, MIN_SIZE)
    width = _check_int("width", width, MIN_SIZE)
    examples = [render_scene(seed + i, height, width) for i in range(num)]
    return {key: np.stack([e[key] for e in examples]) for key in examples[0]}


def synthetic_tasks(tasks: Sequence[str] | None = None) -> list:
    """The `TaskSpec`s of the synthetic dataset, with default loss weights.

    Class counts: semseg `NUM_CLASSES` (7), human_parts `NUM_PARTS` (7).
    Loss weights as NYUD / PASCAL: semseg 1, depth 1, normals 10, edge 50,
    saliency 5, human_parts 2.

    Args:
        tasks: optional subset of `SYNTHETIC_TASKS`, in the given order.

    Returns:
        A list of `keras_mtcl.tasks.TaskSpec`.
    """
    from keras_mtcl import tasks as tasks_lib

    names = tuple(SYNTHETIC_TASKS if tasks is None else tasks)
    unknown = [n for n in names if n not in SYNTHETIC_TASKS]
    if unknown or not names:
        raise ValueError(
            f"`tasks` must be a non-empty subset of {SYNTHETIC_TASKS}. Received: tasks={list(names)}"
        )
    classes = {"semseg": NUM_CLASSES, "human_parts": NUM_PARTS}
    return [tasks_lib.get_task(n, num_classes=classes[n]) if n in classes else tasks_lib.get_task(n) for n in names]

