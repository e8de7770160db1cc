"""tools/ablation.py: the tables computed from run records (training itself is covered elsewhere)."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("ablation", Path(__file__).resolve().parents[1] / "tools" / "ablation.py")
ablation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ablation)

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


def test_unknown_config_is_refused(capsys, tmp_path):
    assert ablation.main(["--out", str(tmp_path), "--configs", "mt_nothing"]) == 2
    assert "unknown configs ['mt_nothing']" in capsys.readouterr().err
