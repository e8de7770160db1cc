"""PASCAL-Context multi-task dataset (semseg, human_parts, saliency, normals, edge) as a tfds builder.

4998 train / 5105 val images of the multi-task release (`PASCAL_MT/`, also
distributed as `PASCALContext/`, same sub-paths):

- image: `JPEGImages/<id>.jpg`, RGB (decoded with Pillow, stored losslessly).
- semseg: `semseg/VOC12/<id>.png` if present, else `semseg/pascal-context/<id>.png`;
  0..20 (21 classes incl. background), 255 = ignore.
- human_parts: `human_parts/<id>.mat`, struct `anno` (PASCAL-Part): parts of
  person objects (VOC class 15) -> head 1, torso 2, upper arm 3, lower arm 4,
  upper leg 5, lower leg 6, background 0; no part pixel -> all 255.
- saliency: `sal_distill/<id>.png`, `x / 255 > 0.5` -> {0, 1}.
- normals: `normals_distill/<id>.png`, `2 * x / 255 - 1` where the context
  class (`LabelMap` of `pascal-context/trainval/<id>.mat`) is in
  `NORMALS_VALID_CLASSES`, the zero vector (invalid) elsewhere.
- edge: `pascal-context/trainval/<id>.mat`, key `LabelMap` (459 classes):
  pixels with a non-zero 4-neighbour Laplacian, thinned to 1 px.

Splits: `ImageSets/Context/train.txt` and `ImageSets/Context/val.txt`.

Details that decide the numbers, as in the reference loaders (ASTMT,
MTL-PyTorch, ATRC, InvPT):
- Edge: Laplacian with kernel [[0, 1, 0], [1, -4, 1], [0, 1, 0]] and mirrored
  borders (`gfedcb|abcdefgh|gfedcba`, OpenCV's default), then Guo-Hall
  two-subiteration parallel thinning (`thin`, the algorithm of
  `skimage.morphology.thin`) until nothing changes.
- Human parts: parts of later objects overwrite earlier ones; objects of other
  classes and persons without part annotations add no part pixel. An image
  without any part pixel is ignored entirely for the task (all 255).
- A label of another size than its image is resized to it (nearest).

Person index: which images hold annotated persons is cached as JSON in
`cache_dir` (default `<data_dir>/keras_mtcl_cache/`), never in the dataset
folder; entries are reused while the `.mat` file's size and modification time
are unchanged. `person_ids` lists the ids with persons (e.g. to train
human_parts alone on images that have them, as ASTMT does), and
`info.metadata["num_with_person"]` counts them per split.

Task subsets are builder configs named by their tasks, as for NYUD-v2
(`keras_mtcl.data.nyud`); `prepare` builds the config of the tasks present.

Example:
```python
from keras_mtcl.data import pascal
builder = pascal.prepare("/data/PASCAL_MT", data_dir="/data/tfds")
val = pascal.load_split(builder, "val")
```
or `mtcl-prepare pascal --manual-dir /data/PASCAL_MT --data-dir /data/tfds`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import sys
import types
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

from keras_mtcl.data import decode, register_dataset
from keras_mtcl.data.builder import ManualTaskBuilder, subset_configs
from keras_mtcl.data.decode import PathLike
from keras_mtcl.data.errors import DatasetLayoutError, LabelRangeError, LabelShapeError
from keras_mtcl.edge_eval import thin
from keras_mtcl.kinds import IGNORE_INDEX
from keras_mtcl.tasks import TASK_SETS

TASKS = TASK_SETS["pascal"]["tasks"]
NUM_CLASSES = TASK_SETS["pascal"]["num_classes"]
SPLITS = ("train", "val")
ROOT_NAMES = ("PASCAL_MT", "PASCALContext")
IMAGE_DIR = "JPEGImages"
SPLIT_DIR = "ImageSets/Context"
SEMSEG_DIRS = ("semseg/VOC12", "semseg/pascal-context")
CONTEXT_DIR = "pascal-context/trainval"
PARTS_DIR = "human_parts"
NORMALS_DIR = "normals_distill"
SALIENCY_DIR = "sal_distill"
PERSON_CLASS = 15

# PASCAL-Part person part names -> the six part groups of the benchmark.
PART_GROUPS = types.MappingProxyType(
    {
        **dict.fromkeys(("head", "hair", "leye", "reye", "lear", "rear", "lebrow", "rebrow", "nose", "mouth"), 1),
        **dict.fromkeys(("torso", "neck"), 2),
        **dict.fromkeys(("luarm", "ruarm"), 3),
        **dict.fromkeys(("llarm", "rlarm", "lhand", "rhand"), 4),
        **dict.fromkeys(("luleg", "ruleg"), 5),
        **dict.fromkeys(("llleg", "rlleg", "lfoot", "rfoot"), 6),
    }
)

# PASCAL-Context classes (1-based ids of the 459-class LabelMap) on which the
# distilled normals are valid: the classes whose name is also a NYUD-v2 class
# name ("unknown" excluded), plus "tvmonitor" (427), as in the reference
# loaders' `normals_valid_classes`.
NORMALS_VALID_CLASSES = frozenset(
    {
        3, 4, 6, 9, 10, 11, 13, 15, 17, 18, 22, 23, 29, 30, 33, 34, 36, 37, 38, 39, 41, 43, 46, 49, 50, 51, 53,
        55, 56, 59, 61, 62, 65, 66, 68, 69, 72, 73, 78, 83, 84, 85, 87, 88, 95, 96, 101, 104, 105, 107, 111,
        113, 115, 122, 124, 135, 141, 142, 143, 146, 150, 154, 157, 158, 159, 165, 172, 174, 181, 183, 184,
        191, 193, 195, 197, 199, 202, 213, 215, 216, 219, 220, 223, 225, 228, 230, 232, 233, 238, 239, 242,
        243, 246, 250, 251, 252, 255, 260, 261, 263, 269, 272, 273, 275, 281, 283, 284, 285, 286, 287, 288,
        290, 291, 292, 293, 295, 304, 307, 309, 310, 314, 315, 319, 323, 329, 330, 331, 336, 342, 345, 349,
        350, 351, 352, 355, 357, 368, 370, 371, 374, 379, 380, 383, 384, 397, 401, 403, 405, 407, 408, 411,
        412, 413, 414, 417, 419, 421, 423, 427, 429, 430, 432, 440, 441, 442, 443, 444, 446, 454, 457,
    }
)

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download the PASCAL-Context multi-task release (PASCAL_MT.tgz of ASTMT /
MTL-PyTorch, or the PASCALContext/ folder of ATRC / InvPT), extract it, and
pass the folder (or the folder that contains it) as `manual_dir`:

  PASCAL_MT/
    JPEGImages/<id>.jpg
    ImageSets/Context/train.txt, ImageSets/Context/val.txt
    semseg/VOC12/<id>.png and semseg/pascal-context/<id>.png   (semseg)
    human_parts/<id>.mat                                        (human_parts)
    sal_distill/<id>.png                                        (saliency)
    normals_distill/<id>.png + pascal-context/trainval/<id>.mat (normals)
    pascal-context/trainval/<id>.mat                            (edge)

Tasks whose files are absent are left out (build the config named by the
present tasks; `pascal.prepare` picks it).
"""


