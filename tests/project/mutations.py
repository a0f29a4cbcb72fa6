"""A mutation rerun: each mutation below must be caught by an assertion of the fast subset.

Not a test module (pytest does not collect it). Run it from the repository root:

  python tests/project/mutations.py              # every mutation
  python tests/project/mutations.py --only NAME  # one (repeatable)
  python tests/project/mutations.py --list

It copies the working tree (``git ls-files``: tracked and untracked, not ignored) to a temporary
folder, so that nothing else running from the checkout sees a mutated file, and checks there
that the tests pass unmutated. Then, for each mutation, it replaces one exact snippet of one file
of the copy, runs ``python -m pytest -q -x -m "not slow" -p no:cacheprovider <its tests>`` there
and restores the file byte for byte (in a ``finally``, so also on Ctrl-C or a timeout). It
refuses to start while ``git status --porcelain`` shows a file it would mutate as modified (the
snippets are those of the committed code). It prints one row per
mutation: caught by an assertion (``assert``, ``np.testing``, ``pytest.raises``' "DID NOT
RAISE"), caught only by a crash (another exception, or a timeout), or survived; and exits 1 if
any survived, 2 if a snippet is no longer found exactly once (the code moved: update the list).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 600


@dataclasses.dataclass(frozen=True)
class Mutation:
  """One mutation: ``old`` (exactly once in ``path``) becomes ``new``; ``tests`` must fail."""

  name: str
  path: str
  old: str
  new: str
  tests: tuple[str, ...]


T_IDENTITY = "tests/spec/test_stages_identity.py::"
T_START = "tests/train/test_start.py::"
T_FID = "tests/evaluators/test_fidelity.py::"
T_PAIRED = "tests/study/test_paired.py::"
T_STUDY = "tests/study/test_study.py::"
T_STATS = "tests/study/test_stats.py::"
T_EFFECTS = "tests/fidelity/test_effects.py::"
T_SCORES = "tests/fidelity/test_scores.py::"
T_PEERS = "tests/fidelity/test_peers.py::"
T_LOSSES = "tests/core/test_losses.py::"
T_RULES = "tests/data/test_synthetic_rules.py::"
T_GUARDS = "tests/api/test_guards.py::"

MUTATIONS = (
    # --- spec/stages.py
    Mutation("stages: consistency_target out of FEATURIZER_FIELDS", "xplain_jax/spec/stages.py",
             '"explainer.consistency_target", "explainer.shapley_permutations")',
             '"explainer.shapley_permutations")',
             (T_IDENTITY + "test_a_feature_cache_of_one_consistency_target_is_not_reused_for_"
              "another",)),
    Mutation("stages: VARIANT_IGNORES empty", "xplain_jax/spec/stages.py",
             "VARIANT_IGNORES = {name: tuple(f for f in VARIANT_FIELDS if f not in v.reads())",
             "VARIANT_IGNORES = {name: tuple(f for f in VARIANT_FIELDS if False)",
             (T_START + "test_the_variant_table_decides_what_each_variant_reads",
              T_START + "test_a_new_beta_retrains_exactly_the_variants_that_read_it")),
    Mutation("stages: parse_groups accepts an empty config.stages", "xplain_jax/spec/stages.py",
             "  if bad or not names:", "  if bad:",
             (T_IDENTITY + "test_empty_stages_are_refused_in_one_line",)),
    Mutation("stages: _within without the '.' boundary", "xplain_jax/spec/stages.py",
             'any(field == p or field.startswith(p + ".") for p in prefixes)',
             "any(field.startswith(p) for p in prefixes)",
             (T_IDENTITY + "test_a_run_only_field_does_not_hide_fields_it_is_a_prefix_of",)),
    Mutation("stages: the variant's name left out of its identity", "xplain_jax/spec/stages.py",
             '    out["variant"] = stage.split("_", 1)[1]\n    for field in VARIANT_IGNORES.get('
             'out["variant"], ()):',
             '    for field in VARIANT_IGNORES.get(stage.split("_", 1)[1], ()):',
             (T_IDENTITY + "test_two_variants_that_read_the_same_fields_keep_apart_identities",)),
    Mutation("stages: a state with no recorded identity is reused", "xplain_jax/spec/stages.py",
             "  if recorded == current:\n    return",
             "  if recorded in (current, None, \"\"):\n    return",
             (T_IDENTITY + "test_a_state_with_no_recorded_identity_is_never_reused",)),
    Mutation("stages: plan leaves out the stages an asked one needs", "xplain_jax/spec/stages.py",
             "if stage.group in groups or needed.intersection(stage.produces):",
             "if stage.group in groups:",
             ("tests/spec/test_stages.py::test_the_stage_graph_comes_from_the_registry",)),
    # --- evaluators/fidelity.py (the API's add_fidelity and the pipeline's evaluator)
    Mutation("fidelity API: given effects unchecked", "xplain_jax/evaluators/fidelity.py",
             "if delta.shape != (n_img, n) or not np.all(np.isfinite(delta)):", "if False:",
             (T_FID + "test_given_effects_are_refused_by_their_own_check_before_scoring",)),
    Mutation("fidelity API: Case 1 reads feat, not the x map", "xplain_jax/evaluators/fidelity.py",
             'x = np.asarray(feats.get("x", feats["feat"]), np.float32)',
             'x = np.asarray(feats["feat"], np.float32)',
             (T_FID + "test_case1_deletes_filters_of_the_x_map_not_of_what_g_reads",)),
    Mutation("evaluator: columns= not passed to rendering_effects",
             "xplain_jax/evaluators/fidelity.py",
             "y=y_fact, batch_size=bs,\n                                       columns=columns)",
             "y=y_fact, batch_size=bs)",
             (T_FID + "test_fidelity_evaluator_case2_honours_a_swapped_renderer_map",
              T_FID + "test_fidelity_evaluator_case2_honours_a_permuted_renderer_map")),
    # --- fidelity/effects.py, scores.py, peers.py
    Mutation("effects: rendering_effects ignores columns", "xplain_jax/fidelity/effects.py",
             "images = counterfactuals(indices[rows], int(columns[k]))",
             "images = counterfactuals(indices[rows], k)",
             (T_FID + "test_rendering_effects_toggle_the_mapped_renderer_concept",)),
    Mutation("effects: filter deletion's sign flipped", "xplain_jax/fidelity/effects.py",
             "return (y[:, None] - ys.T).astype(jnp.float32)",
             "return (ys.T - y[:, None]).astype(jnp.float32)",
             (T_EFFECTS + "test_filter_deletion_matches_closed_form_for_a_linear_head",)),
    Mutation("scores: the bootstrap never draws the last image", "xplain_jax/fidelity/scores.py",
             "values[rng.integers(0, values.size, size=",
             "values[rng.integers(0, max(values.size - 1, 1), size=",
             (T_SCORES + "test_blocks_give_the_one_draw_interval_bit_for_bit",)),
    Mutation("scores: paired difference's sign flipped", "xplain_jax/fidelity/scores.py",
             "out = mean_interval(a - b, **kwargs)", "out = mean_interval(b - a, **kwargs)",
             (T_EFFECTS + "test_paired_difference_interval_says_when_zero_is_excluded",)),
    Mutation("peers: integrated_gradients accepts steps=0", "xplain_jax/fidelity/peers.py",
             "  if steps < 1:\n    raise ConfigError(f\"integrated gradients",
             "  if False:\n    raise ConfigError(f\"integrated gradients",
             (T_FID + "test_integrated_gradients_refuses_fewer_than_one_step",)),
    Mutation("scores: an effect at the threshold counted as one", "xplain_jax/fidelity/scores.py",
             "counted = np.abs(delta) > threshold", "counted = np.abs(delta) >= threshold",
             (T_SCORES + "test_sign_agreement_skips_effects_at_the_threshold_and_zero_effects",
              T_EFFECTS + "test_sign_agreement_counts_only_effects_above_threshold")),
    Mutation("effects: deletion_counts one point short", "xplain_jax/fidelity/effects.py",
             "np.linspace(0, n, min(num_steps, n) + 1)", "np.linspace(0, n, min(num_steps, n))",
             (T_EFFECTS + "test_deletion_curve_of_a_linear_head_follows_the_contributions",
              T_EFFECTS + "test_deletion_area_closed_forms")),
    Mutation("peers: integrated gradients at the right end, not the midpoint",
             "xplain_jax/fidelity/peers.py",
             "t = (s.astype(x.dtype) + 0.5) / steps", "t = (s.astype(x.dtype) + 1.0) / steps",
             (T_PEERS + "test_integrated_gradients_complete_on_a_nonlinear_head",
              T_PEERS + "test_gradient_x_input_and_integrated_gradients_on_a_linear_head_are_w_"
              "times_x")),
    # --- core/losses.py
    Mutation("losses: consistency target loses its stop_gradient", "xplain_jax/core/losses.py",
             "diff = contrib - jax.lax.stop_gradient(target)", "diff = contrib - target",
             (T_FID + "test_consistency_loss_passes_no_gradient_into_its_target",)),
    Mutation("losses: consistency_loss ignores its mask", "xplain_jax/core/losses.py",
             "return masked_mean(jnp.sum(jnp.square(diff), axis=-1), mask)",
             "return masked_mean(jnp.sum(jnp.square(diff), axis=-1), None)",
             ("tests/train/test_explainer_faithful.py::test_consistency_loss_is_zero_at_the_"
              "targets_and_its_gradient_points_to_them",)),
    # --- study/paired.py
    Mutation("paired: the last matched pair dropped", "xplain_jax/study/paired.py",
             "for k in sorted(side[a]) if k in side[b]]",
             "for k in sorted(side[a]) if k in side[b]][:-1]",
             (T_PAIRED + "test_a_numeric_axis_pairs_every_finished_run_including_the_last",)),
    Mutation("paired: numeric axis values not converted", "xplain_jax/study/paired.py",
             "    return float(text) == float(value)", "    return False",
             (T_PAIRED + "test_pairs_reads_the_command_lines_numbers_as_the_studys",
              T_PAIRED + "test_a_numeric_axis_pairs_every_finished_run_including_the_last")),
    Mutation("paired: an oddly shaped study.json read", "xplain_jax/study/paired.py",
             "  if not shaped:\n", "  if False:\n",
             (T_PAIRED + "test_read_study_refuses_an_odd_shape_itself",
              T_PAIRED + "test_an_oddly_shaped_study_json_is_refused_in_one_line")),
    Mutation("paired: a misspelt metric accepted", "xplain_jax/study/paired.py",
             "    if metric not in known:", "    if False:",
             (T_PAIRED + "test_a_misspelt_or_empty_metric_is_refused_in_one_line",)),
    Mutation("paired: an empty --metrics accepted", "xplain_jax/study/paired.py",
             "  if not metrics:\n", "  if False:\n",
             (T_PAIRED + "test_a_misspelt_or_empty_metric_is_refused_in_one_line",)),
    Mutation("paired: --a equal to --b accepted", "xplain_jax/study/paired.py",
             "  if a == b:\n", "  if False:\n", (T_PAIRED + "test_a_equal_to_b_is_refused",)),
    Mutation("paired: the missing pairs' test inverted", "xplain_jax/study/paired.py",
             "if not (_finite(u) and _finite(v))]", "if _finite(u) and _finite(v)]",
             (T_PAIRED + "test_nan_pairs_are_left_out_and_counted",)),
    Mutation("paired: the table's difference unsigned", "xplain_jax/study/paired.py",
             "render_lib.cell_text(s, signed=True)", "render_lib.cell_text(s, signed=False)",
             (T_PAIRED + "test_pairs_by_seed_and_matches_a_hand_paired_t_test",)),
    # --- study/stats.py
    Mutation("stats.paired keeps pairs whose second value is NaN", "xplain_jax/study/stats.py",
             "and math.isfinite(float(x)) and math.isfinite(float(y))]",
             "and math.isfinite(float(x))]",
             (T_PAIRED + "test_paired_drops_nan_on_either_side_and_gives_no_p_value_for_equal_"
              "differences", T_PAIRED + "test_nan_pairs_are_left_out_and_counted")),
    Mutation("stats.paired: the zero-spread guard of the p-value removed",
             "xplain_jax/study/stats.py",
             'if out["n"] >= 2 and out["std"]:', 'if out["n"] >= 2:',
             (T_PAIRED + "test_paired_drops_nan_on_either_side_and_gives_no_p_value_for_equal_"
              "differences",)),
    Mutation("stats.paired: the difference's sign flipped", "xplain_jax/study/stats.py",
             "out = summarize([x - y for x, y in keep]", "out = summarize([y - x for x, y in keep]",
             (T_STUDY + "test_paired_difference_and_p_value_df1",)),
    Mutation("stats.summarize: the t quantile's degrees of freedom off by one",
             "xplain_jax/study/stats.py",
             "sps.t.ppf(0.5 + confidence / 2, n - 1)", "sps.t.ppf(0.5 + confidence / 2, n)",
             (T_STUDY + "test_summarize_matches_closed_form_t_quantiles",)),
    # --- train/start.py
    Mutation("start: training_concepts drops the last image", "xplain_jax/train/start.py",
             "np.arange(lo, min(lo + batch_size, len(source)))",
             "np.arange(lo, min(lo + batch_size, len(source) - 1))",
             (T_START + "test_training_concepts_keeps_the_last_image_of_every_batching",
              T_START + "test_training_concepts_featurizes_every_image_of_a_source_without_"
              "columns")),
    Mutation("start: training_concepts drops the last partial batch", "xplain_jax/train/start.py",
             "for lo in range(0, len(source), batch_size):",
             "for lo in range(0, len(source) - batch_size + 1, batch_size):",
             (T_START + "test_training_concepts_featurizes_every_image_of_a_source_without_"
              "columns",)),
    Mutation("start: compose_alpha ignores alpha_scale", "xplain_jax/train/start.py",
             "raw = jnp.asarray(raw, jnp.float32) * alpha_scale",
             "raw = jnp.asarray(raw, jnp.float32)",
             (T_START + "test_compose_alpha_scales_gs_output_under_every_start",)),
    Mutation("start: the softplus start's floor removed", "xplain_jax/train/start.py",
             "inverse_softplus(np.maximum(alpha_ls, floor))", "inverse_softplus(alpha_ls)",
             (T_START + "test_a_concept_the_positive_fit_sets_to_zero_starts_at_the_floor",)),
    Mutation("start: the ridge refit ignores the chosen strength", "xplain_jax/train/start.py",
             "beta = _ridge_solve(xs, yc, strength * len(yc), positive)\n  alpha = beta / sc",
             "beta = _ridge_solve(xs, yc, 0.0 * len(yc), positive)\n  alpha = beta / sc",
             (T_START + "test_the_ridge_start_never_starts_at_cancelling_contributions",)),
    Mutation("start: the target start ignores y(empty)", "xplain_jax/train/start.py",
             "  if empty_score is not None and np.all(np.isfinite(empty_score)):",
             "  if False:",
             (T_START + "test_b_starts_at_the_score_of_the_zeroed_map",)),
    Mutation("start: the scaled bias moves in units of 1", "xplain_jax/train/start.py",
             "scale = spread if np.isfinite(spread) and spread > 0 else 1.0", "scale = 1.0",
             (T_START + "test_a_scaled_bias_moves_in_units_of_ys_spread",)),
    Mutation("start: target_fit's denominator squared twice", "xplain_jax/train/start.py",
             "den = np.sum(y_i * y_i, axis=0)", "den = np.sum(y_i * y_i * y_i * y_i, axis=0)",
             (T_START + "test_the_target_start_is_each_concepts_own_fit_of_its_target",)),
    # --- data/synthetic_rules.py
    Mutation("synthetic_rules: context sign flip ignores the border",
             "xplain_jax/data/synthetic_rules.py",
             "terms[t, k] = v[t, k] * signs[CONCEPT_NAMES.index(guard)] * signs[k]",
             "terms[t, k] = v[t, k] * signs[k]",
             (T_RULES + "test_gt_contrib_and_labels_follow_the_hand_computed_rule",)),
    Mutation("synthetic_rules: the upper row is row 1", "xplain_jax/data/synthetic_rules.py",
             "float(int(cells[k]) // GRID == 0)", "float(int(cells[k]) // GRID == 1)",
             (T_RULES + "test_gt_contrib_and_labels_follow_the_hand_computed_rule",)),
    # --- api/guards.py
    Mutation("guards: labels other than 0/1 accepted", "xplain_jax/api/guards.py",
             "  if not set(values.tolist()) <= {0, 1}:  # NaN is neither", "  if False:",
             (T_GUARDS + "test_labels_other_than_0_or_1_are_refused",)),
    Mutation("guards: NaN features accepted", "xplain_jax/api/guards.py",
             "    if not np.all(np.isfinite(f[k])):", "    if False:",
             (T_GUARDS + "test_features_holding_nan_are_refused_naming_the_key_and_image",
              "tests/api/test_api.py::test_bad_feature_arrays_get_one_line")),
    Mutation("guards: a bool passes as an integer setting", "xplain_jax/api/guards.py",
             "if isinstance(value, bool) or not isinstance(value, numbers.Integral)",
             "if not isinstance(value, numbers.Integral)",
             (T_GUARDS + "test_training_settings_of_a_wrong_type_or_range_get_one_line",)),
)


def _dirty(paths) -> list[str]:
  """The paths among ``paths`` that ``git status --porcelain`` shows as changed."""
  out = subprocess.run(["git", "status", "--porcelain", "--", *sorted(set(paths))], cwd=ROOT,
                       capture_output=True, text=True, check=True).stdout
  return [line[3:] for line in out.splitlines() if line.strip()]


def _first_failure(xml_path: str) -> tuple[str, str, str] | None:
  """``(test id, kind, message)`` of the first failing test in a junit XML report."""
  try:
    tree = ET.parse(xml_path)
  except (OSError, ET.ParseError):
    return None
  for case in tree.iter("testcase"):
    for child in case:
      if child.tag in ("failure", "error"):
        message = (child.get("message") or "").strip()
        assertion = child.tag == "failure" and message.startswith(("AssertionError", "Failed:",
                                                                   "assert "))
        test = f"{case.get('classname', '')}::{case.get('name', '')}"
        return test, "assertion" if assertion else "crash", message.splitlines()[0][:120] if (
            message) else child.tag
  return None


def copy_tree(dest: str) -> str:
  """Copies the working tree's files (tracked and untracked, not ignored) under ``dest``."""
  files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split("\0")
  for rel in filter(None, files):
    src = os.path.join(ROOT, rel)
    if os.path.isfile(src):
      os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
      shutil.copy2(src, os.path.join(dest, rel))
  return dest


