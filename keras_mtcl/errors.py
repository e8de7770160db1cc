"""User errors: the exceptions that mean "fix the input", and how the command lines report them.

Every command line of the package (`mtcl-*`, `apps/*.py`, `python -m keras_mtcl.data.nyud`,
`.pascal`, `.folder`) wraps its `main` in `reports_user_errors`: an exception
of a type listed in `USER_ERRORS` (a missing, unwritable or corrupt file, a
bad label, an invalid option or config field, a run folder holding another
run, an unreachable download host, ...) ends the command with exit code 2
and one line `error: <message>` on stderr; the message names the file or
field and the fix. Any other exception is a bug and keeps its traceback.

Example:
>>> @reports_user_errors
... def main(argv=None):
...     raise ConfigError("`epochs` must be an integer >= 1. Received: epochs='abc'")
>>> main([])  # prints "error: `epochs` must be ..." on stderr
2
"""

from __future__ import annotations

import errno
import functools
import sys
from typing import Callable, Sequence


class ConfigError(ValueError):
    """An option, config field or argument has a value that cannot work; the message names it and what is expected."""


# Named exception types of the package (besides ConfigError) that always come from outside input, as
# "module.Class". They are looked up only in modules already imported: an exception of a module never
# imported cannot have been raised, and the command lines stay as cheap to start as before.
USER_ERRORS = (
    "keras_mtcl.data.errors.DatasetError",  # every error of dataset files and folders
    "keras_mtcl.model.ModelFileError",
    "keras_mtcl.model.LegacyModelError",
    "keras_mtcl.export.ExportError",
    "keras_mtcl.training.RunFolderError",
    "keras_mtcl.training.NonFiniteLossError",
    "keras_mtcl.distribute.DistributionError",
    "keras_mtcl.backbones.hub.HubOfflineError",
    "keras_mtcl.backbones.weights.WeightsFormatError",
    "keras_mtcl.backbones.efficientnet_lite.EfficientNetLiteWeightsError",
    "keras_mtcl.backbones.hrnet.HRNetWeightsError",
    "keras_mtcl.optional.MissingExtraError",
)

# Operating-system errors about a path the user chose (FileNotFoundError covers every missing input,
# including the package's MissingManualDownloadError, WeightsNotFoundError and SavedModelNotFoundError).
_PATH_ERRORS = (FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError)
_PATH_ERRNOS = {errno.EROFS: "the file system is read-only", errno.ENOSPC: "the disk is full"}
if hasattr(errno, "EDQUOT"):
    _PATH_ERRNOS[errno.EDQUOT] = "the disk quota is exceeded"


def user_error_types() -> tuple[type[BaseException], ...]:
    """The classes of `USER_ERRORS` whose modules are imported, and the path errors of the operating system."""
    found = []
    for qualified in USER_ERRORS:
        module, _, name = qualified.rpartition(".")
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(getattr(loaded, name, None), type):
            found.append(getattr(loaded, name))
    return (ConfigError, *_PATH_ERRORS, *found)


def is_user_error(error: BaseException) -> bool:
    """Whether `error` comes from a mistake in the input (reported in one line) rather than a bug."""
    if isinstance(error, user_error_types()):
        return True
    return isinstance(error, OSError) and error.errno in _PATH_ERRNOS


def error_line(error: BaseException | str) -> str:
    """`error: <message>` on one line; errors of the operating system name the path and what to do."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        reason = _PATH_ERRNOS.get(error.errno, error.strerror)
        if isinstance(error, FileNotFoundError):
            text = f"{error.filename} does not exist ({reason}): check the path."
        else:
            text = f"cannot write {error.filename} ({reason}): choose a folder you can write to, or fix its permissions."
    else:
        text = str(error) or type(error).__name__
    return "error: " + " ".join(text.split())


def reports_user_errors(main: Callable[[Sequence[str] | None], int | None]) -> Callable[[Sequence[str] | None], int]:
    """Wraps a command line's `main(argv)`: a user error prints one `error:` line to stderr and returns 2."""

    @functools.wraps(main)
    def run(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv) or 0
        except Exception as error:  # noqa: BLE001 - re-raised unless it is a user error
            if not is_user_error(error):
                raise
            sys.stdout.flush()
            print(error_line(error), file=sys.stderr, flush=True)
            return 2

    return run


def require_positive(**options: int | None) -> None:
    """Raises `ConfigError` naming the first command-line option (`pad_multiple` -> `--pad-multiple`) below 1.

    None means "not given" and passes.
    """
    for name, value in options.items():
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} must be a positive integer. Received: {flag} {value}")


__all__ = ["ConfigError", "USER_ERRORS", "error_line", "is_user_error", "reports_user_errors", "require_positive",
           "user_error_types"]
