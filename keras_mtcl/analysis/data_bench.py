"""Speed of the data side: rendering the synthetic scenes, preparing their tfds builder, the training pipeline.

`render_speed` renders scenes (`keras_mtcl.data.synthetic.render_scene`)
in one process or a process pool; `prepare_speed` prepares a
`SyntheticScenes` config into a tfds data_dir; `pipeline_speed` times
batches of the training input pipeline (augmentation included) over examples
read once beforehand. `tools/bench_synthetic.py` and `tools/bench_data.py`
are the commands.
"""

from __future__ import annotations

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
    from keras_mtcl.data import pipeline
    from keras_mtcl.data.sources import open_split

    examples, specs = open_split(dataset, split, manual_dir=manual_dir, data_dir=data_dir, synthetic_size=size,
                                 synthetic_count=count)
    examples = examples.cache()
    for _ in examples:  # read or render once, untimed
        pass
    iterator = iter(pipeline.train_pipeline(examples.repeat(), specs, batch_size=batch, crop_size=tuple(crop), seed=0))
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    elapsed = time.perf_counter() - start
    return {"dataset": dataset, "tasks": [t.name for t in specs], "crop": list(crop), "batch": batch,
            "images_per_s": batch * batches / elapsed, "cpus": os.cpu_count()}


__all__ = ["pipeline_speed", "prepare_speed", "render_speed"]
