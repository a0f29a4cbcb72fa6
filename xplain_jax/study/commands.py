"""A study from its config: the grid, running it, aggregating it, emitting it for SLURM.

``launch/study.py`` is a thin wrapper around ``run``, ``write_outputs`` and ``emit_slurm``.
A study config (``configs/studies/*.py``) has the fields:

  name        the study's name
  base        ``configs/FILE.py[:ARG]`` of every run, ``{field}`` templates allowed
  fixed       nested overrides applied to every run
  axes        axis name -> nested dict of zipped value tuples (the grid is their product)
  replicates  comma-separated axis names that are repeats (seeds): pooled, never plotted
  share       folders a run may take from the run that trained the same performer ("" = none)
  share_explainers   optional: explainer folders (``explainer_baseline``) also taken from that
              run when the two differ only in fields none of these variants reads (the
              variant table, ``stages.VARIANT_IGNORES``: β for the baseline)
  require     comma-separated top-level keys a finished metrics.json must hold besides variants
  table       columns, rows (grid fields or ""), variants, variant_metrics, metrics (dotted
              metrics.json paths), paired ("prior-baseline"), metric_pairs ("A:B", any two
              paths, A − B), average_column, labels (value -> column title)
  slurm       sbatch settings: partition, time, mem, account, gpus_per_task, cpus_per_task, setup
"""

from __future__ import annotations

import json
import os
from typing import Sequence

from xplain_jax.spec import stages
from xplain_jax import utils
from xplain_jax.study import aggregate as agg_lib
from xplain_jax.study import checks as checks_lib
from xplain_jax.study import grid as grid_lib
from xplain_jax.study import render
from xplain_jax.study import runner as runner_lib
from xplain_jax.study import slurm as slurm_lib
from xplain_jax.utils import split_list


def required(config) -> list[str]:
  """Top-level keys of a finished run's metrics.json: the variants and ``config.require``."""
  return split_list(config.table.variants) + split_list(config.get("require", ""))


def parse_sets(sets: Sequence[str]) -> dict[str, str]:
  """``["FIELD=VALUE", ...]`` (``--set``) -> ``{FIELD: VALUE}``."""
  out = {}
  for s in sets or ():
    field, eq, value = s.partition("=")
    if not eq or not field.strip():
      raise ValueError(f"--set={s!r} must read FIELD=VALUE, e.g. --set=dataset.data_dir=/data.")
    out[field.strip().removeprefix("config.")] = value
  return out


def runs_of(config, sets: Sequence[str] = ()) -> list[grid_lib.Run]:
  """The study's runs; ``sets`` are extra ``FIELD=VALUE`` overrides for every run."""
  return grid_lib.make_runs(config.base, config.axes, config.get("fixed"), parse_sets(sets))


def table_spec(config) -> dict:
  t = config.table
  return dict(columns=t.columns, rows=t.rows, variants=split_list(t.variants),
              variant_metrics=split_list(t.variant_metrics), metrics=split_list(t.metrics),
              paired=split_list(t.paired), metric_pairs=split_list(t.get("metric_pairs", "")),
              average_column=bool(t.average_column),
              labels=dict(t.get("labels", {}) or {}))


def sweeps_of(config, runs) -> list[tuple[str, str]]:
  """``(axis, first field)`` of every axis with several values that is not a replicate."""
  reps = set(split_list(config.replicates))
  out = []
  for axis, tree in config.axes.items():
    fields = list(utils.flatten(tree))
    if axis not in reps and len({grid_lib.format_value(r.point[fields[0]]) for r in runs}) > 1:
      out.append((axis, fields[0]))
  return out


def free_fields(folders) -> list[str]:
  """The fields in which two runs may differ and still share every explainer folder of
  ``folders`` (``explainer_<variant>``): those none of the variants reads (``stages``)."""
  common = None
  for folder in folders:
    variant = folder.split("_", 1)[1] if folder.startswith("explainer_") else ""
    if variant not in stages.VARIANTS:
      raise ValueError(f"share_explainers names {folder!r}; use explainer_<variant> folders "
                       f"of {list(stages.VARIANTS)}.")
    ignored = set(stages.VARIANT_IGNORES[variant])
    common = ignored if common is None else common & ignored
  return sorted(common or ())


