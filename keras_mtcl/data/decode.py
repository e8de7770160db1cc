"""Reading, decoding and checking the files of the multi-task datasets.

Shared by the NYUD-v2 (`keras_mtcl.data.nyud`), PASCAL-Context
(`keras_mtcl.data.pascal`) and custom-folder (`keras_mtcl.data.folder`)
builders. Everything here is numpy, Pillow and scipy; building and reading a
tfds dataset is `keras_mtcl.data.builder`'s.

Decoded labels follow the conventions of `keras_mtcl.tasks`:

- classes (semseg, human_parts): (H, W, 1) uint8, 0..C-1, 255 = ignore.
- depth: (H, W, 1) float32 metres, 0 = invalid.
- normals: (H, W, 3) float32, zero vector = invalid. 8-bit maps decode as
  `2 * x / 255 - 1` (computed in float32 in that order, as the reference
  loaders do); the result is not renormalised.
- binary (edge, saliency): (H, W, 1) uint8 in {0, 1}, 255 = ignore.

A label whose height and width differ from its image is resized to the image
with nearest-neighbour sampling, source index `floor(i * src / dst)` (OpenCV's
`INTER_NEAREST`, which the reference loaders use), for every label kind.

Problems with files from outside raise the errors of
`keras_mtcl.data.errors`; each message names the file, says what was
expected and how to fix it.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any, Iterable, Sequence

import numpy as np

from keras_mtcl.data.errors import (
    CorruptFileError,
    DatasetLayoutError,
    LabelRangeError,
    LabelShapeError,
    MissingManualDownloadError,
)
from keras_mtcl.kinds import IGNORE_INDEX

logger = logging.getLogger("keras_mtcl.data")

PathLike = str | pathlib.Path

# How many offending items an error message lists before it says "and N more".
MAX_LISTED = 10


def listing(items: Sequence[Any], limit: int = MAX_LISTED) -> str:
    """Formats a list for an error message, cut after `limit` items."""
    items = [str(i) for i in items]
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += f", ... and {len(items) - limit} more"
    return shown


# ---------------------------------------------------------------- file reading


def read_rgb(path: PathLike) -> np.ndarray:
    """Reads an image file as RGB.

    Grey, palette and RGBA images are converted to RGB (Pillow's
    `convert("RGB")`, as the reference loaders do).

    Returns:
        (H, W, 3) uint8.

    Raises:
        CorruptFileError: if the file cannot be decoded.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as error:
        raise CorruptFileError(
            f"Cannot decode the image {path}: {error}. Expected a readable RGB image (.jpg or .png); "
            "re-download or re-extract this file."
        ) from error


