"""Where an accelerator step's time goes: a ``jax.profiler`` trace and the optimised HLO, in short.

``profile(step, directory)`` traces a few calls of a warmed-up step with
``jax.profiler.trace(..., create_perfetto_trace=True)``, which writes (besides the TensorBoard
files) ``perfetto_trace.json.gz``: Chrome trace events, readable with the standard library. On a
GPU the device's process (``/device:GPU:0``) has an "XLA Ops" line whose events are the HLO
operations (fusions, convolutions, custom calls) that ran, and "Stream #..." lines with the raw
kernels; ``summarize_trace`` adds up the operations' time per step by name and by category
(convolution/matmul, layout copies and transposes, dtype converts, reductions, collectives, other
fusions), and compares their sum with the step's wall time: the difference is time the device
waited for the host (dispatch, host syncs, input transfers). On the CPU there is no device
process: the operations are the events of XLA's host threads (``CPU_THREADS``), summed over
them. ``op_labels`` names each operation's JAX operation from the HLO's metadata (which layer,
forward or gradient). ``hlo_op_counts`` counts the same categories statically in the optimised
HLO's entry computation.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import time

import jax

# First match wins, on lower-cased HLO op or kernel names (on a GPU a custom call is a cuDNN
# convolution or a cuBLAS matmul).
CATEGORIES = (
    ("conv/matmul", ("convolution", "custom-call", "cudnn", "gemm", "cublas", "dot", "matmul",
                     "xmma", "cutlass", "wgmma")),
    ("collective", ("all-reduce", "all_reduce", "all-gather", "reduce-scatter", "nccl")),
    ("transpose/copy", ("transpose", "copy", "memcpy", "memset")),
    ("convert", ("convert",)),
    ("reduction", ("reduce", "reduction")),
)
OTHER = "other fusions"


# XLA:CPU runs the operations on the host's XLA threads (no device process): their events, less
# the executor's own and the ends of asynchronous operations.
CPU_THREADS = ("tf_XLAEigen", "tf_XLAPjRtCpuClient")
_NOT_CPU_OPS = ("end: ", "ThreadpoolListener", "ThunkExecutor", "$", "PjitFunction", "CommonPjRt")
_LIBRARY_FUSIONS = ("ynn_fusion", "xnn_fusion")  # XLA:CPU's library calls: dots, convs, reduces


def categorize(name: str, label: str = "") -> str:
  """The category of an HLO op or kernel ``name`` (see ``CATEGORIES``), else ``OTHER``; a
  library fusion of XLA:CPU is categorised by its JAX operation (``label``, ``op_labels``)."""
  low = name.lower()
  if low.startswith(_LIBRARY_FUSIONS):
    op = categorize(label.rsplit("/", 1)[-1]) if label else OTHER
    return "conv/matmul" if op == OTHER else op
  for category, words in CATEGORIES:
    if any(w in low for w in words):
      return category
  return OTHER


_META = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+) = .*?metadata=\{[^}]*op_name="([^"]+)"')


def op_labels(hlo_text: str) -> dict:
  """``{HLO op name: the JAX operation it came from}`` (its metadata's ``op_name``, e.g.
  ``"jit(step)/transpose(jvp(VGG))/VGG.features/convs_1/slice"``), for every named op."""
  out = {}
  for line in hlo_text.splitlines():
    m = _META.match(line)
    if m:
      out[m.group(1)] = m.group(2)
  return out


def load_trace(path: str) -> list[dict]:
  """The events of a Chrome/Perfetto trace file (``.json`` or ``.json.gz``)."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt") as f:
    trace = json.load(f)
  return trace["traceEvents"] if isinstance(trace, dict) else trace


