"""Runs a study's grid points as ordinary ``launch/run.py`` runs, each in its own sub-workdir.

A run is a black box: a command line and a sub-workdir that ends with ``metrics.json``.
Finished runs are skipped: ``command.json`` (written by ``launch/run.py``) records this very
command (config file and every override) as finished, every stage it asked for, the report
included, and ``metrics.json`` holds every variant the study reads. Any other run is rerun
with the same command and resumes itself (a run of other values is refused before, see
``checks``). Runs that may share a
performer (``grid.share_groups``) run in two phases: the first of each group (the leader)
trains it; each other run's sub-workdir is then created from hard links (copies across
filesystems) of the leader's ``performer/``, ``features/``, ... and a ``shared_from.json``
naming the leader, so its performer stage is found finished and not redone. The sub-workdir is
assembled in a temporary folder and renamed into place, so a kill while seeding leaves nothing
half-made. Optionally (``also_share``) a follower whose overrides differ only in some fields (e.g.
``explainer.beta``, which the baseline explainer does not read) from a finished run of its
group — the leader, or a follower that ran before it — also takes that run's
``explainer_baseline/``, so each baseline is trained once.
``jobs`` > 1 runs that many worker processes at once, each given its own subset of
``devices`` through ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from typing import Callable, Sequence

from xplain_jax.spec import stages
from xplain_jax.run import workdir as workdir_lib
from xplain_jax.study import grid as grid_lib

SHARED_FROM = "shared_from.json"
LOG_DIR = "logs"
RESEND_S = 5.0  # seconds between repeats of a forwarded stop signal


def read_metrics(run_dir: str) -> dict | None:
  """The run's ``metrics.json`` as a dict, or None when absent or unreadable."""
  try:
    with open(os.path.join(run_dir, stages.METRICS_FILE)) as f:
      out = json.load(f)
  except (OSError, ValueError):
    return None
  return out if isinstance(out, dict) else None


def is_complete(run_dir: str, variants: Sequence[str]) -> bool:
  """Whether the run in ``run_dir`` finished: metrics.json holds every variant in ``variants``."""
  m = read_metrics(run_dir)
  return m is not None and all(isinstance(m.get(v), dict) for v in variants)


def expected_command(run: grid_lib.Run) -> dict:
  """What ``command.json`` of ``run``'s sub-workdir must record (see ``grid.command``)."""
  return {"config": run.config,
          "overrides": {f: grid_lib.format_value(v) for f, v in run.overrides.items()}}


def get_field(config, field: str):
  """The value of dotted ``field`` in ``config`` (KeyError / AttributeError when it has none)."""
  node = config
  for part in field.split("."):
    node = node[part]
  return node


def command_differences(run_dir: str, run: grid_lib.Run,
                        config=None) -> list[tuple[str, str, str]] | None:
  """``[(field, recorded, now)]`` between the command recorded in ``run_dir`` and ``run``'s
  (``"--config"`` for the config file); None when ``run_dir`` records no command. A field set
  in only one of them counts as ``config``'s value (the run config, when given) in the other."""
  rec = workdir_lib.read_command(run_dir)
  if rec is None:
    return None
  now = expected_command(run)
  if rec["config"] != now["config"]:
    return [("--config", rec["config"], now["config"])]
  old, new = rec["overrides"], now["overrides"]

  def value(given: dict, field: str) -> str:
    if field in given:
      return str(given[field])
    try:
      return grid_lib.format_value(get_field(config, field))
    except (KeyError, AttributeError, TypeError):
      return "(not set)"
  return [(f, value(old, f), value(new, f)) for f in sorted(set(old) | set(new))
          if value(old, f) != value(new, f)]


def is_finished(run_dir: str, run: grid_lib.Run, variants: Sequence[str], config=None) -> bool:
  """Whether ``run`` finished in ``run_dir``: its own command (not another ``--set``; fields
  compared by value, ``config`` giving those set on one side only) ran every stage it asked
  for to the end, and metrics.json holds every variant in ``variants``."""
  rec = workdir_lib.read_command(run_dir)
  return (rec is not None and rec.get("finished") is True
          and command_differences(run_dir, run, config) == [] and is_complete(run_dir, variants))


