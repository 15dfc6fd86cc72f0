"""A size-agnostic actor-critic for the job shop, as an sb3-contrib ``MaskableActorCriticPolicy``.

The actor scores every job from its own features with shared weights, after attention layers
over the jobs give each one context (what the other jobs need, which machines they crowd);
the critic reads the pooled job embeddings. Nothing depends on the number of jobs: a network
trained on 10x10 shops scores a 100x20 shop, and padded rows (all-zero features: jobs an
instance does not have, free slots of the dynamic shop) are kept out of the attention and the
pooling, so they never change a score.

It works on ``JobShop-v0`` (10 features) and ``DynamicJobShop-v0`` (27 features, and with
``allow_wait`` one more action: wait, scored from the pooled context). Saved and loaded by
SB3's own ``save``/``load``::

    from sb3_contrib import MaskablePPO
    from agents.policy import JobShopPolicy
    model = MaskablePPO(JobShopPolicy, env, policy_kwargs={"embed_dim": 64})
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from agents.loading import MASKED_LOGIT  # what masked actions' logits are set to, here and in exported graphs
from sched_env import compiled as K
from sched_env.dynamic import offers_wait

#: Added to the attention logits of padded rows (finite, so exported graphs stay NaN-free).
PAD_LOGIT = -1e9


class AttentionLayer(nn.Module):
    """One post-norm transformer encoder layer (multi-head self-attention over the jobs, then a
    feed-forward block), written out so the ONNX export is plain matrix algebra."""

    def __init__(self, dim: int, heads: int, ff_dim: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embed_dim={dim} must be a multiple of n_heads={heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.ReLU(), nn.Linear(ff_dim, dim))

    def forward(self, x: torch.Tensor, pad_logits: torch.Tensor) -> torch.Tensor:
        B, J, D = x.shape
        q, k, v = self.qkv(x).view(B, J, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attention = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim) + pad_logits[:, None, None, :]
        context = (attention.softmax(-1) @ v).transpose(1, 2).reshape(B, J, D)
        x = self.norm1(x + self.out(context))
        return self.norm2(x + self.ff(x))


class JobShopNet(nn.Module):
    """(jobs (B, J, F), action mask (B, A)) -> (masked logits (B, A), value (B,)); A is J, or
    J + 1 with the wait action. Works for any J."""

    def __init__(self, n_features: int, embed_dim: int = 64, n_layers: int = 2, n_heads: int = 4, ff_dim: int = 128):
        super().__init__()
        self.n_features = n_features
        self.embed = nn.Linear(n_features, embed_dim)
        self.layers = nn.ModuleList(AttentionLayer(embed_dim, n_heads, ff_dim) for _ in range(n_layers))
        self.score = nn.Sequential(nn.Linear(2 * embed_dim, ff_dim), nn.ReLU(), nn.Linear(ff_dim, 1))
        self.wait_score = nn.Sequential(nn.Linear(embed_dim, ff_dim), nn.ReLU(), nn.Linear(ff_dim, 1))
        self.value = nn.Sequential(nn.Linear(embed_dim, ff_dim), nn.ReLU(), nn.Linear(ff_dim, 1))

    def forward(
        self, jobs: torch.Tensor, mask: torch.Tensor, wait: bool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``wait``: whether the last action is the wait action (default: the mask has one
        more column than there are jobs; the ONNX export fixes it)."""
        present = jobs.abs().sum(-1) > 0
        present = present | ~present.any(-1, keepdim=True)  # an empty shop: let every row attend
        pad_logits = (~present).float() * PAD_LOGIT
        h = self.embed(jobs)
        for layer in self.layers:
            h = layer(h, pad_logits)
        weights = present.float().unsqueeze(-1)
        pooled = (h * weights).sum(1) / weights.sum(1)
        context = pooled.unsqueeze(1).expand_as(h)
        logits = self.score(torch.cat([h, context], -1)).squeeze(-1)
        if wait if wait is not None else offers_wait(jobs.shape[1], mask.shape[-1]):  # the dynamic shop's wait action
            logits = torch.cat([logits, self.wait_score(pooled)], -1)
        logits = torch.where(mask > 0, logits, torch.full_like(logits, MASKED_LOGIT))
        return logits, self.value(pooled).squeeze(-1)