# ------------------------------------------------------------------ edges


def laplacian_edges(label_map: np.ndarray) -> np.ndarray:
    """Pixels where the 4-neighbour Laplacian of a label map is non-zero.

    Kernel [[0, 1, 0], [1, -4, 1], [0, 1, 0]], mirrored borders without
    repeating the edge pixel (OpenCV's `BORDER_REFLECT_101`).

    Args:
        label_map: (H, W) integer labels, H and W >= 2.

    Returns:
        (H, W) bool.
    """
    labels = np.asarray(label_map, dtype=np.int64)
    padded = np.pad(labels, 1, mode="reflect")
    lap = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4 * labels
    return lap != 0


def decode_edge(label_map: np.ndarray, path: PathLike) -> np.ndarray:
    """Edge label of a context `LabelMap`: (H, W) ints -> (H, W, 1) uint8 {0, 1}."""
    label_map = decode.to_single_channel(np.asarray(label_map), path, "edge (LabelMap)")
    if label_map.dtype.kind not in "biu" and not np.all(label_map == np.round(label_map)):
        raise LabelRangeError(f"The LabelMap in {path} must hold integer class ids.")
    if min(label_map.shape) < 2:
        raise LabelShapeError(f"The LabelMap in {path} must be at least 2x2. Received: shape={label_map.shape}")
    return thin(laplacian_edges(label_map)).astype(np.uint8)[..., None]


