"""Tables of ``launch/bench/bench.py`` rows: the per-run table, the FLOP breakdown, and the one
GPU table.

The GPU table (``python launch/bench/bench_report.py --card=NAME rows.json ...``) gathers the
rows of several runs, names the card, and checks the targets of the uncached/cached steps and of
the Case-2 prior (``TARGETS``). ``--max_batch`` estimates, from a row's memory figures, the
largest global batch that fits (``max_batch``).
"""

from __future__ import annotations

import argparse
import json
import math

COLUMNS = ("device", "n", "case", "batch", "precision", "cache", "ms/step", "img/s",
           "GFLOP/step XLA", "GFLOP/step analytic", "TFLOP/s", "% peak", "fwd ms", "prior ms",
           "prior/fwd")
GPU_COLUMNS = ("case", "precision", "cache", "batch", "ms/step", "img/s", "TFLOP/s", "% peak",
               "compile s", "peak GiB", "fwd ms", "prior ms", "prior/fwd", "target")
# Targets on one H100 (issue 15): bf16 uncached Case-1 step >= 9,000 img/s, a cached step
# >= 30,000 img/s, the Case-2 prior <= 10 % of the performer's forward.
TARGETS = {"uncached_filter_img_s": 9_000.0, "cached_img_s": 30_000.0, "prior_share": 0.10}
GIB = 2.0**30


def _num(x, fmt: str) -> str:
  return "n/a" if x is None else format(x, fmt)


def _ms(r: dict) -> str:
  return "OOM" if r.get("error") else _num(r["ms_per_step"], ".1f")


def format_table(rows: list[dict]) -> str:
  """The results as a Markdown table with ``COLUMNS``."""
  lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
  for r in rows:
    cells = [r["device"], str(r["n"]), r["case"], str(r["batch"]), r["precision"],
             str(r["cache"]), _ms(r), _num(r["img_per_s"], ".1f"),
             _num(r["flops_xla"] and r["flops_xla"] / 1e9, ".2f"),
             _num(r["flops_analytic"] / 1e9, ".2f"), _num(r["tflops_per_s"], ".4g"),
             _num(r["peak_share"] and 100 * r["peak_share"], ".1f"),
             _num(r["perf_fwd_ms"], ".1f"), _num(r["prior_ms"], ".1f"),
             _num(r["prior_share"] and 100 * r["prior_share"], ".1f") +
             ("%" if r["prior_share"] is not None else "")]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def format_breakdown(r: dict) -> str:
  """The analytic FLOP count of one row, component by component (GFLOP, 1e9)."""
  c, b = r["flops_components"], r["batch"]
  line = lambda label, x: f"  {label:<42}{x / 1e9:12.2f} GFLOP  ({x / 1e9 / b:.3f} per image)"
  lines = [f"FLOPs per step, {r['case']} cache={r['cache']} {r['precision']} batch={b} "
           f"({r['performer']} at {r['image_size']} px, weight net depth {r['weight_net_depth']},"
           f" {r['num_concepts']} concepts):"]
  if not r["cache"]:
    lines += [line("performer forward (frozen, x1)", c["performer_forward"]),
              line("+ prior (its VJP/JVP work, x1)", c["prior"])]
  g = c["weight_net_forward"]
  lines += [line(f"+ weight net fwd+bwd (3 x {g / 1e9:.2f})", 3 * g),
            line("= analytic total", r["flops_analytic"])]
  if not r["cache"]:
    share = c["performer_forward"] / r["flops_analytic"]
    lines.append(f"  performer forward share of the analytic total: {100 * share:.1f}%")
  lines.append(line("traced step jaxpr (conv + dot equations)", c["step_jaxpr"]))
  if r["flops_xla"] is not None:
    lines.append(line("XLA cost_analysis", r["flops_xla"]))
  return "\n".join(lines)


def target_check(r: dict, targets: dict = TARGETS) -> str:
  """The row's target and whether it is met ("" for rows without one)."""
  if r.get("error") or r["precision"] != "bfloat16":
    return ""
  if r["cache"]:
    want, got, what = targets["cached_img_s"], r["img_per_s"], "img/s"
  elif r["case"] == "filter":
    want, got, what = targets["uncached_filter_img_s"], r["img_per_s"], "img/s"
  else:
    want, got = targets["prior_share"], r["prior_share"]
    if got is None:
      return ""
    return f"prior <= {100 * want:.0f}%: {'met' if got <= want else 'NOT met'}"
  return f">= {want:,.0f} {what}: {'met' if got >= want else 'NOT met'}"


