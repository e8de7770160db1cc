"""Custom multi-task datasets from a folder and a JSON manifest, as a tfds builder.

A dataset root holds `images/`, one folder per task and a `manifest.json` that
describes them. Example root:

```
my_rooms/
  manifest.json
  images/room_0.png ...
  semseg/room_0.png ...        # class ids, 9 = ignore
  depth/room_0.npy ...         # float metres
  splits/train.txt, splits/val.txt
```

and its `manifest.json`:

```json
{
  "name": "my_rooms",
  "version": "1.0.0",
  "images": {"dir": "images", "format": "png"},
  "tasks": {
    "semseg": {"kind": "classes", "num_classes": 5, "dir": "semseg", "format": "png", "ignore_value": 9},
    "depth": {"kind": "depth", "dir": "depth", "format": "npy"}
  },
  "splits": {"train": "splits/train.txt", "val": "splits/val.txt"}
}
```

Manifest fields (unknown fields are refused):

- `name` (required): dataset name, letters, digits, `_` and `-`; the tfds
  config name, so the data is written to `data_dir/multi_task_folder/<name>/<version>`.
- `version` (default `"1.0.0"`): `MAJOR.MINOR.PATCH`; bump it when the files change.
- `images`: `dir` (default `"images"`) and `format`, `"png"` or `"jpg"`
  (default `"png"`). File `<dir>/<id>.<format>`, read as RGB.
- `tasks` (required, at least one): {task name: entry}. A name is lower case
  letters, digits and `_`, starting with a letter; the standard names
  (`semseg`, `depth`, `normals`, `edge`, `saliency`, `human_parts`) get their
  standard losses and weights in `task_specs`, any other name its kind's loss
  and metrics (`keras_mtcl.kinds`) with weight 1. Each entry has
  - `kind` (required): `"classes"`, `"depth"`, `"normals"` or `"binary"`.
  - `dir` (default: the task name) and `format`: `"png"` or `"npy"` (default
    `"png"`, `"npy"` for depth). File `<dir>/<id>.<format>`.
  - classes: `num_classes` (required, 2..255); `ignore_value` (stored value
    of ignored pixels, default 255, `null` for none); `zero_is_ignore`
    (default false: stored 0 is unlabelled and stored k is class k - 1, the
    NYUD-v2 encoding).
  - depth: `scale` (stored units per metre, default 1; e.g. 1000 for 16-bit
    PNG in millimetres). 0 = invalid.
  - normals: PNG is 8-bit (`2 * x / 255 - 1`); NPY holds (H, W, 3) floats in
    [-1, 1]. The zero vector = invalid.
  - binary: `positive_value` (default 255 for PNG, 1 for NPY; a `{0, 1}` PNG
    needs `"positive_value": 1`) and `ignore_value` (default `null`). Stored 0
    is negative; any other stored value is refused (`LabelRangeError`, naming
    the file and the values).
- `splits` (optional): {split name: split file}, one id per line. Without it,
  every image forms the split `"train"`.

Every path in the manifest is relative to the dataset root and must stay in
it: absolute paths, `..` and symbolic links that lead outside the root are
refused with `PathEscapeError`, and so are data files that are links leading
outside it.

Examples hold `"image"`, `"id"` and one label per task in the conventions of
`keras_mtcl.tasks` (see `keras_mtcl.data.decode`).

Example:
```python
from keras_mtcl.data import folder
builder = folder.prepare("/data/my_rooms", data_dir="/data/tfds")
train = folder.load_split(builder, "train")
specs = folder.task_specs(folder.read_manifest("/data/my_rooms"))
```
or `mtcl-prepare folder --manual-dir /data/my_rooms --data-dir /data/tfds`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib
import re
import sys
import types
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

from keras_mtcl import tasks as task_lib
from keras_mtcl.data import decode, register_dataset
from keras_mtcl.data.decode import PathLike, listing
from keras_mtcl.data.builder import ManualTaskBuilder, read_split_files
from keras_mtcl.data.errors import (
    EmptySplitError,
    LabelRangeError,
    ManifestError,
    MissingManualDownloadError,
    PathEscapeError,
)
from keras_mtcl.errors import ConfigError
from keras_mtcl.kinds import get_kind
MANIFEST_NAME = "manifest.json"
IMAGE_FORMATS = ("png", "jpg")
LABEL_FORMATS = ("png", "npy")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_TASK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SPLIT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_TOP_KEYS = {"name", "version", "images", "tasks", "splits"}
# Fields of every task entry; each kind's schema (`_SCHEMAS`) adds its own.
_ENTRY_KEYS = frozenset({"kind", "dir", "format"})


@dataclasses.dataclass(frozen=True)
class TaskEntry:
    """One task of a manifest (fields as in the module docstring, defaults filled in)."""

    name: str
    kind: str
    dir: str
    format: str
    num_classes: int | None = None
    ignore_value: int | None = None
    zero_is_ignore: bool = False
    scale: float = 1.0
    positive_value: int | None = None


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A validated manifest (`read_manifest`)."""

    name: str
    version: str
    image_dir: str
    image_format: str
    tasks: Mapping[str, TaskEntry]
    splits: Mapping[str, str] | None