class Children:
  """The run processes of a study: ``stop(signum)`` forwards a signal to each one running and
  keeps later runs from starting (Ctrl-C or SIGTERM on the study)."""

  def __init__(self):
    self._procs: set = set()
    self._lock = threading.Lock()
    self.stopped: int | None = None

  def start(self, cmd: list[str], **kwargs) -> subprocess.Popen | None:
    with self._lock:
      if self.stopped is not None:
        return None
      proc = subprocess.Popen(cmd, **kwargs)  # pylint: disable=consider-using-with
      self._procs.add(proc)
      return proc

  def wait(self, proc: subprocess.Popen) -> int:
    """Waits for ``proc``; once stopping, forwards the signal again every ``RESEND_S`` seconds
    (a run may lose one in a library that catches it)."""
    while True:
      try:
        rc = proc.wait(timeout=RESEND_S)
        break
      except subprocess.TimeoutExpired:
        if self.stopped is not None:
          proc.send_signal(self.stopped)
    with self._lock:
      self._procs.discard(proc)
    return rc

  def stop(self, signum: int) -> bool:
    """Forwards ``signum`` to every running run; returns whether any was running."""
    self.stopped = signum
    running = [p for p in list(self._procs) if p.poll() is None]
    for p in running:
      try:
        p.send_signal(signum)
      except ProcessLookupError:
        pass
    return bool(running)


def _link_tree(src: str, dst: str) -> None:
  """Copies the tree ``src`` to ``dst`` with hard links where possible (plain copies else)."""
  def link(s, d):
    try:
      os.link(s, d)
    except OSError:
      shutil.copy2(s, d)
  shutil.copytree(src, dst, copy_function=link)


def seed_run(leader_dir: str, run_dir: str, *, leader: str, share: Sequence[str],
             donor: tuple[str, str, Sequence[str]] | None = None) -> list[str]:
  """Creates ``run_dir`` holding the leader's ``share`` folders; returns the folders seeded.

  ``donor`` = ``(donor_dir, donor_name, folders)`` adds folders of another finished run of the
  group (the explainers it shares, see ``explainer_donor``); ``shared_from.json`` names it.
  Nothing happens when ``run_dir`` exists (it was seeded or started before).
  """
  if os.path.exists(run_dir):
    return []
  tmp = run_dir.rstrip("/") + ".seeding"
  shutil.rmtree(tmp, ignore_errors=True)  # left by a kill while seeding
  os.makedirs(tmp)
  seeded, record = [], {"leader": leader}
  sources = [(leader_dir, share)] + ([] if donor is None else [(donor[0], donor[2])])
  for src_dir, names in sources:
    for name in names:
      src = os.path.join(src_dir, name)
      if os.path.isdir(src) and name not in seeded:
        _link_tree(src, os.path.join(tmp, name))
        seeded.append(name)
        if donor is not None and src_dir == donor[0]:
          record["explainers_from"] = donor[1]
  record["folders"] = seeded
  with open(os.path.join(tmp, SHARED_FROM), "w") as f:
    json.dump(record, f)
  os.rename(tmp, run_dir)
  return seeded


def shared_from(run_dir: str) -> str | None:
  """The leader whose performer ``run_dir`` reuses, or None when it trained its own."""
  try:
    with open(os.path.join(run_dir, SHARED_FROM)) as f:
      return json.load(f).get("leader")
  except (OSError, ValueError):
    return None


def device_groups(devices: Sequence[str], jobs: int) -> list[str | None]:
  """``devices`` split into ``jobs`` contiguous groups as CUDA_VISIBLE_DEVICES values.

  With no devices every worker sees whatever the machine has (None: environment unchanged).
  """
  if jobs < 1:
    raise ValueError(f"--jobs={jobs}; use 1 or more worker processes.")
  if not devices:
    return [None] * jobs
  if len(devices) < jobs:
    raise ValueError(f"--jobs={jobs} workers but only {len(devices)} devices ({','.join(devices)})"
                     "; use at most one worker per device.")
  per, extra = divmod(len(devices), jobs)
  groups, start = [], 0
  for k in range(jobs):
    n = per + (1 if k < extra else 0)
    groups.append(",".join(devices[start:start + n]))
    start += n
  return groups


