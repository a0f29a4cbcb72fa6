"""What the frozen performer gives the explainer: feature map, y, concepts y_i and priors w.

``make_featurizer`` returns a pure function ``featurize(perf_variables, images) -> dict`` for
the experiment's case; it is jitted inside the explainer step (uncached mode) or run once per
image to fill the feature cache (``xplain_jax.train.cache``).
"""

from __future__ import annotations

from typing import Callable


from xplain_jax import featurizers
from xplain_jax.errors import ConfigError


def make_featurizer(perf_module, spec, *, prior_method: str = "jvp",
                    clip_prior: bool = False, feature: str = "top_conv") -> Callable:
  """The featurizer of ``spec.case``.

  Args:
    perf_module: a performer (``models.get_performer``) with ``head`` and ``from_fc6``.
    spec: the experiment's ``xplain_jax.data.Spec``.
    prior_method: Case 2 route, "jvp" or "jacrev" (``priors.shared_feature_prior``).
    clip_prior: Case 1: clip ``w_i`` at 0 (Experiment 1).
    feature: the performer intermediate fed to the weight network g (its input map).

  Returns:
    ``featurize(perf_variables, images [B,S,S,3]) -> {"feat": [B,H,W,C], "y": [B],
    "y_i": [B,n], "w": [B,n]}``, all float32 and free of gradients into the performer.
  """
  t = spec.target_index
  if spec.case == "shared_feature":

    def featurize(variables, images):
      def features(im):
        _, inter = perf_module.apply(variables, im, train=False)
        return inter[feature], inter["fc6"]
      head = lambda h: perf_module.apply(variables, h, method=perf_module.from_fc6)
      return featurizers.shared_feature_featurizer(
          features, head, target=t, concepts=spec.concept_indices, method=prior_method)(images)

  elif spec.case == "filter":

    def featurize(variables, images):
      _, inter = perf_module.apply(variables, images, train=False)
      head = lambda x: perf_module.apply(variables, x, method=perf_module.head)[0][:, t]
      return featurizers.filter_featurizer(
          lambda _: inter["top_conv"], head, clip_prior=clip_prior,
          weight_net_input=lambda _: inter[feature])(images)

  else:
    raise ConfigError(f"unknown explainer case {spec.case!r}; use 'shared_feature' or 'filter'.")
  return featurize