# ---------------------------------------------------------------- human parts


def _field(struct, name: str, path: PathLike):
    if struct.dtype.names is None or name not in struct.dtype.names:
        raise DatasetLayoutError(
            f"The PASCAL-Part file {path} has no field {name!r} in its `anno` struct "
            f"(found {struct.dtype.names}). Expected anno.objects(i).class_ind / mask / parts(j).part_name / mask."
        )
    return struct[name]


def _objects(path: PathLike) -> np.ndarray:
    contents = decode.load_mat(path)
    if "anno" not in contents:
        found = sorted(k for k in contents if not k.startswith("__"))
        raise DatasetLayoutError(f"The PASCAL-Part file {path} has no variable 'anno'. Found: {found}.")
    anno = contents["anno"].ravel()[0]
    objects = _field(anno, "objects", path)
    return objects.ravel() if objects.size and objects.dtype.names else np.zeros(0)


def has_person_parts(path: PathLike) -> bool:
    """Whether a PASCAL-Part file has a person object with at least one part pixel."""
    for obj in _objects(path):
        parts = _field(obj, "parts", path)
        if int(np.ravel(_field(obj, "class_ind", path))[0]) == PERSON_CLASS and parts.size and parts.dtype.names:
            if any(np.any(_field(part, "mask", path)) for part in parts.ravel()):
                return True
    return False


def decode_human_parts(path: PathLike) -> np.ndarray | None:
    """Human part label of a PASCAL-Part file.

    Returns:
        (H, W, 1) uint8 with 0 background and 1..6 the part groups
        (`PART_GROUPS`), or None if the file has no part pixel (the caller
        fills the image with 255).

    Raises:
        LabelRangeError: for a person part name outside `PART_GROUPS`.
    """
    target = None
    for obj in _objects(path):
        if int(np.ravel(_field(obj, "class_ind", path))[0]) != PERSON_CLASS:
            continue
        parts = _field(obj, "parts", path)
        if parts.size == 0 or parts.dtype.names is None:
            continue
        if target is None:
            target = np.zeros(np.asarray(_field(obj, "mask", path)).shape, dtype=np.uint8)
        for part in parts.ravel():
            name = str(np.ravel(_field(part, "part_name", path))[0])
            if name not in PART_GROUPS:
                raise LabelRangeError(
                    f"The PASCAL-Part file {path} has a person part {name!r}; expected one of {sorted(PART_GROUPS)}."
                )
            mask = np.asarray(_field(part, "mask", path)).astype(bool)
            if mask.shape != target.shape:
                raise LabelShapeError(
                    f"The part mask {name!r} in {path} has shape {mask.shape}, the person masks {target.shape}."
                )
            target[mask] = PART_GROUPS[name]
    if target is None or not target.any():
        return None
    return target[..., None]


# ------------------------------------------------------------ other labels


