"""Studies on sched-env: benchmark matrices (``benchmark``), env throughput (``bench_env``),
the action-set study (``action_sets``) and the ``sched-env`` command line (``cli``)."""
