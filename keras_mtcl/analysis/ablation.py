"""Ablation of the regularizer on the synthetic scenes, over several seeds: configurations, runs and tables.

Every configuration of `CONFIGS` (single-task baselines, the multi-task
baseline, the regularizer in the paper's setting and its options, a
distillation framework with and without it) is trained with the same data,
model size, optimizer and step budget (`Setup`), once per seed, and
evaluated on the synthetic validation scenes with the reference metrics
(`run_ablation`). The seed sets weight initialisation, batch order,
augmentation and the regularizer's sampling; the scenes are the same for
every run.

Records are dicts {"config", "seed", "backend", "setup", "metrics"}, one
line each of `<out>/results.jsonl`; `summarize` and `paired_differences`
turn them into the markdown tables of `<out>/results.md`.
`tools/ablation.py` is the command.

Example:
>>> records = [{"config": "mt_baseline", "seed": s, "metrics": {"semseg_miou": 40.0 + s}} for s in (0, 1)]
>>> records += [{"config": "mt_contrastive", "seed": s, "metrics": {"semseg_miou": 41.0 + 2 * s}} for s in (0, 1)]
>>> print(paired_differences(records).splitlines()[-1])
| mt_contrastive | 2 | +1.50 +- 0.71 |  |  |  |  |  |
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

SYNTHETIC_TASKS = ("semseg", "depth", "normals", "edge", "saliency", "human_parts")

# Name -> RunConfig overrides. The multi-task runs use every synthetic task.
PAPER = {"source_selection": "random", "criterion": "threshold"}
CONFIGS: Mapping[str, Mapping[str, Any]] = {
    **{f"single_{task}": {"tasks": (task,)} for task in SYNTHETIC_TASKS},
    "mt_baseline": {},
    "mt_contrastive": {"contrastive": True, "contrastive_options": PAPER},
    "mt_contrastive_all_sources": {"contrastive": True, "contrastive_options": {**PAPER, "source_selection": "all"}},
    "mt_contrastive_ranking": {"contrastive": True, "contrastive_options": {**PAPER, "criterion": "ranking"}},
    "mt_contrastive_no_balance": {"contrastive": True, "contrastive_options": {**PAPER, "balance": False}},
    "mt_contrastive_lambda0.3": {"contrastive": True, "contrastive_options": {**PAPER, "weight": 0.3}},
    "mt_contrastive_lambda1": {"contrastive": True, "contrastive_options": {**PAPER, "weight": 1.0}},
    "mt_contrastive_nearest": {"contrastive": True, "contrastive_options": {**PAPER, "label_resize": "nearest"}},
    "padnet_baseline": {"framework": "padnet"},
    "padnet_contrastive": {"framework": "padnet", "contrastive": True, "contrastive_options": PAPER},
}

# The decoder option that sets each framework's width.
WIDTH_OPTION = {"baseline": "head_channels", "padnet": "channels"}


@dataclasses.dataclass(frozen=True)
class Setup:
    """What every run of one ablation shares; only runs of the same setup are compared.

    Args:
        size: (height, width) of the scenes and crops.
        train_scenes, val_scenes: synthetic scenes per split.
        steps: training steps of every run.
        batch: batch size.
        learning_rate: Adam's learning rate (poly schedule).
        widths: the four `tiny_cnn` stage widths.
        head_channels: decoder width (baseline heads, PAD-Net channels).
        anchors, pool: the regularizer's anchors and candidate pool per
            image (fewer than at 448 x 576: the feature maps are small here).
    """

    size: tuple[int, int] = (72, 96)
    train_scenes: int = 256
    val_scenes: int = 32
    steps: int = 300
    batch: int = 8
    learning_rate: float = 2e-3
    widths: tuple[int, ...] = (16, 32, 64, 96)
    head_channels: int = 32
    anchors: int = 64
    pool: int = 256

    def record(self) -> dict:
        """The setup as stored in each record (JSON types: lists, not tuples)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def check_configs(names: Iterable[str]) -> None:
    """Raises ValueError naming the configurations that are not in `CONFIGS`."""
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        raise ValueError(f"unknown configs {unknown}; known: {list(CONFIGS)}")


