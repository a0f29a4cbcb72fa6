"""Explain your own model: featurize a dataset, fit an explainer, evaluate it, write a report.

No config and no workdir layout are needed; the pipeline's stages call the same functions
(``train.explainer.fit_weight_net``, ``evaluators.explainer.evaluate_arrays``). A complete Case-2
example (``model``, ``variables``, ``images`` and ``labels`` are the user's)::

    from xplain_jax import api
    from xplain_jax.train import featurizers

    def features(images):                     # (map for g, shared feature h)
      _, inter = model.apply(variables, images, train=False)
      return inter["conv"], inter["hidden"]
    head = lambda h: model.apply(variables, h, method=model.head)   # h -> logits [B,K]
    fz = featurizers.shared_feature_featurizer(features, head, target=0, concepts=[1, 2, 3])
    data = api.featurize_dataset(fz, images)
    explainer = api.fit_explainer(data, case="shared_feature")
    print(api.evaluate({"prior": explainer}, data, labels=labels))
    print(explainer.explain(data["feat"][:2], data["y_i"][:2], names=["a", "b", "c"]))
    api.write_report("report_dir", {"prior": explainer}, data, labels=labels)

Every input is checked before any work (``api.guards``: one-line ``ConfigError``s), and a fit
into a ``workdir`` is keyed by its run identity (another fit there is refused; the same one
loads in about a second).

References:
  docs/method.md sections 1-5.
"""

from xplain_jax.api.evaluation import FIDELITY_DEFAULTS, evaluate, write_report
from xplain_jax.api.fit import (CASES, FEATURE_KEYS, WEIGHT_NET_SIZES, Explainer, Features,
                                default_weight_net, featurize_dataset, fit_explainer,
                                variant_settings)

__all__ = ["CASES", "FEATURE_KEYS", "FIDELITY_DEFAULTS", "WEIGHT_NET_SIZES", "Explainer",
           "Features", "default_weight_net", "evaluate", "featurize_dataset", "fit_explainer",
           "variant_settings", "write_report"]
