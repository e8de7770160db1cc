"""keras_mtcl.analysis.inference_cost (tools/bench_infer.py): the exported SavedModel of a regularized run is the
baseline's, fact for fact."""

import math

import keras
import pytest

from keras_mtcl.analysis import inference_cost

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="it writes and times SavedModels, which are exported from the TensorFlow backend only",
)


@pytest.fixture(scope="module")
def trained():
    config = inference_cost.make_config("smoke", ["tasks=semseg,depth"], size=(32, 48), batch_size=2, train_steps=1)
    models, facts = inference_cost.train_pair(config, train_steps=1)
    return config, models, facts


def test_regularized_export_has_the_baseline_parameters_flops_and_outputs(trained, tmp_path):
    _, models, facts = trained
    # The regularizer was used in training: its projectors exist and its loss was computed.
    assert facts["regularized"]["projectors"] == 2
    assert facts["regularized"]["training_parameters"] > facts["baseline"]["training_parameters"]
    assert all(math.isfinite(v) for v in facts["regularized"]["contrastive"].values())
    assert facts["regularized"]["contrastive"]["contrastive_triplet_fraction"] > 0
    assert "projectors" not in facts["baseline"]

    result = inference_cost.compare(models, tmp_path, 32, 48, iterations=2, warmup=1, block=1, throughput_batch=2)
    baseline, regularized = result["models"]["baseline"], result["models"]["regularized"]
    assert result["identical"] == {fact: True for fact in inference_cost.CHECKED}
    assert result["all_identical"]
    # The shared numbers are those of the baseline network, not placeholders.
    assert regularized["parameters"] == baseline["parameters"] == facts["baseline"]["training_parameters"]
    assert regularized["flops"] == baseline["flops"] > 0
    assert regularized["serving_flops"] > regularized["flops"]  # plus normalisation and post-processing
    assert regularized["variable_scalars"] == baseline["parameters"]
    assert regularized["outputs"] == baseline["outputs"] == {
        "depth": [[1, 32, 48, 1], "float32"],
        "semseg_classes": [[1, 32, 48], "int32"],
        "semseg_probabilities": [[1, 32, 48, 7], "float32"],  # 7 synthetic classes
    }
    for record in (baseline, regularized):
        assert record["saved_model_bytes"] > 0
        assert 0 < record["latency_ms_median"] <= record["latency_ms_p90"]
        assert record["throughput_images_per_s"] > 0
    assert set(result["ratios"]) == {"latency_ms_median", "latency_ms_p90", "throughput_images_per_s", "saved_model_bytes"}
    assert all(r > 0 for r in result["ratios"].values())


def test_a_different_network_is_reported_as_different(trained, tmp_path):
    config, models, _ = trained
    from keras_mtcl import training

    wider = training.build_model(config.replace(decoder_options={"head_channels": 64}), models["baseline"].task_specs)
    result = inference_cost.compare({"baseline": models["baseline"], "wider": wider}, tmp_path, 32, 48, iterations=1, warmup=0)
    assert not result["all_identical"]
    assert not result["identical"]["parameters"] and not result["identical"]["flops"]
    assert result["identical"]["outputs"]
    assert result["models"]["wider"]["parameters"] > result["models"]["baseline"]["parameters"]


def test_timing_arguments_are_checked(trained, tmp_path):
    with pytest.raises(ValueError, match="`iterations` must be >= 1. Received: iterations=0"):
        inference_cost.time_saved_models({"a": tmp_path}, 32, 48, iterations=0)
