"""sched-env service layer."""
