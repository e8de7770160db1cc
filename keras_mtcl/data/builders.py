"""What the NYUD-v2, PASCAL-Context and custom-folder tfds builders share.

Each builds from a manual download, carries a subset of its dataset's tasks
(one builder config per subset) and describes its features with
`decode.features_for`.
"""

from __future__ import annotations

import pathlib

import tensorflow_datasets as tfds

from keras_mtcl import tasks as task_lib
from keras_mtcl.data import decode
from keras_mtcl.data.decode import MissingManualDownloadError, PathLike


class ManualTaskBuilder(tfds.core.GeneratorBasedBuilder):
    """A builder of multi-task examples from a manual download (abstract: not registered).

    Subclasses set `DESCRIPTION`, `HOMEPAGE` and `CITATION` and implement
    `_split_generators` / `_generate_examples` and `source_files` (what a
    prepared copy is checked against); they may override `tasks`
    `task_kinds` and `describe` when their tasks do not come from the builder
    config.
    """

    DESCRIPTION = ""
    HOMEPAGE = ""
    CITATION = ""

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks of this config's examples."""
        return tuple(self.builder_config.tasks)

    def task_kinds(self) -> dict[str, str]:
        """{task: label kind name} of this config's examples (standard tasks: `keras_mtcl.tasks.get_task`)."""
        return {t: task_lib.get_task(t).kind for t in self.tasks}

    def source_files(self, manual_dir: PathLike) -> list[pathlib.Path]:
        """Every file a build of this config from `manual_dir` reads (listed files may be missing).

        `keras_mtcl.data.decode.download_and_prepare` records their fingerprint with the prepared copy.
        """
        raise NotImplementedError(f"{type(self).__name__} does not list its source files.")

    def describe(self) -> str:
        """The dataset description of `info`."""
        return self.DESCRIPTION

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.describe(),
            features=decode.features_for(self.task_kinds()),
            metadata=tfds.core.MetadataDict(),
            homepage=self.HOMEPAGE or None,
            citation=self.CITATION or None,
            disable_shuffling=True,
        )

    @staticmethod
    def manual_root(dl_manager) -> pathlib.Path:
        """The manual download folder, or `MissingManualDownloadError` naming it."""
        try:
            return pathlib.Path(str(dl_manager.manual_dir))
        except AssertionError as error:  # tfds: manual_dir missing or empty
            raise MissingManualDownloadError(f"{error}") from error
