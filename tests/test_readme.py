"""The README's Python examples run: each ```python block, in order, in a fresh namespace, on every backend.

A block that is deliberately not runnable (it needs a server, a download, ...) is preceded by a comment
`<!-- not-run: reason -->`.
"""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

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


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


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
