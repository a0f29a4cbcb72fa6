"""Blocks every study config shares (configs/studies/*.py), like ``config_base`` for runs."""

import ml_collections

from xplain_jax.study import render

# Sub-workdir folders a run seeded from another's performer starts from (hard links).
SHARE = "performer,performer_ordinary,features,data"


def study(name: str, base: str, *, seeds=None, require: str = "", table_block=None,
          slurm_block=None) -> ml_collections.ConfigDict:
  """A study config's skeleton: its ``name`` and ``base`` run config, no fixed overrides, runs
  replicated over ``seed`` and seeded from a leader's ``SHARE`` folders; with ``seeds`` the axis
  ``seed`` sets the run's and the data's seed together. The caller adds its axes and fields.

  Args:
    name, base: the study's name and its run config ("FILE.py[:ARG]").
    seeds: values of the ``seed`` axis (``seed`` and ``dataset.seed``), or None for no axis.
    require: a metrics.json key a finished run must hold ("" for none).
    table_block, slurm_block: the ``table`` and ``slurm`` blocks (default ``table()``,
      ``slurm()``).
  """
  c = ml_collections.ConfigDict()
  c.name, c.base = name, base
  c.fixed = ml_collections.ConfigDict()
  c.axes = ml_collections.ConfigDict()
  if seeds is not None:
    c.axes.seed = dict(seed=tuple(seeds), dataset=dict(seed=tuple(seeds)))
  c.replicates = "seed"
  c.share = SHARE
  c.require = require
  c.table = table() if table_block is None else table_block
  c.slurm = slurm() if slurm_block is None else slurm_block
  return c


def table(**kw) -> ml_collections.ConfigDict:
  """The table block shared by the synthetic studies."""
  # Fidelity to the performer (the "fidelity" evaluator): each explainer's mean interventional
  # rank correlation and sign agreement, and prior − baseline on the same performer.
  fid = [f"fidelity.{v}.{m}" for m in ("interventional_rank_correlation.mean", "sign_agreement")
         for v in ("baseline", "prior")]
  t = dict(columns="", rows="", variants="baseline,prior",
           variant_metrics="entropy,relative_deviation,accuracy,gt_rank_correlation",
           metrics=",".join(["performer.accuracy", "prior_weights.entropy",
                             "prior_weights.gt_rank_correlation"] + fid),
           paired="prior-baseline",
           metric_pairs=",".join(f"{fid[i + 1]}:{fid[i]}" for i in (0, 2)),
           average_column=False, labels={})
  t.update(kw)
  return ml_collections.ConfigDict(t)


# The peers of each case (``metrics.json["fidelity_reference"]`` rows) in the regimes table.
PEERS = {"shared_feature": ("least_squares", "prior_weights", "planted"),
         "filter": ("least_squares", "least_squares_nonnegative", "gradient_x_input",
                    "integrated_gradients", "prior_weights")}
# Peers each explainer variant is paired with (explainer − peer, per run, then over seeds).
PAIRED_PEERS = {"shared_feature": ("least_squares",),
                "filter": ("least_squares", "gradient_x_input")}
NAMES = {"baseline": "explainer, baseline", "prior": "explainer, prior",
         "ls_start": "explainer, least-squares start", "faithful": "explainer, faithful",
         "least_squares": "least squares (one α)",
         "least_squares_nonnegative": "least squares, α ≥ 0", "prior_weights": "α = w",
         "gradient_x_input": "gradient × input", "integrated_gradients": "integrated gradients",
         "planted": "planted rule"}
IRC, DEV = "interventional_rank_correlation", "relative_deviation"


def label_key(path: str) -> str:
  """A metric path as a ``table.labels`` key (ConfigDict keys hold no dots): ``a/b/c``."""
  return path.replace(".", "/")


def regimes_table(case: str, variants: tuple[str, ...] = ("baseline", "prior"),
                  **kw) -> ml_collections.ConfigDict:
  """The table of the regimes study: explainers beside their peers, per regime (column).

  Rows: each variant's and each peer's interventional rank correlation and relative deviation
  (the ``fidelity`` evaluator's figures over the same scored images; a peer that is not in a
  run's metrics.json reads "–"), the performer's accuracy; paired rows prior − baseline and
  each variant − each of ``PAIRED_PEERS[case]`` (per-run differences, t-interval over seeds).

  Args:
    case: "shared_feature" (synthetic attributes) or "filter" (synthetic parts).
    variants: the explainer variants.
    **kw: table fields to override (``columns``, ``labels`` ...).
  """
  irc = lambda block, name: f"{block}.{name}.{IRC}.mean"
  dev = lambda block, name: f"{block}.{name}.{DEV}.mean"
  rows = [irc("fidelity", v) for v in variants]
  rows += [irc("fidelity_reference", p) for p in PEERS[case]]
  rows += [dev("fidelity", v) for v in variants]
  rows += [dev("fidelity_reference", p) for p in PEERS[case] if p.startswith("least_squares")]
  pairs = []
  for metric in (irc, dev):
    if "prior" in variants and "baseline" in variants:
      pairs.append(f"{metric('fidelity', 'prior')}:{metric('fidelity', 'baseline')}")
    for peer in PAIRED_PEERS[case]:
      if metric is dev and not peer.startswith("least_squares"):
        continue  # gradient × input does not predict y
      pairs += [f"{metric('fidelity', v)}:{metric('fidelity_reference', peer)}" for v in variants]
  labels = {}
  for name in list(variants) + list(PEERS[case]):
    who = NAMES.get(name, name)
    for block in ("fidelity", "fidelity_reference"):
      labels[label_key(irc(block, name))] = f"rank corr. with Δ{render.PART}{who}"
      labels[label_key(dev(block, name))] = f"rel. deviation{render.PART}{who}"
  labels[label_key("performer.accuracy")] = "performer accuracy (%)"
  t = dict(columns="", rows="", variants=",".join(variants), variant_metrics="accuracy",
           metrics=",".join(["performer.accuracy"] + rows), paired="", metric_pairs=",".join(pairs),
           average_column=False, labels=labels)
  t.update(kw)
  return ml_collections.ConfigDict(t)


def slurm(**kw) -> ml_collections.ConfigDict:
  s = dict(partition="", time="01:00:00", mem="", account="", gpus_per_task=0, cpus_per_task=4,
           setup="")
  s.update(kw)
  return ml_collections.ConfigDict(s)