def _pytest(tree: str, tests, xml_path: str):
  """``(exit status or None on a timeout, output tail)`` of the fast tests ``tests`` in ``tree``."""
  cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow", "-p", "no:cacheprovider",
         f"--junitxml={xml_path}", *tests]
  try:
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, timeout=TIMEOUT_S,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
  except subprocess.TimeoutExpired:
    return None, "timeout"
  return proc.returncode, (proc.stdout + proc.stderr)[-400:]


def run_one(m: Mutation, tree: str) -> dict:
  """Applies ``m`` in ``tree``, runs its tests, restores the file; the outcome as a dict."""
  path = os.path.join(tree, m.path)
  with open(path, "rb") as f:
    original = f.read()
  text = original.decode("utf-8")
  if text.count(m.old) != 1:
    return dict(name=m.name, outcome="snippet not found once", test="", why=m.path, seconds=0.0)
  mutated = text.replace(m.old, m.new).encode("utf-8")
  start = time.time()
  with tempfile.TemporaryDirectory() as tmp:
    xml_path = os.path.join(tmp, "report.xml")
    try:
      with open(path, "wb") as f:
        f.write(mutated)
      rc, tail = _pytest(tree, m.tests, xml_path)
    finally:
      with open(path, "wb") as f:
        f.write(original)
    seconds = time.time() - start
    if rc is None:
      return dict(name=m.name, outcome="crash", test="", why=f"timeout {TIMEOUT_S}s",
                  seconds=seconds)
    if rc == 0:
      return dict(name=m.name, outcome="survived", test="", why="", seconds=seconds)
    if rc in (4, 5):  # usage error / no tests collected: the list is stale
      return dict(name=m.name, outcome="no tests ran", test=" ".join(m.tests),
                  why=tail.strip().splitlines()[-1] if tail.strip() else "", seconds=seconds)
    found = _first_failure(xml_path)
    if found is None:
      return dict(name=m.name, outcome="crash", test="", why=tail.strip()[-120:],
                  seconds=seconds)
    test, kind, why = found
    return dict(name=m.name, outcome=kind, test=test, why=why, seconds=seconds)


