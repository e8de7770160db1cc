"""Speed of the data side: rendering the synthetic scenes, preparing their tfds builder, the training pipeline.

`render_speed` renders scenes (`keras_mtcl.data.synthetic.render_scene`)
in one process or a process pool; `prepare_speed` prepares a
`SyntheticScenes` config into a tfds data_dir; `pipeline_speed` times
batches of the training input pipeline (augmentation included) over examples
read once beforehand; `compare_with_reference` times it per core against the
reference numpy / OpenCV chain in a PyTorch DataLoader
(`keras_mtcl.analysis.reference_data`) on the same examples.
`tools/bench_synthetic.py`, `tools/bench_data.py` and
`tools/bench_reference_data.py` are the commands.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from pathlib import Path
from typing import Sequence


def _render(job: tuple[int, int, int]) -> int:
    from keras_mtcl.data import synthetic

    seed, height, width = job
    synthetic.render_scene(seed, height, width)
    return seed


def render_speed(height: int, width: int, num: int, workers: int = 1) -> dict:
    """Renders `num` scenes (seeds 0..num-1, after one warm-up scene), in one process or a pool of `workers`.

    Returns:
        {"bench": "synthetic_render", "height", "width", "workers", "images",
        "images_per_s", "ms_per_image" (wall), "example_bytes" (one example
        in memory), "cpu_count", "load_avg_1min"} and, in one process,
        "cpu_ms_per_image" (which other processes on a shared machine disturb less).
    """
    from keras_mtcl.data import synthetic

    example = synthetic.render_scene(0, height, width)  # warm-up
    jobs = [(seed, height, width) for seed in range(num)]
    start = time.perf_counter()
    cpu_start = time.process_time()
    if workers == 1:
        for job in jobs:
            _render(job)
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pool.map(_render, [(0, height, width)] * workers)  # start the workers before timing
            start = time.perf_counter()
            pool.map(_render, jobs, chunksize=max(1, num // (4 * workers)))
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    result = {
        "bench": "synthetic_render",
        "height": height,
        "width": width,
        "workers": workers,
        "images": num,
        "images_per_s": round(num / seconds, 2),
        "ms_per_image": round(1000 * seconds / num, 2),
        "example_bytes": int(sum(v.nbytes for k, v in example.items() if k != "id")),
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    if workers == 1:  # CPU time is less sensitive to other processes on a shared machine
        result["cpu_ms_per_image"] = round(1000 * cpu_seconds / num, 2)
    return result


def prepare_speed(config: str, data_dir: str) -> dict:
    """Prepares the `SyntheticScenes` config `config` into `data_dir`: seconds, images/s, split sizes, MiB on disk."""
    from keras_mtcl.data.synthetic_builder import SyntheticScenes

    builder = SyntheticScenes(config=config, data_dir=data_dir)
    start = time.perf_counter()
    builder.download_and_prepare()
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in Path(builder.data_dir).rglob("*") if p.is_file())
    splits = {name: split.num_examples for name, split in builder.info.splits.items()}
    return {
        "bench": "synthetic_tfds_prepare",
        "config": config,
        "splits": splits,
        "seconds": round(seconds, 1),
        "images_per_s": round(sum(splits.values()) / seconds, 2),
        "disk_mb": round(size / 2**20, 1),
    }


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the tools that time the training pipeline: which examples, crop, batch, timed batches."""
    from keras_mtcl.data import list_datasets

    parser.add_argument("--dataset", default="synthetic", choices=list_datasets())
    parser.add_argument("--split", default="train", help="split whose examples feed the training pipeline")
    parser.add_argument("--manual-dir", default="")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--size", nargs=2, type=int, default=[480, 640], help="synthetic scene size")
    parser.add_argument("--count", type=int, default=32, help="synthetic scenes")
    parser.add_argument("--crop", nargs=2, type=int, default=[448, 576])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=10, help="timed batches per measurement")


def pipeline_speed(
    dataset: str,
    split: str = "train",
    manual_dir: str = "",
    data_dir: str = "",
    size: Sequence[int] = (480, 640),
    count: int = 32,
    crop: Sequence[int] = (448, 576),
    batch: int = 8,
    batches: int = 10,
) -> dict:
    """Images per second of the training pipeline over the examples of one split, read (or rendered) once untimed.

    Args:
        dataset: "synthetic", "nyud", "pascal" or "folder".
        split: split whose examples feed the pipeline.
        manual_dir, data_dir: where the dataset's files are and where tfds prepares it.
        size, count: synthetic scene size and number.
        crop: training crop.
        batch: batch size.
        batches: timed batches, after one warm-up batch.
    """
    examples, specs, _ = _read_once(dataset, split, manual_dir, data_dir, size, count)
    images_per_s = _train_pipeline_speed(examples, specs, crop, batch, batches)
    return {"dataset": dataset, "tasks": [t.name for t in specs], "crop": list(crop), "batch": batch,
            "images_per_s": images_per_s, "cpus": os.cpu_count()}


def _read_once(dataset: str, split: str, manual_dir: str, data_dir: str, size: Sequence[int], count: int,
               tasks: Sequence[str] = ()) -> tuple:
    """(cached `tf.data.Dataset`, specs, list of numpy examples) of a split, read or rendered once, untimed."""
    from keras_mtcl.data.sources import open_split

    examples, specs = open_split(dataset, split, manual_dir=manual_dir, data_dir=data_dir, tasks=tasks,
                                 synthetic_size=size, synthetic_count=count)
    examples = examples.cache()
    return examples, specs, list(examples.as_numpy_iterator())  # the iteration fills the cache


