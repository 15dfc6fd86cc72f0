"""sched-env agents layer."""
