"""The run's spine: the config check (``validate``, ``validate_evals``), the workdir and its
identity checks (``workdir``, ``validate_workdir``), the command line (``command``), the
sanity-check stage (``sanity``) and the pipeline that sequences check → plan → stages →
evaluate → report (``pipeline``). It is the one place that knows the order of stages;
``launch/run.py`` calls ``pipeline.train_and_evaluate``."""
