"""A task with any name is trained, scored, exported and drawn exactly like the standard task of its kind.

Two models with the same weights, one predicting `semseg` + `depth`, the other
`segmentation` + `height` (the same kinds under other names, as a folder
manifest would name them): every number and picture must be the same, only
the names differ.
"""

import keras
import numpy as np
import pytest

from keras_mtcl import backbones, tasks
from keras_mtcl.model import MultiTaskModel
from keras_mtcl.testing.labels import random_labels
from keras_mtcl.trainer import MultiTaskTrainer

STANDARD = [tasks.semseg(num_classes=4), tasks.depth()]
CUSTOM = [tasks.TaskSpec("segmentation", "classes", channels=4), tasks.TaskSpec("height", "depth")]
RENAME = {"semseg": "segmentation", "depth": "height"}


def renamed(mapping):
    """Keys of the standard tasks rewritten to the custom names (also inside metric names)."""
    out = {}
    for key, value in mapping.items():
        for old, new in RENAME.items():
            if key == old or key.startswith(old + "_") or key.startswith("val_" + old + "_"):
                key = key.replace(old, new, 1)
                break
        out[key] = value
    return out


def pair():
    keras.utils.set_random_seed(1)
    standard = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 8, 8)), STANDARD, decoder_options={"head_channels": 8})
    custom = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(8, 8, 8, 8)), CUSTOM, decoder_options={"head_channels": 8})
    custom.set_weights(standard.get_weights())
    return standard, custom


def test_specs_differ_only_by_name():
    for standard, custom in zip(STANDARD, CUSTOM):
        assert standard.replace(name=custom.name) == custom


def test_training_and_evaluation_are_the_same_under_other_names():
    standard, custom = pair()
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    y = random_labels(STANDARD, 2, 32, 32, seed=3)
    results = {}
    for name, model, labels in (("standard", standard, y), ("custom", custom, renamed(y))):
        trainer = MultiTaskTrainer(model)
        trainer.compile(optimizer=keras.optimizers.SGD(0.01))
        history = trainer.fit(x, labels, epochs=2, batch_size=2, shuffle=False, verbose=0).history
        evaluation = trainer.evaluate(x, labels, verbose=0, return_dict=True)
        results[name] = (history, evaluation)
    (history_s, eval_s), (history_c, eval_c) = results["standard"], results["custom"]
    assert set(renamed(eval_s)) == set(eval_c)
    assert {"segmentation_miou", "segmentation_pixel_accuracy", "height_rmse", "height_loss"} <= set(eval_c)
    for key, value in renamed(eval_s).items():
        assert eval_c[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for key, values in renamed(history_s).items():
        np.testing.assert_allclose(history_c[key], values, rtol=1e-5, atol=1e-6, err_msg=key)


def test_delta_m_scores_a_custom_named_task():
    from keras_mtcl.metrics import delta_m

    results = {"segmentation_miou": 44.0, "height_rmse": 0.45}
    baselines = {"segmentation_miou": 40.0, "height_rmse": 0.5}
    report = delta_m(results, baselines, tasks=CUSTOM)
    assert sorted(report["per_task"]) == ["height", "segmentation"]
    assert report["delta_m"] == pytest.approx(10.0)


def test_serving_outputs_and_pictures_are_the_same_under_other_names():
    from keras_mtcl import inference, visualize

    standard, custom = pair()
    image = np.random.default_rng(4).integers(0, 256, (40, 36, 3), dtype=np.uint8)
    raw_s, raw_c = inference.predict_image(standard, image), inference.predict_image(custom, image)
    served_s, served_c = inference.serving_outputs(STANDARD, raw_s), inference.serving_outputs(CUSTOM, raw_c)
    assert sorted(served_c) == ["height", "segmentation_classes", "segmentation_probabilities"]
    for key, value in served_s.items():
        np.testing.assert_allclose(served_c[renamed({key: 0}).popitem()[0]], value, rtol=1e-5, atol=1e-6)
    labels = random_labels(STANDARD, 1, 40, 36, seed=5)
    panel_s = visualize.prediction_panel(image, STANDARD, raw_s, {k: v[0] for k, v in labels.items()})
    panel_c = visualize.prediction_panel(image, CUSTOM, raw_c, {k: v[0] for k, v in renamed(labels).items()})
    # The same pictures; only the column titles (task names) may differ.
    assert panel_s.shape == panel_c.shape
    for spec_s, spec_c in zip(STANDARD, CUSTOM):
        np.testing.assert_array_equal(visualize.colorize(spec_c, raw_c[spec_c.name]), visualize.colorize(spec_s, raw_s[spec_s.name]))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="SavedModel export runs on the TensorFlow backend")
def test_export_names_the_custom_task_outputs(tmp_path):
    import tensorflow as tf

    from keras_mtcl import export

    standard, custom = pair()
    assert export.output_names(custom) == ["segmentation_classes", "segmentation_probabilities", "height"]
    directory = export.export_saved_model(custom, tmp_path / "custom")
    served = tf.saved_model.load(str(directory)).signatures["serving_default"]
    images = np.random.default_rng(6).integers(0, 256, (1, 33, 35, 3), dtype=np.uint8)
    outputs = {k: v.numpy() for k, v in served(images=tf.constant(images)).items()}
    reference = export.serving_function(standard)(tf.constant(images))
    for key, value in reference.items():
        np.testing.assert_allclose(outputs[renamed({key: 0}).popitem()[0]], value.numpy(), rtol=1e-5, atol=1e-5)
