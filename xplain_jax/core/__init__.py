"""The method's maths: pure functions of arrays and callables (jax and numpy only).

``concepts`` (y_i), ``priors`` (Case-1 and Case-2 prior weights w), ``losses`` (distillation,
prior loss, λ(t) = β/√t), ``metrics`` (entropy, deviation, threshold accuracy), ``explain``
(ŷ = Σ α_i y_i + b), ``shapes`` (the one-line shape checks), ``gradcam`` and ``parts`` (Case 1's
part annotations). Nothing here imports training, data, evaluation, report or run code.
"""
