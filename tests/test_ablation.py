"""keras_mtcl.analysis.ablation: the tables computed from run records (training itself is covered elsewhere)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from keras_mtcl.analysis import ablation

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.backend_independent

SINGLE = {"semseg_miou": 40.0, "depth_rmse": 0.5}


def _records():
    records = []
    for seed, shift in ((0, 0.0), (1, 2.0)):
        records.append({"config": "single_semseg", "seed": seed, "metrics": {"semseg_miou": SINGLE["semseg_miou"] + shift}})
        records.append({"config": "single_depth", "seed": seed, "metrics": {"depth_rmse": SINGLE["depth_rmse"]}})
        # Multi-task baseline: semseg +10 % over its seed's single-task run, depth RMSE 10 % lower.
        records.append({"config": "mt_baseline", "seed": seed,
                        "metrics": {"semseg_miou": 1.1 * (40.0 + shift), "depth_rmse": 0.45}})
        records.append({"config": "mt_contrastive", "seed": seed,
                        "metrics": {"semseg_miou": 1.1 * (40.0 + shift) + 1.0 + seed, "depth_rmse": 0.45}})
    return records


def test_summary_reports_mean_spread_and_delta_m_per_seed():
    table = ablation.summarize(_records())
    baseline_row = next(line for line in table.splitlines() if line.startswith("| mt_baseline "))
    # Means over the two seeds: semseg (44 + 46.2) / 2; delta_m +10 % in both seeds, so no spread.
    assert "45.10 +- 1.56" in baseline_row
    assert baseline_row.rstrip().endswith("+10.00 +- 0.00 |")
    single_row = next(line for line in table.splitlines() if line.startswith("| single_semseg "))
    assert single_row.rstrip().endswith("|  |")  # no delta_m for one task


def test_paired_differences_subtract_the_same_seed():
    table = ablation.paired_differences(_records())
    row = next(line for line in table.splitlines() if line.startswith("| mt_contrastive "))
    # +1 in seed 0, +2 in seed 1: mean 1.5, sample std 0.71; depth unchanged.
    assert "+1.50 +- 0.71" in row
    assert "+0.00 +- 0.00" in row
    assert ablation.paired_differences([r for r in _records() if r["config"] != "mt_baseline"]) == ""


def test_report_keeps_the_latest_record_of_a_run_and_reads_only_its_setup(tmp_path):
    records = _records()
    rerun = {"config": "mt_contrastive", "seed": 1, "metrics": {"semseg_miou": 1.1 * 42.0, "depth_rmse": 0.45}}
    table = ablation.report(records + [rerun])
    row = [line for line in table.splitlines() if line.startswith("| mt_contrastive ")][-1]  # the paired table's
    assert "+0.50 +- 0.71" in row  # +1 in seed 0, +0 in seed 1 after the rerun
    setup = ablation.Setup(steps=5)
    (tmp_path / "results.jsonl").write_text("".join(
        json.dumps({**r, "setup": setup.record() if r["seed"] == 0 else ablation.Setup().record()}) + "\n"
        for r in records
    ))
    table = ablation.run_ablation(tmp_path, setup=ablation.Setup(size=[72, 96], steps=5), report_only=True)
    assert "| mt_baseline | 1 |" in table  # seed 1 was recorded with another setup
    assert (tmp_path / "results.md").read_text() == table + "\n"


def test_run_config_applies_the_configuration_and_the_setup():
    setup = ablation.Setup(head_channels=12, anchors=8, pool=16)
    config = ablation.run_config(ablation.base_config(setup), setup, "padnet_contrastive", seed=3)
    assert (config.name, config.seed, config.model.framework, config.model.contrastive) == (
        "padnet_contrastive", 3, "padnet", True
    )
    assert config.model.decoder_options == {"channels": 12}
    assert config.model.contrastive_options == {"num_anchors": 8, "pool_size": 16, **ablation.PAPER}
    assert (config.data.image_size, config.steps_per_epoch) == ((72, 96), setup.steps)
    with pytest.raises(ValueError, match=r"unknown configs \['mt_nothing'\]"):
        ablation.run_config(ablation.base_config(setup), setup, "mt_nothing", seed=0)


def test_unknown_config_is_refused(tmp_path):
    done = subprocess.run([sys.executable, "tools/ablation.py", "--out", str(tmp_path), "--configs", "mt_nothing"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2
    assert "unknown configs ['mt_nothing']" in done.stderr
