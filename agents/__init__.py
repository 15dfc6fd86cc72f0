"""Learned deciders (planned; see ../shared/ARCHITECTURE.md): MaskablePPO training with a
size-agnostic per-job policy, TensorBoard logs and checkpoints, inference and the CP-SAT hybrid.

Not implemented yet. Today, train sb3-contrib's MaskablePPO directly on ``sched_env`` (README).
"""