def base_config(setup: Setup):
    """The `RunConfig` every ablation run starts from."""
    from keras_mtcl.presets import RunConfig

    height, width = setup.size
    return RunConfig().replace(
        name="ablation",
        dataset="synthetic",
        backbone="tiny_cnn",
        backbone_options={"widths": list(setup.widths)},
        image_size=(height, width),
        synthetic_size=(height, width),
        synthetic_train=setup.train_scenes,
        synthetic_val=setup.val_scenes,
        batch_size=setup.batch,
        epochs=1,
        steps_per_epoch=setup.steps,
        optimizer="adam",
        learning_rate=setup.learning_rate,
        weight_decay=1e-4,
        schedule="poly",
    )


def run_config(base, setup: Setup, name: str, seed: int):
    """The `RunConfig` of configuration `name` and `seed`: `base` with the configuration's changes."""
    check_configs([name])
    changes = dict(CONFIGS[name])
    changes["decoder_options"] = {WIDTH_OPTION[changes.get("framework", "baseline")]: setup.head_channels}
    if changes.get("contrastive"):
        changes["contrastive_options"] = {"num_anchors": setup.anchors, "pool_size": setup.pool,
                                          **changes["contrastive_options"]}
    return base.replace(name=name, seed=seed, **changes)


def run_one(config, data) -> tuple[dict, Any]:
    """Trains `config` for its step budget and evaluates it; returns (metrics, trained `MultiTaskTrainer`).

    The trainer's `model` is the trained inference network (what is
    evaluated); its `regularizer` holds the projectors of a regularized run.
    """
    import keras

    from keras_mtcl import training
    from keras_mtcl.evaluation import evaluate_model

    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    train_ds, val_ds, all_specs = data
    specs = [t for t in all_specs if t.name in config.data.tasks] if config.data.tasks else all_specs
    train_batches, val_batches = training.make_pipelines(config, train_ds, val_ds, specs)
    model = training.build_model(config, specs)
    trainer = training.build_trainer(config, model)
    trainer.compile(optimizer=training.build_optimizer(config, config.steps_per_epoch * config.epochs))
    start = time.time()
    history = trainer.fit(
        train_batches.repeat(), epochs=config.epochs, steps_per_epoch=config.steps_per_epoch, verbose=0, shuffle=False
    )
    train_seconds = time.time() - start
    metrics = evaluate_model(model, val_batches, specs, progress=False)
    metrics = {k: v for k, v in metrics.items() if not isinstance(v, list)}
    metrics["final_loss"] = float(history.history["loss"][-1])
    metrics["train_seconds"] = train_seconds
    return metrics, trainer