def _execute(cmd: list[str], *, cwd: str, log_path: str, visible: str | None,
             children: Children) -> int | None:
  """Runs ``cmd`` logging to ``log_path``; its exit status, or None when the study is stopping."""
  env = dict(os.environ)
  if visible is not None:
    env["CUDA_VISIBLE_DEVICES"] = visible
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  with open(log_path, "ab") as log:
    log.write(("$ " + " ".join(cmd) + "\n").encode())
    log.flush()
    start = time.monotonic()
    proc = children.start(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc is None:
      return None
    rc = children.wait(proc)
    log.write(f"# exit {rc} after {time.monotonic() - start:.1f} s\n".encode())
    return rc


def differs_only_in(a: grid_lib.Run, b: grid_lib.Run, fields: Sequence[str]) -> bool:
  """Whether the overrides of ``a`` and ``b`` differ in no field outside ``fields``."""
  keys = set(a.overrides) | set(b.overrides)
  return a.config == b.config and all(
      f in fields or grid_lib.format_value(a.overrides.get(f)) ==
      grid_lib.format_value(b.overrides.get(f)) for f in keys)


def explainer_donor(run: grid_lib.Run, finished: Sequence[grid_lib.Run],
                    also_share: tuple[Sequence[str], Sequence[str]]) -> grid_lib.Run | None:
  """The first of ``finished`` (runs of ``run``'s performer group that have finished, leader
  first) whose overrides differ from ``run``'s only in ``also_share``'s fields: ``run`` takes
  its ``also_share`` folders (e.g. the baseline, which does not read β). None when none does."""
  if not also_share[0]:
    return None
  return next((d for d in finished if differs_only_in(d, run, also_share[1])), None)


def run_study(runs: list[grid_lib.Run], workdir: str, *, variants: Sequence[str],
              share: Sequence[str], also_share: tuple[Sequence[str], Sequence[str]] = ((), ()),
              jobs: int = 1, devices: Sequence[str] = (),
              repo_root: str = ".", python: str = sys.executable,
              echo: Callable[[str], None] = print,
              children: Children | None = None, configs: dict | None = None) -> dict[str, str]:
  """Runs every unfinished grid point; returns ``{run name: "finished" | "ok" | "failed (rc N)"
  | "interrupted"}``.

  Args:
    runs: the grid (``grid.make_runs``).
    workdir: the study folder; run ``r`` works in ``workdir/r.name``, logs to
      ``workdir/logs/r.name.log``.
    variants: explainer variants a finished run's metrics.json must hold.
    share: folders seeded from a leader (empty: no sharing).
    also_share: ``(folders, fields)``: more folders seeded into a follower whose overrides
      differ from the leader's only in ``fields``.
    jobs: worker processes at once; devices: device ids split among them.
    children: the run processes, for a signal handler to stop (``Children.stop``).
    configs: ``{run.config: its ConfigDict}``, for fields a record sets on one side only.
  """
  configs = configs or {}
  children = Children() if children is None else children
  groups = device_groups(list(devices), jobs)
  by_name = {r.name: r for r in runs}
  leaders = grid_lib.share_groups(runs) if share else {r.name: [] for r in runs}
  leader_of = {f: lead for lead, fs in leaders.items() for f in fs}
  status: dict[str, str] = {}
  pending = []
  for r in runs:
    if is_finished(os.path.join(workdir, r.name), r, variants, configs.get(r.config)):
      status[r.name] = "finished"
      echo(f"[study] skip {r.name} (finished)")
    else:
      pending.append(r)
  free: queue.Queue = queue.Queue()
  for g in groups:
    free.put(g)
  lock = threading.Lock()

  def one(r: grid_lib.Run) -> None:
    if children.stopped is not None:
      status[r.name] = "interrupted"
      return
    run_dir = os.path.join(workdir, r.name)
    lead = leader_of.get(r.name)
    if lead and status.get(lead) in ("finished", "ok"):
      with lock:
        finished = [by_name[n] for n in [lead] + leaders[lead]
                    if status.get(n) in ("finished", "ok")]
      d = explainer_donor(r, finished, also_share)
      donor = None if d is None else (os.path.join(workdir, d.name), d.name, also_share[0])
      seeded = seed_run(os.path.join(workdir, lead), run_dir, leader=lead, share=share,
                        donor=donor)
      if seeded:
        with lock:
          echo(f"[study] {r.name}: {', '.join(seeded)} from {lead}"
               + (f" (explainers from {d.name})" if d is not None else ""))
    visible = free.get()
    try:
      with lock:
        echo(f"[study] run {r.name}" + (f" on devices {visible}" if visible else ""))
      rc = _execute(grid_lib.command(by_name[r.name], os.path.abspath(run_dir), python=python),
                    cwd=repo_root, log_path=os.path.join(workdir, LOG_DIR, r.name + ".log"),
                    visible=visible, children=children)
    finally:
      free.put(visible)
    if children.stopped is not None:
      status[r.name] = "interrupted"
      return
    ok = rc == 0 and is_finished(run_dir, r, variants, configs.get(r.config))
    why = (f"exit {rc}" if rc else "exit 0 without a finished run of this command and "
           f"metrics.json holding {', '.join(variants)}")
    with lock:
      status[r.name] = "ok" if ok else f"failed (rc {rc})"
      echo(f"[study] {'done' if ok else 'FAILED'} {r.name}" + ("" if ok else
           f" ({why}; see {os.path.join(workdir, LOG_DIR, r.name + '.log')})"))

  first = [r for r in pending if r.name not in leader_of]
  second = [r for r in pending if r.name in leader_of]
  for phase in (first, second):
    if not phase:
      continue
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
      for f in [pool.submit(one, r) for r in phase]:
        f.result()
  return status
