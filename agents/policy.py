"""A size-agnostic actor-critic for the job shop, as an sb3-contrib ``MaskableActorCriticPolicy``.

The actor scores every job from its own features with shared weights, after attention layers
over the jobs give each one context (what the other jobs need, which machines they crowd);
the critic reads the pooled job embeddings. Nothing depends on the number of jobs: a network
trained on 10x10 shops scores a 100x20 shop, and padded rows (all-zero features: jobs an
instance does not have, free slots of the dynamic shop) are kept out of the attention and the
pooling, so they never change a score.

It works on ``JobShop-v0`` (10 features) and ``DynamicJobShop-v0`` (21 features, and with
``allow_wait`` one more action: wait, scored from the pooled context). Saved and loaded by
SB3's own ``save``/``load``::

    from sb3_contrib import MaskablePPO
    from agents.policy import JobShopPolicy
    model = MaskablePPO(JobShopPolicy, env, policy_kwargs={"embed_dim": 64})
"""

from __future__ import annotations

import math
from typing import Any

import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from agents.loading import MASKED_LOGIT  # what masked actions' logits are set to, here and in exported graphs
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


class NoFeatures(BaseFeaturesExtractor):
    """Placeholder for SB3's features extractor: :class:`JobShopNet` reads the observation itself."""

    def __init__(self, observation_space: spaces.Space) -> None:
        super().__init__(observation_space, features_dim=1)

    def forward(self, observations):  # pragma: no cover - never called
        raise NotImplementedError("JobShopPolicy reads observations through JobShopNet")


class JobShopPolicy(MaskableActorCriticPolicy):
    """sb3-contrib's maskable actor-critic with :class:`JobShopNet` as actor and critic.

    ``policy_kwargs``: ``embed_dim`` (64), ``n_layers`` (2 attention layers), ``n_heads`` (4),
    ``ff_dim`` (128). The observation must be the envs' ``{"jobs", "action_mask"}`` dict."""

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        lr_schedule,
        embed_dim: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        ff_dim: int = 128,
        **kwargs: Any,
    ) -> None:
        if not isinstance(observation_space, spaces.Dict) or "jobs" not in observation_space.spaces:
            raise ValueError(
                "JobShopPolicy needs the sched_env observation {'jobs': (J, F), 'action_mask': (A,)}; got"
                f" {observation_space}"
            )
        self.net_args = {"embed_dim": embed_dim, "n_layers": n_layers, "n_heads": n_heads, "ff_dim": ff_dim}
        kwargs.pop("net_arch", None)
        kwargs["features_extractor_class"] = NoFeatures
        kwargs.pop("features_extractor_kwargs", None)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build(self, lr_schedule) -> None:
        n_features = self.observation_space["jobs"].shape[-1]
        self.net = JobShopNet(n_features, **self.net_args)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self.net_args)
        data.pop("net_arch", None)
        return data

    # ------------------------------------------------------------------ SB3's policy protocol
    def _logits_and_values(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
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

    def scores(self, jobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked logits for a batch of observations of any job count (inference's entry)."""
        return self.net(jobs, mask)[0]
