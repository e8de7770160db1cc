"""Data-parallel training on two virtual CPU devices equals the single-device run.

Each run is a fresh process: the device count is fixed when JAX or
TensorFlow starts (XLA_FLAGS / logical devices).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_mtcl import distribute

SCRIPT = r"""
import json, os, sys
devices = int(sys.argv[1])
backend = os.environ["KERAS_BACKEND"]
if backend == "jax":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
else:
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import contextlib
import keras
import numpy as np
from keras_mtcl import backbones, distribute, tasks
from keras_mtcl.model import MultiTaskModel
from keras_mtcl.trainer import MultiTaskTrainer

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(4, 32, 32, 3)).astype("float32")
y = {"semseg": rng.integers(0, 3, (4, 32, 32, 1)).astype("int32"), "depth": rng.uniform(1, 2, (4, 32, 32, 1)).astype("float32")}
if backend == "tensorflow":
    # MirroredStrategy normalises per replica: give both replicas the same two images so that
    # per-replica batch statistics equal the global ones and the runs must agree exactly.
    x[2:], y = x[:2], {k: np.concatenate([v[:2], v[:2]]) for k, v in y.items()}
names = ["cpu:0", "cpu:1"] if backend == "jax" else ["/cpu:0", "/cpu:1"]
scope = distribute.data_parallel(devices=names) if devices == 2 else contextlib.nullcontext(1)
with scope as replicas:
    specs = tasks.task_set("nyud", tasks=["semseg", "depth"], num_classes={"semseg": 3})
    model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 8, 8)), specs)
    trainer = MultiTaskTrainer(model)
    trainer.compile(optimizer=keras.optimizers.SGD(0.05))
    initial = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    # One step, then a second one whose loss is computed with the updated weights.
    first = trainer.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history["loss"][0]
    update = float(sum(np.abs(keras.ops.convert_to_numpy(w) - w0).sum() for w, w0 in zip(model.weights, initial)))
    second = trainer.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history["loss"][0]
print(json.dumps({"replicas": replicas, "loss": [float(first), float(second)], "update": update}))
"""

# Both runs compute the same sums in another order: per device, then across devices. A float32 sum of N
# terms in any order is within N * eps of the exact sum (relative to the sum of magnitudes); the largest
# reductions of the step are over the batch's pixels (4 images x 32 x 32), in the loss means and in every
# convolution kernel's gradient. So the first loss and the first update agree within N * eps; the second
# loss adds its own reductions to the first-order effect of the update's error (at most the same bound,
# since one step lowers the loss by less than the loss): twice that.
PIXELS = 4 * 32 * 32
SUMMATION_RTOL = PIXELS * float(np.finfo(np.float32).eps)  # 4.9e-4


def _run(devices):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(devices)], capture_output=True, text=True, env=env, timeout=400)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    keras.backend.backend() == "torch", reason="Keras has no distribution engine for torch; its error is tested below"
)
def test_two_device_data_parallel_equals_single_device():
    single, double = _run(1), _run(2)
    assert double["replicas"] == 2
    assert double["loss"][0] == pytest.approx(single["loss"][0], rel=SUMMATION_RTOL)
    assert double["update"] == pytest.approx(single["update"], rel=SUMMATION_RTOL)  # gradients averaged, not summed
    assert double["loss"][1] == pytest.approx(single["loss"][1], rel=2 * SUMMATION_RTOL)
    assert single["update"] > 0 and single["loss"][1] < single["loss"][0]


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the torch backend's refusal")
def test_torch_backend_refuses_distribution_clearly():
    with pytest.raises(distribute.DistributionError, match="Received: backend='torch'"):
        with distribute.data_parallel():
            pass
