"""SLURM emission: an sbatch job array with one ``launch/run.py`` per grid point, then the
aggregation as a job that depends on the array (``--dependency=afterany:ARRAY_ID``), so it runs
on whatever finished and marks the rest missing.

Under SLURM every array task trains its own performer (tasks run concurrently, so there is no
leader to copy from); run the study on one host (``--jobs``) to share performers instead.
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
                 python: str = "python") -> str:
  """The array job: task k runs grid point k (array range 0..N-1), from the submit folder."""
  lines = _header(f"study-{name}", f"{workdir}/logs/slurm-%A_%a.log", slurm)
  lines.insert(2, f"#SBATCH --array=0-{len(runs) - 1}")
  lines += ["# One launch/run.py per array task; a rerun resumes or skips a finished run.",
            "set -euo pipefail", 'cd "${SLURM_SUBMIT_DIR:-.}"']
  if slurm.get("setup"):
    lines.append(slurm["setup"])
  lines.append('case "$SLURM_ARRAY_TASK_ID" in')
  for k, r in enumerate(runs):
    cmd = grid_lib.command(r, f"{workdir}/{r.name}", python=python)
    lines.append(f"  {k}) {' '.join(shlex.quote(c) for c in cmd)} ;;")
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


def submit_script(array_path: str, aggregate_path: str) -> str:
  """Submits the array, then the aggregation once every array task has ended (any state)."""
  return "\n".join([
      "#!/bin/bash", "# Run from the repository root: bash " + shlex.quote(
          aggregate_path.rsplit("/", 1)[0] + "/submit.sh"),
      "set -euo pipefail",
      f"ARRAY_ID=$(sbatch --parsable {shlex.quote(array_path)})",
      'ARRAY_ID="${ARRAY_ID%%;*}"  # "id;cluster" on federated clusters',
      f"sbatch --dependency=afterany:$ARRAY_ID {shlex.quote(aggregate_path)}",
      'echo "submitted array $ARRAY_ID and its aggregation"', ""])