def read_png(path: PathLike) -> np.ndarray:
    """Reads a PNG (or other image) without colour conversion.

    Palette images give their palette indices (VOC-style label maps), grey
    images their grey values and 16-bit images their integers.

    Returns:
        (H, W) or (H, W, C) array of the stored values.

    Raises:
        CorruptFileError: if the file cannot be decoded.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.array(image)
    except (OSError, ValueError, SyntaxError) as error:
        raise CorruptFileError(
            f"Cannot decode the image {path}: {error}. Re-download or re-extract this file."
        ) from error


def read_npy(path: PathLike) -> np.ndarray:
    """Reads a `.npy` array (no pickles).

    Raises:
        CorruptFileError: if the file is not a readable numeric `.npy` array.
    """
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise CorruptFileError(
            f"Cannot read the numpy array {path}: {error}. Expected a `.npy` file written by "
            "`numpy.save`; re-download or re-extract this file."
        ) from error
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise CorruptFileError(
            f"The file {path} does not hold a numeric array. Received: dtype={getattr(array, 'dtype', None)}"
        )
    return array


def _is_hdf5(path: PathLike) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n" or _has_hdf5_header_at_512(f)


def _has_hdf5_header_at_512(f) -> bool:
    # MATLAB v7.3 files start with a 512-byte text header before the HDF5 signature.
    f.seek(512)
    return f.read(8) == b"\x89HDF\r\n\x1a\n"


def load_mat(path: PathLike) -> dict:
    """Reads a MATLAB `.mat` file (v4 to v7.2) with `scipy.io.loadmat`.

    Raises:
        CorruptFileError: if the file cannot be read, or is a v7.3 (HDF5)
            file, which scipy cannot read: the message suggests converting it.
    """
    import scipy.io

    v73 = (
        f"{path} is a MATLAB v7.3 (HDF5) file, which scipy.io.loadmat cannot read. Convert it to "
        "the v7 format, e.g. in MATLAB: `s = load(f); save(f, '-struct', 's', '-v7')`."
    )
    if _is_hdf5(path):
        raise CorruptFileError(v73)
    try:
        return scipy.io.loadmat(path)
    except NotImplementedError as error:
        raise CorruptFileError(v73) from error
    except (OSError, ValueError, TypeError) as error:
        raise CorruptFileError(f"Cannot read the MATLAB file {path}: {error}. Re-download this file.") from error


def read_mat_array(path: PathLike, key: str) -> np.ndarray:
    """Reads one numeric array from a `.mat` file.

    v4 to v7.2 files are read with `scipy.io.loadmat`. v7.3 (HDF5) files are
    read with h5py when it is installed (it is a TensorFlow dependency); the
    array is transposed back from MATLAB's column-major order.

    Args:
        path: the `.mat` file.
        key: the variable to read, e.g. `"segmentation"`.

    Returns:
        The array, as stored.

    Raises:
        DatasetLayoutError: if the file has no variable `key`.
        CorruptFileError: if the file cannot be read (a v7.3 file without h5py
            gives a message that suggests converting it).
    """
    if _is_hdf5(path):
        try:
            import h5py
        except ImportError as error:
            raise CorruptFileError(
                f"{path} is a MATLAB v7.3 (HDF5) file, which scipy.io.loadmat cannot read. Install h5py, "
                "or convert the file to the v7 format, e.g. in MATLAB: "
                "`s = load(f); save(f, '-struct', 's', '-v7')`."
            ) from error
        with h5py.File(path, "r") as f:
            if key not in f:
                raise DatasetLayoutError(
                    f"The MATLAB file {path} has no variable {key!r}. Found: {sorted(f.keys())}."
                )
            return np.asarray(f[key]).T
    contents = load_mat(path)
    if key not in contents:
        found = sorted(k for k in contents if not k.startswith("__"))
        raise DatasetLayoutError(f"The MATLAB file {path} has no variable {key!r}. Found: {found}.")
    return np.asarray(contents[key])


def read_split_file(path: PathLike) -> list[str]:
    """Reads a split file: one id per line, blank lines skipped.

    Raises:
        MissingManualDownloadError: if the file does not exist.
        DatasetLayoutError: if an id repeats or contains a path separator.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingManualDownloadError(f"Split file {path} not found.")
    ids = [line.strip() for line in path.read_text().splitlines()]
    ids = [i for i in ids if i]
    seen, repeated = set(), []
    for i in ids:
        if i in seen:
            repeated.append(i)
        seen.add(i)
    if repeated:
        raise DatasetLayoutError(f"Split file {path} lists ids more than once: {listing(repeated)}.")
    bad = [i for i in ids if "/" in i or "\\" in i or i in (".", "..")]
    if bad:
        raise DatasetLayoutError(
            f"Split file {path} holds entries that are not plain ids (no folders, no extension): {listing(bad)}."
        )
    return ids


def data_extensions(folder: pathlib.Path) -> dict[str, int]:
    """Counts the file extensions in a folder (lower case; hidden and text files skipped)."""
    counts: dict[str, int] = {}
    for entry in folder.iterdir():
        name = entry.name
        if name.startswith(".") or not entry.is_file():
            continue
        suffix = entry.suffix.lower()
        if suffix in (".txt", ".md", ".json", ".csv"):
            continue
        counts[suffix or "(none)"] = counts.get(suffix or "(none)", 0) + 1
    return counts


def missing_files(paths: Iterable[pathlib.Path]) -> list[pathlib.Path]:
    """The paths among `paths` that are not files."""
    return [p for p in paths if not p.is_file()]


# -------------------------------------------------------------------- checking


