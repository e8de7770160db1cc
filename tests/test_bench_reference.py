"""keras_mtcl.analysis.reference_torch (the PyTorch reference), keras_mtcl.analysis.gpu_bench (the benchmark
driver) and the commands over them, tools/bench_reference_torch.py and tools/gpu_bench.py.

The reference runs here with the `tiny` model, its timm-free stand-in network,
on the CPU; the timm HRNets are for the GPU machine.
"""

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_mtcl.analysis import gpu_bench, timing
from keras_mtcl.testing.labels import random_labels

ROOT = Path(__file__).resolve().parents[1]

torch = pytest.importorskip("torch", reason="the reference benchmark is written in PyTorch (the `torch` extra)")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """Torch on one thread, here and in the commands: the numbers checked here do not depend on speed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference():
    from keras_mtcl.analysis import reference_torch

    return reference_torch


def _tiny_setup(reference, **changes):
    setup = reference.ReferenceSetup(model="tiny", dataset="nyud", size=(64, 64), batch=2, steps=4, warmup=0, lr=1e-4)
    return dataclasses.replace(setup, **changes)


@pytest.mark.backend_independent
def test_reference_tool_prints_one_finite_record_per_mode_without_tensorflow():
    args = ("--model", "tiny", "--size", "64", "64", "--batch", "2", "--steps", "2", "--warmup", "1")
    args += ("--modes", "fp32", "--device", "cpu")
    command = gpu_bench.Command("reference/tiny", "reference", "tools/bench_reference_torch.py", args)
    with open(os.devnull, "w") as log:
        records = gpu_bench.run_command(command, timeout_s=300, log=log, root=ROOT)
    assert len(records) == 1, records
    record = records[0]
    assert "error" not in record
    assert record["bench_id"] == "reference/tiny" and record["backend"] == "torch-reference"
    assert (record["mode"], record["precision"], record["size"], record["batch"], record["steps"]) == (
        "fp32",
        "fp32",
        [64, 64],
        2,
        2,
    )
    for key in ("step_ms", "step_ms_median", "images_per_s", "warmup_s", "peak_memory_mb", "parameters"):
        assert math.isfinite(record[key]) and record[key] > 0, (key, record[key])
    assert record["images_per_s"] == pytest.approx(2 * 2 / (2 * record["step_ms"] / 1000))
    assert len(record["losses"]) == 2 and all(math.isfinite(v) and v > 0 for v in record["losses"])


@pytest.mark.backend_independent
def test_reference_loss_decreases_on_a_fixed_batch_and_stays_without_updates(reference):
    cpu = torch.device("cpu")
    trained = reference.run_mode(_tiny_setup(reference), "fp32", cpu)["losses"]
    assert len(trained) == 4 and all(math.isfinite(v) for v in trained)
    assert all(b < a for a, b in zip(trained, trained[1:])), trained
    assert trained[-1] < 0.995 * trained[0]
    # With a zero learning rate the same batch gives the same loss: the decrease above is training.
    frozen = reference.run_mode(_tiny_setup(reference, lr=0.0), "fp32", cpu)["losses"]
    assert frozen[0] == pytest.approx(trained[0], rel=1e-6)
    assert max(frozen) - min(frozen) < 1e-5 * frozen[0]


@pytest.mark.backend_independent
def test_reference_network_counts_like_keras_and_predicts_every_task_at_input_size(reference):
    from keras_mtcl.tasks import task_set

    specs = task_set("nyud")
    backbone, channels = reference.build_backbone("tiny")
    net = reference.ReferenceNet(backbone, channels, specs)
    outputs = net(torch.zeros(2, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "semseg": (2, 40, 64, 96),
        "depth": (2, 1, 64, 96),
        "normals": (2, 3, 64, 96),
        "edge": (2, 1, 64, 96),
    }
    total = sum(channels)
    batch_norm_stats = sum(2 * m.num_features for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    weights = sum(p.numel() for p in net.parameters())
    assert reference.count_parameters(net) == weights + batch_norm_stats
    # Each head: conv1x1 without bias, BN (4 x C: gamma, beta, mean, variance), conv1x1 with bias.
    heads = sum(total * total + 4 * total + total * t.channels + t.channels for t in specs)
    assert reference.count_parameters(net.heads) == heads


def _labelled_batch(specs, rng, height=12, width=10):
    """Random labels with scattered invalid pixels, plus invalid blocks of every kind and ignore-valued normals."""
    labels = random_labels(specs, 2, height, width, seed=3, invalid_fraction=0.1)
    labels["semseg"][0, :3] = 255
    labels["depth"][1, :, :4] = 0.0
    labels["normals"][0, 2:5] = 0.0
    labels["normals"][1, -2:] = 255.0
    labels["edge"][1, :2] = 255
    predictions = {t.name: rng.normal(size=(2, height, width, t.channels)) for t in specs}
    return labels, predictions


def test_torch_losses_match_keras_mtcl_losses(reference):
    from keras import ops

    from keras_mtcl.losses import task_loss
    from keras_mtcl.tasks import saliency, task_set

    specs = task_set("nyud")
    labels, predictions = _labelled_batch(specs, np.random.default_rng(3))

    def to_torch(array):
        return torch.from_numpy(np.asarray(array, "float32")).permute(0, 3, 1, 2).contiguous()

    torch_labels = {k: to_torch(v) for k, v in labels.items()}
    torch_predictions = {k: to_torch(v) for k, v in predictions.items()}
    expected_total = 0.0
    for t in specs:
        label, prediction = labels[t.name].astype("float32"), predictions[t.name].astype("float32")
        expected = float(ops.convert_to_numpy(task_loss(t, label, prediction)))
        loss = reference.LOSSES[t.loss]
        got = float(loss(torch_labels[t.name], torch_predictions[t.name], ignore_value=255, **t.loss_options))
        assert got == pytest.approx(expected, rel=1e-5), t.name
        expected_total += t.loss_weight * expected
    total = float(reference.total_loss(specs, torch_labels, torch_predictions))
    assert total == pytest.approx(expected_total, rel=1e-5)
    # The balanced BCE of saliency (PASCAL) too.
    spec = saliency()
    label, prediction = labels["edge"].astype("float32"), predictions["edge"].astype("float32")
    expected = float(ops.convert_to_numpy(task_loss(spec, label, prediction)))
    got = float(reference.balanced_bce(torch_labels["edge"], torch_predictions["edge"]))
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.backend_independent
def test_gpu_bench_plan_covers_models_groups_and_precisions():
    commands = gpu_bench.plan(["hrnet_w18", "tiny"], ["reference", "jax", "torch", "torch-jit"], (448, 576), 8, 20, 5)
    ids = [c.bench_id for c in commands]
    assert ids == [
        "reference/hrnet_w18",
        "jax/hrnet_w18/bf16",
        "jax/hrnet_w18/fp32",
        "torch/hrnet_w18/bf16",
        "torch/hrnet_w18/fp32",
        "torch-jit/hrnet_w18/bf16",
        "reference/tiny",
        "jax/tiny/bf16",
        "jax/tiny/fp32",
        "torch/tiny/bf16",
        "torch/tiny/fp32",
        "torch-jit/tiny/bf16",
    ]
    by_id = {c.bench_id: c for c in commands}
    assert by_id["reference/hrnet_w18"].args[:6] == ("--model", "hrnet_w18", "--modes", "fp32", "bf16", "compile")
    assert by_id["jax/tiny/fp32"].args[:4] == ("--backbone", "tiny_cnn", "--precision", "fp32")
    assert dict(by_id["jax/hrnet_w18/bf16"].env) == {"KERAS_BACKEND": "jax"}
    assert dict(by_id["torch/hrnet_w18/bf16"].env) == {"KERAS_BACKEND": "torch"}
    assert "--no-jit" in by_id["torch/hrnet_w18/fp32"].args and "--no-jit" not in by_id["jax/hrnet_w18/fp32"].args
    assert "--no-jit" not in by_id["torch-jit/hrnet_w18/bf16"].args
    assert "--size 448 576 --batch 8 --steps 20 --warmup 5" in by_id["jax/hrnet_w18/bf16"].shell()
    with pytest.raises(ValueError, match=r"Unknown models \['resnet'\]"):
        gpu_bench.plan(["resnet"])


@pytest.mark.backend_independent
def test_gpu_bench_cpu_plan_names_precisions_modes_device_interpreter_and_tensorflow():
    commands = gpu_bench.plan(["tiny"], ["reference", "tensorflow", "torch-jit"], (64, 96), 4, 5, 2,
                              precisions=["fp32"], modes=["fp32"], device="cpu", reference_python="/venv/bin/python")
    by_id = {c.bench_id: c for c in commands}
    assert list(by_id) == ["reference/tiny", "tensorflow/tiny/fp32", "torch-jit/tiny/fp32"]
    reference, tensorflow = by_id["reference/tiny"], by_id["tensorflow/tiny/fp32"]
    assert reference.shell().startswith("/venv/bin/python tools/bench_reference_torch.py --model tiny --modes fp32 ")
    assert reference.args[-2:] == ("--device", "cpu") and reference.argv(ROOT)[0] == "/venv/bin/python"
    assert dict(tensorflow.env) == {"KERAS_BACKEND": "tensorflow"} and "--no-jit" not in tensorflow.args
    assert tensorflow.tensorflow and not reference.tensorflow and not by_id["torch-jit/tiny/fp32"].tensorflow
    assert {c.model for c in commands} == {"tiny"}
    with pytest.raises(ValueError, match=r"`modes` must be some of"):
        gpu_bench.plan(["tiny"], modes=["fp16"])


@pytest.mark.backend_independent
def test_gpu_bench_rounds_alternate_and_ratios_take_medians_over_rounds_against_the_best_reference_mode():
    commands = gpu_bench.plan(["tiny"], ["reference", "jax"], precisions=["fp32"])
    ids = [c.bench_id for c in gpu_bench.in_rounds(commands, 3)]
    assert ids == ["reference/tiny/round1", "jax/tiny/fp32/round1", "jax/tiny/fp32/round2",
                   "reference/tiny/round2", "reference/tiny/round3", "jax/tiny/fp32/round3"]
    assert gpu_bench.in_rounds(commands, 1) == commands
    tags = gpu_bench.in_rounds(commands, 2)[3].tags()
    assert tags == {"bench_id": "reference/tiny/round2", "group": "reference", "model": "tiny", "round": 2}

    def line(group, step_ms, **fields):
        return {"bench_id": group, "group": group, "model": "tiny", "batch": 4, "step_ms_median": step_ms, **fields}

    records = [{"kind": "environment"}]
    for step_ms in (100.0, 400.0, 120.0):  # median 120 ms: 4 images / 0.12 s
        records.append(line("reference", step_ms, mode="fp32"))
    records.append(line("reference", 80.0, mode="bf16"))  # the best mode: 50 images/s
    for step_ms in (40.0, 50.0):  # median 45 ms
        records.append(line("jax", step_ms, precision="fp32", regularizer=True))
    records.append({**line("jax", 1.0, precision="fp32", regularizer=False), "error": "exit status 1"})
    rows = {(r["group"], r["precision"], r["config"]): r for r in gpu_bench.ratios(records)}
    assert set(rows) == {("reference", "fp32", ""), ("reference", "bf16", ""), ("jax", "fp32", "regularizer")}
    assert rows[("reference", "fp32", "")]["rounds"] == 3
    assert rows[("reference", "fp32", "")]["images_per_s"] == pytest.approx(4 / 0.120)
    ours = rows[("jax", "fp32", "regularizer")]
    assert ours["reference_mode"] == "bf16" and ours["reference_images_per_s"] == pytest.approx(50.0)
    assert ours["vs_reference"] == pytest.approx((4 / 0.045) / 50.0)
    assert "vs_reference" in gpu_bench.ratio_table(gpu_bench.ratios(records)).splitlines()[0]


@pytest.mark.backend_independent
def test_gpu_bench_resume_skips_done_commands_and_budget_skips_the_rest(tmp_path):
    previous = tmp_path / "previous.jsonl"
    done = {"bench_id": "jax/tiny/bf16", "group": "jax", "step_ms_median": 3.0}
    failed = {"bench_id": "jax/tiny/fp32", "group": "jax", "error": "exit status 1"}
    previous.write_text("".join(json.dumps(r) + "\n" for r in ({"kind": "environment"}, done, failed)))
    out = tmp_path / "bench.jsonl"
    argv = ["--models", "tiny", "--groups", "jax", "--resume", str(previous), "--out", str(out), "--budget-s", "0"]
    command = subprocess.run([sys.executable, "tools/gpu_bench.py", *argv], cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, "GPU_BENCH_SMOKE": "1"}, timeout=300, check=False)
    assert command.returncode == 0, command.stderr[-4000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0]["kind"] == "environment" and records[0]["smoke"] and records[0]["size"] == [64, 64]
    assert records[1] == done  # kept, not run again
    assert records[2]["bench_id"] == "jax/tiny/fp32" and records[2]["skipped"] == "budget"  # the failed one is retried
    assert len(records) == 3


@pytest.mark.backend_independent
def test_gpu_bench_runs_keras_without_tensorflow_and_blocks_it(tmp_path):
    # PyTorch eager (no compilation: seconds); the JAX commands take the same path through the tool.
    common = ("--backbone", "tiny_cnn", "--size", "32", "48", "--batch", "2", "--steps", "3", "--warmup", "1")
    torch_args = common + ("--configs", "baseline", "--no-jit")
    torch_run = gpu_bench.Command("torch/tiny", "torch", "tools/bench_train.py", torch_args, (("KERAS_BACKEND", "torch"),))
    tf_run = gpu_bench.Command("tf/tiny", "tf", "tools/bench_train.py", common, (("KERAS_BACKEND", "tensorflow"),))
    log = tmp_path / "log"
    with open(log, "w") as sink:
        torch_records = gpu_bench.run_command(torch_run, timeout_s=300, log=sink, root=ROOT)
        tf_records = gpu_bench.run_command(tf_run, timeout_s=120, log=sink, root=ROOT)
    assert len(torch_records) == 1 and "error" not in torch_records[0], torch_records
    record = torch_records[0]
    assert (record["bench_id"], record["backend"], record["steps"]) == ("torch/tiny", "torch", 3)
    assert record["regularizer"] is False
    assert 0 < record["step_ms_median"] < math.inf and 0 < record["step_ms"] < math.inf
    # TensorFlow is unimportable in the commands: the TensorFlow backend fails at `import keras`.
    assert len(tf_records) == 1 and tf_records[0]["error"] == "exit status 1"
    last_line = tf_records[0]["output_tail"].strip().splitlines()[-1]
    assert last_line.startswith("ModuleNotFoundError") and "tensorflow" in last_line, last_line
    assert "===== torch/tiny: ok" in log.read_text()
    # The `tensorflow` group's commands may import it.
    allowed = dataclasses.replace(tf_run, bench_id="tensorflow/tiny", args=torch_args, tensorflow=True)
    with open(log, "a") as sink:
        tf_records = gpu_bench.run_command(allowed, timeout_s=300, log=sink, root=ROOT)
    assert len(tf_records) == 1 and "error" not in tf_records[0], tf_records
    assert (tf_records[0]["backend"], tf_records[0]["steps"]) == ("tensorflow", 3)


def test_step_timer_times_every_step_once_its_loss_is_on_the_host():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    timer = timing.make_step_timer()
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 1), "float32")
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
    assert len(timer.times) == 4 and all(t > 0 for t in timer.times)
    # Keras hands the callback the step's loss as a Python float, which waited for the step:
    # the weight read (the fallback) was never needed.
    assert timer.weight_reads == 0
    assert timer._index == 3  # the smallest weight: the last bias, one scalar