def decode_saliency(raw: np.ndarray, path: PathLike) -> np.ndarray:
    """Distilled saliency: `x / 255 > 0.5` -> (H, W, 1) uint8 {0, 1}."""
    raw = np.asarray(raw)
    if raw.ndim == 3 and raw.shape[-1] in (3, 4) and np.all(raw[..., :3] == raw[..., :1]):
        raw = raw[..., 0]  # grey stored as RGB
    raw = decode.to_single_channel(raw, path, "saliency")
    if raw.dtype != np.uint8:
        raise LabelRangeError(f"The saliency map {path} must be 8-bit (values 0..255). Received: dtype={raw.dtype}")
    return (raw.astype(np.float32) / np.float32(255.0) > 0.5).astype(np.uint8)[..., None]


def decode_normals(raw: np.ndarray, label_map: np.ndarray, path: PathLike) -> np.ndarray:
    """Distilled normals, valid only on `NORMALS_VALID_CLASSES` of the context map; zero vector elsewhere."""
    normals = decode.decode_normals_8bit(raw, path)
    label_map = decode.to_single_channel(np.asarray(label_map), path, "normals (LabelMap)")
    if label_map.shape != normals.shape[:2]:
        label_map = decode.resize_nearest(label_map, *normals.shape[:2])
    valid = np.isin(label_map, np.fromiter(NORMALS_VALID_CLASSES, dtype=np.int64))
    return np.where(valid[..., None], normals, np.float32(0.0)).astype(np.float32)


# ----------------------------------------------------------------- the folder


def _has(root: pathlib.Path, folder: str, ext: str) -> bool:
    path = root / folder
    return path.is_dir() and ext in decode.data_extensions(path)


def available_tasks(manual_dir: PathLike) -> tuple[str, ...]:
    """The tasks whose files exist in the folder, in the order of `TASKS`.

    normals needs both `normals_distill/` and `pascal-context/trainval/` (its validity mask).
    """
    root = PascalContextMultiTask.find_root(manual_dir)
    context = _has(root, CONTEXT_DIR, ".mat")
    present = {
        "semseg": any(_has(root, d, ".png") for d in SEMSEG_DIRS),
        "human_parts": _has(root, PARTS_DIR, ".mat"),
        "saliency": _has(root, SALIENCY_DIR, ".png"),
        "normals": _has(root, NORMALS_DIR, ".png") and context,
        "edge": context,
    }
    return tuple(t for t in TASKS if present[t])


def semseg_path(root: PathLike, image_id: str) -> pathlib.Path:
    """`semseg/VOC12/<id>.png` if it exists, else `semseg/pascal-context/<id>.png`.

    If neither exists, the path names both (`semseg/VOC12|semseg/pascal-context/<id>.png`), so that the
    message of a missing file says where it may go.
    """
    voc, context = (pathlib.Path(root) / folder / f"{image_id}.png" for folder in SEMSEG_DIRS)
    if voc.is_file() or context.is_file():
        return voc if voc.is_file() else context
    return pathlib.Path(root) / "|".join(SEMSEG_DIRS) / f"{image_id}.png"


def task_files(root: PathLike, task: str, image_id: str) -> list[pathlib.Path]:
    """The files one task reads for one image."""
    root = pathlib.Path(root)
    context = root / CONTEXT_DIR / f"{image_id}.mat"
    return {
        "semseg": lambda: [semseg_path(root, image_id)],
        "human_parts": lambda: [root / PARTS_DIR / f"{image_id}.mat"],
        "saliency": lambda: [root / SALIENCY_DIR / f"{image_id}.png"],
        "normals": lambda: [root / NORMALS_DIR / f"{image_id}.png", context],
        "edge": lambda: [context],
    }[task]()