class PriorityNet(nn.Module):
    """The evolved dispatcher's form as an SB3 actor-critic: each job's logit is a linear priority
    of its features whose weights the shop's context columns shift (``agents.evolve``'s network
    with no hidden units: ``jobs @ w + b + ((context @ G^T) * job columns).sum()``), the value an
    MLP of the pooled features of the jobs present. Exported, it is a priority network that the
    compiled kernels run (``agents.onnx``)."""

    def __init__(self, n_features: int, ff_dim: int = 64, **_: Any) -> None:
        super().__init__()
        self.n_features = n_features
        self.priority = nn.Linear(n_features, 1)
        self.n_job, self.n_context = K.N_DYNAMIC_JOB_FEATURES, n_features - K.N_DYNAMIC_JOB_FEATURES
        self.gates = nn.Parameter(torch.zeros(self.n_job, self.n_context)) if self.n_context > 0 else None
        self.value = nn.Sequential(nn.Linear(2 * n_features + 1, ff_dim), nn.Tanh(), nn.Linear(ff_dim, 1))

    def forward(self, jobs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if offers_wait(jobs.shape[1], mask.shape[-1]):
            raise ValueError("a priority network never waits: train it without allow_wait")
        logits = self.priority(jobs).squeeze(-1)
        if self.gates is not None:
            shift = jobs[..., self.n_job :] @ self.gates.T
            logits = logits + (shift * jobs[..., : self.n_job]).sum(-1)
        logits = torch.where(mask > 0, logits, torch.full_like(logits, MASKED_LOGIT))
        present = (jobs.abs().sum(-1, keepdim=True) > 0).float()
        count = present.sum(1)
        mean = (jobs * present).sum(1) / count.clamp(min=1.0)
        top = torch.where(present > 0, jobs, torch.full_like(jobs, -BIG)).max(1).values.clamp(min=-10.0)
        return logits, self.value(torch.cat([mean, top, count / jobs.shape[1]], -1)).squeeze(-1)

    def theta(self) -> list[float]:
        """The flat parameters of ``agents.evolve``'s priority network with no hidden units (and its
        context gates)."""
        gates = [] if self.gates is None else self.gates.detach().double().flatten().tolist()
        return [*self.priority.weight.detach().double().flatten().tolist(), float(self.priority.bias.detach()), *gates]

    def load_theta(self, theta) -> None:
        """Start as the priority network ``theta`` (no hidden units, with or without gates):
        behaviour cloning, exactly."""
        theta = np.asarray(theta, dtype=np.float64)
        with torch.no_grad():
            self.priority.weight.copy_(torch.as_tensor(theta[: self.n_features], dtype=torch.float32).view(1, -1))
            self.priority.bias.fill_(float(theta[self.n_features]))
            if self.gates is not None:
                gates = theta[self.n_features + 1 :]
                gates = gates.reshape(self.gates.shape) if gates.size else np.zeros(self.gates.shape)
                self.gates.copy_(torch.as_tensor(gates, dtype=torch.float32))


#: A large finite stand-in for infinity in masked minima (exported graphs stay NaN-free).
BIG = 1e4


def _masked_min(x: torch.Tensor, valid: torch.Tensor, dim: int) -> torch.Tensor:
    """Minimum of ``x`` over ``dim`` among the ``valid`` entries (``BIG`` where none is)."""
    return torch.where(valid, x, torch.full_like(x, BIG)).min(dim, keepdim=True).values


def _masked_mean(x: torch.Tensor, weights: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of ``x`` over ``dim`` weighted by 0/1 ``weights`` (0 where no entry counts)."""
    return (x * weights).sum(dim) / weights.sum(dim).clamp(min=1.0)


class PairShopNet(nn.Module):
    """(jobs (B, J, F), pairs (B, J, M, P), pair mask (B, J*M)) -> (masked logits (B, J*M), value (B,)):
    scores every (job, machine) pair of a flexible shop; a classic shop is the case of one pair per job.

    Three views, each size-agnostic (DANIEL's dual attention, read as jobs and machines):
    * jobs: the job features through attention layers over the jobs (as :class:`JobShopNet`);
    * pairs: the pair features (duration, machine free time, end there) with what makes a choice
      relative: each against the job's best alternative and the machine's best candidate job, and
      how many alternatives the job has and how many jobs compete for the machine;
    * machines: the mean and max of their eligible pairs' embeddings and their free time, through
      attention over the machines (HGNN's machine nodes that pool their candidate operations).
    A pair's score is an MLP over its own inputs, its job's and its machine's embeddings and the
    pooled context, its first layer split per view (per pair only the 8 inputs are multiplied).
    Padded jobs (all-zero rows) and machines with no eligible pair never change a score."""

    N_DERIVED = 8  # pair inputs: 3 features, 2 gaps to the job's best, 1 gap to the machine's best, 2 shares

    def __init__(self, n_features: int, n_pair_features: int = 3, embed_dim: int = 64, n_layers: int = 2,
                 n_heads: int = 4, ff_dim: int = 128) -> None:  # fmt: skip
        super().__init__()
        if n_pair_features != 3:
            raise ValueError(
                f"PairShopNet reads the 3 pair features of sched-env's flexible shop, got {n_pair_features}"
            )
        self.n_features, self.n_pair_features = n_features, n_pair_features
        D = embed_dim
        self.embed = nn.Linear(n_features, D)
        self.job_layers = nn.ModuleList(AttentionLayer(D, n_heads, ff_dim) for _ in range(n_layers))
        P = max(8, D // 2)  # the per-pair width: J*M pairs dominate the cost, so they get half the width
        self.pair_embed = nn.Linear(self.N_DERIVED, P)
        self.machine_embed = nn.Linear(2 * P + 2, D)
        self.machine_layers = nn.ModuleList(AttentionLayer(D, n_heads, ff_dim) for _ in range(max(1, n_layers - 1)))
        # the score MLP's first layer, split by input: (job, machine, pair inputs, context) -> P hidden units
        self.score_job, self.score_machine = nn.Linear(D, P), nn.Linear(D, P, bias=False)
        self.score_pair, self.score_context = nn.Linear(self.N_DERIVED, P, bias=False), nn.Linear(2 * D, P, bias=False)
        self.score_out = nn.Linear(P, 1)
        self.value = nn.Sequential(nn.Linear(2 * D, ff_dim), nn.ReLU(), nn.Linear(ff_dim, 1))

    def pair_inputs(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, J, M, N_DERIVED) inputs of every pair and the eligibility (B, J, M) of each."""
        eligible = pairs[..., 0] > 0  # a positive duration; a zero-length operation is scored without pair inputs
        duration, free, end = pairs[..., 0], pairs[..., 1], pairs[..., 2]
        job_best_duration = _masked_min(duration, eligible, 2)
        job_best_end = _masked_min(end, eligible, 2)
        machine_best_end = _masked_min(end, eligible, 1)
        alternatives = eligible.float().sum(2, keepdim=True)
        competitors = eligible.float().sum(1, keepdim=True)
        machines = eligible.any(1).float().sum(-1)[:, None, None].clamp(min=1.0)
        jobs = eligible.any(2).float().sum(-1)[:, None, None].clamp(min=1.0)
        derived = torch.stack(
            [duration, free, end, duration - job_best_duration, end - job_best_end, end - machine_best_end,
             alternatives.expand_as(duration) / machines, competitors.expand_as(duration) / jobs], -1,
        )  # fmt: skip
        return derived * eligible.unsqueeze(-1).float(), eligible

    def forward(self, jobs: torch.Tensor, pairs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, J, M = pairs.shape[:3]
        present = jobs.abs().sum(-1) > 0
        present = present | ~present.any(-1, keepdim=True)
        h = self.embed(jobs)
        for layer in self.job_layers:
            h = layer(h, (~present).float() * PAD_LOGIT)
        job_pool = _masked_mean(h, present.float().unsqueeze(-1), 1)
        inputs, eligible = self.pair_inputs(pairs)
        weights = eligible.float().unsqueeze(-1)
        e = torch.relu(self.pair_embed(inputs)) * weights  # (B, J, M, P), >= 0 and 0 off the eligible pairs
        used = eligible.any(1)  # machines with an eligible pair: the others are padding here
        used = used | ~used.any(-1, keepdim=True)
        mean, peak = _masked_mean(e, weights, 1), e.max(1).values  # max of non-negatives: ineligible zeros never win
        free = _masked_mean(pairs[..., 1:2], weights, 1)
        share = (eligible.float().sum(1) / eligible.any(2).float().sum(-1, keepdim=True).clamp(min=1.0)).unsqueeze(-1)
        g = self.machine_embed(torch.cat([mean, peak, free, share], -1))
        for layer in self.machine_layers:
            g = layer(g, (~used).float() * PAD_LOGIT)
        machine_pool = _masked_mean(g, used.float().unsqueeze(-1), 1)
        context = torch.cat([job_pool, machine_pool], -1)
        job_side = self.score_job(h) + self.score_context(context)[:, None, :]
        hidden = job_side[:, :, None, :] + self.score_machine(g)[:, None, :, :] + self.score_pair(inputs)
        logits = self.score_out(torch.relu(hidden)).reshape(B, J * M)
        logits = torch.where(mask > 0, logits, torch.full_like(logits, MASKED_LOGIT))
        return logits, self.value(context).squeeze(-1)


class NoFeatures(BaseFeaturesExtractor):
    """Placeholder for SB3's features extractor: :class:`JobShopNet` reads the observation itself."""

    def __init__(self, observation_space: spaces.Space) -> None:
        super().__init__(observation_space, features_dim=1)

    def forward(self, observations):  # pragma: no cover - never called
        raise NotImplementedError("JobShopPolicy reads observations through JobShopNet")


class JobShopPolicy(MaskableActorCriticPolicy):
    """sb3-contrib's maskable actor-critic with :class:`JobShopNet` as actor and critic.

    ``policy_kwargs``: ``embed_dim`` (64), ``n_layers`` (2 attention layers), ``n_heads`` (4),
    ``ff_dim`` (128). The observation must be the envs' ``{"jobs", "action_mask"}`` dict; with
    ``pairs`` in it (pair actions: a flexible shop, or a classic one with ``pair_actions=True``)
    the network is :class:`PairShopNet`, which scores (job, machine) pairs."""

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        lr_schedule,
        embed_dim: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        ff_dim: int = 128,
        net: str = "attention",
        **kwargs: Any,
    ) -> None:
        if not isinstance(observation_space, spaces.Dict) or "jobs" not in observation_space.spaces:
            raise ValueError(
                "JobShopPolicy needs the sched_env observation {'jobs': (J, F), 'action_mask': (A,)}; got"
                f" {observation_space}"
            )
        if net not in ("attention", "priority"):
            raise ValueError(f"net must be 'attention' or 'priority', got {net!r}")
        self.net_kind = net
        self.net_args = {"embed_dim": embed_dim, "n_layers": n_layers, "n_heads": n_heads, "ff_dim": ff_dim}
        kwargs.pop("net_arch", None)
        kwargs["features_extractor_class"] = NoFeatures
        kwargs.pop("features_extractor_kwargs", None)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    @property
    def pairs(self) -> bool:
        """Whether it scores (job, machine) pairs (:class:`PairShopNet`, the flexible shop's
        observation with ``pairs``) rather than jobs (:class:`JobShopNet`)."""
        return "pairs" in self.observation_space.spaces

    def _build(self, lr_schedule) -> None:
        n_features = self.observation_space["jobs"].shape[-1]
        if self.pairs:
            n_pair_features = self.observation_space["pairs"].shape[-1]
            self.net = PairShopNet(n_features, n_pair_features, **self.net_args)
        elif self.net_kind == "priority":
            self.net = PriorityNet(n_features, ff_dim=self.net_args["ff_dim"])
        else:
            self.net = JobShopNet(n_features, **self.net_args)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self.net_args, net=self.net_kind)
        data.pop("net_arch", None)
        return data

    # ------------------------------------------------------------------ SB3's policy protocol
    def _logits_and_values(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pairs:
            return self.net(obs["jobs"].float(), obs["pairs"].float(), obs["action_mask"].float())
        return self.net(obs["jobs"].float(), obs["action_mask"].float())

    def _distribution(self, logits: torch.Tensor, action_masks=None):
        distribution = self.action_dist.proba_distribution(action_logits=logits)
        if action_masks is not None:
            distribution.apply_masking(action_masks)
        return distribution

    def forward(self, obs, deterministic: bool = False, action_masks=None):
        logits, values = self._logits_and_values(obs)
        distribution = self._distribution(logits, action_masks)
        actions = distribution.get_actions(deterministic=deterministic)
        return actions, values.unsqueeze(-1), distribution.log_prob(actions)

    def evaluate_actions(self, obs, actions: torch.Tensor, action_masks=None):
        logits, values = self._logits_and_values(obs)
        distribution = self._distribution(logits, action_masks)
        return values.unsqueeze(-1), distribution.log_prob(actions), distribution.entropy()

    def get_distribution(self, obs, action_masks=None):
        logits, _ = self._logits_and_values(obs)
        return self._distribution(logits, action_masks)

    def predict_values(self, obs) -> torch.Tensor:
        return self._logits_and_values(obs)[1].unsqueeze(-1)

    def scores(self, jobs: torch.Tensor, mask: torch.Tensor, pairs: torch.Tensor | None = None) -> torch.Tensor:
        """Masked logits for a batch of observations of any job (and machine) count (inference's
        entry); ``pairs`` is the flexible observation's pair features, for a pair policy."""
        if self.pairs:
            if pairs is None:
                raise ValueError("this policy scores (job, machine) pairs: pass the observation's 'pairs'")
            return self.net(jobs, pairs, mask)[0]
        return self.net(jobs, mask)[0]