def _train_pipeline_speed(examples, specs, crop: Sequence[int], batch: int, batches: int,
                          threads: int | None = None) -> float:
    """Images/s of `train_pipeline` (default `AugmentConfig`) over the cached `examples`, after one warm-up batch.

    With `threads`, tf.data runs the pipeline on a private pool of that many
    threads, each op on one thread (`threading.private_threadpool_size`,
    `threading.max_intra_op_parallelism = 1`) and autotunes for that many
    cores (`autotune.cpu_budget`).
    """
    import tensorflow as tf

    from keras_mtcl.data import pipeline

    ds = pipeline.train_pipeline(examples.repeat(), specs, batch_size=batch, crop_size=tuple(crop), seed=0)
    if threads is not None:
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = 1
        options.autotune.cpu_budget = threads
        ds = ds.with_options(options)
    iterator = iter(ds)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batch * batches / (time.perf_counter() - start)


def compare_with_reference(
    dataset: str = "synthetic",
    split: str = "train",
    manual_dir: str = "",
    data_dir: str = "",
    size: Sequence[int] = (480, 640),
    count: int = 32,
    crop: Sequence[int] = (448, 576),
    batch: int = 8,
    batches: int = 10,
    cores: Sequence[int] = (1, 2),
    rounds: int = 2,
    tasks: Sequence[str] = ("semseg", "depth", "normals", "edge"),
) -> dict:
    """Images/s per core of our training pipeline and of the reference DataLoader, on the same decoded examples.

    The examples of one split are read (or rendered) once, untimed, and kept
    in memory: a cached `tf.data.Dataset` feeds ours
    (`keras_mtcl.data.pipeline.train_pipeline`, default `AugmentConfig`), a
    list of the same numpy arrays feeds the reference
    (`keras_mtcl.analysis.reference_data.reference_speed`). For each n of
    `cores`, ours runs on tf.data's private pool of n threads (one thread per
    op), the reference with n DataLoader workers (one thread each). The
    `2 x len(cores)` measurements run in alternating order (`timing.alternating`:
    forward, then backward, ...) for `rounds` rounds; each is a fresh
    pipeline with its warm-up untimed.

    Args:
        dataset, split, manual_dir, data_dir: the examples (`keras_mtcl.data.sources.open_split`).
        size, count: synthetic scene size and number.
        crop: training crop (height, width).
        batch: batch size.
        batches: timed batches per measurement.
        cores: thread counts (ours) and worker counts (reference) compared.
        rounds: rounds of the alternating order.
        tasks: the tasks augmented (NYUD's by default).

    Returns:
        {"bench": "reference_data", "dataset", "tasks", "examples", "size" (of the
        first image), "crop", "batch", "batches", "rounds", "ours": {n: {"threads",
        "images_per_s" (per round), "images_per_s_per_core" (median over rounds / n)}},
        "reference": {n: {"workers", "images_per_s", "images_per_s_per_core"}},
        "ratio_per_core": {n: ours / reference per core}, "cpu_count",
        "load_avg_1min" (before, after), "torch", "opencv"}; keys n are strings.

    Raises:
        MissingExtraError: torch or OpenCV is not installed (an ImportError).
        ValueError: an invalid option.
    """
    import statistics

    from keras_mtcl.analysis import reference_data, timing

    reference_data.import_torch_and_cv2()  # fail before reading the examples
    cores = [int(n) for n in cores]
    if not cores or min(cores) < 1:
        raise ValueError(f"`cores` must be positive integers. Received: cores={cores}")
    load_before = round(os.getloadavg()[0], 2)
    examples, specs, arrays = _read_once(dataset, split, manual_dir, data_dir, size, count, tasks)
    names = [t.name for t in specs]
    ours = {n: [] for n in cores}
    reference = {n: [] for n in cores}
    versions = {}
    plan = [(side, n) for n in cores for side in ("ours", "reference")]  # ours 1, reference 1, ours 2, ...
    for order in timing.alternating(plan, rounds):
        for side, n in order:
            if side == "ours":
                ours[n].append(_train_pipeline_speed(examples, specs, crop, batch, batches, threads=n))
            else:
                record = reference_data.reference_speed(arrays, crop, batch, batches, workers=n, tasks=names)
                reference[n].append(record["images_per_s"])
                versions = {"torch": record["torch"], "opencv": record["opencv"]}

    def summary(speeds: list[float], n: int, unit: str) -> dict:
        return {unit: n, "images_per_s": [round(s, 2) for s in speeds],
                "images_per_s_per_core": round(statistics.median(speeds) / n, 2)}

    ours_summary = {str(n): summary(ours[n], n, "threads") for n in cores}
    reference_summary = {str(n): summary(reference[n], n, "workers") for n in cores}
    return {
        "bench": "reference_data",
        "dataset": dataset,
        "tasks": names,
        "examples": len(arrays),
        "size": list(arrays[0]["image"].shape[:2]),
        "crop": list(crop),
        "batch": batch,
        "batches": batches,
        "rounds": rounds,
        "ours": ours_summary,
        "reference": reference_summary,
        "ratio_per_core": {
            key: round(ours_summary[key]["images_per_s_per_core"] / reference_summary[key]["images_per_s_per_core"], 3)
            for key in ours_summary
        },
        "cpu_count": os.cpu_count(),
        "load_avg_1min": [load_before, round(os.getloadavg()[0], 2)],
        **versions,
    }


__all__ = ["compare_with_reference", "pipeline_speed", "prepare_speed", "render_speed"]