def _also_share(config) -> tuple[list[str], list[str]]:
  folders = split_list(config.get("share_explainers", ""))
  return folders, free_fields(folders)


def leaders_of(config, runs) -> dict[str, str]:
  """``{follower name: leader name}`` under the study's sharing (empty when ``share`` is "")."""
  if not split_list(config.share):
    return {}
  return {f: lead for lead, fs in grid_lib.share_groups(runs).items() for f in fs}


def check(config, workdir: str, *, sets: Sequence[str] = (), repo_root: str = ".",
          running: bool = True) -> list[grid_lib.Run]:
  """Everything checked before any run starts (``checks``); returns the runs.

  Raises:
    ValueError: a ``--set`` that is not FIELD=VALUE or sets an axis field, a bad grid;
      ``ConfigError``: an unknown field, a value of the wrong type, runs that cannot finish the
      table, a sub-workdir holding a run of other values; ``WorkdirBusyError`` (``running``):
      a run process still holds a sub-workdir.
  """
  runs = runs_of(config, sets)
  checks_lib.check_fields(runs, sets=parse_sets(sets), variants=split_list(config.table.variants),
                          repo_root=repo_root)
  checks_lib.check_run_configs(runs, repo_root=repo_root)
  checks_lib.check_workdirs(runs, workdir, running=running, repo_root=repo_root)
  return runs


def run(config, workdir: str, *, jobs: int = 1, devices: Sequence[str] = (),
        repo_root: str = ".", sets: Sequence[str] = (),
        children: runner_lib.Children | None = None) -> dict[str, str]:
  """Runs every unfinished grid point of the study (see ``runner.run_study``) after ``check``."""
  runs = check(config, workdir, sets=sets, repo_root=repo_root)
  os.makedirs(workdir, exist_ok=True)
  return runner_lib.run_study(runs, workdir, variants=required(config),
                              share=split_list(config.share), also_share=_also_share(config),
                              jobs=jobs, devices=devices, repo_root=repo_root,
                              children=children, configs=_run_configs(runs, repo_root))


def _run_configs(runs, repo_root: str) -> dict:
  """``{run.config: ConfigDict}``, or {} when a run config cannot be loaded here."""
  try:
    return {c: checks_lib.load_run_config(c, repo_root) for c in {r.config for r in runs}}
  except ValueError:
    return {}


def finished_runs(config, workdir: str, runs, repo_root: str = ".") -> set[str]:
  """Names of the runs finished with their own command (``runner.is_finished``)."""
  configs = _run_configs(runs, repo_root)
  return {r.name for r in runs
          if runner_lib.is_finished(os.path.join(workdir, r.name), r, required(config),
                                    configs.get(r.config))}


def seed_one(config, workdir: str, name: str, sets: Sequence[str] = (),
             repo_root: str = ".") -> list[str]:
  """Seeds run ``name`` from its leader when the leader has finished (``--seed-run``).

  Returns the folders seeded ([] when the run has no leader, the leader has not finished, or
  the run's sub-workdir exists already: the run then trains its own performer or resumes).
  """
  runs = {r.name: r for r in runs_of(config, sets)}
  if name not in runs:
    raise ValueError(f"--seed-run={name!r} is not a run of this study; use a sub-workdir name "
                     f"such as {next(iter(runs))!r}.")
  leaders = leaders_of(config, list(runs.values()))
  lead = leaders.get(name)
  done = finished_runs(config, workdir, list(runs.values()), repo_root)
  if not lead or lead not in done:
    return []
  group = [lead] + [f for f, ld in leaders.items() if ld == lead and f != name]
  finished = [runs[n] for n in group if n in done]
  also = _also_share(config)
  d = runner_lib.explainer_donor(runs[name], finished, also)
  return runner_lib.seed_run(os.path.join(workdir, lead), os.path.join(workdir, name),
                             leader=lead, share=split_list(config.share),
                             donor=None if d is None else (os.path.join(workdir, d.name), d.name,
                                                           also[0]))


