"""Evaluators chosen by name, as big_vision has them: one module each, one config block each.

An evaluator is a module of this package with ``evaluate(ctx: EvalContext, cfg) -> EvalOutput``;
``cfg`` is its block ``config.evals.<name>`` (e.g. ``config.evals.fidelity``), which holds every
evaluation setting it reads and, but for "explainer" (always run), an ``enabled`` field saying
whether it runs. Their outputs are merged and written once (``common.write_outputs``).

  explainer  the performer and each explainer variant on the test split (``explainer.py``)
  parts      filters as object parts, Grad-CAM, part selectivity (``parts.py``; parts configs)
  fidelity   each explainer and its peers against the performer's own effects (``fidelity.py``)
  sanity     model randomisation of the performer (``sanity.py``)

A new metric family plugs in as a module here with ``evaluate(ctx, cfg)`` and a block of its
name in ``config_base.EVALS`` (``EVALUATORS`` is read from there).
"""

from __future__ import annotations

import importlib
import time

from xplain_jax.errors import ConfigError
from xplain_jax.spec import config_base
from xplain_jax.evaluators.common import (  # noqa: F401  the package's names
    EvalContext, EvalOutput, merge, predict_alphas, write_outputs)

# name -> module of xplain_jax.evaluators holding ``evaluate(ctx, cfg)``, in running order: the
# blocks of config_base.EVALS, each evaluator in the module of its name.
EVALUATORS = {name: name for name in config_base.EVALS}


def enabled(config) -> tuple[str, ...]:
  """The evaluators that run, in ``EVALUATORS`` order: "explainer" and every other one whose
  block ``config.evals.<name>`` is there with ``enabled`` True.

  Raises:
    ConfigError: a block of ``config.evals`` no evaluator reads, or one missing "explainer".
  """
  blocks = tuple(config.evals.keys())
  unknown = [b for b in blocks if b not in EVALUATORS]
  if unknown or "explainer" not in blocks:
    raise ConfigError(f"config.evals has blocks {list(blocks)}; each must name an evaluator of "
                      f"{list(EVALUATORS)} and 'explainer' must be there (config_base.evals "
                      "builds them).")
  return tuple(n for n in EVALUATORS if n in blocks and
                 (n == "explainer" or bool(config.evals[n].enabled)))


def run_evaluators(names, ctx: EvalContext) -> EvalOutput:
  """Runs the named evaluators in order, each on its block ``ctx.config.evals.<name>``, and
  merges their outputs (``common.merge``); ``meta["evaluator_seconds"]`` holds each one's wall
  time."""
  outputs, seconds = [], {}
  for name in names:
    if name not in EVALUATORS:
      raise ConfigError(f"unknown evaluator {name!r}; use one of {list(EVALUATORS)}.")
    module = importlib.import_module(f"{__name__}.{EVALUATORS[name]}")
    start = time.perf_counter()
    outputs.append(module.evaluate(ctx, ctx.config.evals[name]))
    seconds[name] = round(time.perf_counter() - start, 2)
  merged = merge(outputs)
  merged.meta["evaluator_seconds"] = seconds
  return merged