def gpu_table(rows: list[dict], card: str) -> str:
  """One Markdown table of every row, titled with the card's name."""
  lines = [f"Card: {card}", "", "| " + " | ".join(GPU_COLUMNS) + " |",
           "|" + "---|" * len(GPU_COLUMNS)]
  for r in rows:
    peak_mem = r.get("memory", {}).get("peak_bytes_in_use")
    share = r["prior_share"]
    cells = [r["case"], r["precision"], str(r["cache"]), str(r["batch"]), _ms(r),
             _num(r["img_per_s"], ",.0f"), _num(r["tflops_per_s"], ".1f"),
             _num(r["peak_share"] and 100 * r["peak_share"], ".1f"),
             _num(r.get("compile_s"), ".0f"), _num(peak_mem and peak_mem / GIB, ".1f"),
             _num(r["perf_fwd_ms"], ".1f"), _num(r["prior_ms"], ".1f"),
             _num(share and 100 * share, ".1f") + ("%" if share is not None else ""),
             target_check(r)]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def format_profile(r: dict, top: int = 12) -> str:
  """The profile of one row: device time by category and the costliest operations."""
  p = r.get("profile")
  if not p:
    return ""
  head = (f"Profile, {r['case']} cache={r['cache']} {r['precision']} batch={r['batch']}: "
          f"device busy {p['device_ms_per_step']:.1f} ms of {_num(p['wall_ms_per_step'], '.1f')}"
          f" ms per step (idle {_num(p['idle_share'] and 100 * p['idle_share'], '.0f')}%), "
          f"from the trace's '{p['line'] or 'no device'}' line")
  lines = [head]
  total = p["device_ms_per_step"] or 1.0
  for cat, ms in p["categories"].items():
    lines.append(f"  {cat:<16}{ms:9.2f} ms  {100 * ms / total:5.1f}%")
  lines.append("  costliest operations (ms per step, calls per step):")
  for op in p["top"][:top]:
    lines.append(f"    {op['name'][:60]:<60}{op['ms_per_step']:9.3f}  x{op['calls_per_step']:g}"
                 f"  {op['category']}")
  if not p["line"]:
    lines.append("  no device line in the trace; lines seen: " + "; ".join(p["seen"][:12]))
  hlo = p.get("hlo") or {}
  if hlo:
    lines.append(f"  optimised HLO entry ops by category: {hlo['categories']}")
    lines.append(f"  custom calls: {hlo['custom_call_targets']}")
  return "\n".join(lines)


def max_batch(r: dict, *, fraction: float = 0.9, multiple: int = 256) -> int | None:
  """The largest global batch (a multiple of ``multiple``) whose step should fit in memory.

  Scales the row's per-device temporary and batch memory with the batch, keeps its parameter
  and optimiser memory fixed, and fills ``fraction`` of the allocator's limit. Counting all the
  temporary memory as growing with the batch errs on the small side. None without the figures.
  """
  m = r.get("memory", {})
  need = ("temp_bytes", "argument_bytes", "bytes_limit")
  if r.get("error") or any(k not in m for k in need):
    return None
  n, b = r["n"], r["batch"]
  image_bytes = 4 * r["image_size"] ** 2 * 3 if not r["cache"] else 0
  batch_bytes = b / n * image_bytes
  fixed = max(0.0, m["argument_bytes"] - batch_bytes)
  per_row = (m["temp_bytes"] + batch_bytes) / (b / n)
  if per_row <= 0:
    return None
  rows = (fraction * m["bytes_limit"] - fixed) / per_row * n
  return max(multiple, multiple * math.floor(rows / multiple))


def main(argv=None) -> str:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("rows", nargs="+", help="JSON files written by bench.py --json")
  p.add_argument("--card", default="", help="the card's name (e.g. from nvidia-smi)")
  p.add_argument("--max_batch", action="store_true",
                 help="print the largest batch estimated from the first matching row, and stop")
  p.add_argument("--case", default="filter")
  p.add_argument("--precision", default="bfloat16")
  p.add_argument("--cache", type=int, default=0)
  p.add_argument("--output", default="", help="also write the text to this file")
  args = p.parse_args(argv)
  rows = []
  for path in args.rows:
    with open(path) as f:
      rows += json.load(f)
  if args.max_batch:
    match = [r for r in rows if (r["case"], r["precision"], r["cache"]) ==
             (args.case, args.precision, args.cache)]
    text = str((match and max_batch(match[0])) or 0)
  else:
    card = args.card or (rows[0]["device"] if rows else "unknown")
    text = "\n\n".join([gpu_table(rows, card)] + [t for t in map(format_profile, rows) if t])
  print(text)
  if args.output:
    with open(args.output, "w") as f:
      f.write(text + "\n")
  return text


if __name__ == "__main__":
  main()
