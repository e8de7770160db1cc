import pytest

from keras_mtcl import tasks


def test_nyud_and_pascal_task_sets_have_reference_weights_and_classes():
    nyud = {t.name: t for t in tasks.task_set("nyud")}
    assert list(nyud) == ["semseg", "depth", "normals", "edge"]
    assert {n: t.loss_weight for n, t in nyud.items()} == {"semseg": 1, "depth": 1, "normals": 10, "edge": 50}
    assert nyud["semseg"].channels == 40
    pascal = {t.name: t for t in tasks.task_set("pascal")}
    assert {n: t.loss_weight for n, t in pascal.items()} == {
        "semseg": 1, "human_parts": 2, "saliency": 5, "normals": 10, "edge": 50,
    }
    assert pascal["semseg"].channels == 21 and pascal["human_parts"].channels == 7
    assert nyud["depth"].higher_is_better is False and nyud["semseg"].higher_is_better is True
    assert nyud["edge"].loss_options["pos_weight"] == 0.95


def test_task_set_subset_and_class_override():
    specs = tasks.task_set("nyud", tasks=["depth", "semseg"], num_classes={"semseg": 13})
    assert [t.name for t in specs] == ["depth", "semseg"]
    assert specs[1].channels == 13


def test_task_spec_config_round_trip_keeps_non_defaults():
    spec = tasks.edge(loss_weight=7.0, pos_weight=0.9).replace(ignore_value=254)
    restored = tasks.TaskSpec.from_config(spec.get_config())
    assert restored == spec
    assert restored.loss_options["pos_weight"] == 0.9 and restored.ignore_value == 254


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "x", "kind": "voxels", "channels": 1, "loss": "depth_l1"}, "Received: kind='voxels'"),
        ({"name": "x", "kind": "depth", "channels": 2, "loss": "depth_l1"}, "Received: channels=2"),
        ({"name": "x", "kind": "classes", "channels": 1, "loss": "cross_entropy"}, "Received: channels=1"),
        ({"name": "image", "kind": "depth", "channels": 1, "loss": "depth_l1"}, "Received: name='image'"),
        ({"name": "x", "kind": "depth", "channels": 1, "loss": "depth_l1", "loss_weight": -1}, "loss_weight=-1"),
    ],
)
def test_task_spec_rejects_bad_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tasks.TaskSpec(**kwargs)


def test_task_set_errors_name_the_problem():
    with pytest.raises(ValueError, match="Received: dataset='cityscapes'"):
        tasks.task_set("cityscapes")
    with pytest.raises(ValueError, match="saliency"):
        tasks.task_set("nyud", tasks=["saliency"])
    with pytest.raises(ValueError, match="unique"):
        tasks.validate_tasks([tasks.depth(), tasks.depth()])
