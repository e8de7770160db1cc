"""Ablation of the regularizer on the synthetic scenes, over several seeds.

    KERAS_BACKEND=jax python tools/ablation.py --out runs/ablation
    KERAS_BACKEND=jax python tools/ablation.py --out runs/ablation --seeds 0 1 2 --steps 600
    python tools/ablation.py --out runs/ablation --report-only   # tables from results.jsonl

Trains every configuration of `CONFIGS` (single-task baselines, the
multi-task baseline, the regularizer in the paper's setting and its options,
a distillation framework with and without it) with the same data, model
size, optimizer and step budget, once per seed, evaluates each on the
synthetic validation scenes with the reference metrics, and writes:

- `<out>/results.jsonl`: one line per (config, seed) with every metric and
  the training time. Runs already there are skipped, so an interrupted
  ablation continues where it stopped (`--rerun` forces them).
- `<out>/results.md`: per configuration, each task's main metric as mean
  +- standard deviation over seeds, and delta_m against the single-task
  baselines of the same seed (mean +- std over seeds); then each multi-task
  configuration's per-seed difference to the multi-task baseline.
- `<out>/models/<config>_seed<seed>.keras` for `--save-models` configs
  (inputs of `tools/consistency.py`): the trained `MultiTaskTrainer`, so
  that a regularized run's file keeps its projectors (consistency's
  `projected` space); `trainer.model` is its inference network.

The seed sets weight initialisation, batch order, augmentation and the
regularizer's sampling; the scenes are the same for every run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Mapping


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
    "padnet_baseline": {"framework": "padnet"},
    "padnet_contrastive": {"framework": "padnet", "contrastive": True, "contrastive_options": PAPER},
}


# The decoder option that sets each framework's width.
WIDTH_OPTION = {"baseline": "head_channels", "padnet": "channels"}


def contrastive_options(args: argparse.Namespace, options: Mapping[str, Any]) -> dict:
    """A config's regularizer options with the ablation's sampling sizes."""
    return {"num_anchors": args.anchors, "pool_size": args.pool, **options}


def base_config(args: argparse.Namespace):
    """The RunConfig every ablation run starts from."""
    from keras_mtcl.presets import RunConfig

    height, width = args.size
    return RunConfig(
        name="ablation",
        dataset="synthetic",
        backbone="tiny_cnn",
        backbone_options={"widths": list(args.widths)},
        image_size=(height, width),
        synthetic_size=(height, width),
        synthetic_train=args.train_scenes,
        synthetic_val=args.val_scenes,
        batch_size=args.batch,
        epochs=1,
        steps_per_epoch=args.steps,
        optimizer="adam",
        learning_rate=args.learning_rate,
        weight_decay=1e-4,
        schedule="poly",
    )


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
    specs = [t for t in all_specs if t.name in config.tasks] if config.tasks else all_specs
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


def _load_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(records: list[dict]) -> str:
    """Markdown tables: main metric per task (mean +- std over seeds) and delta_m per configuration."""
    from keras_mtcl.metrics import MAIN_METRICS, delta_m

    by_config: dict[str, dict[int, dict]] = {}
    for record in records:
        by_config.setdefault(record["config"], {})[record["seed"]] = record["metrics"]
    single = {name[len("single_"):]: runs for name, runs in by_config.items() if name.startswith("single_")}
    keys = [f"{task}_{MAIN_METRICS[task]}" for task in SYNTHETIC_TASKS]
    header = "| config | seeds | " + " | ".join(keys) + " | delta_m (%) |"
    lines = [header, "|" + "---|" * (len(keys) + 3)]
    for name in [n for n in CONFIGS if n in by_config] + sorted(set(by_config) - set(CONFIGS)):
        runs = by_config[name]
        cells = []
        for key in keys:
            values = [m[key] for m in runs.values() if key in m]
            cells.append("%.2f +- %.2f" % _mean_std(values) if values else "")
        deltas = []
        for seed, result in runs.items():
            baselines = {}
            for task in SYNTHETIC_TASKS:
                key = f"{task}_{MAIN_METRICS[task]}"
                if key in result and seed in single.get(task, {}):
                    baselines[key] = single[task][seed][key]
            present = [k for k in keys if k in result]
            if len(present) > 1 and all(k in baselines for k in present):
                deltas.append(delta_m(result, baselines)["delta_m"])
        delta = "%+.2f +- %.2f" % _mean_std(deltas) if deltas else ""
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {delta} |")
    return "\n".join(lines)


def paired_differences(records: list[dict], reference: str = "mt_baseline") -> str:
    """Markdown table: each multi-task config minus `reference` of the same seed, per task (mean +- std).

    Pairing by seed removes what the two runs share (initialisation, batch
    order), so a difference that keeps its sign over seeds stands out of the
    seed-to-seed spread of the absolute numbers.
    """
    from keras_mtcl.metrics import MAIN_METRICS

    by_config: dict[str, dict[int, dict]] = {}
    for record in records:
        by_config.setdefault(record["config"], {})[record["seed"]] = record["metrics"]
    if reference not in by_config:
        return ""
    keys = [f"{task}_{MAIN_METRICS[task]}" for task in SYNTHETIC_TASKS]
    lines = [f"| config - {reference} (same seed) | seeds | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for name in [n for n in CONFIGS if n in by_config and n != reference and not n.startswith("single_")]:
        seeds = sorted(set(by_config[name]) & set(by_config[reference]))
        cells = []
        for key in keys:
            diffs = [by_config[name][s][key] - by_config[reference][s][key] for s in seeds if key in by_config[name][s]]
            cells.append("%+.2f +- %.2f" % _mean_std(diffs) if diffs else "")
        lines.append(f"| {name} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/ablation", help="output folder")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), help=f"subset of {list(CONFIGS)}")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--size", nargs=2, type=int, default=[72, 96], metavar=("H", "W"))
    parser.add_argument("--train-scenes", type=int, default=256)
    parser.add_argument("--val-scenes", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300, help="training steps of every run")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--widths", nargs=4, type=int, default=[16, 32, 64, 96], help="tiny_cnn stage widths")
    parser.add_argument("--head-channels", type=int, default=32, help="decoder width (baseline heads, PAD-Net channels)")
    # The feature maps are small here (18 x 24 at stride 4 for 72 x 96): fewer anchors than at 448 x 576.
    parser.add_argument("--anchors", type=int, default=64, help="regularizer anchors per image")
    parser.add_argument("--pool", type=int, default=256, help="regularizer candidate pool per image")
    parser.add_argument("--save-models", nargs="*", default=["mt_baseline", "mt_contrastive"],
                        help="configs whose seed-0 model is saved under <out>/models")
    parser.add_argument("--rerun", action="store_true", help="train runs already in results.jsonl again")
    parser.add_argument("--report-only", action="store_true", help="only rewrite results.md from results.jsonl")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    unknown = sorted(set(args.configs) - set(CONFIGS))
    if unknown:
        print(f"error: unknown configs {unknown}; known: {list(CONFIGS)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    # Only runs of the same setup (size, budget, model) are compared.
    setup = {k: v for k, v in vars(args).items() if k not in ("out", "configs", "seeds", "rerun", "report_only", "save_models")}
    records = [r for r in _load_results(results_path) if r.get("setup") == setup]
    if not args.report_only:
        import keras

        from keras_mtcl import training

        base = base_config(args)
        done = {(r["config"], r["seed"]) for r in records}
        print(f"Backend {keras.backend.backend()}; rendering the scenes ...", flush=True)
        data = training.load_data(base)
        todo = [(name, seed) for seed in args.seeds for name in args.configs if args.rerun or (name, seed) not in done]
        print(f"{len(todo)} runs to train ({len(done)} already in {results_path})", flush=True)
        for index, (name, seed) in enumerate(todo, 1):
            changes = dict(CONFIGS[name])
            changes["decoder_options"] = {WIDTH_OPTION[changes.get("framework", "baseline")]: args.head_channels}
            if changes.get("contrastive"):
                changes["contrastive_options"] = contrastive_options(args, changes["contrastive_options"])
            config = base.replace(name=name, seed=seed, **changes)
            start = time.time()
            metrics, trainer = run_one(config, data)
            record = {"config": name, "seed": seed, "backend": keras.backend.backend(), "setup": setup, "metrics": metrics}
            records = [r for r in records if (r["config"], r["seed"]) != (name, seed)] + [record]
            with results_path.open("a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
            if name in args.save_models and seed == args.seeds[0]:
                (out / "models").mkdir(exist_ok=True)
                trainer.save(out / "models" / f"{name}_seed{seed}.keras")
            shown = ", ".join(f"{k} {v:.3g}" for k, v in metrics.items() if k.endswith(("miou", "rmse", "mean_angle", "odsf", "maxf")))
            print(f"[{index}/{len(todo)}] {name} seed {seed}: {shown} ({time.time() - start:.0f} s)", flush=True)
    # The last record of each (config, seed) wins.
    latest = {(r["config"], r["seed"]): r for r in records}
    table = summarize(list(latest.values()))
    paired = paired_differences(list(latest.values()))
    if paired:
        table += "\n\n" + paired
    (out / "results.md").write_text(table + "\n")
    print(table)
    print(f"Wrote {results_path} and {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
