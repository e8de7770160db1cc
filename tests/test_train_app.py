"""apps/train.py end to end: outputs, a hard kill mid-run, and the resumed run."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _epochs(history: Path) -> list[int]:
    with history.open() as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="resuming is Keras callback logic, identical on every backend; run once, where training starts fastest",
)
def test_killed_run_resumes_and_writes_every_output(tmp_path):
    run_dir = tmp_path / "run"
    command = [
        sys.executable, str(ROOT / "apps/train.py"), "--preset", "smoke", "--output-dir", str(run_dir),
        "--set", "epochs=12", "--set", "steps_per_epoch=2", "--set", "tasks=semseg,depth,edge",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    history = run_dir / "history.csv"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if history.exists() and len(_epochs(history)) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted: " + process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = _epochs(history)
    assert done_before and done_before[-1] < 11
    # The checkpoint written before the kill is whole.
    from keras_mtcl.model import load_model

    load_model(run_dir / "checkpoints" / "last.keras")

    resumed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # One row per epoch: the epoch in flight at the kill runs again, no finished epoch is lost or repeated.
    assert _epochs(history) == list(range(12))
    for name in ("config.json", "model.keras", "metrics.json", "checkpoints/best.keras", "pictures/000.png", "serving/smoke/1/saved_model.pb", "serving/models.config"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "logs").rglob("*tfevents*"))
    assert "semseg_miou" in (run_dir / "metrics.json").read_text()
    assert "Wrote:" in resumed.stdout

