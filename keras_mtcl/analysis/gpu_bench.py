"""The one-command training benchmark against the PyTorch reference: its plan of commands and the runner.

`tools/gpu_bench.py` is the command: on a GPU machine with its defaults, on
a CPU with `--device cpu --precisions fp32 --modes fp32` (and the
TensorFlow group). `plan` lists the commands, model by model, then group by
group:

- `reference`: `tools/bench_reference_torch.py` (timm HRNet, plain PyTorch),
  modes fp32, bf16 (autocast + channels_last) and compile (bf16 + torch.compile),
  run by `reference_python` if given (an interpreter whose environment has
  timm and torchvision; keras_mtcl is imported from the repository root).
- `jax`: `KERAS_BACKEND=jax tools/bench_train.py`, precision bf16 then fp32,
  each with the regularizer off and on.
- `torch`: the same on `KERAS_BACKEND=torch` with `--no-jit` (Keras's default
  on PyTorch: `jit_compile="auto"` is eager there).
- `torch-jit` (not in the default groups): `KERAS_BACKEND=torch` with
  `jit_compile=True` (Keras wraps the step in torch.compile), bf16, regularizer
  off only (the regularizer's random draws make torch.compile trace again).
  The step is traced a second time at step 2 (an optimizer attribute set on
  the first call), so it needs a warm-up of 2 steps or more.
- `tensorflow` (not in the default groups: the GPU machine has no
  TensorFlow): `KERAS_BACKEND=tensorflow` with XLA (`jit_compile=True`).

`run_plan` runs each command in its own process, with TensorFlow made
unimportable except in the `tensorflow` group (as on the GPU machine, which
has none), under a per-command time limit and an overall budget, and tags
every JSON line of every command with `bench_id` (e.g. `jax/hrnet_w18/bf16`),
`group` and `model`; a command that fails or times out adds one line with
`error` and the tail of its output. With `rounds` > 1 (for shared, noisy
machines) the whole plan runs that many times in alternating order
(`keras_mtcl.analysis.timing.alternating`), each line tagged with its
`round` and the round in its `bench_id` (`.../round2`). `summary` is the
table printed last; `ratios` sets each of ours against the best reference
mode of the same model, from medians over rounds. This module imports
neither TensorFlow nor Keras.

On a GPU machine with JAX, PyTorch and timm but neither TensorFlow nor
Keras, Keras travels as wheels, fetched once on a machine with pip, in the
repository root:

    echo /.whl/ >> .git/info/exclude
    P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \\
       --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl"
    python3 -m pip download $P keras==3.15.1 namex==0.1.0 optree==0.20.0

(Keras's other needs, absl-py, numpy, rich, h5py, ml-dtypes and packaging, and
what keras_mtcl imports, scipy, pillow and matplotlib, are on the machine.)
Then the `run` call, with `carry: [".whl"]` and `timeout_s: 600`:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \\
      .whl/*.whl && export PYTHONPATH=/tmp/site || exit; \\
    PYTHONUNBUFFERED=1 python3 tools/gpu_bench.py --out $OUT/bench.jsonl --budget-s 500

One call does not hold everything (each hrnet compiles for a minute or more
per configuration, a call lasts at most 10 minutes): the order puts
hrnet_w18 first. To go on in a later call, copy the returned bench.jsonl
into an ignored folder of the repository (e.g. `.bench/`, added to
.git/info/exclude), carry it with `.whl`, and add `--resume
.bench/bench.jsonl`; the new `$OUT/bench.jsonl` holds the old lines and the new ones.

Example:
>>> [c.bench_id for c in plan(["tiny"], ["reference", "jax"])]
['reference/tiny', 'jax/tiny/bf16', 'jax/tiny/fp32']
>>> plan(["tiny"], ["jax"], size=(64, 64), steps=1, warmup=1)[0].shell()
'KERAS_BACKEND=jax python tools/bench_train.py --backbone tiny_cnn --precision bf16 --size 64 64 --batch 8 --steps 1 --warmup 1'
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

from keras_mtcl.analysis.train_bench import PRECISIONS  # plain data: importing it imports no framework

GROUPS = ("reference", "jax", "torch", "torch-jit", "tensorflow")
DEFAULT_GROUPS = ("reference", "jax", "torch")
DEFAULT_MODELS = ("hrnet_w18", "hrnet_w18_small_v2", "hrnet_w48")
DEFAULT_PRECISIONS = ("bf16", "fp32")  # of `train_bench.PRECISIONS`, bf16 first
# The modes of `tools/bench_reference_torch.py` (`reference_torch.MODES`), named here without importing torch.
REFERENCE_MODES = ("fp32", "bf16", "compile")
# Model name -> (reference network, keras_mtcl backbone).
MODELS = {
    "hrnet_w18": ("hrnet_w18", "hrnet_w18"),
    "hrnet_w18_small_v2": ("hrnet_w18_small_v2", "hrnet_w18_small_v2"),
    "hrnet_w48": ("hrnet_w48", "hrnet_w48"),
    "tiny": ("tiny", "tiny_cnn"),
}

# Runs a script: argv = [script, args...]; the first with TensorFlow unimportable.
_LAUNCHER = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
_NO_TF_LAUNCHER = "import sys; sys.modules['tensorflow'] = None; sys.modules['tensorflow_datasets'] = None; " + _LAUNCHER


@dataclasses.dataclass(frozen=True)
class Command:
    """One benchmark process.

    Args:
        bench_id: unique name of the command in a plan.
        group: one of `GROUPS`.
        script: path under the repository root.
        args: its arguments.
        env: extra environment variables.
        model: the key of `MODELS` it measures.
        python: the interpreter ("": this one).
        tensorflow: whether TensorFlow may be imported.
        round: 1, 2, ... when the plan runs in rounds, else 0.
    """

    bench_id: str
    group: str
    script: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    model: str = ""
    python: str = ""
    tensorflow: bool = False
    round: int = 0

    def argv(self, root: str | os.PathLike) -> list[str]:
        """The command line, its script under the repository `root`, TensorFlow unimportable unless allowed."""
        launcher = _LAUNCHER if self.tensorflow else _NO_TF_LAUNCHER
        return [self.python or sys.executable, "-c", launcher, str(Path(root) / self.script), *self.args]

    def shell(self) -> str:
        """The command as one would type it in the repository root."""
        env = " ".join(f"{k}={v}" for k, v in self.env)
        return f"{env + ' ' if env else ''}{self.python or 'python'} {self.script} {shlex.join(self.args)}"

    def tags(self) -> dict:
        """What every JSON line of the command is tagged with."""
        tags = {"bench_id": self.bench_id, "group": self.group, "model": self.model}
        return {**tags, "round": self.round} if self.round else tags


def plan(
    models: Sequence[str] = DEFAULT_MODELS,
    groups: Sequence[str] = DEFAULT_GROUPS,
    size: Sequence[int] = (448, 576),
    batch: int = 8,
    steps: int = 20,
    warmup: int = 5,
    precisions: Sequence[str] = DEFAULT_PRECISIONS,
    modes: Sequence[str] = REFERENCE_MODES,
    device: str = "auto",
    reference_python: str = "",
) -> list[Command]:
    """The commands, model by model, then group by group (see the module docstring).

    Args:
        models: keys of `MODELS`.
        groups: among `GROUPS`.
        size: (height, width) of the batch.
        batch: images per step.
        steps: timed steps per command.
        warmup: untimed steps first.
        precisions: of keras_mtcl's commands, among `train_bench.PRECISIONS`
            (`torch-jit` runs the first only).
        modes: of the reference, among `REFERENCE_MODES`.
        device: the reference's `--device` ("auto", "cuda" or "cpu").
        reference_python: the interpreter of the reference ("": this one).
    """
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(
            f"Unknown models {unknown}. Expected some of {sorted(MODELS)}. Received: models={list(models)}"
        )
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"Unknown groups {unknown}. Expected some of {list(GROUPS)}. Received: groups={list(groups)}")
    for name, values, allowed in (("precisions", precisions, PRECISIONS), ("modes", modes, REFERENCE_MODES)):
        if not values or any(v not in allowed for v in values):
            raise ValueError(f"`{name}` must be some of {list(allowed)}. Received: {name}={list(values)}")
    common = ("--size", str(size[0]), str(size[1]), "--batch", str(batch))
    common += ("--steps", str(steps), "--warmup", str(warmup))
    commands = []
    for model in models:
        reference, backbone = MODELS[model]
        for group in groups:
            if group == "reference":
                args = ("--model", reference, "--modes", *modes, *common)
                args += ("--device", device) if device != "auto" else ()
                commands.append(Command(f"reference/{model}", group, "tools/bench_reference_torch.py", args,
                                        model=model, python=reference_python))
                continue
            backend = {"jax": "jax", "tensorflow": "tensorflow"}.get(group, "torch")
            for precision in precisions[:1] if group == "torch-jit" else precisions:
                args = ("--backbone", backbone, "--precision", precision, *common)
                if group == "torch":
                    args += ("--no-jit",)
                if group == "torch-jit":
                    args += ("--configs", "baseline")
                env = (("KERAS_BACKEND", backend),)
                commands.append(Command(f"{group}/{model}/{precision}", group, "tools/bench_train.py", args, env,
                                        model=model, tensorflow=group == "tensorflow"))
    return commands


def in_rounds(commands: Sequence[Command], rounds: int) -> list[Command]:
    """`commands` `rounds` times in alternating order, each bench_id suffixed with its round (unchanged for 1)."""
    from keras_mtcl.analysis.timing import alternating

    if rounds < 1:
        raise ValueError(f"`rounds` must be >= 1. Received: rounds={rounds}")
    if rounds == 1:
        return list(commands)
    return [
        dataclasses.replace(command, bench_id=f"{command.bench_id}/round{index + 1}", round=index + 1)
        for index, order in enumerate(alternating(commands, rounds))
        for command in order
    ]


def environment() -> dict:
    """Versions of the packages involved and the GPU's name (nvidia-smi), without importing them."""
    record = {"kind": "environment", "python": sys.version.split()[0]}
    for package in ("torch", "timm", "torchvision", "jax", "jaxlib", "keras", "numpy"):
        try:
            record[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            record[package] = None
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        result = subprocess.run(query, capture_output=True, text=True)
        record["gpu"] = result.stdout.strip() or result.stderr.strip()
    else:
        record["gpu"] = None
    return record


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the command and the workers it started (torch.compile)
    except ProcessLookupError:
        pass
    process.wait()


def run_command(command: Command, timeout_s: float, log: TextIO, root: str | os.PathLike) -> list[dict]:
    """Runs one command in the repository `root`; returns its JSON lines (tagged) and, on failure, an error line.

    Args:
        command: from `plan`.
        timeout_s: the command (and what it started) is killed after this.
        log: receives the command line and its whole output.
        root: the repository root (the scripts are `tools/...`).
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3", **dict(command.env))
    log.write(f"\n===== {command.bench_id}: {command.shell()}\n")
    log.flush()
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(
            command.argv(root),
            cwd=root,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            rc = process.wait(timeout=timeout_s)
            error = None if rc == 0 else f"exit status {rc}"
        except subprocess.TimeoutExpired:
            _kill(process)
            error = f"timed out after {timeout_s:.0f} s"
        except BaseException:
            _kill(process)
            raise
        output.seek(0)
        text = output.read()
    log.write(text)
    log.write(f"===== {command.bench_id}: {error or 'ok'} in {time.perf_counter() - start:.1f} s\n")
    log.flush()
    tags = command.tags()
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                records.append({**tags, **json.loads(line)})
            except json.JSONDecodeError:
                pass
    if error:
        records.append({**tags, "error": error, "command": command.shell(), "output_tail": text[-2000:]})
    return records


def done_ids(path: str | os.PathLike | None) -> tuple[set[str], list[dict]]:
    """bench_ids that finished without error in an earlier output, and their lines."""
    if not path:
        return set(), []
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    failed = {r["bench_id"] for r in records if "error" in r or "skipped" in r}
    done = {r["bench_id"] for r in records if "bench_id" in r} - failed
    return done, [r for r in records if r.get("bench_id") in done]


def summary(records: Sequence[dict]) -> str:
    """A fixed-width table: one row per result line."""
    rows = [("bench_id", "mode/config", "step_ms_median", "images_per_s", "peak_MiB", "note")]
    for r in records:
        if "bench_id" not in r:
            continue
        config = r.get("mode") or ("regularizer" if r.get("regularizer") else "baseline" if "regularizer" in r else "")
        note = r.get("error") or ("skipped" if r.get("skipped") else "")
        fmt = lambda v, f: "" if not isinstance(v, (int, float)) else format(v, f)  # noqa: E731
        rows.append(
            (
                r["bench_id"],
                config,
                fmt(r.get("step_ms_median"), ".1f"),
                fmt(r.get("images_per_s"), ".1f"),
                fmt(r.get("peak_memory_mb"), ".0f"),
                note[:40],
            )
        )
    return _fixed_width(rows)


def _fixed_width(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def ratios(records: Sequence[dict]) -> list[dict]:
    """Each of ours against the best reference mode of the same model, from medians over rounds.

    Args:
        records: the lines of `run_plan`.

    Returns:
        One row per model and keras_mtcl configuration (group, precision,
        regularizer off or on): `images_per_s` = batch / median over rounds
        of `step_ms_median`, the best reference `reference_mode` (most
        images/s) with its `reference_images_per_s`, and `vs_reference`, ours
        over it (> 1: ours is faster); `rounds`, the lines behind each.
        Reference rows come first, with `vs_reference` against the best.

    Example:
    >>> lines = [{"bench_id": "reference/tiny", "group": "reference", "model": "tiny", "mode": "fp32",
    ...           "batch": 4, "step_ms_median": 200.0},
    ...          {"bench_id": "jax/tiny/fp32", "group": "jax", "model": "tiny", "precision": "fp32",
    ...           "regularizer": False, "batch": 4, "step_ms_median": 100.0}]
    >>> [(r["group"], r["images_per_s"], r["vs_reference"]) for r in ratios(lines)]
    [('reference', 20.0, 1.0), ('jax', 40.0, 2.0)]
    """
    steps: dict[tuple, list[float]] = {}
    batches: dict[tuple, int] = {}
    for r in records:
        needs = ("mode",) if r.get("group") == "reference" else ("precision", "regularizer")
        if "error" in r or any(k not in r for k in ("bench_id", "batch", "step_ms_median", *needs)):
            continue  # the environment line, failures, lines of other tools
        model = r.get("model") or r["bench_id"].split("/")[1]  # lines of earlier versions have no `model`
        if r["group"] == "reference":
            key = (model, "reference", r["mode"], "")
        else:
            key = (model, r["group"], r["precision"], "regularizer" if r["regularizer"] else "baseline")
        steps.setdefault(key, []).append(r["step_ms_median"])
        batches[key] = r["batch"]
    rows = [
        {"model": key[0], "group": key[1], "precision": key[2], "config": key[3], "rounds": len(values),
         "step_ms_median": statistics.median(values), "images_per_s": batches[key] * 1000.0 / statistics.median(values)}
        for key, values in steps.items()
    ]
    best = {}
    for row in rows:
        if row["group"] == "reference" and row["images_per_s"] > best.get(row["model"], {}).get("images_per_s", 0):
            best[row["model"]] = row
    for row in rows:
        reference = best.get(row["model"])
        if reference:
            row.update(reference_mode=reference["precision"], reference_images_per_s=reference["images_per_s"],
                       vs_reference=row["images_per_s"] / reference["images_per_s"])
    return sorted(rows, key=lambda row: (row["model"], row["group"] != "reference"))


def ratio_table(rows: Sequence[dict]) -> str:
    """`ratios` as a fixed-width table."""
    head = ("model", "group", "precision", "config", "rounds", "step_ms_median", "images_per_s", "vs_reference")
    table = [head] + [
        (r["model"], r["group"], r["precision"], r["config"], str(r["rounds"]), f"{r['step_ms_median']:.1f}",
         f"{r['images_per_s']:.2f}", f"{r['vs_reference']:.2f}" if "vs_reference" in r else "")
        for r in rows
    ]
    return _fixed_width(table)


def run_plan(
    commands: Sequence[Command],
    out: str | os.PathLike,
    root: str | os.PathLike,
    log_path: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    timeout_s: float = 420.0,
    budget_s: float = math.inf,
    header: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> list[dict]:
    """Runs `commands` one after the other and writes every record to `out` as it comes; returns the records.

    Args:
        commands: from `plan`.
        out: the JSON-lines file; its first line is `environment()` with `header`.
        root: the repository root.
        log_path: full output of every command (default: `out` with `.log`).
        resume: an earlier `out`: its successful lines are copied and their
            commands skipped; failed and skipped ones run again.
        timeout_s: limit of one command.
        budget_s: overall limit: the command running then is stopped (an
            error line), later ones are recorded as skipped.
        progress: receives a line as each command starts.
    """
    done, kept = done_ids(resume)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = Path(log_path) if log_path else out.with_suffix(".log")
    start = time.perf_counter()
    results: list[dict] = []
    with open(out, "w") as sink, open(log_path, "a") as log:

        def emit(record: dict) -> None:
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            results.append(record)

        emit({**environment(), **(header or {})})
        for record in kept:
            emit(record)
        for command in commands:
            if command.bench_id in done:
                continue
            left = budget_s - (time.perf_counter() - start)
            if left <= 0:
                emit({**command.tags(), "skipped": "budget", "command": command.shell()})
                continue
            progress(f"[{time.perf_counter() - start:6.0f} s] {command.bench_id}")
            for record in run_command(command, min(timeout_s, max(left, 1.0)), log, root):
                emit(record)
    return results


__all__ = ["DEFAULT_GROUPS", "DEFAULT_MODELS", "DEFAULT_PRECISIONS", "GROUPS", "MODELS", "REFERENCE_MODES", "Command",
           "done_ids", "environment", "in_rounds", "plan", "ratio_table", "ratios", "run_command", "run_plan",
           "summary"]