def device_op_events(events: list[dict]) -> tuple[list[dict], str, list[str]]:
  """The complete events of the device's operations.

  Returns:
    ``(events, line, seen)``: the ``"X"`` events of the "XLA Ops" line of the device processes
    (``/device:...``), or of their "Stream" lines when there is no such line; ``line`` names the
    line used ("" when no device process was found); ``seen`` lists "process / thread" names.
  """
  procs = {e["pid"]: e["args"]["name"] for e in events
           if e.get("ph") == "M" and e.get("name") == "process_name"}
  threads = {(e["pid"], e.get("tid")): e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
  seen = sorted(f"{procs.get(p, p)} / {t}" for (p, _), t in threads.items())
  devices = {p for p, name in procs.items() if "/device:" in name}
  for line, match in (("XLA Ops", lambda t: t == "XLA Ops"),
                      ("Stream", lambda t: t.startswith("Stream"))):
    keys = {k for k, t in threads.items() if k[0] in devices and match(t)}
    if keys:
      ops = [e for e in events if e.get("ph") == "X" and (e.get("pid"), e.get("tid")) in keys]
      return ops, line, seen
  host = {p for p, name in procs.items() if name.startswith("/host:CPU")}
  keys = {k for k, t in threads.items() if k[0] in host and t.startswith(CPU_THREADS)}
  ops = [e for e in events if e.get("ph") == "X" and (e.get("pid"), e.get("tid")) in keys
         and not str(e.get("name", "")).startswith(_NOT_CPU_OPS)]
  return (ops, "XLA:CPU threads", seen) if ops else ([], "", seen)


def _op_name(name: str) -> str:
  """``"%fusion.12 = ..."`` or ``"fusion.12"`` -> ``"fusion.12"``."""
  return name.split(" = ")[0].strip().lstrip("%")


def summarize_trace(events: list[dict], steps: int, *, wall_ms_per_step: float | None = None,
                    top: int = 15, labels: dict | None = None) -> dict:
  """Device time per step by operation and by category.

  On the CPU (line "XLA:CPU threads") the operations' times are summed over XLA's threads, so
  the total is thread time and may exceed the wall time.

  Args:
    events: trace events (``load_trace``).
    steps: how many steps the trace holds.
    wall_ms_per_step: the steps' wall time, to report the device's idle share.
    top: how many of the costliest operations to list.
    labels: ``op_labels`` of the step's optimised HLO: each listed operation's JAX operation.

  Returns:
    ``{"line", "seen", "device_ms_per_step", "wall_ms_per_step", "idle_share", "categories":
    {category: ms per step}, "top": [{"name", "label", "category", "ms_per_step",
    "calls_per_step", "share"}]}``; ``share`` is of the device time.
  """
  labels = labels or {}
  ops, line, seen = device_op_events(events)
  per_op, calls = collections.Counter(), collections.Counter()
  for e in ops:
    name = _op_name(e.get("name", "?"))
    per_op[name] += float(e.get("dur", 0.0)) / 1e3 / steps  # us -> ms per step
    calls[name] += 1
  total = sum(per_op.values())
  cats = collections.Counter()
  for name, ms in per_op.items():
    cats[categorize(name, labels.get(name, ""))] += ms
  idle = None
  if wall_ms_per_step and total:
    idle = max(0.0, 1.0 - total / wall_ms_per_step)
  return {
      "line": line, "seen": seen[:40], "device_ms_per_step": total,
      "wall_ms_per_step": wall_ms_per_step, "idle_share": idle,
      "categories": dict(cats.most_common()),
      "top": [{"name": n, "label": labels.get(n, ""), "ms_per_step": ms,
               "category": categorize(n, labels.get(n, "")),
               "calls_per_step": calls[n] / steps, "share": ms / total if total else None}
              for n, ms in per_op.most_common(top)],
  }


_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+ = .*? ([a-z][a-z\-]*)\(")


def hlo_op_counts(hlo_text: str) -> dict:
  """Counts of the operations of the optimised HLO's ENTRY computation, by opcode and category.

  Args:
    hlo_text: ``compiled.as_text()``.

  Returns:
    ``{"opcodes": {opcode: n}, "categories": {category: n}, "custom_call_targets": {target: n}}``;
    a fusion counts under the category of its name (e.g. "transpose_fusion").
  """
  opcodes, cats, targets = collections.Counter(), collections.Counter(), collections.Counter()
  in_entry = False
  for line in hlo_text.splitlines():
    if line.startswith("ENTRY"):
      in_entry = True
      continue
    if in_entry and line.startswith("}"):
      break
    m = _INSTR.match(line) if in_entry else None
    if not m:
      continue
    opcode = m.group(1)
    opcodes[opcode] += 1
    name = _op_name(line.strip().removeprefix("ROOT "))
    cats[categorize(opcode if opcode != "fusion" else name)] += 1
    t = re.search(r'custom_call_target="([^"]+)"', line)
    if t:
      targets[t.group(1)] += 1
  return {"opcodes": dict(opcodes.most_common()), "categories": dict(cats.most_common()),
          "custom_call_targets": dict(targets.most_common())}


def profile(step, directory: str, *, steps: int = 3, hlo_text: str = "") -> dict:
  """Traces ``steps`` calls of a compiled, warmed-up ``step`` and summarises the trace.

  Args:
    step: a function of no arguments that runs one step and returns its outputs.
    directory: where ``jax.profiler`` writes (TensorBoard layout, plus the Perfetto trace).
    steps: how many calls to trace.
    hlo_text: the step's optimised HLO, for ``hlo_op_counts`` (skipped when empty).

  Returns:
    ``summarize_trace``'s dict plus ``"trace"`` (the Perfetto file, "" when none was written)
    and ``"hlo"``.
  """
  os.makedirs(directory, exist_ok=True)
  with jax.profiler.trace(directory, create_perfetto_trace=True):
    t0 = time.perf_counter()
    for _ in range(steps):
      out = step()
    jax.block_until_ready(out)
    wall = 1e3 * (time.perf_counter() - t0) / steps
  files = sorted(glob.glob(os.path.join(directory, "**", "perfetto_trace.json.gz"),
                           recursive=True), key=os.path.getmtime)
  labels = op_labels(hlo_text) if hlo_text else {}
  summary = (summarize_trace(load_trace(files[-1]), steps, wall_ms_per_step=wall,
                             labels=labels) if files else
             {"line": "", "seen": [], "device_ms_per_step": 0.0, "wall_ms_per_step": wall,
              "idle_share": None, "categories": {}, "top": []})
  summary["trace"] = files[-1] if files else ""
  summary["hlo"] = hlo_op_counts(hlo_text) if hlo_text else {}
  return summary
