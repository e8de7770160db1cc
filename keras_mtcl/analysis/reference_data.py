"""The reference training input pipeline (numpy / OpenCV transforms in a PyTorch DataLoader), timed.

The yardstick for the speed of `keras_mtcl.data.pipeline.train_pipeline`:
the augmentation of the PyTorch multi-task codebases (MTL-PyTorch, ATRC,
InvPT) written the way they write it, as a list of small transform classes,
each a `__call__(sample)` on a dict of numpy arrays, composed and run by a
`torch.utils.data.DataLoader` in worker processes.
`keras_mtcl.analysis.data_bench.compare_with_reference` times both on the same
decoded examples (`tools/bench_reference_data.py`).

The chain (`reference_transforms`), on an image loaded as float32 (H, W, 3)
0..255 and labels as float32 (H, W, C), as the reference loaders read them:

1. `RandomScaling`: s uniform in [0.5, 2.0], new size `int(size * s)`; the
   image bilinear (`cv2.resize`), every label nearest, depth divided by s.
2. `RandomCrop` to the crop size (NYUD 448x576): a smaller map is first
   padded at the bottom and right with the pad values (`PAD_VALUES`); the
   window is redrawn up to 10 times while one semseg class covers >= 75%
   of the valid pixels of the window.
3. `RandomHorizontalFlip` with p = 0.5: every map mirrored, normals' x negated.
4. `PhotoMetricDistortion` (mmseg's, on the float32 image): brightness
   +-32, contrast x[0.5, 1.5] (before or after the colour steps, p = 0.5
   each), saturation x[0.5, 1.5] and hue +-18 on OpenCV's 0..180 scale
   (2 degrees a unit) through `cv2.cvtColor` to float HSV and back; each
   step with p = 0.5; the image is clipped to [0, 255] after each step.
5. `Normalize`: `(x / 255 - mean) / std`, ImageNet mean and std.
6. `PadImage` to the crop size (image 0, semseg / edge 255, depth 0, normals
   the zero vector): a no-op after the crop, kept since the chain has it.
7. `ToTensor`: (C, H, W) float32 torch tensors (the losses cast class labels).

Where it differs from ours (`keras_mtcl.data.augment`): the padding of a
small scaled image comes before the photometric distortion and the
normalisation, so padded image pixels end as `-mean / std` (ours pads after,
with 0); labels are resampled by OpenCV's INTER_NEAREST; no label is
validated as it streams.

Randomness comes from Python's `random` module, which the DataLoader seeds
in each worker. Each worker (or the main process for `workers=0`) runs
OpenCV on one thread (`cv2.setNumThreads(1)`) and torch on one thread, so a
worker is one core.

Needs torch and OpenCV (`pip install torch opencv-python-headless`; the
`torch` and `dev` extras of keras_mtcl); importing this module does not.

Example:
>>> import numpy as np
>>> sample = {"image": np.zeros((2, 3, 3)), "normals": np.zeros((2, 3, 3))}
>>> sample["normals"][0, 0] = (0.6, 0.0, 0.8)
>>> out = RandomHorizontalFlip(probability=1.0)(sample)
>>> out["normals"][0, 2].tolist()
[-0.6, 0.0, 0.8]
"""

from __future__ import annotations

import os
import random
import time
import types
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from keras_mtcl import optional
from keras_mtcl.data.augment_config import (
    BRIGHTNESS_DELTA, CAT_MAX_RATIO, CONTRAST_RANGE, CROP_TRIES, FLIP_PROBABILITY, HUE_DELTA, SATURATION_RANGE,
    SCALE_RANGE,
)
from keras_mtcl.kinds import IGNORE_INDEX
from keras_mtcl.preprocessing import IMAGENET_MEAN, IMAGENET_STD

Sample = dict[str, np.ndarray]

NYUD_TASKS = ("semseg", "depth", "normals", "edge")
# Fill values of the padding, by key, as the reference codebases keep them.
PAD_VALUES: Mapping[str, float] = types.MappingProxyType(
    {
        "image": 0.0,
        "semseg": IGNORE_INDEX,
        "edge": IGNORE_INDEX,
        "human_parts": IGNORE_INDEX,
        "saliency": IGNORE_INDEX,
        "depth": 0.0,
        "normals": 0.0,
    }
)
INSTALL = "pip install torch opencv-python-headless"


