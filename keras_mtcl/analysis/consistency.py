"""Cross-task consistency of feature distances (the analysis of the paper's Figure 1).

The regularizer's premise: pixel triplets defined by a source task's labels
(same class / different class, similar / different depth, ...) also order
the distances of the target task's features. For each model, target task t
(`target`, default semseg) and every source task s != t, the validation
scenes are run through the model to get the target's feature map F_t (the
decoder's last task-specific map, the one the regularizer acts on), anchors,
positives and negatives are drawn from GT_s with the regularizer's own
sampler (`keras_mtcl.contrastive.sample_triplets`: label distances,
threshold or ranking criterion, class-balanced anchors, the options of the
first regularized model given, else the defaults), and the squared
Euclidean distances of positive pairs (anchor, positive) and negative pairs
(anchor, negative) are measured in one or both spaces:

- `features`: F_t L2-normalised per pixel (any model, so a baseline can be
  compared with a regularized model);
- `projected`: the projector Proj_{t,s} of a regularized run (the space
  the triplet loss is computed in). The projectors are training state: they
  live in the run's `MultiTaskTrainer` (`trainer.regularizer`), not in the
  inference `MultiTaskModel`, so this space needs the trainer (in Python) or
  a `.keras` file of one (`trainer.save`, as `tools/ablation.py` writes).

A model is a `keras_mtcl.model.MultiTaskModel` or a
`keras_mtcl.trainer.MultiTaskTrainer`, whose inference network
(`trainer.model`) gives the feature maps.

Every model sees the same images and the same random draws, so models whose
feature maps have one resolution are measured on the same triplets.

Reported per (model, space, source): triplets, mean positive and negative
distance, gap (negative - positive), AUC = P(d_neg > d_pos) + P(tie) / 2
over all sampled positive and negative pairs (Mann-Whitney U / (n_pos n_neg);
0.5 = the source's labels say nothing about the target's distances) and the
triplet accuracy, the fraction of triplets with d_neg > d_pos
(`consistency_report`, `format_table`); `plot_distances` draws one row per
model (and space), one column per source task, histograms of positive and
negative distances with the AUC in each title.

Data (`load_batches`): synthetic validation scenes (`open_split("synthetic",
"val")`), or the validation split of the dataset a run's config.json names.
Features are computed in inference mode (batch normalisation with its moving
statistics, what the deployed model computes) or, with `mode="training"`, as
the regularizer saw them in training (batch statistics of each analysis batch).

`tools/consistency.py` is the command over these functions.

Example:
>>> distance_auc([0.1, 0.2], [0.3, 0.15])  # (neg, pos) pairs: 3 of 4 have d_neg > d_pos
0.75
>>> pair_statistics([0.5, 1.0], [1.5, 0.5])["triplet_accuracy"]
0.5
"""

from __future__ import annotations

import importlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

SPACES = ("features", "projected")
MODES = ("inference", "training")


# ---------------------------------------------------------------------------
# Statistics.


