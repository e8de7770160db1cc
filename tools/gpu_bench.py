"""One-command GPU training benchmark: the PyTorch reference and keras_mtcl on JAX and PyTorch, side by side.

    python tools/gpu_bench.py --out bench.jsonl                       # everything, in priority order
    python tools/gpu_bench.py --groups reference --models hrnet_w18   # a part
    python tools/gpu_bench.py --dry-run                               # print the plan
    GPU_BENCH_SMOKE=1 python tools/gpu_bench.py --models tiny         # every command at 64x64, 1 step

Commands, model by model (`--models`, default hrnet_w18, hrnet_w18_small_v2,
hrnet_w48), then group by group (`--groups`, default reference, jax, torch):

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
  the first call), so it needs `--warmup` of 2 or more.

All at 448x576, batch 8 (`--size`, `--batch`), `--steps` timed steps after
`--warmup` warm-up steps. Each command runs in its own process with
TensorFlow made unimportable (as on the GPU machine, which has none), under
a per-command time limit (`--timeout-s`) and an overall budget
(`--budget-s`): the command running when the budget ends is stopped (an
error line keeps what it printed), those after it are recorded as skipped. Every JSON line of every command goes to `--out` with the fields
`bench_id` (e.g. `jax/hrnet_w18/bf16`) and `group`; a command that fails or
times out adds one line with `error` and the tail of its output. The first
line describes the environment (`"kind": "environment"`). Full output goes to
`--log` (default: `--out` with `.log`). `--resume PREVIOUS.jsonl` copies the
successful lines of an earlier run into `--out` and skips their commands, so
that the benchmark can be spread over several device calls. A table of the
results is printed last. The exit status is 1 if any command failed.

`GPU_BENCH_SMOKE=1` shrinks every command to 64x64, batch 2, 1 warm-up and 1
timed step, to test the driver on a CPU. `--models tiny` maps to the
reference's `tiny` network and Keras's `tiny_cnn` backbone.

On the device machine (`run` tool): it has JAX, PyTorch and timm, no
TensorFlow and no Keras. Keras travels as wheels, fetched once on a machine
with pip, in the repository root:

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
per configuration, a call lasts at most 10 minutes, a session has 30 minutes
of device time): the order puts hrnet_w18 first. To go on in a later call,
copy the returned bench.jsonl into an ignored folder of the repository (e.g.
`.bench/`, added to .git/info/exclude), carry it with `.whl`, and add
`--resume .bench/bench.jsonl`; the new `$OUT/bench.jsonl` holds the old
lines and the new ones.
"""

from __future__ import annotations

import argparse
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
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]

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

    def argv(self) -> list[str]:
        return [sys.executable, "-c", _NO_TF_LAUNCHER, str(ROOT / self.script), *self.args]

    def shell(self) -> str:
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


def run_command(command: Command, timeout_s: float, log) -> list[dict]:
    """Runs one command; returns its JSON lines (tagged) and, on failure, an error line."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3", **dict(command.env))
    log.write(f"\n===== {command.bench_id}: {command.shell()}\n")
    log.flush()
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(
            command.argv(),
            cwd=ROOT,
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


def _done_ids(path: str | None) -> tuple[set[str], list[dict]]:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=sorted(MODELS))
    parser.add_argument("--groups", nargs="+", default=list(DEFAULT_GROUPS), choices=GROUPS)
    parser.add_argument("--size", nargs=2, type=int, default=[448, 576], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "bench.jsonl"))
    parser.add_argument("--log", default=None, help="full output of every command (default: --out with .log)")
    parser.add_argument(
        "--resume", default=None, help="an earlier --out: keep its successful lines, skip their commands"
    )
    parser.add_argument("--timeout-s", type=float, default=420.0, help="limit of one command")
    parser.add_argument(
        "--budget-s", type=float, default=math.inf,
        help="overall limit: the command running then is stopped (an error line), later ones are recorded as skipped",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    args = parser.parse_args(argv)
    smoke = os.environ.get("GPU_BENCH_SMOKE", "") not in ("", "0")
    if smoke:
        args.size, args.batch, args.steps, args.warmup = [64, 64], 2, 1, 1
    commands = plan(args.models, args.groups, args.size, args.batch, args.steps, args.warmup)
    if args.dry_run:
        for command in commands:
            print(f"{command.bench_id}: {command.shell()}")
        return 0
    done, kept = _done_ids(args.resume)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = Path(args.log) if args.log else out.with_suffix(".log")
    start = time.perf_counter()
    results: list[dict] = []
    with open(out, "w") as sink, open(log_path, "a") as log:

        def emit(record: dict) -> None:
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            results.append(record)

        emit({**environment(), "smoke": smoke, "size": list(args.size), "batch": args.batch, "steps": args.steps})
        for record in kept:
            emit(record)
        for command in commands:
            if command.bench_id in done:
                continue
            left = args.budget_s - (time.perf_counter() - start)
            if left <= 0:
                tags = {"bench_id": command.bench_id, "group": command.group}
                emit({**tags, "skipped": "budget", "command": command.shell()})
                continue
            print(f"[{time.perf_counter() - start:6.0f} s] {command.bench_id}", flush=True)
            for record in run_command(command, min(args.timeout_s, max(left, 1.0)), log):
                emit(record)
    print(summary(results), flush=True)
    failed = [r["bench_id"] for r in results if "error" in r]
    if failed:
        print(f"failed: {', '.join(failed)} (see {log_path})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
