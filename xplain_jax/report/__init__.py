"""The report: tables, figures and an HTML/Markdown page of a finished run.

It reads what the pipeline's evaluators wrote into a workdir (metrics,
per-image contributions, entropies, the chosen reasons, names) and never
trains nor recomputes a metric; it needs only numpy, matplotlib (Agg backend)
and json.

    from xplain_jax import report
    report.write_report("runs/synthetic")          # -> runs/synthetic/report.html

The `plot_*` functions of `report.figures` take plain arrays and can be
reused by research code.
"""

from xplain_jax.report.figures import plot_contribution_distribution
from xplain_jax.report.figures import plot_filter_regions
from xplain_jax.report.figures import plot_gt_scatter
from xplain_jax.report.figures import plot_image_explanation
from xplain_jax.report.figures import plot_part_contributions
from xplain_jax.report.training_figures import plot_prior_weight
from xplain_jax.report.training_figures import plot_training_curves
from xplain_jax.report.html import build_sections
from xplain_jax.report.html import write_report
from xplain_jax.report.io import load_metrics
from xplain_jax.report.tables import concept_label
from xplain_jax.report.tables import metrics_table
from xplain_jax.report.tables import name_reasons
