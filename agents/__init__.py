"""Learned deciders on the sched-env simulator (torch and SB3 for training; ONNX Runtime alone
for inference):

* ``agents.policy``: :class:`JobShopPolicy`, a size-agnostic sb3-contrib maskable actor-critic
  (per-job scores with shared weights after attention over the jobs; pooled critic);
* ``agents.train``: ``sched-env train CONFIG.yaml``: self-labeling, MaskablePPO, PPO, A2C, DQN,
  TensorBoard, checkpoints, validation-chosen ``best.zip``, ``--resume``;
* ``agents.loading``: ``load_policy`` (SB3 zip or ONNX, or a shipped model);
* ``agents.rollouts``: greedy and best-of-K rollouts in the batched envs, within a deadline;
* ``agents.deciders``: the ``policy`` deciders (``policy``, ``policy:K``, ``policy@PATH``);
* ``agents.onnx``: ``sched-env export-onnx`` (masking inside the graph);
* ``agents.hybrid``: ``hybrid:SECONDS``, rule and policy plans improved by the tabu search;
* ``agents/models``: the shipped static-shop and dynamic-shop policies.

Nothing here is imported by ``sched_env`` or ``baselines``: the deciders join the registry
through the ``sched_env.deciders`` entry points.
"""