def read_example(
    root: PathLike,
    image_id: str,
    tasks: Sequence[str] = TASKS,
    person_index: "PersonIndex | None" = None,
) -> dict:
    """Reads one example as numpy arrays in the package's example format.

    Args:
        root: the dataset folder.
        image_id: e.g. `"2008_000002"`.
        tasks: tasks to read.
        person_index: optional `PersonIndex`: images it marks as without
            persons get all-255 human parts without parsing their parts.

    Returns:
        {"image": (H, W, 3) uint8, "id": str, task: label}, labels at the image's size.
    """
    root = pathlib.Path(root)
    image = decode.read_rgb(root / IMAGE_DIR / f"{image_id}.jpg")
    example = {"image": image, "id": image_id}
    label_map = None
    for task in tasks:
        files = task_files(root, task, image_id)
        path = files[0]
        if task in ("edge", "normals") and label_map is None:
            label_map = decode.read_mat_array(root / CONTEXT_DIR / f"{image_id}.mat", "LabelMap")
        if task == "semseg":
            label = decode.decode_classes(decode.read_png(path), path, NUM_CLASSES["semseg"], "semseg")
        elif task == "human_parts":
            has_person = person_index.has_person(path) if person_index is not None else True
            label = decode_human_parts(path) if has_person else None
            if label is None:
                label = np.full(image.shape[:2] + (1,), IGNORE_INDEX, dtype=np.uint8)
        elif task == "saliency":
            label = decode_saliency(decode.read_png(path), path)
        elif task == "normals":
            label = decode_normals(decode.read_png(path), label_map, path)
        elif task == "edge":
            label = decode_edge(label_map, path)
        else:
            raise ValueError(f"Unknown PASCAL-Context task. Expected one of {TASKS}. Received: task={task!r}")
        example[task] = decode.fit_to_image(label, image.shape, path, task)
    return example


# --------------------------------------------------------------- person index


class PersonIndex:
    """Cache of which PASCAL-Part files hold person parts, stored as JSON outside the dataset.

    Args:
        root: the dataset folder.
        cache_dir: folder for the index file; must not lie inside `root`.

    Raises:
        ValueError: if `cache_dir` lies inside the dataset folder.
    """

    def __init__(self, root: PathLike, cache_dir: PathLike):
        self.root = pathlib.Path(root)
        cache_dir = pathlib.Path(cache_dir)
        if cache_dir.resolve().is_relative_to(self.root.resolve()):
            raise ValueError(
                "`cache_dir` must lie outside the dataset folder, which stays read-only. "
                f"Received: cache_dir={str(cache_dir)!r}"
            )
        key = hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:12]
        self.path = cache_dir / f"pascal_person_index_{key}.json"
        self._entries = {}
        if self.path.is_file():
            try:
                self._entries = json.loads(self.path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                self._entries = {}  # a damaged cache is rebuilt
        self._dirty = False

    def has_person(self, path: PathLike) -> bool:
        """Whether the PASCAL-Part file `path` has person part pixels (cached)."""
        path = pathlib.Path(path)
        stat = path.stat()
        entry = self._entries.get(path.name)
        if entry and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
            return bool(entry[2])
        value = has_person_parts(path)
        self._entries[path.name] = [stat.st_size, stat.st_mtime_ns, value]
        self._dirty = True
        return value

    def save(self) -> None:
        """Writes the index (atomically) if it changed."""
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._entries))
        os.replace(temporary, self.path)
        self._dirty = False


def default_cache_dir(data_dir: PathLike) -> pathlib.Path:
    """`<data_dir>/keras_mtcl_cache`: where the person index goes by default."""
    return pathlib.Path(data_dir) / "keras_mtcl_cache"


def person_ids(manual_dir: PathLike, split: str, cache_dir: PathLike) -> list[str]:
    """The ids of a split whose PASCAL-Part file has person parts (uses and updates the cache)."""
    root = PascalContextMultiTask.find_root(manual_dir)
    ids = PascalContextMultiTask.read_splits(root).get(split)
    if ids is None:
        raise ValueError(f"Unknown split. Expected one of {SPLITS}. Received: split={split!r}")
    index = PersonIndex(root, cache_dir)
    try:
        return [i for i in ids if index.has_person(root / PARTS_DIR / f"{i}.mat")]
    finally:
        index.save()


