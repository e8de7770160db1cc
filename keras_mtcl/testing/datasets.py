"""Tiny dummy datasets in the real on-disk layouts of the dataset builders.

    python tools/make_dataset_fixtures.py OUT_DIR [--height 16 --width 20]

writes `OUT_DIR/nyud_A/NYUD_MT`, `OUT_DIR/nyud_B/NYUD_MT`, `OUT_DIR/nyud_C/NYUDv2`,
`OUT_DIR/pascal/PASCAL_MT` and `OUT_DIR/folder` (a custom folder with its
manifest). The tests call the `make_*` functions into a temporary folder, so no
binary fixture is committed.

Every label is a closed-form pattern, so tests can state expected values by
hand. With image size (H, W) and `k` the index of the id in train + val order:

NYUD-v2 (`make_nyud`, ids "0001", "0002", ...; 3 train + 2 val by default):
- image: R = (12 x + k) mod 256, G = 15 y mod 256, B = 100 + k.
- semseg, stored: (y W + x) mod 41 (so 0 at (0, 0), 5 at (0, 5), 40 at (2, 0) for W = 20).
- depth, metres: 1 + 0.25 x + k, and 0 (invalid) at (0, 0).
- normals: 8-bit layouts (A .jpg, C .png) store (0, 128, 255) for x < W/2 and
  (255, 255, 0) elsewhere; layout B stores (0, 0, 1) for x < W/2 and (1, 0, 0)
  elsewhere, with the zero vector at (0, 0).
- edge: positive on column x = 5 (255 in .png layouts, 1 in .npy), else 0.

PASCAL-Context (`make_pascal`, ids "2008_000000", ...; 3 train + 2 val):
- image .jpg as for NYUD.
- semseg, stored: (y W + x) mod 21, 255 at (0, 0); ids with even k in
  `semseg/VOC12/` (palette PNG), odd k in `semseg/pascal-context/` (grey PNG).
- LabelMap (`pascal-context/trainval/<id>.mat`): 440 ("wall") for x < W/2,
  360 ("sky") elsewhere: one vertical boundary.
- human parts (`human_parts/<id>.mat`, PASCAL-Part `anno` structs), see `PARTS_BY_INDEX`.
- normals_distill: (0, 128, 255) everywhere.
- sal_distill: 200 for x < 8, 128 at x = 8, 127 at x = 9, 100 elsewhere.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Sequence

import numpy as np
import scipy.io
from PIL import Image

NYUD_TASKS = ("semseg", "depth", "normals", "edge")
NYUD_LAYOUTS = {
    "A": ("NYUD_MT", ".jpg", {"semseg": ".mat", "depth": ".mat", "normals": ".jpg", "edge": ".png"}),
    "B": ("NYUD_MT", ".jpg", {"semseg": ".png", "depth": ".npy", "normals": ".npy", "edge": ".npy"}),
    "C": ("NYUDv2", ".png", {"semseg": ".png", "depth": ".npy", "normals": ".png", "edge": ".png"}),
}
NYUD_DIRS = {"semseg": "segmentation", "depth": "depth", "normals": "normals", "edge": "edge"}


def _save_image(array: np.ndarray, path: pathlib.Path, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array, mode=mode)
    if path.suffix == ".jpg":
        image.save(path, quality=95)
    else:
        image.save(path)


def _save_npy(array: np.ndarray, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)


def _save_mat(contents: dict, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, contents)


def _write_splits(folder: pathlib.Path, splits: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, ids in splits.items():
        (folder / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))


def image_pattern(k: int, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 test image of example k."""
    y, x = np.mgrid[:height, :width]
    return np.stack([(12 * x + k) % 256, (15 * y) % 256, np.full_like(x, 100 + k)], -1).astype(np.uint8)