def build(config, workdir: str, sets: Sequence[str] = (), repo_root: str = ".") -> dict:
  """The study's record (what ``study.json`` holds) from the sub-workdirs as they are now."""
  runs, spec = runs_of(config, sets), table_spec(config)
  results = agg_lib.collect(runs, workdir, required(config))
  done = finished_runs(config, workdir, runs, repo_root)  # never a run of other values, or cut off
  results = {name: value if name in done else None for name, value in results.items()}
  numbers = agg_lib.aggregate(
      runs, results, columns=spec["columns"], rows=spec["rows"], variants=spec["variants"],
      variant_metrics=spec["variant_metrics"], metrics=spec["metrics"], paired=spec["paired"],
      metric_pairs=spec["metric_pairs"], average_column=spec["average_column"],
      sweeps=sweeps_of(config, runs))
  return dict(
      name=config.name, base=config.base, table=spec, replicates=split_list(config.replicates),
      sharing_rule=("runs with the same config file and argument whose overrides differ only "
                    "in fields outside the identities of the stages "
                    + ", ".join(grid_lib.SHARED_STAGES) + " (xplain_jax.spec.stages)"),
      runs=[dict(name=r.name, point=r.point, config=r.config, overrides=r.overrides,
                 status="missing" if results[r.name] is None else "complete") for r in runs],
      sharing=agg_lib.sharing(runs, workdir), aggregate=numbers)


def _write(path: str, text: str) -> None:
  utils.write_atomic(path, lambda f: f.write(text), binary=False)


def write_outputs(config, workdir: str, sets: Sequence[str] = (), repo_root: str = ".") -> dict:
  """Writes ``study.json``, ``study.md``, ``study.html`` and ``figures/sweep_*.png``."""
  study = build(config, workdir, sets, repo_root)
  os.makedirs(workdir, exist_ok=True)
  _write(os.path.join(workdir, "study.json"), json.dumps(study, indent=1, sort_keys=True) + "\n")
  figures = render.plot_sweeps(study, os.path.join(workdir, "figures"))
  _write(os.path.join(workdir, "study.md"), render.markdown(study, figures))
  _write(os.path.join(workdir, "study.html"), render.html_page(study, figures))
  return study


def emit_slurm(config, workdir: str, *, study_args: Sequence[str],
               sets: Sequence[str] = ()) -> list[str]:
  """Writes the sbatch scripts and ``submit.sh``; returns their paths.

  ``study_array.sbatch`` runs the grid points that train their own performer; when some runs
  share one, ``study_followers.sbatch`` runs the others after that array, each task seeding its
  sub-workdir (``launch/study.py --seed-run=NAME``) before its ``launch/run.py``;
  ``study_aggregate.sbatch`` aggregates after both, whatever their outcome.
  """
  runs = runs_of(config, sets)
  leader_of = leaders_of(config, runs)
  first = [r for r in runs if r.name not in leader_of]
  second = [r for r in runs if r.name in leader_of]
  slurm = dict(config.get("slurm", {}) or {})
  os.makedirs(os.path.join(workdir, runner_lib.LOG_DIR), exist_ok=True)
  path = lambda n: os.path.join(workdir, n)
  paths = [path("study_array.sbatch")]
  _write(paths[0], slurm_lib.array_script(first, workdir, name=config.name, slurm=slurm))
  if second:
    seed = ["python", "launch/study.py", *study_args, f"--workdir={workdir}"]
    paths.append(path("study_followers.sbatch"))
    _write(paths[-1], slurm_lib.array_script(
        second, workdir, name=config.name + "-followers", slurm=slurm,
        prelude={r.name: seed + [f"--seed-run={r.name}"] for r in second}))
  paths.append(path("study_aggregate.sbatch"))
  _write(paths[-1], slurm_lib.aggregate_script(workdir, name=config.name, study_args=study_args,
                                               slurm=slurm))
  paths.append(path("submit.sh"))
  _write(paths[-1], slurm_lib.submit_script(paths[:-2], paths[-2]))
  return paths