def _fail(path, message: str) -> ManifestError:
    return ManifestError(f"Manifest {path}: {message}")


def _check_keys(path, where: str, entry: Mapping, allowed: set, required: Sequence[str] = ()) -> None:
    if not isinstance(entry, Mapping):
        raise _fail(path, f"{where} must be a JSON object. Received: {where}={entry!r}")
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise _fail(path, f"{where} has unknown fields {unknown}; allowed: {sorted(allowed)}.")
    missing = [k for k in required if k not in entry]
    if missing:
        raise _fail(path, f"{where} lacks the required fields {missing}.")


def _int_field(path, where: str, value: Any, low: int, high: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(path, f"{where} must be an integer in {low}..{high}. Received: {where}={value!r}")
    return value


# ----------------------------------------------------------------------------- task entries per kind
# Field parsers: (manifest path, "tasks.<name>", entry, format) -> {TaskEntry field: value}.


def _classes_fields(path, where: str, entry: Mapping, fmt: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    fields["num_classes"] = _int_field(path, f"{where}.num_classes", entry["num_classes"], 2, 255)
    fields["ignore_value"] = _int_field(path, f"{where}.ignore_value", entry.get("ignore_value", 255), 0,
                                        65535, allow_none=True)
    zero = entry.get("zero_is_ignore", False)
    if not isinstance(zero, bool):
        raise _fail(path, f"{where}.zero_is_ignore must be true or false. Received: zero_is_ignore={zero!r}")
    fields["zero_is_ignore"] = zero
    if fields["ignore_value"] is not None and fields["ignore_value"] < fields["num_classes"] + zero:
        raise _fail(path, f"{where}.ignore_value must not be a class id (0..{fields['num_classes'] - 1 + zero}"
                    f" are stored classes). Received: ignore_value={fields['ignore_value']}")
    return fields


def _depth_fields(path, where: str, entry: Mapping, fmt: str) -> dict[str, Any]:
    scale = entry.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise _fail(path, f"{where}.scale must be a number > 0 (stored units per metre). Received: scale={scale!r}")
    return {"scale": float(scale)}


def _normals_fields(path, where: str, entry: Mapping, fmt: str) -> dict[str, Any]:
    return {}


def _binary_fields(path, where: str, entry: Mapping, fmt: str) -> dict[str, Any]:
    default = 255 if fmt == "png" else 1
    fields: dict[str, Any] = {}
    fields["positive_value"] = _int_field(path, f"{where}.positive_value", entry.get("positive_value", default),
                                          1, 65535)
    fields["ignore_value"] = _int_field(path, f"{where}.ignore_value", entry.get("ignore_value"), 0, 65535,
                                        allow_none=True)
    if fields["ignore_value"] in (0, fields["positive_value"]):
        raise _fail(path, f"{where}.ignore_value must differ from 0 and positive_value. "
                    f"Received: ignore_value={fields['ignore_value']}")
    return fields


# Decoders: (entry, stored array, file) -> label in the package conventions (`keras_mtcl.data.decode`).


def _decode_classes(entry: TaskEntry, raw, path: PathLike):
    return decode.decode_classes(raw, path, entry.num_classes, entry.name, ignore_value=entry.ignore_value,
                                 zero_is_ignore=entry.zero_is_ignore)


def _decode_depth(entry: TaskEntry, raw, path: PathLike):
    return decode.decode_depth(raw, path, scale=entry.scale)


def _decode_normals(entry: TaskEntry, raw, path: PathLike):
    if entry.format == "npy":
        return decode.decode_normals_float(raw, path)
    return decode.decode_normals_8bit(raw, path)


def _decode_binary(entry: TaskEntry, raw, path: PathLike):
    try:
        return decode.decode_binary(raw, path, entry.name, positive=entry.positive_value, ignore_value=entry.ignore_value)
    except LabelRangeError as error:
        stored = set(np.unique(np.asarray(raw)).tolist())
        if entry.positive_value != 1 and stored <= {0, 1, entry.ignore_value}:
            raise LabelRangeError(
                f"{error} It stores {{0, 1}}: set \"positive_value\": 1 in the manifest entry of {entry.name!r}."
            ) from None
        raise


@dataclasses.dataclass(frozen=True)
class _EntrySchema:
    """How a manifest task entry of one label kind is written and read.

    Attributes:
        keys: fields allowed besides `kind`, `dir` and `format`.
        required: fields required besides `kind`.
        default_format: `format` when the entry does not say.
        fields: `(manifest path, where, entry, format) -> {TaskEntry field: value}`.
        decode: `(entry, stored array, file) -> label` in the package conventions.
    """

    keys: frozenset
    required: tuple[str, ...]
    default_format: str
    fields: Callable
    decode: Callable


# Manifest schema. A manifest names each task's kind by its name (`"kind": "classes"`),
# so the file format is the one place of this module keyed by kind name: this
# table. Everything else about a kind comes from `keras_mtcl.kinds`; a new kind is
# written in manifests once it has an entry here (a test checks the table covers
# `keras_mtcl.kinds.KINDS`).
_SCHEMAS: Mapping[str, _EntrySchema] = types.MappingProxyType(
    {
        "classes": _EntrySchema(
            frozenset({"num_classes", "ignore_value", "zero_is_ignore"}), ("num_classes",), "png",
            _classes_fields, _decode_classes,
        ),
        "depth": _EntrySchema(frozenset({"scale"}), (), "npy", _depth_fields, _decode_depth),
        "normals": _EntrySchema(frozenset(), (), "png", _normals_fields, _decode_normals),
        "binary": _EntrySchema(
            frozenset({"positive_value", "ignore_value"}), (), "png", _binary_fields, _decode_binary
        ),
    }
)  # fmt: skip


def _task_entry(path, name: str, entry: Any) -> TaskEntry:
    where = f"tasks.{name}"
    if not isinstance(name, str) or not _TASK_NAME.match(name) or name in ("image", "id") + task_lib.RESERVED_NAMES:
        raise _fail(path, f"task names are lower case letters, digits and '_' (not 'image', 'id' or "
                    f"{list(task_lib.RESERVED_NAMES)}). Received: name={name!r}")
    if not isinstance(entry, Mapping) or entry.get("kind") not in _SCHEMAS:
        kind = entry.get("kind") if isinstance(entry, Mapping) else None
        raise _fail(path, f"{where}.kind must be one of {list(_SCHEMAS)}. Received: kind={kind!r}")
    schema = _SCHEMAS[entry["kind"]]
    _check_keys(path, where, entry, _ENTRY_KEYS | schema.keys, ["kind", *schema.required])
    fmt = entry.get("format", schema.default_format)
    if fmt not in LABEL_FORMATS:
        raise _fail(path, f"{where}.format must be one of {list(LABEL_FORMATS)}. Received: format={fmt!r}")
    folder = entry.get("dir", name)
    if not isinstance(folder, str) or not folder:
        raise _fail(path, f"{where}.dir must be a non-empty relative path. Received: dir={folder!r}")
    fields: dict[str, Any] = {"name": name, "kind": entry["kind"], "dir": folder, "format": fmt}
    fields.update(schema.fields(path, where, entry, fmt))
    return TaskEntry(**fields)


def parse_manifest(data: Any, path: PathLike = MANIFEST_NAME) -> Manifest:
    """Validates manifest contents (a parsed JSON object); see the module docstring.

    Raises:
        ManifestError: naming the manifest, the field and what was expected.
    """
    _check_keys(path, "the manifest", data, _TOP_KEYS, ["name", "tasks"])
    name = data["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(path, f"name must be letters, digits, '_' and '-' (it names the tfds config). "
                    f"Received: name={name!r}")
    version = data.get("version", "1.0.0")
    if not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise _fail(path, f"version must look like '1.0.0'. Received: version={version!r}")
    images = data.get("images", {})
    _check_keys(path, "images", images, {"dir", "format"})
    image_dir = images.get("dir", "images")
    image_format = images.get("format", "png")
    if not isinstance(image_dir, str) or not image_dir:
        raise _fail(path, f"images.dir must be a non-empty relative path. Received: dir={image_dir!r}")
    if image_format not in IMAGE_FORMATS:
        raise _fail(path, f"images.format must be one of {list(IMAGE_FORMATS)}. Received: format={image_format!r}")
    tasks = data["tasks"]
    if not isinstance(tasks, Mapping) or not tasks:
        raise _fail(path, f"tasks must be a non-empty object {{task name: entry}}. Received: tasks={tasks!r}")
    entries = {n: _task_entry(path, n, e) for n, e in tasks.items()}
    splits = data.get("splits")
    if splits is not None:
        if not isinstance(splits, Mapping) or not splits:
            raise _fail(path, "splits must be a non-empty object {split name: split file}. "
                        f"Received: splits={splits!r}")
        for split, file in splits.items():
            if not _SPLIT_NAME.match(split):
                raise _fail(path, f"split names are letters, digits and '_'. Received: split={split!r}")
            if not isinstance(file, str) or not file:
                raise _fail(path, f"splits.{split} must be a relative path. Received: {split}={file!r}")
        splits = types.MappingProxyType(dict(splits))
    return Manifest(name, version, image_dir, image_format, types.MappingProxyType(entries), splits)


def resolve_inside(root: PathLike, relative: str, what: str) -> pathlib.Path:
    """`root / relative`, refusing anything that leads outside `root`.

    Args:
        root: the dataset root.
        relative: a relative path from the manifest.
        what: the manifest field, for the error message.

    Raises:
        PathEscapeError: for an absolute path, a `..` component, or a path
            whose resolved location (following symbolic links) is outside `root`.
    """
    root = pathlib.Path(root)
    pure = pathlib.PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or pathlib.PureWindowsPath(relative).drive or ".." in pure.parts:
        raise PathEscapeError(
            f"The manifest path {what} must be relative to the dataset root {root} and must not contain '..'. "
            f"Received: {what}={relative!r}"
        )
    path = root.joinpath(*pure.parts)
    real, real_root = path.resolve(), root.resolve()
    if not real.is_relative_to(real_root):
        raise PathEscapeError(
            f"The manifest path {what} resolves to {real}, outside the dataset root {real_root} "
            f"(through a symbolic link). Copy the data into the root instead. Received: {what}={relative!r}"
        )
    return path


def read_manifest(root: PathLike) -> Manifest:
    """Reads and validates `root/manifest.json`, including that its paths stay in `root`.

    Raises:
        MissingManualDownloadError: if the root or the manifest does not exist.
        ManifestError: if the manifest is not valid JSON or not valid (see
            `parse_manifest`); `PathEscapeError` for a path leading outside.
    """
    root = pathlib.Path(root)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise MissingManualDownloadError(
            f"No {MANIFEST_NAME} in the dataset root {root}. Write one describing images/ and the task "
            "folders (format in the docstring of keras_mtcl.data.folder)."
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ManifestError(f"Manifest {path} is not valid JSON: {error}.") from error
    manifest = parse_manifest(data, path)
    resolve_inside(root, manifest.image_dir, "images.dir")
    for entry in manifest.tasks.values():
        resolve_inside(root, entry.dir, f"tasks.{entry.name}.dir")
    for split, file in (manifest.splits or {}).items():
        resolve_inside(root, file, f"splits.{split}")
    return manifest


def task_specs(manifest: Manifest) -> list[task_lib.TaskSpec]:
    """`TaskSpec`s of a manifest's tasks, in manifest order.

    A task with a standard name and that task's kind is built by its builder
    (`keras_mtcl.tasks.get_task`: standard loss, weight and metrics). Any other
    task is `TaskSpec(name, kind, channels=num_classes)`: its kind gives the
    loss, the metrics and the output channels, as for a standard task of the
    kind, with loss weight 1.
    """
    specs = []
    for entry in manifest.tasks.values():
        classes = {} if entry.num_classes is None else {"num_classes": entry.num_classes}
        standard = entry.name in task_lib.TASK_BUILDERS
        if standard and task_lib.get_task(entry.name).label_kind is get_kind(entry.kind):
            specs.append(task_lib.get_task(entry.name, **classes))
        else:
            specs.append(task_lib.TaskSpec(name=entry.name, kind=entry.kind, channels=entry.num_classes))
    return specs


def decode_label(entry: TaskEntry, path: PathLike) -> Any:
    """Reads and decodes one label file of a manifest task into the package conventions."""
    raw = decode.read_npy(path) if entry.format == "npy" else decode.read_png(path)
    return _SCHEMAS[entry.kind].decode(entry, raw, path)


def _files(root: pathlib.Path, manifest: Manifest, image_id: str) -> dict[str, pathlib.Path]:
    files = {"image": root / manifest.image_dir / f"{image_id}.{manifest.image_format}"}
    for entry in manifest.tasks.values():
        files[entry.name] = root / entry.dir / f"{image_id}.{entry.format}"
    return files


def read_example(root: PathLike, manifest: Manifest, image_id: str) -> dict:
    """Reads one example as numpy arrays: {"image": (H, W, 3) uint8, "id": str, task: label}."""
    root = pathlib.Path(root)
    files = _files(root, manifest, image_id)
    image = decode.read_rgb(files["image"])
    example = {"image": image, "id": image_id}
    for entry in manifest.tasks.values():
        path = files[entry.name]
        example[entry.name] = decode.fit_to_image(decode_label(entry, path), image.shape, path, entry.name)
    return example


def split_files(root: PathLike, manifest: Manifest) -> dict[str, pathlib.Path]:
    """{split: its split file} of the manifest's `splits` (none without them).

    Raises:
        PathEscapeError: for a split file outside `root`.
    """
    return {s: resolve_inside(root, f, f"splits.{s}") for s, f in (manifest.splits or {}).items()}


def read_splits(root: PathLike, manifest: Manifest) -> dict[str, list[str]]:
    """{split: ids}; without `splits` in the manifest, every image is in `"train"`.

    Raises:
        MissingManualDownloadError: for a missing split file or image folder.
        EmptySplitError: if every split is empty.
    """
    root = pathlib.Path(root)
    if manifest.splits is not None:
        return read_split_files(root, split_files(root, manifest), f"The manifest of {root}")
    image_dir = root / manifest.image_dir
    if not image_dir.is_dir():
        raise MissingManualDownloadError(f"Image folder {image_dir} (images.dir) not found.")
    suffix = f".{manifest.image_format}"
    ids = sorted(p.stem for p in image_dir.iterdir() if p.suffix.lower() == suffix and not p.name.startswith("."))
    if not ids:
        raise EmptySplitError(
            f"The dataset {root} has no examples: {image_dir} holds no {suffix} image, and the manifest lists no "
            "split files."
        )
    return {"train": ids}


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
    """A custom folder's config: its validated manifest."""

    manifest: Manifest | None = None

    def __repr__(self) -> str:
        # tfds logs the config of a custom dataset on every load: its name and version, not the whole manifest.
        return f"FolderConfig(name={self.name!r}, version={str(self.version)!r})"


@register_dataset("folder")
class MultiTaskFolder(ManualTaskBuilder):
    """A user's multi-task dataset described by a manifest; build it with `folder.prepare`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Custom folders described by manifest.json."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Pass the dataset root (the folder holding manifest.json, images/ and one folder per task) as "
        "`manual_dir`; the manifest format is in the docstring of keras_mtcl.data.folder."
    )
    TITLE = "custom folder"

    @property
    def manifest(self) -> Manifest:
        manifest = getattr(self.builder_config, "manifest", None)
        if manifest is None:
            raise ValueError(
                "MultiTaskFolder needs a FolderConfig with a manifest: use `folder.prepare(root, data_dir)`. "
                f"Received: config={self.builder_config!r}"
            )
        return manifest

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks of this dataset's examples, in manifest order."""
        return tuple(self.manifest.tasks)

    def task_kinds(self) -> dict[str, str]:
        return {n: e.kind for n, e in self.manifest.tasks.items()}

    def task_specs(self) -> list[task_lib.TaskSpec]:
        return task_specs(self.manifest)

    def describe(self) -> str:
        return f"Custom multi-task folder {self.manifest.name!r} with tasks {list(self.tasks)}."

    @classmethod
    def find_root(cls, manual_dir: PathLike) -> pathlib.Path:
        """The dataset root is `manual_dir` itself (`read_manifest` says what is missing)."""
        return pathlib.Path(manual_dir)

    @classmethod
    def config_for(cls, root: pathlib.Path, tasks: Sequence[str] | None) -> FolderConfig:
        """The config of the manifest of `root` (its name and version name the prepared copy)."""
        if tasks is not None:
            raise ConfigError(f"A custom folder carries the tasks of its manifest.json: pass no `tasks`. "
                              f"Received: tasks={tasks!r}")
        manifest = read_manifest(root)
        return FolderConfig(name=manifest.name, version=manifest.version, manifest=manifest,
                            description=f"Custom folder {manifest.name}.")

    @classmethod
    def tasks_and_splits(cls, manual_dir: PathLike | None) -> tuple[list[str] | None, list[str] | None]:
        """The manifest's tasks and splits; (None, None) without `manual_dir`."""
        if not manual_dir:
            return None, None
        manifest = read_manifest(manual_dir)
        return list(manifest.tasks), list(read_splits(manual_dir, manifest))

    def split_files(self, root: PathLike) -> dict[str, pathlib.Path]:
        return split_files(root, self.manifest)

    def read_splits(self, root: PathLike) -> dict[str, list[str]]:
        return read_splits(root, self.manifest)

    def example_files(self, root: pathlib.Path, image_id: str) -> list[pathlib.Path]:
        return list(_files(root, self.manifest, image_id).values())

    def read_example(self, root: pathlib.Path, image_id: str) -> dict:
        return read_example(root, self.manifest, image_id)

    def source_files(self, manual_dir: PathLike) -> list[pathlib.Path]:
        """The manifest, the split files and every file of the ids they list."""
        return [pathlib.Path(manual_dir) / MANIFEST_NAME, *super().source_files(manual_dir)]

    def check_tasks(self, root: pathlib.Path) -> None:
        """Nothing to check: the manifest's tasks are the config's, and `check_files` checks their files."""

    def check_files(self, root: pathlib.Path, ids: Sequence[str]) -> None:
        """Checks that every file of `ids` exists and stays inside `root`.

        Raises:
            MissingManualDownloadError: naming the missing files.
            PathEscapeError: naming a file that is a link leading outside `root`.
        """
        super().check_files(root, ids)
        real_root = root.resolve()
        outside = [p for i in ids for p in self.example_files(root, i) if not p.resolve().is_relative_to(real_root)]
        if outside:
            raise PathEscapeError(
                f"Files of the dataset {root} are symbolic links leading outside the root: {listing(outside)}. "
                "Copy the data into the root instead."
            )

    def missing_files_hint(self, root: pathlib.Path) -> str:
        expected = [f"{self.manifest.image_dir}/<id>.{self.manifest.image_format}"]
        expected += [f"{e.dir}/<id>.{e.format}" for e in self.manifest.tasks.values()]
        return f"The manifest expects, for every id of the splits: {', '.join(expected)}."

    def generation_metadata(self, root: pathlib.Path, splits: Mapping[str, list[str]]) -> dict[str, Any]:
        for (first, ids_a), (second, ids_b) in itertools.combinations(splits.items(), 2):
            shared = sorted(set(ids_a) & set(ids_b))
            if shared:
                decode.logger.warning(
                    "Splits %r and %r of %s share %d id(s) (%s): scores on one after training on the other are "
                    "optimistic. Fix the split files if this is not intended.",
                    first, second, root, len(shared), listing(shared),
                )
        return {
            "kinds": self.task_kinds(),
            "num_classes": {n: e.num_classes for n, e in self.manifest.tasks.items() if e.num_classes is not None},
        }


prepare = MultiTaskFolder.prepare
load_split = MultiTaskFolder.load_split
main = MultiTaskFolder.main

if __name__ == "__main__":
    sys.exit(main())
