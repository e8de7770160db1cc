"""Speed and conventions of the boundary benchmark (`keras_mtcl.edge_eval`) on synthetic NYUD-sized maps.

`split_speed` times `evaluate_boundaries` over a split as the evaluation of
a real one runs it (worker processes, the NYUD protocol); `compare_rules`
scores one split under the earlier and the current conventions of both
protocols; `compare_with_pyedgeeval` scores and times the same maps with
pyEdgeEval's kernels configured to the same protocol, in one process.

Example:
>>> import numpy as np
>>> from keras_mtcl.testing.boundaries import synthetic_pair
>>> pairs = [synthetic_pair((48, 64), np.random.default_rng(0), with_cells=True)]
>>> report = split_speed(pairs, workers=0)
>>> report["images"], 0 <= report["ods_f"] <= 100
(1, True)
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np

from keras_mtcl import edge_eval

# Images of the NYUD-v2 val split, which the speed target is stated for.
NYUD_VAL_IMAGES = 654


def scores(summary: dict) -> dict:
    """ODS F, OIS F and AP (x100, two decimals) and the ODS threshold of an `evaluate_boundaries` result."""
    return {key: round(summary[key], 2) for key in ("ods_f", "ois_f", "ap")} | {
        "ods_threshold": summary["ods_threshold"]
    }


def split_speed(pairs: Sequence[tuple], workers: int, progress: bool = False) -> dict:
    """Wall time of `evaluate_boundaries(dataset="nyud")` over (prediction, label, cells) triples, and the scores.

    `cpu_s_per_image` is wall time x workers / images: what one core spends
    per image, start-up of the workers included. `process_cpu_s_per_image`
    is the CPU time of this process and its workers per image, which other
    load on a shared machine barely changes.
    """
    predictions = [pair[0] for pair in pairs]
    labels = [pair[1] for pair in pairs]
    start = time.perf_counter()
    cpu = _cpu_seconds()
    summary = edge_eval.evaluate_boundaries(predictions, labels, dataset="nyud", workers=workers, progress=progress)
    cpu = _cpu_seconds() - cpu
    wall = time.perf_counter() - start
    per_image = wall / len(pairs)
    return {
        "images": len(pairs),
        "workers": workers,
        "cpus": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "label_edge_fraction": round(float(np.mean([label.mean() for label in labels])), 4),
        "wall_s": round(wall, 1),
        "wall_s_per_image": round(per_image, 3),
        "cpu_s_per_image": round(per_image * max(workers, 1), 3),
        "process_cpu_s_per_image": round(cpu / len(pairs), 3),
        "extrapolated_nyud_val_s": round(per_image * NYUD_VAL_IMAGES, 0),
        "threshold_rule": summary["threshold_rule"],
        "label_reading": summary["label_reading"],
    } | scores(summary)


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished child processes (POSIX only)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def compare_rules(pairs: Sequence[tuple], workers: int) -> dict:
    """ODS/OIS/AP of (prediction, label, cells) triples under the earlier and the current conventions.

    NYUD: the label as given or through seg2bmap, `E >= t` or `E > t` on 8
    bits; PASCAL: the builder's label (Laplacian of the cells, thinned) or
    SEISM's `pascal_boundaries` of the cells.
    """
    from keras_mtcl.data.pascal import decode_edge  # the builder's PASCAL reading

    predictions = [p for p, _, _ in pairs]
    labels = [l for _, l, _ in pairs]
    builder_labels = [decode_edge(cells, "synthetic")[..., 0] for _, _, cells in pairs]
    seism_labels = [edge_eval.pascal_boundaries(cells).astype(np.uint8) for _, _, cells in pairs]
    runs = {
        "nyud_before (label as given, E >= t)": (labels, "nyud", {"threshold_rule": "inclusive", "label_reading": "given"}),
        "nyud_seg2bmap_only (E >= t)": (labels, "nyud", {"threshold_rule": "inclusive"}),
        "nyud_after (seg2bmap + thin, E > t on 8 bits)": (labels, "nyud", {}),
        "pascal_before (builder label, E >= t)": (builder_labels, "pascal", {"threshold_rule": "inclusive"}),
        "pascal_after (builder label, E > t on 8 bits)": (builder_labels, "pascal", {}),
        "pascal_seism_reading (pascal_boundaries, E > t on 8 bits)": (seism_labels, "pascal", {}),
    }
    return {
        name: scores(
            edge_eval.evaluate_boundaries(
                predictions, truth, dataset=dataset, workers=workers, progress=False, **options
            )
        )
        for name, (truth, dataset, options) in runs.items()
    }


def compare_with_pyedgeeval(pairs: Sequence[tuple]) -> dict:
    """Scores, counts and CPU time of this package and of pyEdgeEval on the same maps, one process.

    Needs pyEdgeEval (`keras_mtcl.testing.boundaries.pyedgeeval_counts`).
    """
    from keras_mtcl.testing.boundaries import pyedgeeval_counts

    max_dist = edge_eval.MAX_DIST["nyud"]
    ours = theirs = 0.0
    ours_counts, their_counts = [], []
    for prediction, label, *_ in pairs:
        start = time.process_time()
        ours_counts.append(edge_eval.image_counts(prediction, label, max_dist, label_reading="seg2bmap"))
        ours += time.process_time() - start
        start = time.process_time()
        their_counts.append(pyedgeeval_counts(prediction, edge_eval.nyud_boundaries(label), max_dist))
        theirs += time.process_time() - start
    ours_counts, their_counts = np.stack(ours_counts), np.stack(their_counts)
    difference = ours_counts[..., 0] - their_counts[..., 0]
    return {
        "images": len(pairs),
        "cpu_s_per_image_ours": round(ours / len(pairs), 3),
        "cpu_s_per_image_pyedgeeval": round(theirs / len(pairs), 2),
        "speed_ratio": round(theirs / max(ours, 1e-9), 1),
        "ours": scores(edge_eval.summarize(ours_counts)),
        "pyedgeeval": scores(edge_eval.summarize(their_counts)),
        "thresholds_with_equal_counts": int(np.all(ours_counts == their_counts, axis=(0, 2)).sum()),
        "matches_ours_minus_pyedgeeval": [int(difference.min()), int(difference.max())],
    }