def distance_auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(d_neg > d_pos) + P(d_neg == d_pos) / 2 over all (positive, negative) pairs.

    The Mann-Whitney U statistic of the negative distances divided by
    n_pos * n_neg, from average ranks (ties count half).

    Args:
        positive: (n_pos,) distances of positive pairs.
        negative: (n_neg,) distances of negative pairs.

    Returns:
        AUC in [0, 1]: 1 when every negative pair is farther apart than every
        positive pair, 0 in the reverse case, 0.5 for identical
        distributions; NaN when either set is empty.
    """
    from scipy.stats import rankdata

    positive = np.asarray(positive, "float64").ravel()
    negative = np.asarray(negative, "float64").ravel()
    if positive.size == 0 or negative.size == 0:
        return math.nan
    ranks = rankdata(np.concatenate([negative, positive]))
    u_negative = ranks[: negative.size].sum() - negative.size * (negative.size + 1) / 2
    return float(u_negative / (negative.size * positive.size))


def pair_statistics(positive: Sequence[float], negative: Sequence[float]) -> dict[str, Any]:
    """Numbers of one (model, space, source) entry from paired triplet distances.

    Args:
        positive: (n,) d(anchor, positive) per triplet.
        negative: (n,) d(anchor, negative) of the same triplets.

    Returns:
        {"triplets": n, "positive_mean", "negative_mean", "gap" (negative -
        positive mean), "auc" (`distance_auc`), "triplet_accuracy" (fraction
        with d_neg > d_pos)}; the numbers are None without triplets.
    """
    positive = np.asarray(positive, "float64").ravel()
    negative = np.asarray(negative, "float64").ravel()
    if positive.shape != negative.shape:
        raise ValueError(
            "`positive` and `negative` must hold the distances of the same triplets. "
            f"Received: positive.shape={positive.shape}, negative.shape={negative.shape}"
        )
    if positive.size == 0:
        return {"triplets": 0, "positive_mean": None, "negative_mean": None, "gap": None, "auc": None,
                "triplet_accuracy": None}
    return {
        "triplets": int(positive.size),
        "positive_mean": float(positive.mean()),
        "negative_mean": float(negative.mean()),
        "gap": float(negative.mean() - positive.mean()),
        "auc": distance_auc(positive, negative),
        "triplet_accuracy": float(np.mean(negative > positive)),
    }


# ---------------------------------------------------------------------------
# Data and features.


def load_batches(
    size: Sequence[int] = (96, 128),
    count: int = 16,
    batch_size: int = 8,
    tasks: Sequence[str] = (),
    seed: int = 0,
    run_config: str | os.PathLike | None = None,
) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Validation batches as numpy: normalised images and labels padded with invalid values.

    Args:
        size: (height, width) of the synthetic scenes.
        count: number of scenes (or of validation examples of a run's dataset).
        batch_size: images per batch.
        tasks: labels to keep (empty: all the dataset has).
        seed: seed of the synthetic scenes.
        run_config: a run's config.json; its dataset's validation split is
            used (padded to its eval size) instead of synthetic scenes.

    Returns:
        [(images (B, H, W, 3) float32, {task: (B, H, W, c) labels})], H and W
        padded to a multiple of 32.
    """
    from keras_mtcl.data import pipeline
    from keras_mtcl.data.sources import open_split

    if count < 1 or batch_size < 1:
        raise ValueError(f"`count` and `batch_size` must be >= 1. Received: count={count}, batch_size={batch_size}")
    pad_size = None
    if run_config is not None:
        from keras_mtcl.presets import RunConfig

        path = Path(run_config)
        if not path.is_file():
            raise FileNotFoundError(f"no run config at {path}: pass the config.json a training run wrote (--run-config).")
        config = RunConfig.from_dict(json.loads(path.read_text()))
        data = config.data
        examples, specs = open_split(
            data.dataset, "val", manual_dir=data.manual_dir, data_dir=data.data_dir, tasks=tasks,
            synthetic_size=data.synthetic_size, synthetic_count=max(count, data.synthetic_val), seed=config.seed,
        )
        pad_size = tuple(data.eval_size or data.image_size)
    else:
        examples, specs = open_split("synthetic", "val", tasks=tasks, synthetic_size=tuple(size),
                                     synthetic_count=count, seed=seed)
    batches = pipeline.eval_pipeline(examples.take(count), specs, batch_size=batch_size, pad_size=pad_size,
                                     pad_multiple=32)
    return [(images, labels) for images, labels, _ in batches.as_numpy_iterator()]


def network(model):
    """The inference `MultiTaskModel` of `model`: itself, or a `MultiTaskTrainer`'s `model`."""
    from keras_mtcl.trainer import MultiTaskTrainer

    return model.model if isinstance(model, MultiTaskTrainer) else model


def regularizer(model):
    """The `CrossTaskContrastive` (with the projectors) of a `MultiTaskTrainer`, else None."""
    return getattr(model, "regularizer", None)


