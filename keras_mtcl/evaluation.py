"""Evaluation of a model on a split with the reference protocol (PEERS.md section 4).

Images are predicted at their padded size (the evaluation pipeline pads,
centred, with the mean colour), each prediction is cropped back to the
image's original size, and every metric of the tasks present accumulates
over the whole split. Boundaries are scored by the Python SEISM-style
benchmark of `keras_mtcl.edge_eval` (odsF, oisF, AP).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

import keras
import numpy as np

from keras_mtcl import metrics as metrics_lib
from keras_mtcl.tasks import TaskSpec


def edge_protocol(dataset: str) -> str:
    """The boundary benchmark's protocol (`edge_eval.MAX_DIST`) for a dataset: PASCAL's for PASCAL, else NYUD's.

    >>> edge_protocol("pascal"), edge_protocol("folder")
    ('pascal', 'nyud')
    """
    return "pascal" if dataset == "pascal" else "nyud"


def evaluate_model(
    model,
    batches,
    specs: Sequence[TaskSpec],
    edge_dataset: str = "nyud",
    edge_max_dist: float | None = None,
    save_edges: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Every metric of `specs` over the split, pixel-wise over all images.

    Args:
        model: a `MultiTaskModel` (or any model returning {task: prediction}).
        batches: `keras_mtcl.data.pipeline.eval_pipeline` output:
            (image, labels, meta) batches with each image's original size.
        specs: tasks to score (must be predicted and labelled).
        edge_dataset: the boundary benchmark's protocol (`edge_eval.evaluate_boundaries`'s
            `dataset`): the matching tolerance (`edge_eval.MAX_DIST`: "nyud" 0.011, "pascal"
            0.0075 of the image diagonal) and how the ground truth is read.
        edge_max_dist: a tolerance (fraction of the image diagonal) instead
            of the protocol's, with labels read as stored (custom data).
        save_edges: folder for 8-bit boundary probability PNGs (`<id>.png`,
            0..255), readable by the MATLAB SEISM toolbox.
        workers: processes for the boundary benchmark (None: every CPU).
        progress: print progress on stderr.

    Returns:
        {"<task>_<metric>": value} (x100 where the reference reports percent),
        plus `"<task>_per_class_iou"` lists for class tasks and
        `"num_images"`.
    """
    # Imported here: keras_mtcl.data.pipeline imports TensorFlow, which importing this module must not.
    from keras_mtcl.data.pipeline import crop_to_original

    streaming = {t.name: metrics_lib.task_metrics(t) for t in specs}
    # task_metrics (above) accepts the boundary benchmark's names only for kinds that list them (binary).
    edge_tasks = [t for t in specs if "odsf" in t.metrics]
    edge_maps: dict[str, list] = {t.name: [] for t in edge_tasks}
    edge_labels: dict[str, list] = {t.name: [] for t in edge_tasks}
    if save_edges:
        Path(save_edges).mkdir(parents=True, exist_ok=True)
    count = 0
    for images, labels, meta in batches.as_numpy_iterator():
        raw = model.predict_on_batch(images)
        predictions = {name: np.asarray(keras.ops.convert_to_numpy(value)) for name, value in raw.items()}
        cropped_labels = {t.name: crop_to_original(labels[t.name], meta) for t in specs}
        cropped_predictions = {t.name: crop_to_original(predictions[t.name], meta) for t in specs}
        for i in range(images.shape[0]):
            count += 1
            for task in specs:
                label, prediction = cropped_labels[task.name][i], cropped_predictions[task.name][i]
                for metric in streaming[task.name]:
                    metric.update_state(label[None], prediction[None])
                if task in edge_tasks:
                    probability = 1.0 / (1.0 + np.exp(-prediction[..., 0].astype("float64")))
                    edge_maps[task.name].append(probability.astype("float32"))
                    edge_labels[task.name].append(label[..., 0])
                    if save_edges:
                        from PIL import Image

                        name = meta["id"][i].decode() if isinstance(meta["id"][i], bytes) else str(meta["id"][i])
                        Image.fromarray((probability * 255).round().astype("uint8")).save(
                            Path(save_edges) / f"{name}.png"
                        )
        if progress:
            print(f"\rEvaluated {count} images", end="", flush=True, file=sys.stderr)
    if progress:
        print(file=sys.stderr)
    results: dict = {"num_images": count}
    for task in specs:
        for metric in streaming[task.name]:
            results[metric.name] = float(keras.ops.convert_to_numpy(metric.result()))
            if isinstance(metric, metrics_lib.MeanIoU):
                results[f"{task.name}_per_class_iou"] = [
                    float(v) for v in np.asarray(keras.ops.convert_to_numpy(metric.per_class_iou()))
                ]
    if count == 0:
        raise ValueError("The evaluation split has no images.")
    from keras_mtcl import edge_eval

    for task in edge_tasks:
        protocol = {"max_dist": edge_max_dist} if edge_max_dist else {"dataset": edge_dataset}
        summary = edge_eval.evaluate_boundaries(
            edge_maps[task.name], edge_labels[task.name], workers=workers, progress=progress, **protocol
        )
        for key, source in (("odsf", "ods_f"), ("oisf", "ois_f"), ("ap", "ap")):
            results[f"{task.name}_{key}"] = float(summary[source])
    return results


def load_baselines(paths: Sequence[str | os.PathLike]) -> dict:
    """Merges single-task result JSONs (reports of `mtcl-evaluate`) into one {key: value} dict."""
    merged = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No baseline report at {path}: run mtcl-evaluate on the single-task model first.")
        data = json.loads(path.read_text())
        merged.update({k: v for k, v in data.get("metrics", data).items() if isinstance(v, (int, float))})
    return merged


NO_VALID_PIXELS = "no valid pixels"


def json_safe(value):
    """`value` with every NaN float replaced by None (JSON has no NaN: a metric without valid pixels is null)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def format_table(results: Mapping[str, float]) -> str:
    """A plain two-column table of the scalar results; NaN or None (no valid pixel in the split) reads "no valid pixels"."""
    rows = [(k, v) for k, v in sorted(results.items()) if v is None or isinstance(v, (int, float))]
    width = max((len(k) for k, _ in rows), default=10)

    def cell(value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return NO_VALID_PIXELS
        return f"{value:.4f}" if isinstance(value, float) else f"{value}"

    return "\n".join(f"{k:<{width}}  {cell(v)}" for k, v in rows)