def import_torch_and_cv2() -> tuple[types.ModuleType, types.ModuleType]:
    """(torch, cv2), or one `MissingExtraError` (an ImportError) naming both packages and the pip command."""
    missing = optional.missing_packages("torch") + optional.missing_packages("dev", ["cv2"])
    if missing:
        raise optional.MissingExtraError(
            f"The reference input pipeline (keras_mtcl.analysis.reference_data) needs torch and OpenCV; "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed here. Install them: "
            f"{INSTALL} (or keras_mtcl's 'torch' and 'dev' extras: pip install -e \".[torch,dev]\").",
            "torch,dev",
            missing,
        )
    purpose = "The reference input pipeline (keras_mtcl.analysis.reference_data)"
    return optional.import_optional("torch", "torch", purpose), optional.import_optional("cv2", "dev", purpose)


def _cv2() -> types.ModuleType:
    return import_torch_and_cv2()[1]


def _labels(sample: Mapping[str, np.ndarray]) -> list[str]:
    return [key for key in sample if key != "image"]


def _pad_to(value: np.ndarray, height: int, width: int, fill: float) -> np.ndarray:
    """Pads (H, W, C) at the bottom and right to at least (height, width) with `fill`."""
    rows, cols = max(height - value.shape[0], 0), max(width - value.shape[1], 0)
    if not rows and not cols:
        return value
    return np.pad(value, ((0, rows), (0, cols), (0, 0)), mode="constant", constant_values=fill)


# ----------------------------------------------------------------------------- transforms


class Compose:
    """Applies `transforms` in order (torchvision's `Compose`, for dict samples)."""

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample]]):
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        for transform in self.transforms:
            sample = transform(sample)
        return sample


class RandomScaling:
    """Resizes every map by a factor s uniform in `scale_range`: image bilinear, labels nearest, depth / s.

    Input: {"image": (H, W, 3) float32, label: (H, W, C) float32}.
    Output: the same keys, (int(H * s), int(W * s), C).
    """

    def __init__(self, scale_range: tuple[float, float] = SCALE_RANGE):
        self.scale_range = scale_range

    def __call__(self, sample: Sample) -> Sample:
        cv2 = _cv2()
        factor = random.uniform(*self.scale_range)
        height, width = sample["image"].shape[:2]
        size = (int(width * factor), int(height * factor))  # OpenCV takes (width, height)
        sample["image"] = cv2.resize(sample["image"], size, interpolation=cv2.INTER_LINEAR)
        for key in _labels(sample):
            label = cv2.resize(sample[key], size, interpolation=cv2.INTER_NEAREST)
            label = label.reshape(size[1], size[0], -1)  # OpenCV drops a single channel axis
            if key == "depth":
                label = label / np.float32(factor)
            sample[key] = label
        return sample


class RandomCrop:
    """Crops every map to `size` at one random window, padding smaller maps first with `pad_values`.

    With `cat_max_ratio < 1`, the window is redrawn up to `tries` times until
    at least two classes of `sample[ratio_key]` appear in it and none covers
    `cat_max_ratio` of its valid (non-255) pixels or more.

    Input: {"image": (H, W, 3), label: (H, W, C)}.
    Output: the same keys, (size[0], size[1], C).
    """

    def __init__(
        self,
        size: tuple[int, int],
        cat_max_ratio: float = CAT_MAX_RATIO,
        tries: int = CROP_TRIES,
        ratio_key: str = "semseg",
        pad_values: Mapping[str, float] = PAD_VALUES,
    ):
        self.size = (int(size[0]), int(size[1]))
        self.cat_max_ratio = cat_max_ratio
        self.tries = tries
        self.ratio_key = ratio_key
        self.pad_values = pad_values

    def _window(self, height: int, width: int) -> tuple[int, int]:
        return random.randint(0, height - self.size[0]), random.randint(0, width - self.size[1])

    def __call__(self, sample: Sample) -> Sample:
        crop_h, crop_w = self.size
        for key, value in sample.items():
            sample[key] = _pad_to(value, crop_h, crop_w, self.pad_values[key])
        height, width = sample["image"].shape[:2]
        top, left = self._window(height, width)
        if self.cat_max_ratio < 1.0 and self.ratio_key in sample:
            for _ in range(self.tries):
                window = sample[self.ratio_key][top : top + crop_h, left : left + crop_w]
                _, counts = np.unique(window[window != IGNORE_INDEX], return_counts=True)
                if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                    break
                top, left = self._window(height, width)
        for key, value in sample.items():
            sample[key] = value[top : top + crop_h, left : left + crop_w]
        return sample


class RandomHorizontalFlip:
    """Mirrors every map left-right with probability `probability`; the normals' x component changes sign."""

    def __init__(self, probability: float = FLIP_PROBABILITY):
        self.probability = probability

    def __call__(self, sample: Sample) -> Sample:
        if random.random() < self.probability:
            for key, value in sample.items():
                value = np.fliplr(value).copy()
                if key == "normals":
                    value[..., 0] *= -1
                sample[key] = value
        return sample