# ------------------------------------------------------------------- builder


@register_dataset("pascal")
class PascalContextMultiTask(ManualTaskBuilder):
    """PASCAL-Context multi-task (semseg 21, human parts 7, saliency, normals, edge), from a manual download.

    Args:
        cache_dir: folder of the person index (default `<data_dir>/keras_mtcl_cache`); never inside the
            dataset folder.
        **kwargs: `data_dir`, `config`, `version` of `tfds.core.DatasetBuilder`.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Reads PASCAL_MT / PASCALContext; one config per task subset."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    DESCRIPTION = (
        "PASCAL-Context multi-task split (4998 train / 5105 val): semseg (21 classes), human parts "
        "(7), distilled saliency and normals, edges from the context label maps."
    )
    HOMEPAGE = "https://cs.stanford.edu/~roozbeh/pascal-context/"
    CITATION = (
        "Mottaghi et al. The Role of Context for Object Detection and Semantic Segmentation in the "
        "Wild. CVPR 2014. Chen et al. Detect What You Can: PASCAL-Part. CVPR 2014."
    )
    TITLE = "PASCAL-Context"
    TASKS = TASKS
    SPLITS = SPLITS
    ROOT_MARKER = IMAGE_DIR
    ROOT_NAMES = ROOT_NAMES
    SPLIT_DIR = SPLIT_DIR
    TASK_FILES = types.MappingProxyType(
        {
            "semseg": f"{SEMSEG_DIRS[0]}/ or {SEMSEG_DIRS[1]}/",
            "human_parts": f"{PARTS_DIR}/",
            "saliency": f"{SALIENCY_DIR}/",
            "normals": f"{NORMALS_DIR}/ and {CONTEXT_DIR}/",
            "edge": f"{CONTEXT_DIR}/",
        }
    )
    BUILDER_CONFIGS = subset_configs("PASCAL-Context", TASKS)

    def __init__(self, *, cache_dir: PathLike | None = None, **kwargs):
        super().__init__(**kwargs)
        self._cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir(self.data_dir_root)
        self._index: PersonIndex | None = None

    @classmethod
    def available_tasks(cls, manual_dir: PathLike) -> tuple[str, ...]:
        return available_tasks(manual_dir)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--cache-dir", "--cache_dir", dest="cache_dir", default=None,
                            help="Person index cache (default: <data_dir>/keras_mtcl_cache).")

    def example_files(self, root: pathlib.Path, image_id: str) -> list[pathlib.Path]:
        files = [root / IMAGE_DIR / f"{image_id}.jpg"]
        return files + [p for t in self.tasks for p in task_files(root, t, image_id)]

    def read_example(self, root: pathlib.Path, image_id: str) -> dict:
        return read_example(root, image_id, self.tasks, person_index=self._index)

    def missing_files_hint(self, root: pathlib.Path) -> str:
        return (f"Re-extract the release so that every id in {SPLIT_DIR}/*.txt has its files.\n"
                f"{MANUAL_DOWNLOAD_INSTRUCTIONS}")

    def generation_metadata(self, root: pathlib.Path, splits: Mapping[str, list[str]]) -> dict[str, Any]:
        self._index = PersonIndex(root, self._cache_dir)
        metadata = super().generation_metadata(root, splits)
        if "human_parts" in self.tasks:
            metadata["num_with_person"] = {
                s: sum(self._index.has_person(root / PARTS_DIR / f"{i}.mat") for i in ids) for s, ids in splits.items()
            }
            self._index.save()
        return metadata


prepare = PascalContextMultiTask.prepare
load_split = PascalContextMultiTask.load_split
main = PascalContextMultiTask.main

if __name__ == "__main__":
    sys.exit(main())
