"""The errors of dataset files and folders: one family under `DatasetError`.

Each error also keeps the builtin base that says what kind of mistake it is
(`ValueError` for contents, `FileNotFoundError` for what is missing), so
`except ValueError` and `except FileNotFoundError` catch them as before.
Every message names the file or folder, says what was expected and how to
fix it; the command lines report any `DatasetError` in one line with exit
code 2 (`keras_mtcl.errors`).

Example:
>>> issubclass(ManifestError, DatasetError) and issubclass(ManifestError, ValueError)
True
>>> issubclass(MissingManualDownloadError, FileNotFoundError)
True
"""

from __future__ import annotations


class DatasetError(Exception):
    """Base of the errors raised by files and folders from outside: fix the data, not the code."""


class DatasetLayoutError(DatasetError, ValueError):
    """A dataset folder or file is not laid out as any supported release expects."""


class MissingManualDownloadError(DatasetError, FileNotFoundError):
    """A file or folder that the user must download and place by hand is missing."""


class LabelRangeError(DatasetError, ValueError):
    """A label holds values outside its allowed range (or NaN / infinite values)."""


class LabelShapeError(DatasetError, ValueError):
    """A label or image has the wrong number of dimensions or channels."""


class CorruptFileError(DatasetError, ValueError):
    """A file exists but cannot be read in its expected format."""


class ManifestError(DatasetError, ValueError):
    """A custom-folder manifest is missing, malformed or inconsistent."""


class PathEscapeError(ManifestError):
    """A path in a manifest points outside the dataset root."""


class EmptySplitError(DatasetError, ValueError):
    """A requested split has no examples in the source dataset."""


class PreparedDatasetMismatchError(DatasetError, ValueError):
    """A prepared dataset in `data_dir` was built from another source folder, or from files changed since."""


class UnknownSplitError(DatasetError, ValueError):
    """A requested split is not defined by the source dataset (e.g. a manifest without a `"val"` split)."""
