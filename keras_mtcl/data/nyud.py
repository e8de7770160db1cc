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

import argparse
import sys
import dataclasses
import pathlib
import types
from typing import Iterator, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

from keras_mtcl.data import decode
from keras_mtcl.errors import ConfigError, reports_user_errors
from keras_mtcl.data.builders import ManualTaskBuilder
from keras_mtcl.data.decode import (
    DatasetLayoutError,
    EmptySplitError,
    MissingManualDownloadError,
    PathLike,
    listing,
)

TASKS = ("semseg", "depth", "normals", "edge")
NUM_CLASSES = 40
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


def find_root(manual_dir: PathLike) -> pathlib.Path:
    """The dataset folder: `manual_dir` itself or its `NYUD_MT/` / `NYUDv2/` subfolder.

    Raises:
        MissingManualDownloadError: if no folder with an `images/` folder is found.
        DatasetLayoutError: if `manual_dir` holds more than one release.
    """
    manual_dir = pathlib.Path(manual_dir)
    if not manual_dir.is_dir():
        raise MissingManualDownloadError(
            f"The NYUD-v2 folder {manual_dir} does not exist.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )
    if (manual_dir / IMAGE_DIR).is_dir():
        return manual_dir
    found = [manual_dir / name for name in ROOT_NAMES if (manual_dir / name / IMAGE_DIR).is_dir()]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise DatasetLayoutError(
            f"{manual_dir} holds more than one NYUD-v2 release: {[str(f) for f in found]}. "
            "Pass one of them as `manual_dir`."
        )
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in manual_dir.iterdir())
    raise MissingManualDownloadError(
        f"No NYUD-v2 dataset in {manual_dir}: expected an `{IMAGE_DIR}/` folder in it or in one of "
        f"{[n + '/' for n in ROOT_NAMES]}. Found: [{listing(entries)}].\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
    )


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
    root = find_root(manual_dir)
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


def read_splits(root: PathLike) -> dict[str, list[str]]:
    """{split: ids} from `gt_sets/train.txt` and `gt_sets/val.txt` (an empty file gives [])."""
    root = pathlib.Path(root)
    splits = {}
    for split in SPLITS:
        path = root / SPLIT_DIR / f"{split}.txt"
        if not path.is_file():
            raise MissingManualDownloadError(
                f"Split file {path} not found. Every NYUD-v2 layout has {SPLIT_DIR}/train.txt and "
                f"{SPLIT_DIR}/val.txt (one id per line, no extension); copy them from the release."
            )
        splits[split] = decode.read_split_file(path)
    if not any(splits.values()):
        raise EmptySplitError(
            f"Every split file in {root / SPLIT_DIR} is empty: there is nothing to build. "
            "Each line of train.txt / val.txt names one image id."
        )
    return splits


def check_files(root: PathLike, layout: str, tasks: Sequence[str], ids: Sequence[str]) -> None:
    """Raises `MissingManualDownloadError` naming the missing files, if any."""
    paths = [image_path(root, layout, i) for i in ids]
    paths += [label_path(root, layout, t, i) for t in tasks for i in ids]
    missing = decode.missing_files(paths)
    if missing:
        raise MissingManualDownloadError(
            f"{len(missing)} file(s) listed by the split files are missing from the NYUD-v2 folder {root} "
            f"({LAYOUTS[layout].describe()}): {listing(missing)}. Re-extract the release so that every id "
            f"in {SPLIT_DIR}/*.txt has its image and label files."
        )


