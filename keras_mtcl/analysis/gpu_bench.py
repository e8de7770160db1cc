"""The one-command GPU training benchmark: its plan of commands and the runner (`tools/gpu_bench.py`).

`plan` lists the commands, model by model, then group by group:

- `reference`: `tools/bench_reference_torch.py` (timm HRNet, plain PyTorch),
  modes fp32, bf16 (autocast + channels_last) and compile (bf16 + torch.compile).
- `jax`: `KERAS_BACKEND=jax tools/bench_train.py`, precision bf16 then fp32,
  each with the regularizer off and on.
- `torch`: the same on `KERAS_BACKEND=torch` with `--no-jit` (Keras's default
  on PyTorch: `jit_compile="auto"` is eager there).
- `torch-jit` (not in the default groups): `KERAS_BACKEND=torch` with
  `jit_compile=True` (Keras wraps the step in torch.compile), bf16, regularizer
  off only (the regularizer's random draws make torch.compile trace again).
  The step is traced a second time at step 2 (an optimizer attribute set on
  the first call), so it needs a warm-up of 2 steps or more.

`run_plan` runs each command in its own process with TensorFlow made
unimportable (as on the GPU machine, which has none), under a per-command
time limit and an overall budget, and tags every JSON line of every command
with `bench_id` (e.g. `jax/hrnet_w18/bf16`) and `group`; a command that
fails or times out adds one line with `error` and the tail of its output.
`summary` is the table printed last. This module imports neither TensorFlow
nor Keras.

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

GROUPS = ("reference", "jax", "torch", "torch-jit")
DEFAULT_GROUPS = ("reference", "jax", "torch")
DEFAULT_MODELS = ("hrnet_w18", "hrnet_w18_small_v2", "hrnet_w48")
# Model name -> (reference network, keras_mtcl backbone).
MODELS = {
    "hrnet_w18": ("hrnet_w18", "hrnet_w18"),
    "hrnet_w18_small_v2": ("hrnet_w18_small_v2", "hrnet_w18_small_v2"),
    "hrnet_w48": ("hrnet_w48", "hrnet_w48"),
    "tiny": ("tiny", "tiny_cnn"),
}

# Runs a script with TensorFlow unimportable: argv = [script, args...].
_NO_TF_LAUNCHER = (
    "import runpy, sys; sys.modules['tensorflow'] = None; sys.modules['tensorflow_datasets'] = None; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


@dataclasses.dataclass(frozen=True)
class Command:
    """One benchmark process: `bench_id`, its group, the script and arguments, extra environment."""

    bench_id: str
    group: str
    script: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()

    def argv(self, root: str | os.PathLike) -> list[str]:
        """The command line, its script under the repository `root`, run with TensorFlow unimportable."""
        return [sys.executable, "-c", _NO_TF_LAUNCHER, str(Path(root) / self.script), *self.args]

    def shell(self) -> str:
        """The command as one would type it in the repository root."""
        env = " ".join(f"{k}={v}" for k, v in self.env)
        return f"{env + ' ' if env else ''}python {self.script} {shlex.join(self.args)}"


def plan(
    models: Sequence[str] = DEFAULT_MODELS,
    groups: Sequence[str] = DEFAULT_GROUPS,
    size: Sequence[int] = (448, 576),
    batch: int = 8,
    steps: int = 20,
    warmup: int = 5,
) -> list[Command]:
    """The commands, model by model, then group by group (see the module docstring)."""
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(
            f"Unknown models {unknown}. Expected some of {sorted(MODELS)}. Received: models={list(models)}"
        )
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"Unknown groups {unknown}. Expected some of {list(GROUPS)}. Received: groups={list(groups)}")
    common = ("--size", str(size[0]), str(size[1]), "--batch", str(batch))
    common += ("--steps", str(steps), "--warmup", str(warmup))
    commands = []
    for model in models:
        reference, backbone = MODELS[model]
        for group in groups:
            if group == "reference":
                args = ("--model", reference, "--modes", "fp32", "bf16", "compile", *common)
                commands.append(Command(f"reference/{model}", group, "tools/bench_reference_torch.py", args))
                continue
            backend = "jax" if group == "jax" else "torch"
            precisions = ("bf16",) if group == "torch-jit" else ("bf16", "fp32")
            for precision in precisions:
                args = ("--backbone", backbone, "--precision", precision, *common)
                if group == "torch":
                    args += ("--no-jit",)
                if group == "torch-jit":
                    args += ("--configs", "baseline")
                env = (("KERAS_BACKEND", backend),)
                commands.append(Command(f"{group}/{model}/{precision}", group, "tools/bench_train.py", args, env))
    return commands


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
    tags = {"bench_id": command.bench_id, "group": command.group}
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
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


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
                emit({"bench_id": command.bench_id, "group": command.group, "skipped": "budget",
                      "command": command.shell()})
                continue
            progress(f"[{time.perf_counter() - start:6.0f} s] {command.bench_id}")
            for record in run_command(command, min(timeout_s, max(left, 1.0)), log, root):
                emit(record)
    return results


__all__ = ["DEFAULT_GROUPS", "DEFAULT_MODELS", "GROUPS", "MODELS", "Command", "done_ids", "environment", "plan",
           "run_command", "run_plan", "summary"]
