"""sched-env baselines layer."""