def task_features(model, images, mode: str = "inference") -> dict:
    """The decoder's task feature maps F_t of a `MultiTaskModel` (or of a `MultiTaskTrainer`'s model).

    Args:
        model: a `MultiTaskModel` or `MultiTaskTrainer`.
        images: (B, H, W, 3) normalised images.
        mode: `"inference"`: backbone and decoder with `training=False`
            (moving batch-norm statistics); `"training"`: as in training
            (`task_features(images, training=True)`, batch statistics).

    Returns:
        {task: (B, h, w, C_t) backend tensor}.
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    return network(model).task_features(images, training=mode == "training")


def sampling_options(models: Iterable[Any]) -> dict[str, Any]:
    """Triplet sampling options of the first model with a regularizer, else `CrossTaskContrastive`'s defaults.

    Returns:
        {"num_anchors", "pool_size", "balance", "criterion",
        "thresholds": {kind name: (tau_pos, tau_neg)}, "ranking_margins": {kind name: eps}}: the layer's
        per-kind options (keyed by kind name, as the layer takes them) over each kind's defaults
        (`LabelKind.thresholds`, `LabelKind.ranking_margin`).
    """
    from keras_mtcl.contrastive import CrossTaskContrastive
    from keras_mtcl.kinds import KINDS

    layer = next((regularizer(m) for m in models if regularizer(m) is not None), None) or CrossTaskContrastive()
    thresholds, margins = layer.thresholds or {}, layer.ranking_margins or {}
    return {
        "num_anchors": layer.num_anchors,
        "pool_size": layer.pool_size,
        "balance": layer.balance,
        "criterion": layer.criterion,
        "thresholds": {name: tuple(thresholds.get(name, k.thresholds)) for name, k in KINDS.items()},
        "ranking_margins": {name: margins.get(name, k.ranking_margin) for name, k in KINDS.items()},
    }


def check_request(models: Mapping[str, Any], target: str, spaces: Sequence[str]) -> None:
    if not models:
        raise ValueError("`models` must hold at least one model. Received: models={}")
    for space in spaces:
        if space not in SPACES:
            raise ValueError(f"Each space must be one of {SPACES}. Received: spaces={list(spaces)}")
    for name, model in models.items():
        task_names = network(model).task_names
        if target not in task_names:
            raise ValueError(
                f"Model {name!r} has no task {target!r}; its tasks are {task_names}. Choose the target "
                f"among them (--target). Received: target={target!r}"
            )
        if len(task_names) < 2:
            raise ValueError(f"Model {name!r} has one task {task_names}: there is no source task to compare with.")
        if "projected" in spaces and regularizer(model) is None:
            raise ValueError(
                f"Model {name!r} was trained without the contrastive regularizer: it has no projectors, so its "
                "projected distances do not exist (an inference MultiTaskModel never holds them: give the "
                "MultiTaskTrainer of a regularized run, or a .keras file it saved). Measure it in the `features` "
                f"space (--space features). Received: spaces={list(spaces)}"
            )


def triplet_distances(
    model,
    batches: Sequence[tuple[np.ndarray, Mapping[str, np.ndarray]]],
    target: str,
    spaces: Sequence[str] = ("features",),
    options: Mapping[str, Any] | None = None,
    mode: str = "inference",
    seed: int = 0,
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Squared Euclidean distances of the target's unit feature vectors over triplets from each source.

    Args:
        model: a `MultiTaskModel` or a `MultiTaskTrainer` (one with a
            regularizer for the `projected` space).
        batches: from `load_batches`.
        target: the task whose features are measured.
        spaces: `"features"` (L2-normalised F_t) and/or `"projected"`
            (Proj_{t,s}(F_t)).
        options: from `sampling_options` (default: the model's).
        mode: see `task_features`.
        seed: seed of the uniform draws; draws depend on (seed, batch index,
            source's index among the model's tasks) only.

    Returns:
        {space: {source: (d_pos (n,), d_neg (n,))}} over the n valid
        triplets, in [0, 4].
    """
    from keras import ops

    from keras_mtcl.contrastive import gather_pixels, sample_triplets
    from keras_mtcl.losses import l2_normalize

    check_request({"model": model}, target, spaces)
    options = dict(options or sampling_options([model]))
    task_names = network(model).task_names
    specs = {t.name: t for t in network(model).task_specs}
    sources = [t for t in task_names if t != target]
    num_anchors = options["num_anchors"]
    collected = {space: {s: ([], []) for s in sources} for space in spaces}
    for batch_index, (images, labels) in enumerate(batches):
        feature_map = task_features(model, images, mode)[target]
        batch, height, width = (int(d) for d in feature_map.shape[:3])
        for source in sources:
            spec = specs[source]
            rng = np.random.default_rng([seed, batch_index, task_names.index(source)])
            triplets = sample_triplets(
                spec,
                labels[source],
                (height, width),
                rng.random((2, batch, height * width), dtype="float32"),
                rng.random((batch, num_anchors + options["pool_size"]), dtype="float32"),
                num_anchors=num_anchors,
                pool_size=options["pool_size"],
                balance=options["balance"],
                criterion=options["criterion"],
                thresholds=options["thresholds"][spec.kind],
                ranking_margin=options["ranking_margins"][spec.kind],
            )
            index = ops.concatenate([triplets["anchor"], triplets["positive"], triplets["negative"]], axis=1)
            vectors = ops.cast(gather_pixels(feature_map, index), "float32")  # (B, 3 N, C)
            keep = ops.convert_to_numpy(triplets["weights"]).reshape(-1) > 0
            for space in spaces:
                if space == "projected":
                    projector = regularizer(model).get_projector(target, source)
                    z = ops.reshape(projector(ops.reshape(vectors, (-1, vectors.shape[-1]))), (batch, 3 * num_anchors, -1))
                else:
                    z = l2_normalize(vectors)
                anchor, positive, negative = z[:, :num_anchors], z[:, num_anchors : 2 * num_anchors], z[:, 2 * num_anchors :]
                d_pos = ops.convert_to_numpy(ops.sum(ops.square(anchor - positive), axis=-1)).reshape(-1)
                d_neg = ops.convert_to_numpy(ops.sum(ops.square(anchor - negative), axis=-1)).reshape(-1)
                collected[space][source][0].append(d_pos[keep])
                collected[space][source][1].append(d_neg[keep])
    return {
        space: {s: (np.concatenate(p).astype("float64"), np.concatenate(n).astype("float64")) for s, (p, n) in per.items()}
        for space, per in collected.items()
    }


