"""SLURM emission: an sbatch job array with one ``launch/run.py`` per grid point, then the
aggregation as a job that depends on the array (``--dependency=afterany:ARRAY_ID``), so it runs
on whatever finished and marks the rest missing.

When runs share a performer, the runs that train one form the first array and the others a
second array that starts after it, each task copying its leader's performer into its
sub-workdir (``launch/study.py --seed-run=NAME``) before running.
"""

from __future__ import annotations

import shlex
from typing import Sequence

from xplain_jax.study import grid as grid_lib


def _header(job_name: str, log: str, slurm) -> list[str]:
  lines = ["#!/bin/bash", f"#SBATCH --job-name={job_name}", f"#SBATCH --output={log}"]
  for key in ("partition", "time", "mem", "account"):
    if slurm.get(key):
      lines.append(f"#SBATCH --{key}={slurm[key]}")
  if slurm.get("gpus_per_task"):
    lines.append(f"#SBATCH --gpus-per-task={slurm['gpus_per_task']}")
  if slurm.get("cpus_per_task"):
    lines.append(f"#SBATCH --cpus-per-task={slurm['cpus_per_task']}")
  return lines


def array_script(runs: Sequence[grid_lib.Run], workdir: str, *, name: str, slurm: dict,
                 python: str = "python", prelude: dict | None = None) -> str:
  """The array job: task k runs ``runs[k]`` (array range 0..N-1), from the submit folder.

  ``prelude`` maps a run name to a command run before its ``launch/run.py`` (joined by &&).
  """
  lines = _header(f"study-{name}", f"{workdir}/logs/slurm-%A_%a.log", slurm)
  lines.insert(2, f"#SBATCH --array=0-{len(runs) - 1}")
  lines += ["# One launch/run.py per array task; a rerun resumes or skips a finished run.",
            "set -euo pipefail", 'cd "${SLURM_SUBMIT_DIR:-.}"']
  if slurm.get("setup"):
    lines.append(slurm["setup"])
  lines.append('case "$SLURM_ARRAY_TASK_ID" in')
  for k, r in enumerate(runs):
    cmd = " ".join(shlex.quote(c) for c in grid_lib.command(r, f"{workdir}/{r.name}",
                                                            python=python))
    if prelude and r.name in prelude:
      cmd = " ".join(shlex.quote(c) for c in prelude[r.name]) + " && " + cmd
    lines.append(f"  {k}) {cmd} ;;")
  lines += ['  *) echo "no grid point for task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;', "esac", ""]
  return "\n".join(lines)


def aggregate_script(workdir: str, *, name: str, study_args: Sequence[str], slurm: dict,
                     python: str = "python") -> str:
  """The aggregation job (``launch/study.py ... --aggregate-only``), no GPU."""
  cpu = {k: v for k, v in slurm.items() if k not in ("gpus_per_task", "cpus_per_task")}
  cpu["time"] = slurm.get("aggregate_time") or "00:30:00"
  lines = _header(f"study-{name}-aggregate", f"{workdir}/logs/slurm-aggregate-%j.log", cpu)
  lines += ["set -euo pipefail", 'cd "${SLURM_SUBMIT_DIR:-.}"']
  if slurm.get("setup"):
    lines.append(slurm["setup"])
  cmd = [python, "launch/study.py", *study_args, f"--workdir={workdir}", "--aggregate-only"]
  lines += [" ".join(shlex.quote(c) for c in cmd), ""]
  return "\n".join(lines)


def submit_script(arrays: Sequence[str], aggregate_path: str) -> str:
  """Submits the arrays in order (each after the previous one ended, in any state), then the
  aggregation once every array has ended."""
  lines = ["#!/bin/bash", "# Run from the repository root: bash " + shlex.quote(
      aggregate_path.rsplit("/", 1)[0] + "/submit.sh"), "set -euo pipefail"]
  ids = []
  for k, path in enumerate(arrays):
    var = "ARRAY_ID" if k == 0 else f"ARRAY_ID_{k + 1}"
    after = f"--dependency=afterany:${ids[-1]} " if ids else ""
    lines += [f"{var}=$(sbatch --parsable {after}{shlex.quote(path)})",
              f'{var}="${{{var}%%;*}}"  # "id;cluster" on federated clusters']
    ids.append(var)
  deps = ":".join(f"${v}" for v in ids)
  lines += [f"sbatch --dependency=afterany:{deps} {shlex.quote(aggregate_path)}",
            'echo "submitted ' + " ".join(f"${v}" for v in ids) + ' and the aggregation"', ""]
  return "\n".join(lines)
