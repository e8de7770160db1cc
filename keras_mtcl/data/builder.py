"""The one skeleton of the package's tfds builders: find, check, build, record, load and the command line.

`MultiTaskBuilder` is what the registry (`keras_mtcl.data.get_dataset`) hands
out: a dataset's tasks and `TaskSpec`s, `prepare` (build it into a
`data_dir`), `open_split` (a split of examples and its task specs) and `main`
(`mtcl-prepare <name>`). `ManualTaskBuilder` adds the flow of a dataset built
offline from a manual download:

1. `find_root`: the release folder, `manual_dir` itself or one of
   `ROOT_NAMES` below it, recognised by its `ROOT_MARKER` folder.
2. `read_splits`: one split file per split (`split_files`), one id per line.
3. `check_files`: every file of every listed id (`example_files`) exists.
4. `_split_generators`: the splits with ids, each example read by
   `read_example` and stored losslessly (`to_tfds_example`); an empty split
   is logged and recorded in `info.metadata["empty_splits"]`.
5. `build_from`: the offline build, recording the source's fingerprint with the
   prepared copy so that a copy of another folder, or of changed files, is
   refused (`PreparedDatasetMismatchError`) instead of silently reused.

A subclass (`keras_mtcl.data.nyud`, `.pascal`, `.folder`) holds only its
layout (where the files are, `TASK_FILES`) and its decoding
(`read_example`). Datasets with a fixed task list (`TASKS`) have one builder
config per non-empty subset of it (`TaskSubsetConfig`, named by
`config_name`); `prepare` builds the config of the tasks present.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import pathlib
from typing import Any, ClassVar, Iterable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

from keras_mtcl import tasks as task_lib
from keras_mtcl.data.decode import PathLike, listing, logger, missing_files, read_split_file
from keras_mtcl.data.errors import (
    DatasetLayoutError,
    EmptySplitError,
    MissingManualDownloadError,
    PreparedDatasetMismatchError,
    UnknownSplitError,
)
from keras_mtcl.errors import ConfigError, reports_user_errors
from keras_mtcl.kinds import get_kind

# The record of a prepared dataset's source, in its version folder (`builder.data_dir`).
SOURCE_RECORD = "keras_mtcl_source.json"


# ------------------------------------------------------------------ configs and features


def config_name(tasks: Sequence[str]) -> str:
    """Name of a builder config holding `tasks`, e.g. `"semseg-depth"`."""
    return "-".join(tasks)


def task_subsets(tasks: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of `tasks` in their order, the full set first."""
    n = len(tasks)
    subsets = [tuple(t for i, t in enumerate(tasks) if mask >> i & 1) for mask in range(1, 2**n)]
    return sorted(subsets, key=lambda s: (-len(s), [tasks.index(t) for t in s]))


@dataclasses.dataclass(eq=False)
class TaskSubsetConfig(tfds.core.BuilderConfig):
    """A config of a dataset with a fixed task list: the tasks its examples carry."""

    tasks: tuple[str, ...] = ()


def subset_configs(title: str, tasks: Sequence[str]) -> list[TaskSubsetConfig]:
    """One `TaskSubsetConfig` per non-empty subset of `tasks`, the full set (the default) first."""
    return [TaskSubsetConfig(name=config_name(s), tasks=s, description=f"{title} with tasks {', '.join(s)}.")
            for s in task_subsets(tasks)]


def features_for(kinds: Mapping[str, str]) -> tfds.features.FeaturesDict:
    """The tfds `FeaturesDict` of an example with the given {task: kind name}.

    "image" is stored as PNG (lossless: the pixels are those decoded from the
    source files with Pillow), each label as its kind's `tfds_feature`
    (discrete kinds: 1-channel PNG; depth and normals: zlib-compressed
    float32 tensors).

    Raises:
        ValueError: for an unknown kind name.
    """
    features = {
        "image": tfds.features.Image(shape=(None, None, 3), dtype=np.uint8, encoding_format="png"),
        "id": tfds.features.Text(),
    }
    for task, kind in kinds.items():
        features[task] = get_kind(kind).tfds_feature()
    return tfds.features.FeaturesDict(features)