def nyud_labels(k: int, height: int, width: int) -> dict:
    """The stored NYUD-v2 labels of example k (before decoding), per the module docstring."""
    y, x = np.mgrid[:height, :width]
    semseg = ((y * width + x) % 41).astype(np.uint8)
    depth = (1 + 0.25 * x + k).astype(np.float32)
    depth[0, 0] = 0
    left = (x < width // 2)[..., None]
    normals_8bit = np.where(left, [0, 128, 255], [255, 255, 0]).astype(np.uint8)
    normals_float = np.where(left, [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]).astype(np.float32)
    normals_float[0, 0] = 0
    edge = (x == 5).astype(np.uint8)
    return {"semseg": semseg, "depth": depth, "normals_8bit": normals_8bit,
            "normals_float": normals_float, "edge": edge}


def make_nyud(
    parent: pathlib.Path | str,
    layout: str,
    num_train: int = 3,
    num_val: int = 2,
    height: int = 16,
    width: int = 20,
    tasks: Sequence[str] = NYUD_TASKS,
) -> pathlib.Path:
    """Writes a NYUD-v2 folder in layout "A", "B" or "C"; returns its root (`NYUD_MT/` or `NYUDv2/`)."""
    folder, image_ext, exts = NYUD_LAYOUTS[layout]
    root = pathlib.Path(parent) / folder
    ids = [f"{i + 1:04d}" for i in range(num_train + num_val)]
    _write_splits(root / "gt_sets", {"train": ids[:num_train], "val": ids[num_train:]})
    for k, image_id in enumerate(ids):
        _save_image(image_pattern(k, height, width), root / "images" / f"{image_id}{image_ext}")
        labels = nyud_labels(k, height, width)
        for task in tasks:
            path = root / NYUD_DIRS[task] / f"{image_id}{exts[task]}"
            if task == "semseg":
                if exts[task] == ".mat":
                    _save_mat({"segmentation": labels["semseg"]}, path)
                else:
                    _save_image(labels["semseg"], path)
            elif task == "depth":
                if exts[task] == ".mat":
                    _save_mat({"depth": labels["depth"]}, path)
                else:
                    _save_npy(labels["depth"], path)
            elif task == "normals":
                if exts[task] == ".npy":
                    _save_npy(labels["normals_float"], path)
                else:
                    _save_image(labels["normals_8bit"], path)
            elif task == "edge":
                if exts[task] == ".npy":
                    _save_npy(labels["edge"].astype(np.float32), path)
                else:
                    _save_image(labels["edge"] * 255, path)
    return root


# ----------------------------------------------------------------------- PASCAL

# Person objects (VOC class 15) of each example index, as {part name: (row slice, column slice)}.
# k = 0: a person with six part groups, and a chair (class 9) that must not count.
# k = 1: only a chair: no person, human_parts all 255.
# k = 2: a person without part annotations: no part pixel, human_parts all 255.
# k = 3: a person with "hair" (head group, 1) and "lfoot" (lower leg group, 6).
# k = 4: two persons, "neck" (torso group, 2) and "rhand" (lower arm group, 4).
PARTS_BY_INDEX = {
    0: [{"head": (slice(0, 3), slice(2, 6)), "torso": (slice(3, 8), slice(2, 6)),
         "luarm": (slice(3, 6), slice(6, 7)), "llarm": (slice(6, 8), slice(6, 7)),
         "ruleg": (slice(8, 11), slice(2, 4)), "rlleg": (slice(11, 14), slice(2, 4))}],
    1: [],
    2: [{}],
    3: [{"hair": (slice(0, 2), slice(0, 3)), "lfoot": (slice(14, 16), slice(0, 3))}],
    4: [{"neck": (slice(5, 6), slice(10, 12))}, {"rhand": (slice(9, 10), slice(15, 17))}],
}
CHAIR_BOX = (slice(12, 16), slice(14, 20))


def _struct_array(records: list[dict], fields: Sequence[str]) -> np.ndarray:
    """A MATLAB 1xN struct array for `scipy.io.savemat` (0x0 double when empty, as MATLAB saves it)."""
    if not records:
        return np.zeros((0, 0))
    array = np.empty((1, len(records)), dtype=[(f, object) for f in fields])
    for i, record in enumerate(records):
        for f in fields:
            array[0, i][f] = record[f]
    return array


def pascal_parts_anno(k: int, image_id: str, height: int, width: int) -> dict:
    """The PASCAL-Part `anno` struct of example k (`PARTS_BY_INDEX`)."""
    objects = []
    for person in PARTS_BY_INDEX.get(k, []):
        mask = np.zeros((height, width), np.uint8)
        parts = []
        for name, (rows, cols) in person.items():
            part = np.zeros((height, width), np.uint8)
            part[rows, cols] = 1
            mask |= part
            parts.append({"part_name": name, "mask": part})
        if not person:  # a person outline with no part annotation
            mask[4:10, 8:12] = 1
        objects.append({"class": "person", "class_ind": np.array([[15]], np.uint8), "mask": mask,
                        "parts": _struct_array(parts, ("part_name", "mask"))})
    if k in (0, 1):
        chair = np.zeros((height, width), np.uint8)
        chair[CHAIR_BOX] = 1
        objects.append({"class": "chair", "class_ind": np.array([[9]], np.uint8), "mask": chair,
                        "parts": np.zeros((0, 0))})
    anno = np.empty((1, 1), dtype=[("imname", object), ("objects", object)])
    anno[0, 0]["imname"] = image_id
    anno[0, 0]["objects"] = _struct_array(objects, ("class", "class_ind", "mask", "parts"))
    return {"anno": anno}


def pascal_labels(k: int, height: int, width: int) -> dict:
    """The stored PASCAL-Context labels of example k (before decoding), per the module docstring."""
    y, x = np.mgrid[:height, :width]
    semseg = ((y * width + x) % 21).astype(np.uint8)
    semseg[0, 0] = 255
    label_map = np.where(x < width // 2, 440, 360).astype(np.uint16)
    normals = np.broadcast_to(np.array([0, 128, 255], np.uint8), (height, width, 3)).copy()
    saliency = np.where(x < 8, 200, 100).astype(np.uint8)
    saliency[:, 8] = 128
    saliency[:, 9] = 127
    return {"semseg": semseg, "label_map": label_map, "normals": normals, "saliency": saliency}


def make_pascal(
    parent: pathlib.Path | str,
    num_train: int = 3,
    num_val: int = 2,
    height: int = 16,
    width: int = 20,
    folder: str = "PASCAL_MT",
) -> pathlib.Path:
    """Writes a PASCAL-Context multi-task folder; returns its root (`PASCAL_MT/`)."""
    root = pathlib.Path(parent) / folder
    ids = [f"2008_{i:06d}" for i in range(num_train + num_val)]
    _write_splits(root / "ImageSets" / "Context", {"train": ids[:num_train], "val": ids[num_train:]})
    palette = [v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)]
    for k, image_id in enumerate(ids):
        _save_image(image_pattern(k, height, width), root / "JPEGImages" / f"{image_id}.jpg")
        labels = pascal_labels(k, height, width)
        if k % 2 == 0:
            path = root / "semseg" / "VOC12" / f"{image_id}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            image = Image.frombytes("P", (width, height), labels["semseg"].tobytes())
            image.putpalette(palette)
            image.save(path)
        else:
            _save_image(labels["semseg"], root / "semseg" / "pascal-context" / f"{image_id}.png")
        _save_mat({"LabelMap": labels["label_map"]}, root / "pascal-context" / "trainval" / f"{image_id}.mat")
        _save_mat(pascal_parts_anno(k, image_id, height, width), root / "human_parts" / f"{image_id}.mat")
        _save_image(labels["normals"], root / "normals_distill" / f"{image_id}.png")
        _save_image(labels["saliency"], root / "sal_distill" / f"{image_id}.png")
    return root


# ----------------------------------------------------------------------- folder


def make_folder(parent: pathlib.Path | str, height: int = 16, width: int = 20) -> pathlib.Path:
    """Writes a custom folder (3 train + 1 val) with semseg (png, 5 classes), depth (npy) and its manifest.

    semseg stores (y W + x) mod 5 with 9 (the manifest's ignore value) at
    (0, 0); depth stores 2 + 0.5 y (metres).
    """
    root = pathlib.Path(parent) / "my_rooms"
    ids = [f"room_{i}" for i in range(4)]
    _write_splits(root / "splits", {"train": ids[:3], "val": ids[3:]})
    y, x = np.mgrid[:height, :width]
    for k, image_id in enumerate(ids):
        _save_image(image_pattern(k, height, width), root / "images" / f"{image_id}.png")
        semseg = ((y * width + x) % 5).astype(np.uint8)
        semseg[0, 0] = 9
        _save_image(semseg, root / "semseg" / f"{image_id}.png")
        _save_npy((2 + 0.5 * y).astype(np.float32), root / "depth" / f"{image_id}.npy")
    manifest = {
        "name": "my_rooms",
        "version": "1.0.0",
        "images": {"dir": "images", "format": "png"},
        "tasks": {
            "semseg": {"kind": "classes", "num_classes": 5, "dir": "semseg", "format": "png", "ignore_value": 9},
            "depth": {"kind": "depth", "dir": "depth", "format": "npy"},
        },
        "splits": {"train": "splits/train.txt", "val": "splits/val.txt"},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--height", type=int, default=16)
    parser.add_argument("--width", type=int, default=20)
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out_dir)
    for layout in NYUD_LAYOUTS:
        print(make_nyud(out / f"nyud_{layout}", layout, height=args.height, width=args.width))
    print(make_pascal(out / "pascal", height=args.height, width=args.width))
    print(make_folder(out / "folder", height=args.height, width=args.width))


if __name__ == "__main__":
    main()