@dataclasses.dataclass(eq=False)
class NyudConfig(tfds.core.BuilderConfig):
    """A NYUD-v2 config: the tasks its examples carry."""

    tasks: tuple[str, ...] = TASKS


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
    BUILDER_CONFIGS = [
        NyudConfig(name=decode.config_name(s), tasks=s, description=f"NYUD-v2 with tasks {', '.join(s)}.")
        for s in decode.task_subsets(TASKS)
    ]

    def source_files(self, manual_dir: PathLike) -> list[pathlib.Path]:
        """The split files and the image and label files of every id they list."""
        root = find_root(manual_dir)
        layout = detect_layout(root)
        files = [root / SPLIT_DIR / f"{split}.txt" for split in SPLITS]
        for ids in read_splits(root).values():
            files += [image_path(root, layout, i) for i in ids]
            files += [label_path(root, layout, t, i) for t in self.tasks for i in ids]
        return files

    def _split_generators(self, dl_manager):
        root = find_root(self.manual_root(dl_manager))
        layout = detect_layout(root)
        present = tuple(t for t in TASKS if t in _task_folders(root))
        absent = [t for t in self.tasks if t not in present]
        if absent:
            raise MissingManualDownloadError(
                f"Config {self.builder_config.name!r} needs tasks {absent}, but {root} has no "
                f"{[TASK_DIRS[t] + '/' for t in absent]} folder. The folder carries tasks {list(present)}: "
                f"build config {decode.config_name(present)!r} (what `nyud.prepare` does), or add the missing "
                f"folders ({LAYOUTS[layout].describe()})."
            )
        splits = read_splits(root)
        for ids in splits.values():
            check_files(root, layout, self.tasks, ids)
        empty = [s for s, ids in splits.items() if not ids]
        for split in empty:
            decode.logger.warning("NYUD-v2 split %r is empty (%s): it is not generated.", split,
                                  root / SPLIT_DIR / f"{split}.txt")
        self.info.metadata.update(
            {
                "layout": layout,
                "tasks": list(self.tasks),
                "missing_tasks": [t for t in TASKS if t not in self.tasks],
                "empty_splits": empty,
            }
        )
        return {s: self._generate_examples(root, layout, ids) for s, ids in splits.items() if ids}

    def _generate_examples(self, root, layout, ids) -> Iterator[tuple[str, dict]]:
        kinds = self.task_kinds()
        for image_id in ids:
            example = read_example(root, layout, image_id, self.tasks)
            yield image_id, decode.to_tfds_example(example, kinds)


def prepare(
    manual_dir: PathLike,
    data_dir: PathLike,
    tasks: Sequence[str] | None = None,
    overwrite: bool = False,
) -> NyudMultiTask:
    """Builds NYUD-v2 from a downloaded release into `data_dir` (offline) and returns the builder.

    Args:
        manual_dir: the release folder (`NYUD_MT/`, `NYUDv2/`) or a folder
            that contains one.
        data_dir: where tfds writes the prepared dataset.
        tasks: tasks to include; None includes every task whose folder is
            present and logs the missing ones.
        overwrite: rebuild even if this config was already prepared.

    Returns:
        The prepared `NyudMultiTask` builder (`builder.tasks`, `builder.info.metadata`).

    Raises:
        MissingManualDownloadError: if the folder, a split file, a requested
            task's folder or a listed file is missing.
        DatasetLayoutError: if the folder matches no known layout.
        ValueError: if `tasks` names an unknown task.
    """
    root = find_root(manual_dir)
    layout = detect_layout(root)
    present = tuple(t for t in TASKS if t in _task_folders(root))
    if not present:
        raise MissingManualDownloadError(
            f"{root} has images but no label folder ({[TASK_DIRS[t] + '/' for t in TASKS]}).\n"
            f"{MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )
    if tasks is None:
        tasks = present
        missing = [t for t in TASKS if t not in present]
        if missing:
            decode.logger.warning(
                "NYUD-v2 at %s (layout %s) carries tasks %s; missing: %s. Building config %r.",
                root, layout, list(present), missing, decode.config_name(tasks),
            )
    else:
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks:
            raise ConfigError(f"`tasks` must be a non-empty subset of {TASKS}. Received: tasks={tasks!r}")
        tasks = tuple(t for t in TASKS if t in tasks)
    builder = NyudMultiTask(data_dir=str(data_dir), config=decode.config_name(tasks))
    decode.download_and_prepare(builder, root, overwrite=overwrite)
    return builder


def load_split(builder: NyudMultiTask, split: str, shuffle_files: bool = False):
    """The `tf.data.Dataset` of one split; see `keras_mtcl.data.decode.load_split`."""
    return decode.load_split(builder, split, shuffle_files=shuffle_files)


@reports_user_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: prepare NYUD-v2 from a manual download."""
    parser = argparse.ArgumentParser(description="Prepare NYUD-v2 multi-task (tfds) from a downloaded release.")
    parser.add_argument("--manual-dir", "--manual_dir", dest="manual_dir", required=True, help="NYUD_MT/ or NYUDv2/ folder (or its parent).")
    parser.add_argument("--data-dir", "--data_dir", dest="data_dir", required=True, help="Where the prepared dataset is written.")
    parser.add_argument("--tasks", nargs="*", default=None, help="Tasks to include (default: all present).")
    parser.add_argument("--overwrite", action="store_true", help="Rebuild an already prepared config.")
    args = parser.parse_args(argv)
    builder = prepare(args.manual_dir, args.data_dir, args.tasks, args.overwrite)
    splits = {name: info.num_examples for name, info in builder.info.splits.items()}
    print(f"{builder.info.full_name}: layout {builder.info.metadata['layout']}, tasks {list(builder.tasks)}, "
          f"splits {splits}, in {builder.data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