def png_bytes(array: np.ndarray, compress_level: int = 1) -> bytes:
    """Encodes (H, W, 3) or (H, W, 1) uint8 as PNG bytes with Pillow.

    tfds stores these bytes as they are; Pillow at a low compression level is
    an order of magnitude faster than tfds's own TensorFlow PNG encoder.
    """
    from PIL import Image

    array = np.ascontiguousarray(array, dtype=np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def to_tfds_example(example: Mapping[str, Any], kinds: Mapping[str, str]) -> dict:
    """Replaces the image and the labels of discrete kinds ({task: kind name}) of a numpy example by PNG bytes."""
    out = dict(example)
    out["image"] = png_bytes(example["image"])
    for task, kind in kinds.items():
        if get_kind(kind).discrete:
            out[task] = png_bytes(example[task])
    return out


# ------------------------------------------------------------------ the source record


def source_fingerprint(root: PathLike, files: Iterable[PathLike]) -> dict[str, Any]:
    """What a prepared dataset records of its source: the resolved folder and a digest of its files.

    The digest covers each file's path relative to `root`, size and modification time (ns): cheap
    enough to recompute on every load, and it changes when a file is edited, added or removed.
    A listed file that does not exist counts as such (the build itself names it).

    Returns:
        {"source": resolved root, "files": number of files, "digest": sha256 hex digest}.
    """
    lines = set()
    for path in files:
        try:
            stat = os.stat(path)
            state = f"{stat.st_size}\t{stat.st_mtime_ns}"
        except (FileNotFoundError, NotADirectoryError):
            state = "missing"
        lines.add(f"{pathlib.Path(os.path.relpath(path, root)).as_posix()}\t{state}\n")
    digest = hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()
    return {"source": str(pathlib.Path(root).resolve()), "files": len(lines), "digest": digest}


def check_prepared_source(prepared: PathLike, fingerprint: Mapping[str, Any], rebuild: str) -> None:
    """Raises `PreparedDatasetMismatchError` unless `prepared` records `fingerprint` as its source.

    Args:
        prepared: the prepared dataset's version folder.
        fingerprint: the source's `source_fingerprint` now.
        rebuild: how to rebuild it, for the message.
    """
    prepared = pathlib.Path(prepared)
    source = fingerprint["source"]
    try:
        stored = json.loads((prepared / SOURCE_RECORD).read_text())
    except (OSError, ValueError):
        stored = None  # prepared by an older version of the package, or a damaged record
    if isinstance(stored, dict) and stored.get("source") == source and stored.get("digest") == fingerprint["digest"]:
        return
    if not isinstance(stored, dict) or "source" not in stored:
        problem = f"does not record which source folder it was built from, so it may not hold {source}"
    elif stored["source"] != source:
        problem = f"was built from another source folder, {stored['source']}, not {source}"
    else:
        problem = (f"was built from {source}, whose files changed since ({stored.get('files')} files then, "
                   f"{fingerprint['files']} now; a size or modification time differs, or a file was added or removed)")
    raise PreparedDatasetMismatchError(
        f"The prepared dataset {prepared} {problem}. Delete {prepared} to prepare it again from {source}, "
        f"choose another data_dir, or {rebuild}."
    )


def read_split_files(root: PathLike, files: Mapping[str, pathlib.Path], owner: str) -> dict[str, list[str]]:
    """{split: ids} from {split: split file} (an empty file gives []).

    Args:
        root: the dataset folder, for the message of empty splits.
        files: {split: its split file}.
        owner: what lists the split files, for the message of a missing one (e.g. "NYUD-v2 at <root>").

    Raises:
        MissingManualDownloadError: if a split file is missing.
        DatasetLayoutError: if a split file repeats an id or lists a path.
        EmptySplitError: if every split is empty.
    """
    splits = {}
    for split, path in files.items():
        if not path.is_file():
            raise MissingManualDownloadError(
                f"Split file {path} not found. {owner} lists the ids of its splits in "
                f"{listing(os.path.relpath(p, root) for p in files.values())}, one id per line (no extension)."
            )
        splits[split] = read_split_file(path)
    if not any(splits.values()):
        raise EmptySplitError(
            f"Every split file of {root} is empty ({listing(files.values())}): there is nothing to build. "
            "Each line of a split file names one image id."
        )
    return splits


# ------------------------------------------------------------------ the skeleton


class LocalDatasetInfo(tfds.core.DatasetInfo):
    """The `DatasetInfo` of a dataset built on this machine: never looked up in tfds's public bucket.

    tfds looks the info of a builder whose data is not prepared yet up in its
    GCS bucket: offline a network attempt, and each lookup leaves an empty
    folder in the temporary directory (tfds 4.9).
    """

    def initialize_from_bucket(self) -> None:
        return None


class MultiTaskBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A dataset of the registry: its tasks, how to prepare it, read a split of it, and its command line.

    Subclasses are registered with `@keras_mtcl.data.register_dataset(name)`
    and implement `prepare`; those whose tasks are not a config's `tasks`
    override `tasks`, `task_kinds` and `task_specs`.
    """

    DESCRIPTION: ClassVar[str] = ""
    HOMEPAGE: ClassVar[str] = ""
    CITATION: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""  # the dataset's name in messages, e.g. "NYUD-v2"
    TASKS: ClassVar[tuple[str, ...]] = ()  # a fixed task list, one config per subset; empty: the config decides
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "val")
    NEEDS_MANUAL_DIR: ClassVar[bool] = True  # read from a downloaded folder (False: generated)
    dataset_name: ClassVar[str] = ""  # set by `register_dataset`

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks of this config's examples."""
        return tuple(self.builder_config.tasks)

    def task_kinds(self) -> dict[str, str]:
        """{task: label kind name} of this config's examples (standard tasks: `keras_mtcl.tasks.get_task`)."""
        return {t: task_lib.get_task(t).kind for t in self.tasks}

    def task_specs(self) -> list[task_lib.TaskSpec]:
        """The `TaskSpec`s of this config's tasks (default: the benchmark's `keras_mtcl.tasks.task_set`)."""
        return task_lib.task_set(self.dataset_name, tasks=self.tasks)

    def describe(self) -> str:
        """The dataset description of `info`."""
        return self.DESCRIPTION

    def _info(self) -> tfds.core.DatasetInfo:
        return LocalDatasetInfo(
            builder=self,
            description=self.describe(),
            features=features_for(self.task_kinds()),
            metadata=tfds.core.MetadataDict(),
            homepage=self.HOMEPAGE or None,
            citation=self.CITATION or None,
            disable_shuffling=True,
        )

    def load_split(self, split: str, shuffle_files: bool = False):
        """`as_dataset(split)` with a clear error for an empty or unknown split.

        Returns:
            A `tf.data.Dataset` of example dicts ("image" (H, W, 3) uint8, "id", one entry per task).

        Raises:
            EmptySplitError: if the split's source list was empty (it is not generated).
            UnknownSplitError: if the split does not exist.
        """
        splits = list(self.info.splits.keys())
        if split not in splits:
            empty = list(self.info.metadata.get("empty_splits", []) if self.info.metadata else [])
            if split in empty:
                raise EmptySplitError(
                    f"Split {split!r} of {self.info.full_name} has no examples: its split file in the source "
                    f"dataset is empty. Available splits: {splits}."
                )
            raise UnknownSplitError(
                f"Unknown split: {self.info.full_name} has no split {split!r}, only {splits}. For a custom folder, "
                f"list a {split!r} split file under \"splits\" in its manifest.json. Received: split={split!r}"
            )
        return self.as_dataset(split=split, shuffle_files=shuffle_files)

    @classmethod
    def prepare(cls, manual_dir: PathLike | None, data_dir: PathLike, tasks: Sequence[str] | None = None,
                overwrite: bool = False) -> MultiTaskBuilder:
        """Builds the dataset into `data_dir` (offline) and returns the builder; see the subclass."""
        raise NotImplementedError(f"{cls.__name__} does not say how it is prepared.")

    @classmethod
    def tasks_and_splits(cls, manual_dir: PathLike | None) -> tuple[list[str] | None, list[str] | None]:
        """(task names, split names) of the dataset, read without building it; (None, None) if they need the folder."""
        return list(cls.TASKS), list(cls.SPLITS)

    @classmethod
    def open_split(cls, split: str, manual_dir: PathLike | None, data_dir: PathLike,
                   size: Sequence[int] = (120, 160), count: int = 32, seed: int = 0):
        """A split of examples (package example format) and the `TaskSpec`s of its tasks.

        Args:
            split: e.g. `"train"` or `"val"`.
            manual_dir: the downloaded folder (datasets with `NEEDS_MANUAL_DIR`).
            data_dir: where the dataset is prepared on first use.
            size, count, seed: (height, width), number and seed of generated
                examples (datasets without `NEEDS_MANUAL_DIR`).

        Returns:
            (a `tf.data.Dataset` of example dicts, list of `TaskSpec`).
        """
        builder = cls.prepare(manual_dir, data_dir)
        return builder.load_split(split), builder.task_specs()

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Adds the dataset's own options to its command line; each is passed to `prepare` by its name."""

    @classmethod
    def main(cls, argv: Sequence[str] | None = None) -> int:
        """Command line: prepare the dataset (`mtcl-prepare <name> ...`); a user error exits with code 2."""
        return reports_user_errors(cls._command)(argv)

    @classmethod
    def _command(cls, argv: Sequence[str] | None) -> int:
        source = "a downloaded release" if cls.NEEDS_MANUAL_DIR else "its generator"
        parser = argparse.ArgumentParser(description=f"Prepare {cls.TITLE} (tfds) from {source}.")
        common = ["data_dir", "overwrite"]
        if cls.NEEDS_MANUAL_DIR:
            parser.add_argument("--manual-dir", "--manual_dir", "--root", dest="manual_dir", required=True,
                                help=f"The {cls.TITLE} folder (or its parent).")
            common.append("manual_dir")
        parser.add_argument("--data-dir", "--data_dir", dest="data_dir", required=True,
                            help="Where the prepared dataset is written.")
        if cls.TASKS:
            parser.add_argument("--tasks", nargs="*", default=None, help="Tasks to include (default: all present).")
            common.append("tasks")
        parser.add_argument("--overwrite", action="store_true", help="Rebuild an already prepared config.")
        cls.add_arguments(parser)
        args = vars(parser.parse_args(argv))
        options = {k: v for k, v in args.items() if k not in common}
        builder = cls.prepare(args.get("manual_dir"), args["data_dir"], tasks=args.get("tasks"),
                              overwrite=args["overwrite"], **options)
        splits = {name: info.num_examples for name, info in builder.info.splits.items()}
        layout = builder.info.metadata.get("layout") if builder.info.metadata else None
        print(f"{builder.info.full_name}: {f'layout {layout}, ' if layout else ''}tasks {list(builder.tasks)}, "
              f"splits {splits}, in {builder.data_dir}")
        return 0


class ManualTaskBuilder(MultiTaskBuilder, skip_registration=True):
    """A dataset built offline from a manual download (abstract: subclasses hold the layout and decoding).

    Subclasses set `TITLE`, `ROOT_MARKER` (the folder that marks the release
    folder), `ROOT_NAMES` (the release's usual folder names), `SPLIT_DIR`,
    `TASK_FILES` ({task: where its files are}, for messages) and
    `MANUAL_DOWNLOAD_INSTRUCTIONS`, and implement `available_tasks`,
    `example_files` and `read_example`; they may add to `check_files` and
    `generation_metadata`.
    """

    ROOT_MARKER: ClassVar[str] = ""
    ROOT_NAMES: ClassVar[tuple[str, ...]] = ()
    SPLIT_DIR: ClassVar[str] = ""
    TASK_FILES: ClassVar[Mapping[str, str]] = {}

    # ---------------------------------------------------------------- layout (overridden per dataset)

    @classmethod
    def find_root(cls, manual_dir: PathLike) -> pathlib.Path:
        """The dataset folder: `manual_dir` itself or its subfolder named one of `ROOT_NAMES`.

        Raises:
            MissingManualDownloadError: if no folder holding `ROOT_MARKER` is found.
            DatasetLayoutError: if `manual_dir` holds more than one release.
        """
        manual_dir = pathlib.Path(manual_dir)
        instructions = cls.MANUAL_DOWNLOAD_INSTRUCTIONS
        if not manual_dir.is_dir():
            raise MissingManualDownloadError(f"The {cls.TITLE} folder {manual_dir} does not exist.\n{instructions}")
        if (manual_dir / cls.ROOT_MARKER).is_dir():
            return manual_dir
        found = [manual_dir / name for name in cls.ROOT_NAMES if (manual_dir / name / cls.ROOT_MARKER).is_dir()]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise DatasetLayoutError(
                f"{manual_dir} holds more than one {cls.TITLE} release: {[str(f) for f in found]}. "
                "Pass one of them as `manual_dir`."
            )
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in manual_dir.iterdir())
        article = "an" if cls.ROOT_MARKER[:1].lower() in tuple("aeiou") else "a"
        raise MissingManualDownloadError(
            f"No {cls.TITLE} dataset in {manual_dir}: expected {article} `{cls.ROOT_MARKER}/` folder in it or in one of "
            f"{[n + '/' for n in cls.ROOT_NAMES]}. Found: [{listing(entries)}].\n{instructions}"
        )

    @classmethod
    def available_tasks(cls, manual_dir: PathLike) -> tuple[str, ...]:
        """The tasks of `TASKS` whose files are in the folder, in that order."""
        raise NotImplementedError(f"{cls.__name__} does not say which tasks a folder carries.")

    @classmethod
    def split_files(cls, root: PathLike) -> dict[str, pathlib.Path]:
        """{split: its split file}: `<SPLIT_DIR>/<split>.txt` for each of `SPLITS`."""
        return {split: pathlib.Path(root) / cls.SPLIT_DIR / f"{split}.txt" for split in cls.SPLITS}

    @classmethod
    def read_splits(cls, root: PathLike) -> dict[str, list[str]]:
        """{split: ids} from the split files (`read_split_files`)."""
        return read_split_files(root, cls.split_files(root), f"{cls.TITLE} at {root}")

    def example_files(self, root: pathlib.Path, image_id: str) -> list[pathlib.Path]:
        """Every file the example `image_id` reads with this config's tasks, its image first."""
        raise NotImplementedError(f"{type(self).__name__} does not list the files of an example.")

    def read_example(self, root: pathlib.Path, image_id: str) -> dict:
        """One example as numpy arrays: {"image": (H, W, 3) uint8, "id": str, task: (H, W, C) label}."""
        raise NotImplementedError(f"{type(self).__name__} does not read examples.")

    def missing_files_hint(self, root: pathlib.Path) -> str:
        """What the message of missing files adds: where the files go and how to fix it."""
        return "Re-extract the release so that every id of the split files has its files."

    def generation_metadata(self, root: pathlib.Path, splits: Mapping[str, list[str]]) -> dict[str, Any]:
        """What `info.metadata` records besides the tasks and the empty splits (called before generation)."""
        return {"missing_tasks": [t for t in self.TASKS if t not in self.tasks]}

    # ---------------------------------------------------------------- the shared flow

    def check_files(self, root: pathlib.Path, ids: Sequence[str]) -> None:
        """Raises `MissingManualDownloadError` naming the missing files of `ids`, if any."""
        missing = sorted(set(missing_files(p for i in ids for p in self.example_files(root, i))))
        if missing:
            raise MissingManualDownloadError(
                f"{len(missing)} file(s) listed by the split files are missing from the {self.TITLE} folder {root}: "
                f"{listing(missing)}. {self.missing_files_hint(root)}"
            )

    def check_tasks(self, root: pathlib.Path) -> None:
        """Raises `MissingManualDownloadError` if this config needs tasks whose files the folder lacks."""
        present = self.available_tasks(root)
        absent = [t for t in self.tasks if t not in present]
        if absent:
            raise MissingManualDownloadError(
                f"Config {self.builder_config.name!r} needs tasks {absent}, but {root} has no "
                f"{[self.TASK_FILES[t] for t in absent]} folder. The folder carries tasks {list(present)}: build "
                f"config {config_name(present)!r} (what `{self.dataset_name}.prepare` does), or add the missing "
                f"files.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )

    def source_files(self, manual_dir: PathLike) -> list[pathlib.Path]:
        """Every file a build of this config from `manual_dir` reads (listed files may be missing).

        `build_from` records their fingerprint with the prepared copy.
        """
        root = self.find_root(manual_dir)
        splits = self.read_splits(root)
        return [*self.split_files(root).values(), *(p for ids in splits.values() for i in ids
                                                     for p in self.example_files(root, i))]

    @staticmethod
    def manual_root(dl_manager) -> pathlib.Path:
        """The manual download folder, or `MissingManualDownloadError` naming it."""
        try:
            return pathlib.Path(str(dl_manager.manual_dir))
        except AssertionError as error:  # tfds: manual_dir missing or empty
            raise MissingManualDownloadError(f"{error}") from error

    def _split_generators(self, dl_manager):
        root = self.find_root(self.manual_root(dl_manager))
        self.check_tasks(root)
        splits = self.read_splits(root)
        for ids in splits.values():
            self.check_files(root, ids)
        empty = [s for s, ids in splits.items() if not ids]
        for split in empty:
            logger.warning("%s split %r of %s is empty: it is not generated.", self.TITLE, split, root)
        self.info.metadata.update(
            {"tasks": list(self.tasks), "empty_splits": empty, **self.generation_metadata(root, splits)}
        )
        return {s: self._generate_examples(root, ids) for s, ids in splits.items() if ids}

    def _generate_examples(self, root: pathlib.Path, ids: Sequence[str]) -> Iterator[tuple[str, dict]]:
        kinds = self.task_kinds()
        for image_id in ids:
            yield image_id, to_tfds_example(self.read_example(root, image_id), kinds)

    def build_from(self, manual_dir: PathLike, overwrite: bool = False) -> None:
        """Builds the dataset offline into `data_dir` from `manual_dir`, or reuses its prepared copy.

        A prepared copy records its source (`source_fingerprint` of `source_files(manual_dir)`) and is
        reused only for that same folder with unchanged files.

        Args:
            manual_dir: the folder holding the downloaded files.
            overwrite: rebuild even if the dataset was already prepared (the
                source files are never touched).

        Raises:
            PreparedDatasetMismatchError: if a prepared copy exists, `overwrite`
                is false and it was built from another folder or from files that
                changed since (or does not record its source).
        """
        prepared = pathlib.Path(self.data_dir)
        # Taken before the build: a file changed during it makes the record stale, never wrongly current.
        fingerprint = source_fingerprint(manual_dir, self.source_files(manual_dir))
        reuse = prepared.exists() and not overwrite  # what tfds takes for "prepared"
        if reuse:
            check_prepared_source(
                prepared, fingerprint,
                f"rebuild it with overwrite=True (--overwrite of `python -m {type(self).__module__}`)",
            )
        mode = tfds.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite else tfds.GenerateMode.REUSE_DATASET_IF_EXISTS
        config = tfds.download.DownloadConfig(
            manual_dir=str(manual_dir),
            download_mode=mode,
            compute_stats=tfds.download.ComputeStatsMode.SKIP,
            try_download_gcs=False,
        )
        self.download_and_prepare(download_config=config)
        if not reuse:
            temporary = prepared / f".{SOURCE_RECORD}.tmp"
            temporary.write_text(json.dumps(fingerprint))
            os.replace(temporary, prepared / SOURCE_RECORD)  # a reader never sees half a record

    # ---------------------------------------------------------------- preparing

    @classmethod
    def config_for(cls, root: pathlib.Path, tasks: Sequence[str] | None) -> str | tfds.core.BuilderConfig:
        """The config to build from `root`: that of `tasks`, or of every task present (logging the missing ones).

        Raises:
            MissingManualDownloadError: if the folder carries no task.
            ConfigError: if `tasks` is empty or names a task outside `TASKS`.
        """
        present = cls.available_tasks(root)
        if not present:
            raise MissingManualDownloadError(
                f"{root} has images but no label files ({list(cls.TASK_FILES.values())}).\n"
                f"{cls.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        if tasks is None:
            missing = [t for t in cls.TASKS if t not in present]
            if missing:
                logger.warning("%s at %s carries tasks %s; missing: %s. Building config %r.",
                               cls.TITLE, root, list(present), missing, config_name(present))
            return config_name(present)
        if not tasks or any(t not in cls.TASKS for t in tasks):
            raise ConfigError(f"`tasks` must be a non-empty subset of {cls.TASKS}. Received: tasks={tasks!r}")
        return config_name(tuple(t for t in cls.TASKS if t in tasks))

    @classmethod
    def prepare(cls, manual_dir: PathLike, data_dir: PathLike, tasks: Sequence[str] | None = None,
                overwrite: bool = False, **options) -> ManualTaskBuilder:
        """Builds the dataset from a downloaded release into `data_dir` (offline) and returns the builder.

        Args:
            manual_dir: the release folder, or a folder that contains it.
            data_dir: where tfds writes the prepared dataset.
            tasks: tasks to include; None includes every task whose files are
                present and logs the missing ones.
            overwrite: rebuild even if this config was already prepared.
            **options: the builder's own constructor arguments (e.g. PASCAL-Context's `cache_dir`).

        Returns:
            The prepared builder (`builder.tasks`, `builder.info.metadata`).

        Raises:
            MissingManualDownloadError: if the folder, a split file, a requested
                task's files or a listed file is missing.
            DatasetLayoutError: if the folder is not laid out as a release.
            ConfigError: if `tasks` names an unknown task.
            The label errors of `keras_mtcl.data.errors`, for a file that does
            not hold what the layout promises.
        """
        root = cls.find_root(manual_dir)
        builder = cls(data_dir=str(data_dir), config=cls.config_for(root, tasks), **options)
        builder.build_from(root, overwrite=overwrite)
        return builder
