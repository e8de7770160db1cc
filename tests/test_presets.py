import json

import pytest

from keras_mtcl import presets


def test_every_preset_builds_and_round_trips_through_json():
    for name in presets.list_presets():
        config = presets.get_preset(name)
        assert presets.RunConfig.from_dict(json.loads(config.to_json())) == config


def test_overrides_are_parsed_by_field_type():
    config = presets.get_preset(
        "smoke",
        [
            "epochs=3",
            "learning_rate=0.5",
            "contrastive=on",
            "image_size=64x96",
            "tasks=semseg,depth",
            'contrastive_options={"weight": 0.2}',
        ],
    )
    assert config.epochs == 3 and config.learning_rate == 0.5 and config.contrastive is True
    assert config.image_size == (64, 96) and config.tasks == ("semseg", "depth")
    assert config.contrastive_options["weight"] == 0.2
    assert config.run_dir == "runs/smoke"


@pytest.mark.parametrize(
    "override, message",
    [
        ("epochz=3", "Received: 'epochz=3'"),
        ("epochs", "Received: 'epochs'"),
        ("epochs=many", "Cannot parse the value of `epochs`"),
        ("contrastive=maybe", "takes true/false"),
        ("optimizer=lamb", "Received: optimizer='lamb'"),
        ("image_size=4x4", "Received: image_size=(4, 4)"),
        ("batch_size=0", "Received: batch_size=0"),
    ],
)
def test_bad_overrides_name_the_field(override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        presets.get_preset("smoke", [override])


def test_unknown_preset_and_unknown_config_keys():
    with pytest.raises(ValueError, match="Received: name='nope'"):
        presets.get_preset("nope")
    with pytest.raises(ValueError, match=r"Unknown RunConfig fields \['colour'\]"):
        presets.RunConfig.from_dict({"colour": "red"})
