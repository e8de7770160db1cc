"""SavedModel export: written from a .keras file of the current backend, checked in fresh TF processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_mtcl import backbones, export, tasks
from keras_mtcl.model import MultiTaskModel
from keras_mtcl.preprocessing import normalize
from keras_mtcl.trainer import MultiTaskTrainer

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh process: loads the SavedModel with plain TensorFlow, runs the
# serving signature on the given images, and reports outputs, variables and
# what a wrong dtype / channel count gives.
LOAD_AND_RUN = r"""
import json, sys
import numpy as np
import tensorflow as tf
path, images_file, out_file = sys.argv[1:4]
loaded = tf.saved_model.load(path)
fn = loaded.signatures["serving_default"]
images = np.load(images_file)
outputs = {k: v.numpy() for k, v in fn(images=tf.constant(images)).items()}
report = {"num_weights": int(sum(np.prod(v.shape) for v in loaded.variables))}
try:
    fn(images=tf.constant(images.astype("float32")))
    report["float_error"] = None
except Exception as e:
    report["float_error"] = f"{type(e).__name__}: {e}"
try:
    fn(images=tf.constant(images[..., :2]))
    report["channel_error"] = None
except Exception as e:
    report["channel_error"] = f"{type(e).__name__}: {e}"
np.savez(out_file, **outputs)
print(json.dumps(report))
"""


def _run(args, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _expected_outputs(model, images, multiple=32):
    """Serving outputs computed here with the current backend and numpy post-processing."""
    height, width = images.shape[1:3]
    padded = np.zeros((images.shape[0], -(-height // multiple) * multiple, -(-width // multiple) * multiple, 3), "float32")
    padded[:, :height, :width] = normalize(images)
    raw = model.predict(padded, verbose=0)
    out = {}
    for task in model.task_specs:
        y = np.asarray(raw[task.name])[:, :height, :width].astype("float64")
        if task.kind == "classes":
            e = np.exp(y - y.max(-1, keepdims=True))
            out[f"{task.name}_probabilities"] = e / e.sum(-1, keepdims=True)
            out[f"{task.name}_classes"] = y.argmax(-1)
        elif task.kind == "binary":
            out[f"{task.name}_probability"] = 1 / (1 + np.exp(-y))
        elif task.kind == "depth":
            out[task.name] = np.maximum(y, 0)
        else:
            out[task.name] = y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-12)
    return out


def test_export_from_keras_file_serves_the_same_predictions(tmp_path):
    specs = tasks.task_set("nyud", num_classes={"semseg": 5})
    model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16)), specs)
    trainer = MultiTaskTrainer(model)
    trainer.compile(optimizer="adam")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 32, 32, 3)).astype("float32")
    y = {
        "semseg": rng.integers(0, 5, (2, 32, 32, 1)),
        "depth": rng.uniform(1, 3, (2, 32, 32, 1)).astype("float32"),
        "normals": np.tile(np.array([0, 0, 1], "float32"), (2, 32, 32, 1)),
        "edge": rng.integers(0, 2, (2, 32, 32, 1)),
    }
    trainer.fit(x, y, epochs=1, verbose=0)
    model_file = tmp_path / "model.keras"
    model.save(model_file)

    stdout = _run([sys.executable, str(ROOT / "apps/export.py"), str(model_file), "--serving-root", str(tmp_path / "serving"), "--name", "tiny"])
    assert "Verified: SavedModel (serving_default and serving_bytes)" in stdout
    root = (tmp_path / "serving").resolve()
    assert f'-v "{root}:{root}" tensorflow/serving:' in stdout and f"--model_config_file={root}/models.config" in stdout
    version_dir = tmp_path / "serving" / "tiny" / "1"
    assert (version_dir / "saved_model.pb").is_file()
    config_text = (tmp_path / "serving" / "models.config").read_text()
    assert 'name: "tiny"' in config_text and str((tmp_path / "serving" / "tiny").resolve()) in config_text
    assert (tmp_path / "serving" / "tiny.keras").is_file()

    images = rng.integers(0, 256, (2, 45, 70, 3), dtype="uint8")  # needs padding to 64x96
    np.save(tmp_path / "images.npy", images)
    report = json.loads(
        _run([sys.executable, "-c", LOAD_AND_RUN, str(version_dir), str(tmp_path / "images.npy"), str(tmp_path / "out.npz")]).strip().splitlines()[-1]
    )
    served = dict(np.load(tmp_path / "out.npz"))
    expected = _expected_outputs(model, images)
    assert sorted(served) == sorted(expected) == sorted(export.output_names(model))
    for name, value in expected.items():
        assert served[name].shape == value.shape, name
        if name.endswith("_classes"):
            assert np.mean(served[name] == value) > 0.999, name
        else:
            np.testing.assert_allclose(served[name], value, atol=2e-4, err_msg=name)
    # Only the inference weights are inside: the trained model's, nothing of the trainer.
    assert report["num_weights"] == model.count_params()
    assert report["float_error"] is not None and "uint8" in report["float_error"]
    assert report["channel_error"] is not None and "wrong channel count" in report["channel_error"]

    # An existing version is never overwritten silently.
    result = subprocess.run(
        [sys.executable, str(ROOT / "apps/export.py"), str(model_file), "--serving-root", str(tmp_path / "serving"), "--name", "tiny"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0 and "overwrite" in result.stderr


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="saved_model_cli and in-process export need the TensorFlow backend")
def test_saved_model_cli_runs_the_signature(tmp_path):
    specs = [tasks.depth(), tasks.saliency()]
    model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16)), specs)
    export.export_for_serving(model, tmp_path, "cli")
    cli = Path(sys.executable).parent / "saved_model_cli"
    shown = _run([str(cli), "show", "--dir", str(tmp_path / "cli" / "1"), "--tag_set", "serve", "--signature_def", "serving_default"])
    assert "DT_UINT8" in shown and "(-1, -1, -1, 3)" in shown
    assert "saliency_probability" in shown and "depth" in shown
    np.save(tmp_path / "images.npy", np.zeros((1, 20, 30, 3), "uint8"))
    ran = _run([
        str(cli), "run", "--dir", str(tmp_path / "cli" / "1"), "--tag_set", "serve", "--signature_def", "serving_default",
        "--inputs", f"images={tmp_path / 'images.npy'}", "--outdir", str(tmp_path / "cli_out"),
    ])
    saliency = np.load(tmp_path / "cli_out" / "saliency_probability.npy")
    assert saliency.shape == (1, 20, 30, 1) and ((saliency >= 0) & (saliency <= 1)).all()
    assert np.load(tmp_path / "cli_out" / "depth.npy").min() >= 0


def test_export_refuses_other_backends_and_bad_names(tmp_path):
    model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16)), [tasks.depth()])
    with pytest.raises(export.ExportError, match="Received: name='a/b'"):
        export.export_for_serving(model, tmp_path, "a/b")
    if keras.backend.backend() != "tensorflow":
        with pytest.raises(export.ExportError, match="KERAS_BACKEND=tensorflow"):
            export.export_saved_model(model, tmp_path / "x")


def test_onnx_export_matches_keras_from_a_model_saved_on_this_backend(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX export is the optional `onnx` extra")
    pytest.importorskip("tf2onnx", reason="ONNX export is the optional `onnx` extra")
    specs = [tasks.semseg(num_classes=4), tasks.depth(), tasks.normals(), tasks.edge()]
    model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16)), specs)
    model_file = tmp_path / "model.keras"
    model.save(model_file)

    stdout = _run([sys.executable, str(ROOT / "apps/export.py"), str(model_file), "--serving-root", str(tmp_path / "serving"),
                   "--name", "tiny", "--onnx"])
    assert "Verified: ONNX model run by onnxruntime" in stdout
    onnx_file = tmp_path / "serving" / "tiny.onnx"
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (images_input,) = session.get_inputs()
    assert images_input.name == "images" and images_input.type == "tensor(uint8)"
    assert images_input.shape[3] == 3 and all(isinstance(d, str) for d in images_input.shape[:3])  # dynamic B, H, W
    metadata = json.loads(session.get_modelmeta().custom_metadata_map["keras_mtcl.tasks"])
    assert [t["name"] for t in metadata] == ["semseg", "depth", "normals", "edge"]

    # Two sizes through the same file: dynamic height and width, padding inside.
    for shape in [(2, 45, 70, 3), (1, 32, 20, 3)]:
        images = np.random.default_rng(shape[1]).integers(0, 256, shape, dtype="uint8")
        names = [o.name for o in session.get_outputs()]
        served = dict(zip(names, session.run(names, {"images": images})))
        expected = _expected_outputs(model, images)
        assert sorted(served) == sorted(expected)
        for name, value in expected.items():
            assert served[name].shape == value.shape, name
            if name.endswith("_classes"):
                assert np.mean(served[name] == value) > 0.999, name
            else:
                np.testing.assert_allclose(served[name], value, atol=2e-4, err_msg=name)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="in-process SavedModel export needs the TensorFlow backend")
def test_load_saved_model_reads_tasks_from_the_export_or_from_its_outputs(tmp_path):
    specs = [tasks.semseg(num_classes=4), tasks.depth(), tasks.normals(), tasks.saliency()]
    model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16)), specs)
    version_dir = export.export_for_serving(model, tmp_path, "m", version=3)
    export.export_for_serving(model, tmp_path, "m", version=12)
    assert (version_dir / export.TASKS_FILE).is_file()

    predict, loaded_specs, found = export.load_saved_model(tmp_path / "m")
    assert found == tmp_path / "m" / "12"  # the highest version, compared as numbers
    assert loaded_specs == specs
    outputs = predict(np.zeros((1, 20, 30, 3), "uint8"))
    assert outputs["semseg_probabilities"].shape == (1, 20, 30, 4) and outputs["normals"].shape == (1, 20, 30, 3)
    with pytest.raises(ValueError, match="uint8"):  # a [0, 1] float image is refused, not cast to black
        predict(np.full((1, 20, 30, 3), 0.5, "float32"))

    # A SavedModel without tasks.json: names, kinds and channels come from its outputs.
    (version_dir / export.TASKS_FILE).unlink()
    _, derived, found = export.load_saved_model(version_dir)
    assert found == version_dir
    assert {(t.name, t.kind, t.channels) for t in derived} == {(t.name, t.kind, t.channels) for t in specs}

    with pytest.raises(export.SavedModelNotFoundError, match="no saved_model.pb"):
        export.load_saved_model(tmp_path)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="in-process SavedModel export needs the TensorFlow backend")
def test_serving_config_is_written_beside_the_saved_model_and_serves_like_predict_image(tmp_path):
    from keras_mtcl.inference import predict_image

    serving = export.ServingConfig(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), pad_multiple=16)
    model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16)), [tasks.depth()])
    version_dir = export.export_for_serving(model, tmp_path, "s", serving=serving)
    metadata = json.loads((version_dir / export.TASKS_FILE).read_text())
    # The keys and order of tasks.json as 0.4 wrote them.
    assert list(metadata) == ["tasks", "outputs", "signatures", "mean", "std", "pad_multiple"]
    assert (metadata["mean"], metadata["std"], metadata["pad_multiple"]) == ([0.5] * 3, [0.25] * 3, 16)
    assert export.ServingConfig.from_metadata(metadata) == serving
    # Checked with the config in tasks.json; the defaults normalise differently and are told apart.
    assert export.verify_saved_model(model, version_dir) < 1e-4
    with pytest.raises(export.ExportError, match="differs from Keras"):
        export.verify_saved_model(model, version_dir, serving=export.ServingConfig())
    image = np.random.default_rng(1).integers(0, 256, (20, 37, 3), dtype="uint8")
    predict, _, _ = export.load_saved_model(version_dir)
    np.testing.assert_allclose(predict(image[None])["depth"][0], np.maximum(predict_image(model, image, serving)["depth"], 0),
                               atol=1e-4)
    for bad, message in (({"pad_multiple": 0}, "pad_multiple"), ({"std": (1, 0, 1)}, "each > 0"), ({"mean": (1, 2)}, "three")):
        with pytest.raises(ValueError, match=message):
            export.ServingConfig(**bad)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="in-process SavedModel export needs the TensorFlow backend")
def test_bytes_signature_serves_encoded_images_like_serving_default(tmp_path):
    import base64

    import tensorflow as tf

    specs = [tasks.semseg(num_classes=4), tasks.depth(), tasks.edge()]
    model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 16, 16)), specs)
    version_dir = export.export_for_serving(model, tmp_path, "b")
    loaded = tf.saved_model.load(str(version_dir))
    assert set(loaded.signatures) == set(export.SIGNATURES)
    default, from_bytes = loaded.signatures[export.SERVING_DEFAULT], loaded.signatures[export.SERVING_BYTES]
    ((name, spec),) = from_bytes.structured_input_signature[1].items()
    # TF Serving's REST API turns {"b64": ...} into bytes for a DT_STRING input; `_bytes` is its name for such tensors.
    assert name == "images_bytes" and spec.dtype == tf.string and spec.shape.as_list() == [None]
    metadata = json.loads((version_dir / export.TASKS_FILE).read_text())
    assert metadata["signatures"] == {"serving_default": "images", "serving_bytes": "images_bytes"}

    def numpy(outputs):
        return {key: value.numpy() for key, value in outputs.items()}

    # PNG is lossless, so both signatures see the same pixels and run the same graph: outputs match exactly.
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 45, 70, 3), dtype="uint8")  # needs padding to 64x96
    served = numpy(from_bytes(images_bytes=tf.constant([tf.io.encode_png(image).numpy() for image in images])))
    expected = numpy(default(images=tf.constant(images)))
    assert sorted(served) == sorted(expected) == sorted(export.output_names(model))
    for key, value in expected.items():
        np.testing.assert_array_equal(served[key], value, err_msg=key)

    # A REST body as TF Serving receives it: JSON, base64 in {"b64": ...}, decoded to the string input.
    body = json.dumps({"signature_name": export.SERVING_BYTES, "instances": [{"b64": base64.b64encode(tf.io.encode_png(images[0]).numpy()).decode()}]})
    request = json.loads(body)
    assert request["signature_name"] in loaded.signatures
    encoded = [base64.b64decode(instance["b64"]) for instance in request["instances"]]
    np.testing.assert_array_equal(numpy(from_bytes(images_bytes=tf.constant(encoded)))["semseg_classes"], expected["semseg_classes"][:1])

    # A JPEG goes through at its own size; a grey PNG is served as its grey repeated to RGB.
    jpeg = tf.io.encode_jpeg(images[0], quality=90)
    outputs = numpy(from_bytes(images_bytes=tf.stack([jpeg])))
    assert outputs["semseg_probabilities"].shape == (1, 45, 70, 4) and outputs["depth"].shape == (1, 45, 70, 1)
    grey = images[0, :, :, :1]
    outputs = numpy(from_bytes(images_bytes=tf.stack([tf.io.encode_png(grey)])))
    np.testing.assert_array_equal(outputs["depth"], numpy(default(images=tf.constant(np.repeat(grey, 3, -1)[None])))["depth"])

    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        from_bytes(images_bytes=tf.constant([b"not an image"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="same height and width"):
        from_bytes(images_bytes=tf.stack([tf.io.encode_png(images[0]), tf.io.encode_png(images[1, :40])]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least one encoded image"):
        from_bytes(images_bytes=tf.constant([], tf.string))


def test_docker_command_mounts_the_serving_root_where_models_config_points(tmp_path):
    (tmp_path / "models.config").write_text(export.MODELS_CONFIG_TEMPLATE.format(name="mtcl", base_path="/models/mtcl"))
    command = export.docker_command(tmp_path, tf_version="2.21.0")
    assert f'-v "{tmp_path.resolve()}:/models"' in command
    assert command.endswith("tensorflow/serving:2.21.0 --model_config_file=/models/models.config")

    # The default base_path (the model folder's absolute path) holds when the root is mounted at its own path.
    root = tmp_path.resolve()
    (tmp_path / "models.config").write_text(export.MODELS_CONFIG_TEMPLATE.format(name="mtcl", base_path=f"{root}/mtcl"))
    assert f'-v "{root}:{root}"' in export.docker_command(tmp_path, tf_version="2.21.0")
    assert f"--model_config_file={root}/models.config" in export.docker_command(tmp_path, tf_version="2.21.0")

    assert export.serving_image("2.22.0-rc1") == "tensorflow/serving:2.22.0"
    (tmp_path / "models.config").write_text(export.MODELS_CONFIG_TEMPLATE.format(name="mtcl", base_path="/models/other"))
    with pytest.raises(export.ExportError, match="base_path <folder>/<name>"):
        export.docker_command(tmp_path)
    with pytest.raises(export.ExportError, match="does not exist"):
        export.docker_command(tmp_path / "missing")