def load_results(path: str | Path) -> list[dict]:
    """The records of a results.jsonl (none if the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation) over seeds; the deviation is 0 for one value."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _by_config(records: Iterable[Mapping]) -> dict[str, dict[int, dict]]:
    by_config: dict[str, dict[int, dict]] = {}
    for record in records:
        by_config.setdefault(record["config"], {})[record["seed"]] = record["metrics"]
    return by_config


def _main_metric_keys() -> list[str]:
    from keras_mtcl.metrics import MAIN_METRICS

    return [f"{task}_{MAIN_METRICS[task]}" for task in SYNTHETIC_TASKS]


def summarize(records: Sequence[Mapping]) -> str:
    """Markdown table: main metric per task (mean +- std over seeds) and delta_m per configuration.

    delta_m of a multi-task run is taken against the single-task runs of the
    same seed; its mean +- std is over seeds.
    """
    from keras_mtcl.metrics import delta_m

    by_config = _by_config(records)
    single = {name[len("single_"):]: runs for name, runs in by_config.items() if name.startswith("single_")}
    keys = _main_metric_keys()
    header = "| config | seeds | " + " | ".join(keys) + " | delta_m (%) |"
    lines = [header, "|" + "---|" * (len(keys) + 3)]
    for name in [n for n in CONFIGS if n in by_config] + sorted(set(by_config) - set(CONFIGS)):
        runs = by_config[name]
        cells = []
        for key in keys:
            values = [m[key] for m in runs.values() if key in m]
            cells.append("%.2f +- %.2f" % mean_std(values) if values else "")
        deltas = []
        for seed, result in runs.items():
            baselines = {}
            for task, key in zip(SYNTHETIC_TASKS, keys):
                if key in result and seed in single.get(task, {}):
                    baselines[key] = single[task][seed][key]
            present = [k for k in keys if k in result]
            if len(present) > 1 and all(k in baselines for k in present):
                deltas.append(delta_m(result, baselines)["delta_m"])
        delta = "%+.2f +- %.2f" % mean_std(deltas) if deltas else ""
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {delta} |")
    return "\n".join(lines)


def paired_differences(records: Sequence[Mapping], reference: str = "mt_baseline") -> str:
    """Markdown table: each multi-task config minus `reference` of the same seed, per task (mean +- std).

    Pairing by seed removes what the two runs share (initialisation, batch
    order), so a difference that keeps its sign over seeds stands out of the
    seed-to-seed spread of the absolute numbers. Empty without `reference`.
    """
    by_config = _by_config(records)
    if reference not in by_config:
        return ""
    keys = _main_metric_keys()
    lines = [f"| config - {reference} (same seed) | seeds | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for name in [n for n in CONFIGS if n in by_config and n != reference and not n.startswith("single_")]:
        seeds = sorted(set(by_config[name]) & set(by_config[reference]))
        cells = []
        for key in keys:
            diffs = [by_config[name][s][key] - by_config[reference][s][key] for s in seeds if key in by_config[name][s]]
            cells.append("%+.2f +- %.2f" % mean_std(diffs) if diffs else "")
        lines.append(f"| {name} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(records: Sequence[Mapping]) -> str:
    """`summarize` and, when there is a multi-task baseline, `paired_differences`, of the latest record per run."""
    latest = list({(r["config"], r["seed"]): r for r in records}.values())  # the last record of a run wins
    table = summarize(latest)
    paired = paired_differences(latest)
    return table + ("\n\n" + paired if paired else "")


def run_ablation(
    out: str | Path,
    configs: Sequence[str] = tuple(CONFIGS),
    seeds: Sequence[int] = (0, 1, 2),
    setup: Setup = Setup(),
    save_models: Sequence[str] = ("mt_baseline", "mt_contrastive"),
    rerun: bool = False,
    report_only: bool = False,
    log: Callable[[str], None] = print,
) -> str:
    """Trains the runs of `configs` x `seeds` not yet in `<out>/results.jsonl`, then writes `<out>/results.md`.

    Args:
        out: output folder: `results.jsonl` (one record per run, appended as
            runs finish, so an interrupted ablation continues where it
            stopped), `results.md`, and `models/<config>_seed<seed>.keras`:
            the trained `MultiTaskTrainer` of each `save_models` config at
            the first seed (a regularized run's file keeps its projectors,
            for `keras_mtcl.analysis.consistency`).
        configs: names of `CONFIGS`.
        seeds: seeds of every configuration.
        setup: what the runs share; records of another setup are ignored.
        save_models: configurations whose first-seed trainer is saved.
        rerun: train runs already recorded again.
        report_only: train nothing; only rewrite the tables.
        log: receives a progress line per run.

    Returns:
        The markdown tables written to `results.md`.

    Raises:
        ValueError: an unknown configuration.
    """
    check_configs(configs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    setup_record = setup.record()
    records = [r for r in load_results(results_path) if r.get("setup") == setup_record]
    if not report_only:
        import keras

        from keras_mtcl import training

        base = base_config(setup)
        done = {(r["config"], r["seed"]) for r in records}
        log(f"Backend {keras.backend.backend()}; rendering the scenes ...")
        data = training.load_data(base)
        todo = [(name, seed) for seed in seeds for name in configs if rerun or (name, seed) not in done]
        log(f"{len(todo)} runs to train ({len(done)} already in {results_path})")
        for index, (name, seed) in enumerate(todo, 1):
            start = time.time()
            metrics, trainer = run_one(run_config(base, setup, name, seed), data)
            record = {"config": name, "seed": seed, "backend": keras.backend.backend(), "setup": setup_record,
                      "metrics": metrics}
            records.append(record)
            with results_path.open("a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
            if name in save_models and seed == seeds[0]:
                (out / "models").mkdir(exist_ok=True)
                trainer.save(out / "models" / f"{name}_seed{seed}.keras")
            ends = ("miou", "rmse", "mean_angle", "odsf", "maxf")
            shown = ", ".join(f"{k} {v:.3g}" for k, v in metrics.items() if k.endswith(ends))
            log(f"[{index}/{len(todo)}] {name} seed {seed}: {shown} ({time.time() - start:.0f} s)")
    table = report(records)
    (out / "results.md").write_text(table + "\n")
    return table


__all__ = ["CONFIGS", "PAPER", "SYNTHETIC_TASKS", "WIDTH_OPTION", "Setup", "base_config", "check_configs",
           "load_results", "mean_std", "paired_differences", "report", "run_ablation", "run_config", "run_one",
           "summarize"]