class PhotoMetricDistortion:
    """mmseg's photometric distortion of a float32 (H, W, 3) RGB 0..255 image; labels untouched.

    Brightness (add uniform +-`brightness_delta`), contrast (multiply by a
    uniform factor of `contrast_range`), saturation (multiply HSV saturation
    by a uniform factor of `saturation_range`), hue (shift by an integer in
    [-`hue_delta`, `hue_delta` - 1] units of OpenCV's 0..180 scale), each
    with p = 0.5; contrast comes before saturation or after hue, p = 0.5.
    The image is clipped to [0, 255] after each step.
    """

    def __init__(
        self,
        brightness_delta: float = BRIGHTNESS_DELTA,
        contrast_range: tuple[float, float] = CONTRAST_RANGE,
        saturation_range: tuple[float, float] = SATURATION_RANGE,
        hue_delta: int = HUE_DELTA,
    ):
        self.brightness_delta = brightness_delta
        self.contrast_range = contrast_range
        self.saturation_range = saturation_range
        self.hue_delta = hue_delta

    @staticmethod
    def _convert(image: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        return np.clip(image * np.float32(alpha) + np.float32(beta), 0, 255).astype(np.float32)

    def _contrast(self, image: np.ndarray) -> np.ndarray:
        if random.randint(0, 1):
            image = self._convert(image, alpha=random.uniform(*self.contrast_range))
        return image

    def __call__(self, sample: Sample) -> Sample:
        cv2 = _cv2()
        image = sample["image"]
        if random.randint(0, 1):
            image = self._convert(image, beta=random.uniform(-self.brightness_delta, self.brightness_delta))
        contrast_first = random.randint(0, 1)
        if contrast_first:
            image = self._contrast(image)
        if random.randint(0, 1):
            hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # float32: H in degrees, S in 0..1, V in 0..255
            hsv[..., 1] = np.clip(hsv[..., 1] * np.float32(random.uniform(*self.saturation_range)), 0, 1)
            image = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0, 255)
        if random.randint(0, 1):
            hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
            shift = random.randrange(-self.hue_delta, self.hue_delta)  # OpenCV 0..180 units
            hsv[..., 0] = (hsv[..., 0] + np.float32(2 * shift)) % 360
            image = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0, 255)
        if not contrast_first:
            image = self._contrast(image)
        sample["image"] = image
        return sample


