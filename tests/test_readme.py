"""The README runs as written: each ```python block, in order, in a fresh namespace, on every backend; every
`apps/train.py` command parses into a valid config, and the folder-dataset command trains; the preset and extras
tables say what the presets and pyproject.toml hold.

A block that is deliberately not runnable (it needs a server, a download, ...) is preceded by a comment
`<!-- not-run: reason -->`.
"""

import csv
import json
import re
import shlex
from pathlib import Path

import keras
import pytest

from keras_mtcl import optional, presets

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")

# A ```python fence, optionally preceded (blank lines allowed) by `<!-- not-run: reason -->`.
_BLOCK = re.compile(
    r"(?:<!--\s*not-run:\s*(?P<reason>.*?)\s*-->\s*\n)?^```python[ \t]*\n(?P<code>.*?)^```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


def python_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """(line number, code, not-run reason or None) of every ```python block of `text`."""
    return [
        (text.count("\n", 0, m.start("code")) + 1, m.group("code"), m.group("reason"))
        for m in _BLOCK.finditer(text)
    ]


BLOCKS = python_blocks(TEXT)


def test_blocks_are_found():
    assert len(BLOCKS) >= 3
    fences = len(re.findall(r"^```python", README.read_text(encoding="utf-8"), re.MULTILINE))
    assert len(BLOCKS) == fences


def test_not_run_marker_is_recognised():
    text = "x\n<!-- not-run: needs a server -->\n\n```python\nraise SystemExit\n```\n```python\nok = 1\n```\n"
    assert [(code, reason) for _, code, reason in python_blocks(text)] == [
        ("raise SystemExit\n", "needs a server"),
        ("ok = 1\n", None),
    ]


@pytest.mark.parametrize("line, code, reason", BLOCKS, ids=[f"line{line}" for line, _, _ in BLOCKS])
def test_readme_block_runs(line, code, reason, tmp_path, monkeypatch):
    if reason is not None:
        pytest.skip(f"README.md line {line} is marked not-run: {reason}")
    monkeypatch.chdir(tmp_path)  # blocks may write files (model.keras)
    namespace = {"__name__": f"readme_line{line}"}
    # Padded with blank lines so that a traceback names the README's own line numbers.
    exec(compile("\n" * (line - 1) + code, "README.md", "exec"), namespace)  # noqa: S102 - the README's examples


# --- shell commands -----------------------------------------------------------------------------------------------


def script_commands(text: str, script: str) -> list[list[str]]:
    """The arguments after `script` of every command in the ```bash blocks of `text` (continuation lines joined)."""
    commands = []
    for block in re.finditer(r"^```bash[ \t]*\n(?P<code>.*?)^```", text, re.MULTILINE | re.DOTALL):
        for line in block.group("code").replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if script in words:
                rest = words[words.index(script) + 1:]
                ends = [i for i, word in enumerate(rest) if word in ("&&", "||", ";", "|")]
                commands.append(rest[: ends[0]] if ends else rest)
    return commands


def _train_app(monkeypatch):
    from keras_mtcl.cli import train

    return train


TRAIN_COMMANDS = script_commands(TEXT, "apps/train.py")


def test_script_commands_join_lines_and_stop_at_the_next_command():
    text = "```bash\nA=1 python apps/train.py --preset x \\\n  --set y='{\"a\": 1}' && bash t.sh  # c\n```\n"
    assert script_commands(text, "apps/train.py") == [["--preset", "x", "--set", 'y={"a": 1}']]


@pytest.mark.backend_independent
def test_train_commands_name_presets_and_fields_that_exist(monkeypatch):
    app = _train_app(monkeypatch)
    assert len(TRAIN_COMMANDS) >= 5, TRAIN_COMMANDS
    for argv in TRAIN_COMMANDS:
        args = app.parse_args(argv)
        if args.config:
            continue  # a config.json of an earlier run
        config = presets.get_preset(args.preset or presets.starting_preset(args.set), args.set)  # raises on unknown names
        assert config.name


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the folder pipeline is tf.data on every backend")
def test_folder_train_command_trains_on_a_folder_dataset(monkeypatch, tmp_path, capsys):
    """The README's folder command, on a 4-image folder made by the dataset fixtures, shrunk to seconds."""
    (argv,) = [a for a in TRAIN_COMMANDS if "dataset=folder" in a]
    from keras_mtcl.testing import datasets as fixtures

    root = fixtures.make_folder(tmp_path / "data", height=32, width=40)
    paths = {"manual_dir": root, "data_dir": tmp_path / "tfds"}
    argv = [f"{w.split('=')[0]}={paths[w.split('=')[0]]}" if w.split("=")[0] in paths else w for w in argv]
    fast = ["backbone=tiny_cnn", 'backbone_options={"widths": [8, 8, 16, 16]}', "epochs=1", "batch_size=2",
            "num_pictures=1"]
    argv += [word for setting in fast for word in ("--set", setting)] + ["--output-dir", str(tmp_path / "run"), "--no-export"]
    app = _train_app(monkeypatch)
    run = tmp_path / "run"

    # --no-eval: trained, no metrics.
    assert app.main(argv + ["--no-eval"]) == 0
    out = capsys.readouterr().out
    assert "Starting from the 'folder' preset" in out and "Training crop 32x40" in out  # the size of the data
    (wrote,) = [line for line in out.splitlines() if line.startswith("Wrote:")]
    assert "metrics" not in wrote  # nothing was scored
    config = json.loads((run / "config.json").read_text())
    recipe = presets.get_preset("folder")
    assert (config["optimizer"]["learning_rate"], config["epochs"], config["model"]["contrastive"]) == (
        recipe.optimizer.learning_rate, 1, False)
    assert config["data"]["image_size"] == [] and not any(key.startswith("synthetic_") for key in config["data"])
    assert (run / "model.keras").is_file() and not (run / "metrics.json").exists()

    # The same command without --no-eval evaluates the trained model without training it further.
    assert app.main(argv) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_images"] == 1 and {"semseg_miou", "depth_rmse"} <= set(metrics)
    with (run / "history.csv").open() as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0"]
    assert app.main(argv) == 0 and "already finished" in capsys.readouterr().out


# --- tables -------------------------------------------------------------------------------------------------------


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of each row of the Markdown table whose header line starts with `header`."""
    lines = text[text.index(header):].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _ticked(cell: str) -> str:
    return re.search(r"`([^`]+)`", cell).group(1)


@pytest.mark.backend_independent
def test_preset_table_says_what_each_preset_uses():
    rows = table_rows(TEXT, "| preset | dataset | backbone |")
    assert sorted(_ticked(row[0]) for row in rows) == sorted(presets.list_presets())
    for name, dataset, backbone, what in rows:
        config = presets.get_preset(_ticked(name))
        assert _ticked(dataset) == config.data.dataset, name
        assert _ticked(backbone) == config.model.backbone, name
        assert ("ImageNet weights" in backbone) == (config.model.backbone_options.get("weights") == "imagenet"), name
        assert f"{config.epochs} epoch" in what, name
        assert ("regularizer on" in what or "with the regularizer" in what) == config.model.contrastive, name


@pytest.mark.backend_independent
def test_extras_table_lists_every_extra_with_its_packages():
    rows = {row[0]: row for row in table_rows(TEXT, "| extra | installs | needed for |")}
    extras = {_ticked(name) for name in rows if "`" in name}
    assert extras == set(optional.EXTRAS) | {"all"}
    for name, installs, _ in rows.values():
        if "`" in name and _ticked(name) in optional.EXTRAS:
            assert {p.strip() for p in installs.split(",")} == set(optional.EXTRAS[_ticked(name)].values()), name
