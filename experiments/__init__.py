"""sched-env experiments layer."""
