"""Studies: grids of ordinary runs, repeated over seeds, aggregated with confidence intervals.

``grid`` expands a study config into runs and decides which share a performer, ``runner``
runs them (sequentially, as parallel workers, resuming), ``aggregate`` and ``stats`` turn their
``metrics.json`` files into table cells with 95 % intervals and paired differences, ``render``
writes study.md / study.html / plots, ``slurm`` writes a job array, ``core`` ties them together.
"""