def _raise_interrupt(signum, frame):
  del signum, frame
  raise KeyboardInterrupt


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", action="append", default=[],
                      help="run only the mutations whose name contains this text (repeatable)")
  parser.add_argument("--list", action="store_true", help="list the mutations and exit")
  parser.add_argument("--no-baseline", action="store_true",
                      help="skip the check that the tests pass unmutated")
  args = parser.parse_args(argv)
  chosen = [m for m in MUTATIONS if not args.only or any(o in m.name for o in args.only)]
  if args.list:
    for m in chosen:
      print(f"{m.name}  [{m.path}]")
    return 0
  if not chosen:
    print(f"no mutation matches {args.only}", file=sys.stderr)
    return 2
  dirty = _dirty(m.path for m in chosen)
  if dirty:
    print(f"refusing to start: {dirty} modified; commit or restore them first "
          "(each mutated file is restored to its committed bytes).", file=sys.stderr)
    return 2
  signal.signal(signal.SIGTERM, _raise_interrupt)
  rows = []
  with tempfile.TemporaryDirectory(prefix="mutations_") as tmp:
    tree = copy_tree(os.path.join(tmp, "tree"))
    if not args.no_baseline:
      tests = sorted({t for m in chosen for t in m.tests})
      rc, tail = _pytest(tree, tests, os.path.join(tmp, "baseline.xml"))
      if rc != 0:
        print(f"the tests fail without a mutation (exit {rc}); fix them first:\n{tail}",
              file=sys.stderr)
        return 2
      print(f"baseline: {len(tests)} test ids pass unmutated", flush=True)
    for m in chosen:
      row = run_one(m, tree)
      rows.append(row)
      print(f"{row['outcome']:>24}  {m.name}  ({row['seconds']:.0f}s) {row['test']} "
            f"{row['why']}", flush=True)
  labels = {"assertion": "caught by assertion", "crash": "caught only by a crash",
            "survived": "survived"}
  print("\n| mutation | result | first failing test |\n|---|---|---|")
  for r in rows:
    print(f"| {r['name']} | {labels.get(r['outcome'], r['outcome'])} | {r['test']} |")
  counts = {k: sum(r["outcome"] == k for r in rows) for k in labels}
  other = len(rows) - sum(counts.values())
  print(f"\n{len(rows)} mutations: {counts['assertion']} caught by assertion, "
        f"{counts['crash']} only by a crash, {counts['survived']} survived"
        + (f", {other} not run (stale snippet or test id)" if other else ""))
  if other:
    return 2
  return 1 if counts["survived"] else 0


if __name__ == "__main__":
  sys.exit(main())