def consistency_report(
    models: Mapping[str, Any],
    batches: Sequence[tuple[np.ndarray, Mapping[str, np.ndarray]]],
    target: str = "semseg",
    spaces: Sequence[str] = ("features",),
    mode: str = "inference",
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
) -> tuple[list[dict], dict]:
    """Consistency numbers of every (model, space, source), on the same images and draws.

    Args:
        models: {name: MultiTaskModel or MultiTaskTrainer}, e.g. a baseline
            model and a regularized run's trainer.
        batches: from `load_batches`.
        target, spaces, mode, seed: as in `triplet_distances`.
        options: sampling options (default: `sampling_options(models)`).

    Returns:
        (entries, distances): entries are dicts {"model", "target", "space",
        "source", **pair_statistics}, in model, space, source order;
        distances is {(model, space): {source: (d_pos, d_neg)}} for plotting.

    Raises:
        ValueError: an unknown space, a target a model lacks, or the
            `projected` space for a model without regularizer.
    """
    check_request(models, target, spaces)
    options = dict(options or sampling_options(models.values()))
    entries, distances = [], {}
    for name, model in models.items():
        measured = triplet_distances(model, batches, target, spaces, options, mode, seed)
        for space in spaces:
            distances[(name, space)] = measured[space]
            for source, (d_pos, d_neg) in measured[space].items():
                entries.append({"model": name, "target": target, "space": space, "source": source,
                                **pair_statistics(d_pos, d_neg)})
    return entries, distances