class Normalize:
    """image -> float32 `(x / 255 - mean) / std`; labels untouched."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    def __call__(self, sample: Sample) -> Sample:
        image = sample["image"].astype(np.float32) / 255.0
        sample["image"] = (image - self.mean) / self.std
        return sample


class PadImage:
    """Pads every map at the bottom and right to at least `size` with `pad_values` (larger maps are kept)."""

    def __init__(self, size: tuple[int, int], pad_values: Mapping[str, float] = PAD_VALUES):
        self.size = (int(size[0]), int(size[1]))
        self.pad_values = pad_values

    def __call__(self, sample: Sample) -> Sample:
        return {key: _pad_to(value, *self.size, self.pad_values[key]) for key, value in sample.items()}


class ToTensor:
    """(H, W, C) numpy maps -> (C, H, W) float32 torch tensors."""

    def __call__(self, sample: Sample) -> dict[str, Any]:
        torch = import_torch_and_cv2()[0]
        return {key: torch.from_numpy(value.astype(np.float32, copy=False).transpose(2, 0, 1))
                for key, value in sample.items()}


def reference_transforms(crop: tuple[int, int] = (448, 576)) -> Compose:
    """The reference training chain (module docstring) with its default parameters, for crops of `crop` (H, W)."""
    return Compose(
        [
            RandomScaling(),
            RandomCrop(crop),
            RandomHorizontalFlip(),
            PhotoMetricDistortion(),
            Normalize(),
            PadImage(crop),
            ToTensor(),
        ]
    )


class ReferenceDataset:
    """A map-style dataset over decoded examples, with the `torch.utils.data.Dataset` protocol (len, getitem).

    Each item loads an example as the reference loaders do (the image and the
    labels of `tasks` as float32 copies) and applies `transform`.

    Args:
        examples: dicts with "image" (H, W, 3) uint8 and a (H, W, C) label per
            task of `tasks` (other keys are ignored).
        transform: applied to each loaded sample (e.g. `reference_transforms`).
        tasks: the label keys to load.
    """

    def __init__(
        self,
        examples: Sequence[Mapping[str, Any]],
        transform: Callable[[Sample], Any] | None = None,
        tasks: Sequence[str] = NYUD_TASKS,
    ):
        missing = sorted({t for ex in examples for t in ("image", *tasks) if t not in ex})
        if missing:
            raise ValueError(f"Every example must hold 'image' and the labels of `tasks`. Missing: {missing}. "
                             f"Received: tasks={list(tasks)}")
        self.examples = examples
        self.transform = transform
        self.tasks = tuple(tasks)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Any:
        example = self.examples[index]
        sample = {key: np.array(example[key], dtype=np.float32) for key in ("image", *self.tasks)}
        return self.transform(sample) if self.transform is not None else sample


# ----------------------------------------------------------------------------- timing


def _one_thread_per_process(_worker_id: int = 0) -> None:
    """A DataLoader worker (or the main process) is one core: OpenCV and torch on one thread."""
    torch, cv2 = import_torch_and_cv2()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _forever(loader) -> Iterator[Any]:
    while True:
        yield from loader


def reference_speed(
    examples: Sequence[Mapping[str, Any]],
    crop: Sequence[int] = (448, 576),
    batch: int = 8,
    batches: int = 10,
    workers: int = 1,
    tasks: Sequence[str] = NYUD_TASKS,
    seed: int = 0,
) -> dict:
    """Images per second of the reference chain in a `DataLoader` with `workers` worker processes.

    The loader shuffles, drops the last incomplete batch and keeps its workers
    between epochs (an epoch has `len(examples) // batch` batches; the next
    one starts without new processes). One batch per worker (at least one)
    warms up untimed, once the workers have started; then `batches` batches
    are timed (a multiple of `workers` spans whole rounds of the workers,
    which deliver their batches together).

    Args:
        examples: decoded examples ("image" (H, W, 3) uint8, labels (H, W, C));
            at least `batch` of them.
        crop: (height, width) of the crops.
        batch: batch size.
        batches: timed batches.
        workers: DataLoader worker processes; 0 runs the chain in this process.
        tasks: label keys of `examples` to augment and yield.
        seed: seeds the shuffling and the workers' `random`.

    Returns:
        {"pipeline": "reference", "workers", "cores" (max(workers, 1)),
        "crop", "batch", "batches", "batches_per_epoch", "images_per_s",
        "images_per_s_per_core" (per worker process; per main process for
        `workers=0`), "cpu_count", "load_avg_1min", "torch", "opencv"}.

    Raises:
        MissingExtraError: torch or OpenCV is not installed (an ImportError).
        ValueError: fewer examples than `batch`, or a non-positive option.
    """
    torch, cv2 = import_torch_and_cv2()
    for name, value, low in (("batch", batch, 1), ("batches", batches, 1), ("workers", workers, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}. Received: {name}={value!r}")
    if len(examples) < batch:
        raise ValueError(f"`examples` must hold at least `batch` ({batch}) examples for one full batch. "
                         f"Received: len(examples)={len(examples)}")
    crop = (int(crop[0]), int(crop[1]))
    dataset = ReferenceDataset(examples, reference_transforms(crop), tasks)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
        persistent_workers=workers > 0, worker_init_fn=_one_thread_per_process if workers else None,
        generator=torch.Generator().manual_seed(seed),
    )
    saved = (cv2.getNumThreads(), torch.get_num_threads(), random.getstate())
    random.seed(seed)
    if not workers:
        _one_thread_per_process()
    try:
        stream = _forever(loader)
        for _ in range(max(workers, 1)):
            next(stream)
        start = time.perf_counter()
        for _ in range(batches):
            next(stream)
        elapsed = time.perf_counter() - start
    finally:
        stream.close()
        del stream, loader  # shuts the persistent workers down
        cv2.setNumThreads(saved[0])
        torch.set_num_threads(saved[1])
        random.setstate(saved[2])
    images_per_s = batch * batches / elapsed
    cores = max(workers, 1)
    return {
        "pipeline": "reference",
        "workers": workers,
        "cores": cores,
        "crop": list(crop),
        "batch": batch,
        "batches": batches,
        "batches_per_epoch": len(examples) // batch,
        "images_per_s": round(images_per_s, 2),
        "images_per_s_per_core": round(images_per_s / cores, 2),
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "opencv": cv2.__version__,
    }


__all__ = [
    "NYUD_TASKS", "PAD_VALUES", "Compose", "Normalize", "PadImage", "PhotoMetricDistortion", "RandomCrop",
    "RandomHorizontalFlip", "RandomScaling", "ReferenceDataset", "ToTensor", "import_torch_and_cv2", "reference_speed",
    "reference_transforms",
]
