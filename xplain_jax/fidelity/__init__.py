"""Fidelity of an explanation to the performer itself: effects, scores, peers, sanity check.

The explainer says concept k contributed ``c_k = α_k y_k`` to the performer's score y of an
image. This package measures what the performer actually does when concept k is taken away
(``effects``: ``Δ_k = y(I) − y(I with concept k toggled)``), scores any contributions against it
per image (``scores``), builds the peers scored the same way (``peers``: least squares, α = w,
gradient × input, integrated gradients, chance), puts it all together from arrays and callables
(``compare``) and holds the model-randomisation sanity check (``sanity``).

The package's public names are re-exported here: ``fidelity.filter_deletion_effects(...)``,
``fidelity.summarize(...)``, ``fidelity.least_squares_alpha(...)``.
"""

from xplain_jax.fidelity.effects import (deletion_area, deletion_counts, deletion_curve,
                                         filter_deletion_effects, filter_shapley_effects,
                                         order_by, random_order,
                                         renderer_columns, rendering_effects)
from xplain_jax.fidelity.scores import (gt_rank_correlation_per_image,
                                        interventional_rank_correlation, mean_interval,
                                        paired_difference_interval, sign_agreement, summarize)
from xplain_jax.fidelity.peers import (gradient_x_input, integrated_gradients,
                                       least_squares_alpha, shuffled_alpha)
