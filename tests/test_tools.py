"""tools/ holds thin scripts over the package: short, importing no other tool, and no test loads a script by path."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = sorted((ROOT / "tools").glob("*.py"))
# A script parses arguments, calls keras_mtcl and prints; its docstring holds the commands.
MAX_LINES = 100

pytestmark = pytest.mark.backend_independent


@pytest.mark.parametrize("tool", TOOLS, ids=[t.name for t in TOOLS])
def test_tool_is_a_thin_script(tool):
    text = tool.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{tool.name}: move its logic into keras_mtcl.analysis"
    imported = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert not {m for m in imported if m == "tools" or m.startswith("tools.")}, tool.name
    assert "spec_from_file_location" not in text and "sys.path" not in text and "run_path" not in text, tool.name


def test_no_test_loads_a_file_by_path():
    pattern = re.compile(r"spec_from_file_location|runpy\.run_path|SourceFileLoader")
    found = [p.name for p in sorted((ROOT / "tests").glob("*.py")) if p.name != "test_tools.py" and pattern.search(p.read_text())]
    assert found == []
