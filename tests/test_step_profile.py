"""keras_mtcl.analysis.step_profile and tools/profile_step.py: a training step's time per operation.

Backend-specific by nature: each backend has its own profiler (JAX and PyTorch are read; TensorFlow is
refused with a message), so each pass checks its backend's branch.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from keras_mtcl.analysis import step_profile, train_bench

ROOT = Path(__file__).resolve().parents[1]
SETUP = train_bench.BenchSetup(backbone="tiny_cnn", size=(32, 48), batch=2, warmup=1, jit_compile="auto")


@pytest.mark.skipif(keras.backend.backend() not in step_profile.PROFILED_BACKENDS,
                    reason="JAX and PyTorch steps are profiled; TensorFlow is refused (tested below)")
def test_profile_names_the_convolutions_and_its_shares_add_up():
    profile = step_profile.profile_step(SETUP, regularized=True, steps=2, top=500)
    assert (profile["backend"], profile["regularizer"], profile["steps"]) == (keras.backend.backend(), True, 2)
    assert profile["wall_ms_per_step"] > 0 and profile["op_ms_per_step"] > 0
    ops = profile["ops"]
    assert ops == sorted(ops, key=lambda o: -o["ms_per_step"])
    # top=500 lists every operation: the shares are those of the whole.
    assert sum(o["share"] for o in ops) == pytest.approx(1.0, rel=1e-9)
    assert sum(o["ms_per_step"] for o in ops) == pytest.approx(profile["op_ms_per_step"], rel=1e-9)
    names = [o["op"] for o in ops]
    if profile["backend"] == "torch":
        assert "aten::convolution_backward" in names, names[:20]
    else:
        # XLA instruction kinds, without the `.N` suffix of each instance.
        assert not any(name.rsplit(".", 1)[-1].isdigit() for name in names), names[:20]
        assert any("fusion" in name or "convolution" in name for name in names), names[:20]


def test_ranked_ops_keeps_the_top_operations_with_their_shares_of_the_whole():
    totals = {"conv": 50.0, "add": 10.0, "mul": 30.0, "copy": 10.0}
    ops = step_profile.ranked_ops(totals, steps=5, top=2)
    assert [o["op"] for o in ops] == ["conv", "mul"]
    assert [o["ms_per_step"] for o in ops] == [10.0, 6.0]
    assert [o["share"] for o in ops] == [0.5, 0.3]  # of all four, not of the two listed
    assert step_profile.ranked_ops({}, steps=1, top=3) == []


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the TensorFlow pass checks the refusal")
def test_the_command_refuses_tensorflow_with_one_line_and_profiles_jax_and_torch():
    for backend, expected in (("tensorflow", 2), ("torch", 0)):
        done = subprocess.run([sys.executable, "tools/profile_step.py", "--size", "32", "48", "--batch", "2",
                               "--steps", "1", "--warmup", "1", "--top", "4"], cwd=ROOT, capture_output=True,
                              text=True, env={**os.environ, "KERAS_BACKEND": backend}, timeout=600)
        assert done.returncode == expected, done.stderr[-2000:]
        if expected:
            assert done.stderr.strip().splitlines()[-1].endswith("Received: backend='tensorflow'")
        else:
            record = json.loads(done.stdout.strip().splitlines()[-1])
            assert record["backend"] == "torch" and len(record["ops"]) == 4
            assert done.stdout.startswith("torch: ")
