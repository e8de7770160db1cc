"""Train a multi-task model (`MultiTaskTrainer.fit`) from a named preset.

    mtcl-train --preset quickstart
    mtcl-train --preset quickstart --set epochs=2 --set model.contrastive=false
    mtcl-train --preset quickstart --set optimizer.learning_rate=1e-3 --set augment.scale_range=0.75,1.5
    mtcl-train --config runs/quickstart/config.json
    mtcl-train --preset folder --set manual_dir=/data/my_rooms --set epochs=50
    mtcl-train --preset nyud_hrnet18_baseline --smoke
    KERAS_BACKEND=jax mtcl-train --preset smoke

Every RunConfig field (keras_mtcl/presets.py) can be overridden with
`--set group.field=value`, or `--set field=value` where one group alone has
a field of that name; `--set augment=false` trains without augmentation
(crops only). The run writes its final config.json beside its outputs.
A preset is a module of keras_mtcl/configs whose docstring gives its
runtime and expected metrics; --smoke shrinks it to seconds (tiny CNN, a
tiny fixture of a downloaded dataset in a temporary folder). Without
--preset, the run starts from the preset of the dataset it sets
(`--set dataset=folder`: the `folder` preset; none: `quickstart`). Training
ends with an evaluation on the `data.eval_split` (the boundary benchmark
included; skip it with --no-eval), then the model is exported for TF Serving
to `<run dir>/serving/<name>/1/` (skip with --no-export).

Started again on an output folder that holds a run, it compares the configs
before writing anything: the same config resumes an interrupted run or says
a finished one is done; another config is refused (exit 2) unless
`--resume` (continue with more epochs: `--set epochs=N`) or `--overwrite`
(start again) is passed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


from keras_mtcl import presets
from keras_mtcl.cli import add_verbose_flag, quiet_tensorflow
from keras_mtcl.errors import ConfigError, error_line, reports_user_errors


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config fields (--set FIELD=VALUE; documented in keras_mtcl.presets.RunConfig, DataConfig, ModelConfig, "
        "OptimizerConfig and keras_mtcl.data.augment_config.AugmentConfig), with the defaults that a preset overrides:\n"
        + presets.field_defaults(),
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", help=f"one of {presets.list_presets()} (default: the preset of the dataset "
                        f"that --set dataset= names, {dict(presets.DATASET_PRESETS)})")
    source.add_argument("--config", help="a config.json written by an earlier run")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a config field")
    parser.add_argument("--smoke", action="store_true",
                        help="the preset shrunk to seconds (its get_config(smoke=True)): a check that it runs")
    parser.add_argument("--output-dir", help="where to write the run (default runs/<name>)")
    parser.add_argument("--print-config", action="store_true", help="print the final config and exit")
    parser.add_argument("--eval-split", metavar="SPLIT",
                        help="the split scored during and after training (same as --set data.eval_split=SPLIT)")
    parser.add_argument("--no-eval", action="store_true",
                        help="skip the final evaluation (metrics.json and the boundary benchmark)")
    parser.add_argument("--no-export", action="store_true", help="skip the SavedModel export after training")
    add_verbose_flag(parser)
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue the run already in the output folder with more epochs (--set epochs=N)")
    existing.add_argument("--overwrite", action="store_true",
                          help="delete the run already in the output folder and start again")
    return parser.parse_args(argv)


def _fail(error) -> int:
    print(error_line(error), file=sys.stderr)
    return 2


@reports_user_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_tensorflow(args.verbose)
    try:
        if args.config and args.smoke:
            raise ConfigError("--smoke shrinks a preset (--preset NAME --smoke); it does not apply to --config.")
        if args.config:
            if not Path(args.config).is_file():
                raise FileNotFoundError(f"no config file at {args.config} (--config takes a config.json of an earlier run).")
            config = presets.RunConfig.from_dict(json.loads(Path(args.config).read_text()))
            config = presets.apply_overrides(config, args.set)
        else:
            preset = args.preset or presets.starting_preset(args.set)
            if not args.preset and preset != "quickstart":
                print(f"Starting from the {preset!r} preset of the dataset (--preset chooses another).")
            config = presets.get_preset(preset, args.set, smoke=args.smoke)
        if args.eval_split:
            config = config.replace(eval_split=args.eval_split)
        if args.output_dir:
            config = config.replace(output_dir=args.output_dir)
    except (OSError, ValueError) as error:  # unreadable --config, unknown preset or field, bad value
        return _fail(error)
    if args.print_config:
        print(config.to_json())
        return 0
    from keras_mtcl.data import get_dataset

    if get_dataset(config.data.dataset).NEEDS_MANUAL_DIR and not config.data.manual_dir:
        raise ConfigError(f"dataset {config.data.dataset!r} is read from its downloaded folder: pass --set manual_dir=PATH.")
    from keras_mtcl import training

    # Missing or misplaced downloads, weights files and manifests, bad labels, a folder holding another run,
    # a diverged loss are user errors: `reports_user_errors` prints the message, which says what to fix.
    result = training.train(config, resume=args.resume, overwrite=args.overwrite, evaluate=not args.no_eval)
    if result.get("finished"):
        return 0  # nothing was trained, nothing is rewritten
    if not args.no_export:
        # Export runs on the TensorFlow backend, in its own process, whatever backend trained.
        import subprocess

        serving_root = str(Path(result["run_dir"]) / "serving")
        command = [sys.executable, "-m", "keras_mtcl.cli.export", result["model"],
                   "--serving-root", serving_root, "--name", config.name, "--overwrite"]
        command += ["--verbose"] if args.verbose else []
        exported = subprocess.run(command)
        if exported.returncode != 0:
            print("error: the SavedModel export failed (see above)", file=sys.stderr)
            return exported.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
