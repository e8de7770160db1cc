import dataclasses
import json
from pathlib import Path

import pytest

from keras_mtcl import presets, training
from keras_mtcl.data.augment_config import AugmentConfig

LEGACY = Path(__file__).parent / "fixtures" / "legacy"


def test_every_preset_builds_and_round_trips_through_json():
    for name in presets.list_presets():
        config = presets.get_preset(name)
        assert presets.RunConfig.from_dict(json.loads(config.to_json())) == config


def test_overrides_are_parsed_by_field_type_with_dotted_or_flat_names():
    config = presets.get_preset(
        "smoke",
        [
            "epochs=3",
            "optimizer.learning_rate=0.5",
            "contrastive=on",
            "data.image_size=64x96",
            "tasks=semseg,depth",
            'contrastive_options={"weight": 0.2}',
            "augment.scale_range=0.75,1.5",
            "augment.ratio_task=none",
        ],
    )
    assert config.epochs == 3 and config.optimizer.learning_rate == 0.5 and config.model.contrastive is True
    assert config.data.image_size == (64, 96) and config.data.tasks == ("semseg", "depth")
    assert config.model.contrastive_options["weight"] == 0.2
    assert config.augment == AugmentConfig(scale_range=(0.75, 1.5), ratio_task=None)
    assert config.run_dir == "runs/smoke"


def test_augment_switch_and_group_objects():
    off = presets.get_preset("smoke", ["augment=false"])
    assert off.augment == AugmentConfig.off()
    # A group's fields set after the switch apply over it.
    assert presets.get_preset("smoke", ["augment=false", "augment.flip_probability=0.5"]).augment.flip_probability == 0.5
    assert presets.get_preset("smoke", ['data={"batch_size": 2}']).data.batch_size == 2
    assert off.replace(augment=True).augment == AugmentConfig()


@pytest.mark.parametrize(
    "override, message",
    [
        ("epochz=3", "Unknown RunConfig field 'epochz'"),
        ("data.epochs=3", "Unknown RunConfig field 'data.epochs'"),
        ("epochs", "Received: 'epochs'"),
        ("epochs=many", "Cannot parse the value of `epochs`"),
        ("contrastive=maybe", "`model.contrastive` takes true/false"),
        ("optimizer=lamb", "Received: optimizer.name='lamb'"),
        ("optimizer.name=lamb", "Received: optimizer.name='lamb'"),
        ("image_size=4x4", "Received: data.image_size=(4, 4)"),
        ("batch_size=0", "Received: data.batch_size=0"),
        ("augment.flip_probability=2", "`augment`: `flip_probability` must be in [0, 1]"),
        ("augment=maybe", "`augment` takes true/false"),
        ("model=1", "`model` takes a JSON object of its fields"),
    ],
)
def test_bad_overrides_name_the_field(override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        presets.get_preset("smoke", [override])


def test_an_ambiguous_flat_name_lists_the_dotted_choices():
    with pytest.raises(ValueError, match=r"pass one of \['data.size', 'model.size'\]"):
        presets.resolve_field("size", ["name", "data.size", "model.size"])
    assert presets.resolve_field("name", ["name", "optimizer.name"]) == "name"  # a run-wide field is its own dotted name


def test_unknown_preset_and_unknown_config_keys():
    with pytest.raises(ValueError, match="Received: name='nope'"):
        presets.get_preset("nope")
    with pytest.raises(ValueError, match=r"Unknown RunConfig field 'colour'"):
        presets.RunConfig.from_dict({"colour": "red"})
    with pytest.raises(ValueError, match=r"Unknown RunConfig field data.colour"):
        presets.RunConfig.from_dict({"data": {"colour": "red"}})


def test_help_lists_every_field_by_its_dotted_name():
    lines = presets.field_defaults().splitlines()
    assert [line.split("=")[0].strip() for line in lines] == presets.field_names()
    assert "  optimizer.learning_rate=0.001" in lines and "  augment.scale_range=0.5,2.0" in lines


@pytest.mark.parametrize("name", ["quickstart", "nyud"])
def test_a_flat_config_json_of_0_4_reads_as_the_same_config(name):
    """The files are 0.4's `mtcl-train --print-config` (what a 0.4 run writes as config.json)."""
    flat = json.loads((LEGACY / f"config_v04_{name}.json").read_text())
    config = presets.RunConfig.from_dict(flat)
    for key, value in flat.items():
        path = presets.resolve_field(key)
        if path == "optimizer":
            assert config.optimizer.name == value
        elif path == "augment":
            assert config.augment == (AugmentConfig() if value else AugmentConfig.off())
        else:
            got = config.flat_dict()[path]
            assert got == value, (path, got, value)
    assert presets.RunConfig.from_dict(config.to_dict()) == config


def test_quickstart_of_0_4_is_the_quickstart_preset():
    flat = json.loads((LEGACY / "config_v04_quickstart.json").read_text())
    assert presets.RunConfig.from_dict(flat) == presets.get_preset("quickstart")


def test_a_run_folder_with_a_flat_config_json_resumes_with_the_same_config(tmp_path):
    flat = json.loads((LEGACY / "config_v04_quickstart.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(flat, indent=2, sort_keys=True))
    config = presets.get_preset("quickstart", [f"output_dir={tmp_path}"])
    assert training.check_run_folder(config) is None  # the same run: it may continue
    (tmp_path / "model.keras").write_bytes(b"")
    (tmp_path / "metrics.json").write_text("{}")
    assert training.check_run_folder(config)["finished"] is True
    with pytest.raises(training.RunFolderError, match=r"optimizer.learning_rate 0.002 -> 0.001"):
        training.check_run_folder(config.replace(learning_rate=1e-3))
    assert training.check_run_folder(config.replace(epochs=6), resume=True) is None


def test_groups_are_frozen_and_check_types():
    config = presets.RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.data.batch_size = 2
    with pytest.raises(ValueError, match="`data.batch_size` must be an integer. Received: data.batch_size=1.5"):
        presets.RunConfig.from_dict({"data": {"batch_size": 1.5}})
    with pytest.raises(ValueError, match="`epochs` must be an integer"):
        presets.RunConfig.from_dict({"epochs": "abc"})