def load_models(paths: Sequence[str | os.PathLike], names: Sequence[str] | None = None) -> dict[str, Any]:
    """Loads saved models or trainers to compare: {name: MultiTaskModel or MultiTaskTrainer}.

    Args:
        paths: `.keras` files of `MultiTaskModel`s or `MultiTaskTrainer`s
            (a regularized trainer's file keeps its projectors).
        names: display names, one per path (default: the file names, with
            their folder when two files share a name).

    Raises:
        ValueError: a wrong number of names, or models with different tasks.
    """
    from keras_mtcl.model import load_model

    for module in ("keras_mtcl.contrastive", "keras_mtcl.trainer"):  # register the classes a trainer's file holds
        importlib.import_module(module)

    paths = [Path(p) for p in paths]
    if names:
        if len(names) != len(paths):
            raise ValueError(f"`names` must give one name per model. Received: {len(names)} names for {len(paths)} models")
    else:
        stems = [p.stem for p in paths]
        names = stems if len(set(stems)) == len(stems) else [f"{p.parent.name}/{p.name}" for p in paths]
    models = {name: load_model(path, compile=False) for name, path in zip(names, paths)}
    first = network(next(iter(models.values()))).task_names
    for name, model in models.items():
        if network(model).task_names != first:
            raise ValueError(
                f"Models must share their tasks to be compared: {name!r} has {network(model).task_names}, "
                f"{names[0]!r} has {first}."
            )
    return models


# ---------------------------------------------------------------------------
# Output.


def format_table(entries: Sequence[Mapping[str, Any]]) -> str:
    """A fixed-width text table of report entries."""
    header = ("model", "space", "target", "source", "triplets", "d_pos", "d_neg", "gap", "AUC", "triplet acc")
    rows = [header]
    for e in entries:
        number = lambda key: "-" if e[key] is None else f"{e[key]:.3f}"  # noqa: E731
        rows.append((e["model"], e["space"], e["target"], e["source"], str(e["triplets"]), number("positive_mean"),
                     number("negative_mean"), number("gap"), number("auc"), number("triplet_accuracy")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _figure_class():
    from keras_mtcl import optional

    return optional.import_optional("matplotlib.figure", "dev", "The consistency plot (`plot_distances`)").Figure


def plot_distances(
    entries: Sequence[Mapping[str, Any]], distances: Mapping[tuple[str, str], Mapping[str, tuple]], path: str | os.PathLike
) -> Path:
    """Writes a PNG grid: one row per (model, space), one column per source, positive vs negative histograms.

    Args:
        entries, distances: from `consistency_report`.
        path: the PNG to write (its folder is created).

    Returns:
        The path written.
    """
    Figure = _figure_class()  # no pyplot: no global state, the Agg canvas renders the PNG
    rows = list(distances)
    sources = list(dict.fromkeys(s for per in distances.values() for s in per))
    aucs = {(e["model"], e["space"], e["source"]): e["auc"] for e in entries}
    values = [v for per in distances.values() for pair in per.values() for v in pair if v.size]
    top = max([float(v.max()) for v in values] + [1e-6])
    bins = np.linspace(0.0, top * 1.02, 41)
    figure = Figure(figsize=(3.2 * len(sources), 2.6 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), len(sources), squeeze=False)
    target = entries[0]["target"] if entries else ""
    for r, (model_name, space) in enumerate(rows):
        for c, source in enumerate(sources):
            axis = axes[r][c]
            pair = distances[(model_name, space)].get(source)
            if pair is None:
                axis.set_axis_off()
                continue
            d_pos, d_neg = pair
            axis.hist(d_pos, bins=bins, density=True, alpha=0.55, color="tab:blue", label="positive pairs")
            axis.hist(d_neg, bins=bins, density=True, alpha=0.55, color="tab:red", label="negative pairs")
            auc = aucs.get((model_name, space, source))
            axis.set_title(f"source {source}: AUC {'-' if auc is None else f'{auc:.3f}'}", fontsize=9)
            if c == 0:
                axis.set_ylabel(f"{model_name}\n({space})", fontsize=9)
            if r == len(rows) - 1:
                axis.set_xlabel(f"squared distance of {target} features", fontsize=8)
            axis.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"Cross-task consistency: target task {target}, triplets from each source task's labels")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


__all__ = ["MODES", "SPACES", "check_request", "consistency_report", "distance_auc", "format_table", "load_batches",
           "load_models", "network", "pair_statistics", "plot_distances", "regularizer", "sampling_options", "task_features",
           "triplet_distances"]