def to_single_channel(array: np.ndarray, path: PathLike, what: str) -> np.ndarray:
    """(H, W) or (H, W, 1) -> (H, W); anything else raises `LabelShapeError`."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise LabelShapeError(
            f"The {what} label {path} must be a single-channel (H, W) map. Received: shape={array.shape}"
        )
    return array


def _integral(array: np.ndarray, path: PathLike, what: str) -> np.ndarray:
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            bad = np.unique(array[~np.isfinite(array) | (array != np.round(array))])
            raise LabelRangeError(
                f"The {what} label {path} must hold integer class ids. Found non-integer values: "
                f"{listing(bad.tolist())}."
            )
    return array.astype(np.int64)


def _check_values(values: np.ndarray, allowed: np.ndarray, path: PathLike, what: str, expected: str):
    bad = np.setdiff1d(np.unique(values), allowed)
    if bad.size:
        raise LabelRangeError(
            f"The {what} label {path} holds values outside {expected}: {listing(bad.tolist())}."
        )


def resize_nearest(label: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize with OpenCV's `INTER_NEAREST` sampling.

    Output pixel (i, j) takes source pixel (floor(i * H_src / H), floor(j * W_src / W)).

    Args:
        label: (H_src, W_src) or (H_src, W_src, C).
        height, width: output size.

    Returns:
        (height, width) or (height, width, C), same dtype.
    """
    src_h, src_w = label.shape[:2]
    rows = np.minimum((np.arange(height) * src_h) // height, src_h - 1)
    cols = np.minimum((np.arange(width) * src_w) // width, src_w - 1)
    return label[rows[:, None], cols[None, :]]


# (task, label size, image size) combinations already warned about: one warning each, not one per file.
_RESIZES_WARNED: set[tuple] = set()


def fit_to_image(label: np.ndarray, image_shape: Sequence[int], path: PathLike, what: str) -> np.ndarray:
    """Resizes `label` (H', W', C) to the image's (H, W) with nearest sampling if they differ.

    A size mismatch is usually a wrong file or a label saved at another
    resolution: the first label of each (task, label size, image size)
    combination logs a warning naming the file; the others log at INFO level.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    if label.shape[:2] == (height, width):
        return label
    key = (what, label.shape[:2], (height, width))
    level = logging.INFO if key in _RESIZES_WARNED else logging.WARNING
    _RESIZES_WARNED.add(key)
    logger.log(
        level, "The %s label %s is %s, its image %s: resized with nearest sampling (further %s labels of this size "
        "are logged at INFO level).", what, path, "x".join(map(str, label.shape[:2])), f"{height}x{width}", what,
    )
    return resize_nearest(label, height, width)


# -------------------------------------------------------------------- decoding


def decode_classes(
    raw: np.ndarray,
    path: PathLike,
    num_classes: int,
    what: str = "semseg",
    ignore_value: int | None = IGNORE_INDEX,
    zero_is_ignore: bool = False,
) -> np.ndarray:
    """Decodes a stored class map to (H, W, 1) uint8 with 255 = ignore.

    Args:
        raw: (H, W) or (H, W, 1) stored values.
        path: the file, for error messages.
        num_classes: number of classes C.
        what: task name, for error messages.
        ignore_value: stored value that marks ignored pixels (mapped to 255),
            or None if the format has none.
        zero_is_ignore: the NYUD-v2 encoding: stored 0 is unlabelled (-> 255)
            and stored k in 1..C is class k - 1.

    Raises:
        LabelRangeError: for values outside the encoding (e.g. a stored 41 in
            NYUD-v2's 0..40), naming the file and the values.
        LabelShapeError: if the map is not single-channel.
    """
    values = _integral(to_single_channel(np.asarray(raw), path, what), path, what)
    if zero_is_ignore:
        allowed = np.arange(0, num_classes + 1)
        expected = f"0..{num_classes} (0 = unlabelled)"
    else:
        allowed = np.arange(0, num_classes)
        expected = f"0..{num_classes - 1}"
    if ignore_value is not None:
        allowed = np.union1d(allowed, [ignore_value])
        expected += f" or {ignore_value} (ignore)"
    _check_values(values, allowed, path, what, expected)
    out = np.full(values.shape, IGNORE_INDEX, dtype=np.uint8)
    if zero_is_ignore:
        valid = (values >= 1) & (values <= num_classes)
        out[valid] = (values[valid] - 1).astype(np.uint8)
    else:
        valid = (values >= 0) & (values < num_classes)
        if ignore_value is not None:
            valid &= values != ignore_value
        out[valid] = values[valid].astype(np.uint8)
    return out[..., None]


def decode_depth(raw: np.ndarray, path: PathLike, scale: float = 1.0) -> np.ndarray:
    """Decodes a depth map in metres (0 = invalid) to (H, W, 1) float32.

    Args:
        raw: (H, W) or (H, W, 1) stored depth.
        path: the file, for error messages.
        scale: stored units per metre (1 for metres, 1000 for millimetres).

    Raises:
        LabelRangeError: for NaN, infinite or negative values.
    """
    depth = to_single_channel(np.asarray(raw), path, "depth").astype(np.float32)
    nan = int(np.isnan(depth).sum())
    if nan:
        raise LabelRangeError(
            f"The depth label {path} holds {nan} NaN values. Store missing measurements as 0 (invalid)."
        )
    if not np.all(np.isfinite(depth)):
        raise LabelRangeError(
            f"The depth label {path} holds infinite values. Store missing measurements as 0 (invalid)."
        )
    if np.any(depth < 0):
        raise LabelRangeError(
            f"The depth label {path} holds negative values (min {float(depth.min())}). "
            "Expected metres >= 0, with 0 = invalid."
        )
    if scale != 1.0:
        depth = depth / np.float32(scale)
    return depth[..., None]


def decode_normals_8bit(raw: np.ndarray, path: PathLike) -> np.ndarray:
    """Decodes an 8-bit normal map: `2 * x / 255 - 1` -> (H, W, 3) float32 in [-1, 1].

    Raises:
        LabelShapeError: if the map is not (H, W, 3) (RGBA keeps RGB).
        LabelRangeError: if the stored values are not 8-bit.
    """
    raw = np.asarray(raw)
    if raw.ndim == 3 and raw.shape[-1] == 4:
        raw = raw[..., :3]
    if raw.ndim != 3 or raw.shape[-1] != 3:
        raise LabelShapeError(f"The normals label {path} must be an (H, W, 3) RGB map. Received: shape={raw.shape}")
    if raw.dtype != np.uint8:
        raise LabelRangeError(
            f"The normals label {path} must be an 8-bit image (values 0..255). Received: dtype={raw.dtype}"
        )
    return np.float32(2.0) * raw.astype(np.float32) / np.float32(255.0) - np.float32(1.0)


def decode_normals_float(raw: np.ndarray, path: PathLike, tolerance: float = 1e-3) -> np.ndarray:
    """Checks a float normal map (components in [-1, 1], zero vector = invalid) -> (H, W, 3) float32.

    Raises:
        LabelShapeError: if the map is not (H, W, 3).
        LabelRangeError: for NaN / infinite values or components outside
            [-1 - tolerance, 1 + tolerance].
    """
    raw = np.asarray(raw)
    if raw.ndim != 3 or raw.shape[-1] != 3:
        raise LabelShapeError(f"The normals label {path} must be an (H, W, 3) array. Received: shape={raw.shape}")
    normals = raw.astype(np.float32)
    if not np.all(np.isfinite(normals)):
        raise LabelRangeError(
            f"The normals label {path} holds NaN or infinite values. Store invalid pixels as the zero vector."
        )
    if np.any(np.abs(normals) > 1 + tolerance):
        raise LabelRangeError(
            f"The normals label {path} holds components outside [-1, 1] (max |x| = {float(np.abs(normals).max())}). "
            "Expected unit vectors, or the zero vector for invalid pixels."
        )
    return normals


def decode_binary(
    raw: np.ndarray,
    path: PathLike,
    what: str,
    positive: int = 1,
    ignore_value: int | None = None,
) -> np.ndarray:
    """Decodes a binary map with values {0, positive} (and `ignore_value`) to (H, W, 1) uint8 {0, 1, 255}.

    Args:
        raw: (H, W) or (H, W, 1) stored values.
        path: the file, for error messages.
        what: task name, for error messages.
        positive: the stored value of positive pixels (255 for 8-bit maps
            like `{0, 255}` edges, 1 for `{0, 1}` arrays).
        ignore_value: stored value of ignored pixels, or None.

    Raises:
        LabelRangeError: for any other value, naming the file and the values.
    """
    values = to_single_channel(np.asarray(raw), path, what)
    if values.dtype == bool:  # 1-bit images: True is white
        values = np.where(values, positive, 0)
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise LabelRangeError(f"The {what} label {path} holds NaN or infinite values.")
    allowed = [0, positive] + ([ignore_value] if ignore_value is not None else [])
    expected = "{" + ", ".join(str(v) for v in allowed) + "}"
    _check_values(values, np.asarray(allowed), path, what, expected)
    out = np.zeros(values.shape, dtype=np.uint8)
    out[values == positive] = 1
    if ignore_value is not None:
        out[values == ignore_value] = IGNORE_INDEX
    return out[..., None]
