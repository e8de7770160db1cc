"""NYUD-v2 multi-task dataset (semseg, depth, normals, edge) as a tfds builder.

795 train / 654 val of the 1449 labelled NYUD-v2 frames, read from any of the
three released multi-task folders; the layout is detected from the file
extensions:

| | A: ASTMT `NYUD_MT/` | B: MTL-PyTorch `NYUD_MT/` | C: ATRC/InvPT `NYUDv2/` |
|---|---|---|---|
| image   | `images/<id>.jpg`            | `images/<id>.jpg`         | `images/<id>.png`         |
| semseg  | `segmentation/<id>.mat` (`segmentation`) | `segmentation/<id>.png` | `segmentation/<id>.png` |
| depth   | `depth/<id>.mat` (`depth`)   | `depth/<id>.npy`          | `depth/<id>.npy`          |
| normals | `normals/<id>.jpg` (8-bit)   | `normals/<id>.npy` [-1, 1] | `normals/<id>.png` (8-bit) |
| edge    | `edge/<id>.png` {0, 255}     | `edge/<id>.npy` {0, 1}    | `edge/<id>.png` {0, 255}  |

Splits: `gt_sets/train.txt` and `gt_sets/val.txt`, one id per line.

Decoding (the reference loaders'): semseg stored 0..40 with 0 = unlabelled
-> class `label - 1` and 0 -> 255 (40 classes 0..39); depth in metres, 0 =
invalid; 8-bit normals `2 * x / 255 - 1`, `.npy` normals as stored (zero
vector = invalid); edge {0, 1}. A label of another size than its image is
resized to the image with nearest sampling (`keras_mtcl.data.decode`). Images
are decoded with Pillow and stored losslessly, so `.jpg` pixels are exactly
those the PyTorch loaders see.

Task subsets: tfds declares an example's features before it reads any file,
so the builder has one config per non-empty subset of the four tasks, named by
its tasks in the order semseg, depth, normals, edge (`"semseg-depth-normals-edge"`,
the default, `"semseg-depth"`, ...). `prepare` detects which task folders
exist and builds the config of exactly those tasks, logging once which are
missing; `available_tasks` says the same without building. The built
dataset's `info.metadata` records `"layout"`, `"tasks"`, `"missing_tasks"`
and `"empty_splits"`.

An empty split file (e.g. `train.txt` of `../shared/data/nyud_real10`) gives no
split: it is logged, recorded in `"empty_splits"`, and `load_split` on it
raises `EmptySplitError`.

Example:
```python
from keras_mtcl.data import nyud
builder = nyud.prepare("/data/NYUD_MT", data_dir="/data/tfds")
val = nyud.load_split(builder, "val")   # {"image", "id", "semseg", "depth", "normals", "edge"}
```
or from a shell:
`mtcl-prepare nyud --manual-dir /data/NYUD_MT --data-dir /data/tfds`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import types
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

from keras_mtcl.data import decode, register_dataset
from keras_mtcl.data.builder import ManualTaskBuilder, subset_configs
from keras_mtcl.data.decode import PathLike
from keras_mtcl.data.errors import DatasetLayoutError, MissingManualDownloadError
from keras_mtcl.tasks import TASK_SETS

TASKS = TASK_SETS["nyud"]["tasks"]
NUM_CLASSES = TASK_SETS["nyud"]["num_classes"]["semseg"]
SPLITS = ("train", "val")
ROOT_NAMES = ("NYUD_MT", "NYUDv2")
IMAGE_DIR = "images"
SPLIT_DIR = "gt_sets"
TASK_DIRS = types.MappingProxyType(
    {"semseg": "segmentation", "depth": "depth", "normals": "normals", "edge": "edge"}
)


@dataclasses.dataclass(frozen=True)
class Layout:
    """One released NYUD-v2 multi-task folder layout.

    Args:
        name: "A", "B" or "C".
        source: the codebase that released it.
        folder: its usual folder name.
        image_ext: extension of the images.
        task_exts: {task: extension of its label files}.
    """

    name: str
    source: str
    folder: str
    image_ext: str
    task_exts: Mapping[str, str]

    def describe(self) -> str:
        files = [f"{IMAGE_DIR}/<id>{self.image_ext}"]
        files += [f"{TASK_DIRS[t]}/<id>{self.task_exts[t]}" for t in TASKS]
        return f"layout {self.name} ({self.source}, {self.folder}/): " + ", ".join(files)


LAYOUTS = types.MappingProxyType(
    {
        "A": Layout(
            "A", "ASTMT", "NYUD_MT", ".jpg",
            types.MappingProxyType({"semseg": ".mat", "depth": ".mat", "normals": ".jpg", "edge": ".png"}),
        ),
        "B": Layout(
            "B", "MTL-PyTorch", "NYUD_MT", ".jpg",
            types.MappingProxyType({"semseg": ".png", "depth": ".npy", "normals": ".npy", "edge": ".npy"}),
        ),
        "C": Layout(
            "C", "ATRC/InvPT", "NYUDv2", ".png",
            types.MappingProxyType({"semseg": ".png", "depth": ".npy", "normals": ".png", "edge": ".png"}),
        ),
    }
)

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download one NYUD-v2 multi-task release and pass its folder (or the folder
that contains it) as `manual_dir`. Any of these layouts is detected:

  A. ASTMT (facebookresearch/astmt), NYUD_MT.tgz extracted to NYUD_MT/:
     images/<id>.jpg, segmentation/<id>.mat, depth/<id>.mat,
     normals/<id>.jpg, edge/<id>.png, gt_sets/train.txt, gt_sets/val.txt
  B. MTL-PyTorch (SimonVandenhende/Multi-Task-Learning-PyTorch), NYUD_MT/:
     images/<id>.jpg, segmentation/<id>.png, depth/<id>.npy,
     normals/<id>.npy, edge/<id>.npy, gt_sets/train.txt, gt_sets/val.txt
  C. ATRC / InvPT (brdav/atrc, prismformore/Multi-Task-Transformer), NYUDv2/:
     images/<id>.png, segmentation/<id>.png, depth/<id>.npy,
     normals/<id>.png, edge/<id>.png, gt_sets/train.txt, gt_sets/val.txt

Task folders that are absent are left out of the dataset (build the config
named by the present tasks, e.g. "semseg-depth"; `nyud.prepare` picks it).
"""


def _layout_table() -> str:
    return "; ".join(layout.describe() for layout in LAYOUTS.values())


def _task_folders(root: pathlib.Path) -> dict[str, dict[str, int]]:
    """{task: {extension: count}} of the task folders that hold data files."""
    found = {}
    for task in TASKS:
        folder = root / TASK_DIRS[task]
        if folder.is_dir():
            exts = decode.data_extensions(folder)
            if exts:
                found[task] = exts
    return found


def detect_layout(root: PathLike) -> str:
    """Detects the release layout ("A", "B" or "C") of a NYUD-v2 folder from its file extensions.

    Args:
        root: the dataset folder (with `images/`), see `find_root`.

    Raises:
        MissingManualDownloadError: if `images/` is missing or empty.
        DatasetLayoutError: if the extensions match no layout (or several);
            the message lists what was found and what each layout expects.
    """
    root = pathlib.Path(root)
    image_dir = root / IMAGE_DIR
    if not image_dir.is_dir() or not decode.data_extensions(image_dir):
        raise MissingManualDownloadError(
            f"No images in {image_dir}.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )
    image_exts = decode.data_extensions(image_dir)
    tasks = _task_folders(root)
    matches = [
        layout.name
        for layout in LAYOUTS.values()
        if set(image_exts) == {layout.image_ext}
        and all(set(exts) == {layout.task_exts[task]} for task, exts in tasks.items())
    ]
    if len(matches) == 1:
        return matches[0]
    found = [f"{IMAGE_DIR}/: {sorted(image_exts)}"]
    found += [f"{TASK_DIRS[t]}/: {sorted(exts)}" for t, exts in tasks.items()]
    problem = "matches no known NYUD-v2 layout" if not matches else f"is ambiguous between layouts {matches}"
    raise DatasetLayoutError(
        f"The NYUD-v2 folder {root} {problem}. Found file types: {'; '.join(found)}. "
        f"Expected one of: {_layout_table()}. Re-extract the release, or remove stray files from these folders."
    )


def available_tasks(manual_dir: PathLike) -> tuple[str, ...]:
    """The tasks whose label folder exists and holds files, in the order of `TASKS`.

    Example: `available_tasks("../shared/data/nyud_real10")` is `("semseg", "depth")`.
    """
    root = NyudMultiTask.find_root(manual_dir)
    detect_layout(root)
    return tuple(t for t in TASKS if t in _task_folders(root))


def label_path(root: PathLike, layout: str, task: str, image_id: str) -> pathlib.Path:
    """Path of one label file in a layout."""
    return pathlib.Path(root) / TASK_DIRS[task] / f"{image_id}{LAYOUTS[layout].task_exts[task]}"


def image_path(root: PathLike, layout: str, image_id: str) -> pathlib.Path:
    """Path of one image in a layout."""
    return pathlib.Path(root) / IMAGE_DIR / f"{image_id}{LAYOUTS[layout].image_ext}"


def decode_label(task: str, layout: str, path: PathLike) -> np.ndarray:
    """Reads and decodes one label file of a layout into the package conventions.

    Returns:
        semseg (H, W, 1) uint8 0..39 / 255; depth (H, W, 1) float32 metres;
        normals (H, W, 3) float32; edge (H, W, 1) uint8 {0, 1}.

    Raises:
        LabelRangeError, LabelShapeError, CorruptFileError, DatasetLayoutError:
            for a file that does not hold what the layout promises.
    """
    ext = LAYOUTS[layout].task_exts[task]
    if task == "semseg":
        raw = decode.read_mat_array(path, "segmentation") if ext == ".mat" else decode.read_png(path)
        return decode.decode_classes(raw, path, NUM_CLASSES, "semseg", ignore_value=None, zero_is_ignore=True)
    if task == "depth":
        raw = decode.read_mat_array(path, "depth") if ext == ".mat" else decode.read_npy(path)
        return decode.decode_depth(raw, path)
    if task == "normals":
        if ext == ".npy":
            return decode.decode_normals_float(decode.read_npy(path), path)
        return decode.decode_normals_8bit(decode.read_png(path), path)
    if task == "edge":
        if ext == ".npy":
            return decode.decode_binary(decode.read_npy(path), path, "edge", positive=1)
        return decode.decode_binary(decode.read_png(path), path, "edge", positive=255)
    raise ValueError(f"Unknown NYUD-v2 task. Expected one of {TASKS}. Received: task={task!r}")


def read_example(root: PathLike, layout: str, image_id: str, tasks: Sequence[str] = TASKS) -> dict:
    """Reads one example as numpy arrays in the package's example format.

    Returns:
        {"image": (H, W, 3) uint8, "id": str, task: label for each of `tasks`},
        every label at the image's size.
    """
    path = image_path(root, layout, image_id)
    image = decode.read_rgb(path)
    example = {"image": image, "id": image_id}
    for task in tasks:
        path = label_path(root, layout, task, image_id)
        example[task] = decode.fit_to_image(decode_label(task, layout, path), image.shape, path, task)
    return example


@register_dataset("nyud")
class NyudMultiTask(ManualTaskBuilder):
    """NYUD-v2 multi-task (semseg 40 classes, depth, normals, edge), built from a manual download."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Reads the ASTMT, MTL-PyTorch and ATRC/InvPT releases; one config per task subset."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    DESCRIPTION = (
        "NYUD-v2 multi-task split (795 train / 654 val): RGB image with 40-class semseg "
        "(255 = ignore), depth in metres (0 = invalid), surface normals and edges."
    )
    HOMEPAGE = "https://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html"
    CITATION = "Silberman, Hoiem, Kohli, Fergus. Indoor Segmentation and Support Inference from RGBD Images. ECCV 2012."
    TITLE = "NYUD-v2"
    TASKS = TASKS
    SPLITS = SPLITS
    ROOT_MARKER = IMAGE_DIR
    ROOT_NAMES = ROOT_NAMES
    SPLIT_DIR = SPLIT_DIR
    TASK_FILES = types.MappingProxyType({t: f"{d}/" for t, d in TASK_DIRS.items()})
    BUILDER_CONFIGS = subset_configs("NYUD-v2", TASKS)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._layouts: dict[pathlib.Path, str] = {}

    def layout(self, root: pathlib.Path) -> str:
        """The release layout of `root` (`detect_layout`, once per folder)."""
        if root not in self._layouts:
            self._layouts[root] = detect_layout(root)
        return self._layouts[root]

    @classmethod
    def available_tasks(cls, manual_dir: PathLike) -> tuple[str, ...]:
        return available_tasks(manual_dir)

    def example_files(self, root: pathlib.Path, image_id: str) -> list[pathlib.Path]:
        layout = self.layout(root)
        return [image_path(root, layout, image_id), *(label_path(root, layout, t, image_id) for t in self.tasks)]

    def read_example(self, root: pathlib.Path, image_id: str) -> dict:
        return read_example(root, self.layout(root), image_id, self.tasks)

    def missing_files_hint(self, root: pathlib.Path) -> str:
        return (f"({LAYOUTS[self.layout(root)].describe()}) Re-extract the release so that every id in "
                f"{SPLIT_DIR}/*.txt has its image and label files.")

    def generation_metadata(self, root: pathlib.Path, splits: Mapping[str, list[str]]) -> dict[str, Any]:
        return {**super().generation_metadata(root, splits), "layout": self.layout(root)}


prepare = NyudMultiTask.prepare
load_split = NyudMultiTask.load_split
main = NyudMultiTask.main

if __name__ == "__main__":
    sys.exit(main())
