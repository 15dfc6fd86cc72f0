"""Training: ``sched-env train CONFIG.yaml [--set key=value ...] [--resume CHECKPOINT]``.

Reads top to bottom, like cleanrl's scripts, while SB3 does the machinery:

1. a :class:`TrainConfig` (every field documents itself in ``--help``);
2. the problem distribution: random instances of the configured sizes, or dynamic scenarios
   (arrivals, breakdowns, noise, due dates), drawn from seeded generators;
3. a fixed validation set drawn from the same distribution with its own seed (never Taillard
   or another benchmark family) and the best dispatching rule's objective on each of its items;
4. the model: sb3-contrib MaskablePPO (or SB3's PPO, A2C, DQN) on the batched env, with
   :class:`~agents.policy.JobShopPolicy` for the maskable algorithms;
5. the loop: SB3's ``learn`` (PPO family), or **self-labeling** on the same policy class: each
   iteration samples K complete schedules of one problem in one batched env, takes the best
   (optionally with a dispatching rule's schedule in the pool) and minimises the policy's
   cross-entropy on that schedule's decisions;
6. TensorBoard scalars (episode objective, validation gap to the best rule, steps/s, losses),
   checkpoints every N steps and at the end, ``best.zip`` chosen on the validation set, and
   ``--resume`` that continues the step count and the TensorBoard curve.

Same seed on the CPU, same result (tested).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from instances import MixedSizeGenerator, SchedEnvError

ALGOS = ("self-labeling", "maskable-ppo", "ppo", "a2c", "dqn")
SHOPS = ("static", "dynamic")
#: The rules whose best schedule is the static validation reference.
REFERENCE_RULES = ("mwkr", "mopnr", "spt", "fifo", "lwkr", "lpt")


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class TrainConfig:
    """What to train, on what, and how long. Load from YAML; override with ``--set key=value``."""

    name: str = _help("run name (default: SHOP-ALGO-sSEED)", "")
    shop: str = _help("static (JobShop-v0, makespan) or dynamic (DynamicJobShop-v0)", "static")
    algo: str = _help("self-labeling, maskable-ppo, or SB3's unmasked ppo, a2c, dqn", "self-labeling")
    # --- the static shop
    sizes: tuple[str, ...] = _help(
        "static: instance sizes JOBSxMACHINES drawn uniformly", ("10x10", "15x10", "15x15", "20x10")
    )
    low: int = _help("shortest operation duration", 1)
    high: int = _help("longest operation duration (Taillard: 1..99)", 99)
    reward_mode: str = _help("static PPO reward: dense (lower-bound increase) or sparse", "dense")
    action_set: str = _help("static action set: non_delay, giffler_thompson or any", "non_delay")
    # --- the dynamic shop
    machines: tuple[int, ...] = _help("dynamic: machine counts drawn uniformly (random routes)", (10, 15, 20))
    initial_jobs: int = _help("dynamic: jobs present at time 0", 5)
    arriving_jobs: int = _help("dynamic: jobs arriving later", 15)
    utilisation: tuple[float, float] = _help("dynamic: target utilisation drawn uniformly in [low, high]", (0.75, 0.95))
    breakdown_probability: float = _help("dynamic: share of scenarios with breakdowns", 0.5)
    mtbf: float = _help("dynamic: mean time between failures per machine", 2000.0)
    mttr: float = _help("dynamic: mean time to repair", 100.0)
    noise: float = _help("dynamic: processing-time noise (real = planned x U[1-noise, 1+noise])", 0.1)
    tightness: float = _help("dynamic: due date = arrival + tightness x job work", 1.5)
    objective: str = _help(
        "dynamic objective: total_weighted_tardiness, makespan or mean_flow_time", "total_weighted_tardiness"
    )
    # --- the policy
    embed_dim: int = _help("job embedding width", 64)
    n_layers: int = _help("attention layers over the jobs", 2)
    n_heads: int = _help("attention heads", 4)
    ff_dim: int = _help("feed-forward width (attention blocks, score and value heads)", 128)
    # --- the run
    timesteps: int = _help(
        "environment decisions to train for (self-labeling counts every sampled decision)", 2_000_000
    )
    seed: int = _help("seed of everything (instances, sampling, weights)", 0)
    device: str = _help("torch device: cpu, cuda or auto", "cpu")
    threads: int = _help("torch CPU threads (0: torch's default)", 0)
    learning_rate: float = _help("initial learning rate", 3e-4)
    final_learning_rate: float = _help("learning rate at the end (cosine decay; = learning_rate for none)", 1e-5)
    init_from: str = _help("start from this checkpoint's weights (fine-tuning; a new run, new step count)", "")
    # --- self-labeling
    samples: int = _help("self-labeling: schedules sampled per iteration (K)", 128)
    pool_rule: str = _help("self-labeling: a dispatching rule whose schedule joins the K candidates ('' for none)", "")
    grad_clip: float = _help("gradient-norm clip", 1.0)
    # --- PPO family
    n_envs: int = _help("PPO family: shops stepped together in the batched env", 32)
    n_steps: int = _help("PPO/A2C: steps per env per update", 128)
    batch_size: int = _help("PPO/DQN: minibatch size", 256)
    n_epochs: int = _help("PPO: epochs per update", 4)
    gamma: float = _help("discount (1: the return is the objective)", 1.0)
    gae_lambda: float = _help("GAE lambda", 0.95)
    clip_range: float = _help("PPO clip range", 0.2)
    ent_coef: float = _help("entropy bonus", 0.01)
    vf_coef: float = _help("value-loss weight", 0.5)
    # --- evaluation and checkpoints
    eval_items: int = _help("validation set size (random instances or scenarios from the training distribution)", 100)
    eval_seed: int = _help("seed of the validation set (kept apart from training seeds)", 10_000)
    eval_every: int = _help("evaluate every N decisions", 500_000)
    checkpoint_every: int = _help("checkpoint every N decisions", 1_000_000)
    out: str = _help("folder of runs: OUT/NAME holds tb/, checkpoints/, best.zip, final.zip", "runs")

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Say what is wrong with a field and what would be right."""
        for what, value, choices in (("shop", self.shop, SHOPS), ("algo", self.algo, ALGOS)):
            if value not in choices:
                raise SchedEnvError(f"config {what}={value!r}: choose one of {', '.join(choices)}")
        self.sizes = tuple(self.sizes)
        for size in self.sizes:
            parse_size(size)
        self.machines = tuple(int(m) for m in self.machines)
        self.utilisation = tuple(float(u) for u in self.utilisation)
        if len(self.utilisation) != 2 or not 0 < self.utilisation[0] <= self.utilisation[1] <= 1.5:
            raise SchedEnvError(f"config utilisation={self.utilisation}: give [low, high] with 0 < low <= high <= 1.5")
        for name in ("timesteps", "samples", "n_envs", "n_steps", "batch_size", "eval_items", "eval_every",
                     "checkpoint_every", "embed_dim", "n_layers", "n_heads", "ff_dim"):  # fmt: skip
            if int(getattr(self, name)) < 1:
                raise SchedEnvError(f"config {name}={getattr(self, name)}: must be a positive integer")
        if self.embed_dim % self.n_heads:
            raise SchedEnvError(f"config embed_dim={self.embed_dim} must be a multiple of n_heads={self.n_heads}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise SchedEnvError(f"config device={self.device!r}: choose cpu, cuda or auto")

    @property
    def run_name(self) -> str:
        return self.name or f"{self.shop}-{self.algo}-s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], overrides: Sequence[str] = ()) -> TrainConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = dict(data or {})
        for item in overrides:
            key, eq, text = item.partition("=")
            if not eq:
                raise SchedEnvError(f"--set {item!r}: write KEY=VALUE, e.g. --set timesteps=100000")
            values[key.strip()] = _parse_value(known.get(key.strip()), text.strip())
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise SchedEnvError(f"unknown config keys {unknown}; known keys: {', '.join(known)}")
        values = {key: _coerce(known[key], value) for key, value in values.items()}
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise SchedEnvError(f"config: {error}") from None

    @classmethod
    def load(cls, path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
        data: dict[str, Any] = {}
        if path is not None:
            text = Path(path).read_text()
            try:
                import yaml

                data = yaml.safe_load(text) or {}
            except ImportError:
                data = json.loads(text)
            if not isinstance(data, dict):
                raise SchedEnvError(f"{path}: a training config is a mapping of keys to values")
        return cls.from_dict(data, overrides)


def _coerce(spec, value: Any) -> Any:
    """A config value in its field's type (YAML reads ``1e-5`` as a string, lists as lists)."""
    if isinstance(value, str):
        return _parse_value(spec, value)
    if isinstance(spec.default, tuple) and isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _parse_value(spec, text: str) -> Any:
    """A --set value by the field's type: lists split on commas, numbers and booleans parsed."""
    if spec is None:
        return text
    default = spec.default
    if isinstance(default, tuple):
        kind = type(default[0]) if default else str
        return tuple(kind(part) for part in text.split(",") if part)
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes", "on")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            return type(default)(float(text)) if isinstance(default, int) else float(text)
        except ValueError:
            raise SchedEnvError(f"--set {spec.name}={text!r}: expected a number") from None
    return text


def parse_size(text: str) -> tuple[int, int]:
    try:
        jobs, machines = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise SchedEnvError(f"size {text!r}: write JOBSxMACHINES, e.g. 15x15") from None
    if jobs < 1 or machines < 1:
        raise SchedEnvError(f"size {text!r}: jobs and machines must be positive")
    return jobs, machines


def config_help() -> str:
    """Every config key with its default and meaning, for ``sched-env train --help``."""
    lines = []
    for spec in dataclasses.fields(TrainConfig):
        default = spec.default
        shown = ",".join(str(v) for v in default) if isinstance(default, tuple) else repr(default)
        lines.append(f"  {spec.name:<22} {spec.metadata.get('help', '')} (default {shown})")
    return "config keys (YAML or --set KEY=VALUE):\n" + "\n".join(lines)


# ---------------------------------------------------------------------- the problems
@dataclass(frozen=True)
class TrainingScenarios:
    """Dynamic scenarios of random routes: machines, utilisation and breakdowns drawn per scenario."""

    machines: tuple[int, ...]
    initial_jobs: int
    arriving_jobs: int
    utilisation: tuple[float, float]
    breakdown_probability: float
    mtbf: float
    mttr: float
    noise: float
    tightness: float

    @property
    def max_jobs(self) -> int:
        return self.initial_jobs + self.arriving_jobs

    @property
    def max_machines(self) -> int:
        return max(self.machines)

    @property
    def max_ops(self) -> int:
        return max(self.machines)

    def __call__(self, rng: np.random.Generator):
        from sched_env.events import generate_scenario

        machines = int(rng.choice(self.machines))
        utilisation = float(rng.uniform(*self.utilisation))
        broken = bool(rng.random() < self.breakdown_probability)
        return generate_scenario(
            machines, initial_jobs=self.initial_jobs, arriving_jobs=self.arriving_jobs, utilisation=utilisation,
            mtbf=self.mtbf if broken else None, mttr=self.mttr if broken else None, noise=self.noise,
            tightness=self.tightness, seed=rng,
        )  # fmt: skip


def problem_source(cfg: TrainConfig):
    """The training distribution: a generator ``gen(rng) -> instance or scenario``."""
    if cfg.shop == "static":
        return MixedSizeGenerator([parse_size(s) for s in cfg.sizes], low=cfg.low, high=cfg.high)
    return TrainingScenarios(
        cfg.machines, cfg.initial_jobs, cfg.arriving_jobs, cfg.utilisation, cfg.breakdown_probability, cfg.mtbf,
        cfg.mttr, cfg.noise, cfg.tightness,
    )  # fmt: skip


def env_options(cfg: TrainConfig) -> dict[str, Any]:
    """The env options a trained policy must be run under (stored with the model)."""
    if cfg.shop == "static":
        return {"placement": "active", "action_set": cfg.action_set}
    return {"objective": cfg.objective}


def objective_keys(cfg: TrainConfig) -> tuple[str, ...]:
    """Final-info keys that rank episodes: the objective, then a tie-breaker."""
    if cfg.shop == "static":
        return ("makespan",)
    return (cfg.objective, "makespan" if cfg.objective != "makespan" else "mean_flow_time")


@dataclass
class ValidationSet:
    """Fixed problems of the training distribution (own seed) and the best rule's objective."""

    items: list
    reference: np.ndarray
    reference_name: str

    @classmethod
    def build(cls, cfg: TrainConfig) -> ValidationSet:
        rng = np.random.default_rng([cfg.eval_seed, 7919])
        source = problem_source(cfg)
        items = [source(rng) for _ in range(cfg.eval_items)]
        if cfg.shop == "static":
            from baselines.rules import dispatch_many

            per_rule = np.array(
                [
                    [r.objective for r in dispatch_many(items, rule, action_set=cfg.action_set)]
                    for rule in REFERENCE_RULES
                ]
            )
            return cls(items, per_rule.min(axis=0).astype(float), "best rule of " + "/".join(REFERENCE_RULES))
        from baselines.rules import dispatch_dynamic_many

        atc = dispatch_dynamic_many(items, "atc", objective=cfg.objective)
        return cls(items, np.array([r.objective for r in atc], dtype=float), "atc")


def evaluate(policy, cfg: TrainConfig, validation: ValidationSet, layout: dict[str, int] | None = None) -> dict:
    """Greedy objective of ``policy`` (a LoadedPolicy) on every validation item, stepped together;
    the gap to the reference rule: mean of per-item ratios (static) or ratio of sums (dynamic,
    where single scenarios can have zero tardiness)."""
    from agents.inference import run_episodes

    items, layout = validation.items, layout or {}
    keys = objective_keys(cfg)[:1]
    if cfg.shop == "static":
        from sched_env.vector import BatchJobShopEnv

        batch = BatchJobShopEnv(len(items), instance=items, action_set=cfg.action_set, **layout)
        run = run_episodes(batch, policy.score, keys, greedy=True, options={"instances": items})
        values = run.objectives
        gap = float(np.mean(values / validation.reference - 1.0))
    else:
        from sched_env.dynamic import BatchDynamicJobShopEnv

        batch = BatchDynamicJobShopEnv(len(items), items, objective=cfg.objective, **layout)
        run = run_episodes(batch, policy.score, keys, greedy=True, options={"scenarios": items})
        values = run.objectives
        gap = float(values.sum() / max(validation.reference.sum(), 1e-9) - 1.0)
    return {"mean_objective": float(values.mean()), "gap_to_reference": gap,
            "reference_mean": float(validation.reference.mean())}  # fmt: skip


# ---------------------------------------------------------------------- the model
def _algorithm(name: str):
    if name in ("self-labeling", "maskable-ppo"):
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    import stable_baselines3 as sb3

    return {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN}[name]


def make_vec_env(cfg: TrainConfig, seed: int):
    """The batched env as an SB3 VecEnv (one compiled call steps every shop)."""
    from sched_env.sb3 import DynamicJobShopVecEnv, JobShopVecEnv

    source = problem_source(cfg)
    if cfg.shop == "static":
        return JobShopVecEnv(cfg.n_envs, seed=seed, instance=source, reward_mode=cfg.reward_mode,
                             action_set=cfg.action_set)  # fmt: skip
    return DynamicJobShopVecEnv(cfg.n_envs, seed=seed, scenario=source, objective=cfg.objective)


def make_model(cfg: TrainConfig, env, device: str):
    from agents.policy import JobShopPolicy

    algorithm = _algorithm(cfg.algo)
    schedule = learning_rate_schedule(cfg)
    common = {"learning_rate": schedule, "seed": cfg.seed, "device": device, "verbose": 0, "gamma": cfg.gamma}
    if cfg.algo in ("self-labeling", "maskable-ppo"):
        kwargs = {"embed_dim": cfg.embed_dim, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "ff_dim": cfg.ff_dim}
        return algorithm(
            JobShopPolicy, env, policy_kwargs=kwargs, n_steps=cfg.n_steps, batch_size=cfg.batch_size,
            n_epochs=cfg.n_epochs, gae_lambda=cfg.gae_lambda, clip_range=cfg.clip_range, ent_coef=cfg.ent_coef,
            vf_coef=cfg.vf_coef, max_grad_norm=cfg.grad_clip, **common,
        )  # fmt: skip
    if cfg.algo == "dqn":
        return algorithm("MultiInputPolicy", env, batch_size=cfg.batch_size, **common)
    extra = (
        {"batch_size": cfg.batch_size, "n_epochs": cfg.n_epochs, "clip_range": cfg.clip_range}
        if cfg.algo == "ppo"
        else {}
    )
    return algorithm(
        "MultiInputPolicy", env, n_steps=cfg.n_steps, gae_lambda=cfg.gae_lambda, ent_coef=cfg.ent_coef,
        vf_coef=cfg.vf_coef, **extra, **common,
    )  # fmt: skip


def learning_rate_schedule(cfg: TrainConfig):
    """Cosine decay from ``learning_rate`` to ``final_learning_rate`` over the run (SB3 calls it
    with the progress remaining, 1 -> 0)."""
    high, low = cfg.learning_rate, cfg.final_learning_rate

    def schedule(remaining: float) -> float:
        done = min(max(1.0 - remaining, 0.0), 1.0)
        return low + 0.5 * (high - low) * (1.0 + math.cos(math.pi * done))

    return schedule


def in_memory_policy(model, cfg: TrainConfig, layout: dict[str, int] | None = None):
    """The model being trained as a LoadedPolicy (for evaluation): JobShopPolicy scores jobs;
    SB3's plain policies answer with their predicted action (one-hot scores)."""
    import torch

    from agents.inference import LoadedPolicy

    policy = model.policy

    if hasattr(policy, "scores"):

        def score(jobs, mask):
            with torch.inference_mode():
                return policy.scores(torch.as_tensor(jobs, device=policy.device),
                                     torch.as_tensor(mask, dtype=torch.float32, device=policy.device)).cpu().numpy()  # fmt: skip
    else:

        def score(jobs, mask):
            kwargs = {"action_masks": mask.astype(bool)} if cfg.algo == "maskable-ppo" else {}
            actions, _ = model.predict({"jobs": jobs, "action_mask": mask}, deterministic=True, **kwargs)
            logits = np.zeros(mask.shape, dtype=np.float32)
            logits[np.arange(len(actions)), actions] = 1.0
            return logits

    n_features = 10 if cfg.shop == "static" else 12
    return LoadedPolicy(
        cfg.run_name, Path("."), cfg.shop, "torch", n_features, "", cfg.to_dict(), env_options(cfg), score
    )


# ---------------------------------------------------------------------- the run
class Run:
    """A training run's folder, logger, checkpoints, validation and progress bar."""

    def __init__(self, cfg: TrainConfig, model, folder: Path, progress: bool) -> None:
        from stable_baselines3.common.logger import configure

        self.cfg, self.model, self.folder = cfg, model, folder
        (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        self.logger = configure(str(folder / "tb"), ["tensorboard", "csv"])
        model.set_logger(self.logger)
        meta = getattr(model, "sched_env", None) or {}
        self.iteration = int(meta.get("iteration", 0))
        self.best_gap = float(meta.get("best_gap", math.inf))
        self.next_eval = (model.num_timesteps // cfg.eval_every + 1) * cfg.eval_every
        self.next_checkpoint = (model.num_timesteps // cfg.checkpoint_every + 1) * cfg.checkpoint_every
        self.validation = ValidationSet.build(cfg)
        self.layout = self._fixed_layout()
        self.started, self.steps_at_start = time.perf_counter(), model.num_timesteps
        self.bar = _bar(cfg.timesteps, model.num_timesteps, progress)
        self.history: list[dict[str, Any]] = []

    def _fixed_layout(self) -> dict[str, int] | None:
        """SB3's plain policies need the training observation shape at evaluation too."""
        if hasattr(self.model.policy, "scores"):
            return None
        space = self.model.observation_space["jobs"]
        source = problem_source(self.cfg)
        return {"max_jobs": int(space.shape[0]), "max_machines": int(source.max_machines)}

    def save(self, path: Path) -> Path:
        self.model.sched_env = {
            "config": self.cfg.to_dict(), "env_options": env_options(self.cfg), "iteration": self.iteration,
            "best_gap": self.best_gap, "kind": self.cfg.shop,
        }  # fmt: skip
        self.model.save(path)
        return path

    def tick(self, steps: int) -> None:
        """After each update: progress, evaluation and checkpoints when their step comes."""
        self.bar.update(steps)
        now = self.model.num_timesteps
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.logger.record("time/steps_per_second", (now - self.steps_at_start) / elapsed)
        if now >= self.next_eval:
            self.next_eval += self.cfg.eval_every
            self.evaluate()
        if now >= self.next_checkpoint:
            self.next_checkpoint += self.cfg.checkpoint_every
            self.save(self.folder / "checkpoints" / f"step_{now:010d}.zip")

    def evaluate(self) -> dict[str, Any]:
        result = evaluate(in_memory_policy(self.model, self.cfg), self.cfg, self.validation, self.layout)
        for key, value in result.items():
            self.logger.record(f"eval/{key}", value)
        self.logger.record("eval/gap_to_best_rule", result["gap_to_reference"])
        self.logger.dump(self.model.num_timesteps)
        row = {"steps": self.model.num_timesteps, "minutes": (time.perf_counter() - self.started) / 60, **result}
        self.history.append(row)
        with open(self.folder / "eval.jsonl", "a") as file:
            file.write(json.dumps(row) + "\n")
        if result["gap_to_reference"] < self.best_gap:
            self.best_gap = result["gap_to_reference"]
            self.save(self.folder / "best.zip")
        self.bar.set_postfix_str(
            f"val gap {100 * result['gap_to_reference']:+.1f} % vs {self.validation.reference_name}"
        )
        return result

    def close(self) -> Path:
        self.bar.close()
        final = self.save(self.folder / "final.zip")
        self.logger.close()
        return final


def _bar(total: int, initial: int, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:
        enabled = False
    if not enabled:

        class _Quiet:
            def update(self, n): ...
            def set_postfix_str(self, s): ...
            def close(self): ...

        return _Quiet()
    return tqdm(total=total, initial=initial, unit="step", unit_scale=True, dynamic_ncols=True)


def self_label(run: Run) -> None:
    """Self-labeling: sample K schedules of one problem (one batched env, K shops), imitate the best."""
    import torch
    import torch.nn.functional as F

    from agents.inference import dynamic_batch, run_episodes, static_batch
    from sched_env import _kernels as K

    cfg, model = run.cfg, run.model
    policy = model.policy
    source, keys = problem_source(cfg), objective_keys(cfg)
    trained = in_memory_policy(model, cfg)
    rule = getattr(K.RULE, cfg.pool_rule) if cfg.pool_rule else None
    schedule = learning_rate_schedule(cfg)
    while model.num_timesteps < cfg.timesteps:
        rng = np.random.default_rng([cfg.seed, run.iteration])  # resumable: iteration i always draws the same
        problem = source(rng)
        if cfg.shop == "static":
            batch = static_batch(trained, problem, cfg.samples)
        else:
            batch = dynamic_batch(trained, problem, cfg.samples, cfg.objective)
        policy.set_training_mode(False)
        rollouts = run_episodes(batch, trained.score, keys, seed=int(rng.integers(2**31)), record=True, rule=rule)
        trajectory = rollouts.trajectory
        lr = schedule(1.0 - model.num_timesteps / cfg.timesteps)
        loss_value = 0.0
        if len(trajectory.actions):
            policy.set_training_mode(True)
            for group in policy.optimizer.param_groups:
                group["lr"] = lr
            device = policy.device
            logits = policy.scores(torch.as_tensor(trajectory.jobs, device=device),
                                   torch.as_tensor(trajectory.masks, dtype=torch.float32, device=device))  # fmt: skip
            loss = F.cross_entropy(logits, torch.as_tensor(trajectory.actions, device=device))
            policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
            policy.optimizer.step()
            loss_value = float(loss.detach())
        steps = cfg.samples * rollouts.decisions
        model.num_timesteps += steps
        run.iteration += 1
        finite = rollouts.objectives[np.isfinite(rollouts.objectives)]
        run.logger.record("rollout/ep_objective_mean", float(finite.mean()))
        run.logger.record("rollout/ep_objective_best", float(rollouts.values[keys[0]]))
        run.logger.record("rollout/best_from_rule", float(rule is not None and rollouts.best == cfg.samples - 1))
        run.logger.record("train/loss", loss_value)
        run.logger.record("train/learning_rate", lr)
        run.logger.record("train/iterations", run.iteration)
        if run.iteration % 10 == 0:
            run.logger.dump(model.num_timesteps)
        run.tick(steps)


def _sb3_callback(run: Run):
    from stable_baselines3.common.callbacks import BaseCallback

    class Callback(BaseCallback):
        """Episode objectives into TensorBoard, and the run's evaluation and checkpoints."""

        def __init__(self) -> None:
            super().__init__()
            self.last = run.model.num_timesteps
            self.key = objective_keys(run.cfg)[0]

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                if self.key in info:
                    self.logger.record_mean("rollout/ep_objective_mean", info[self.key])
            now = self.model.num_timesteps
            run.tick(now - self.last)
            self.last = now
            return True

    return Callback()


def start_weights(model, checkpoint: str) -> None:
    """Load a checkpoint's policy weights into a new model (same architecture), for fine-tuning."""
    path = Path(checkpoint)
    if not path.is_file():
        raise SchedEnvError(f"config init_from={checkpoint!r}: no such checkpoint")
    source = _algorithm("maskable-ppo").load(path, device=model.device)
    try:
        model.policy.load_state_dict(source.policy.state_dict())
    except RuntimeError as error:
        raise SchedEnvError(
            f"config init_from={checkpoint!r}: its network does not match this config's (embed_dim, n_layers, ...): {error}"
        ) from None


def train(cfg: TrainConfig, *, resume: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Train (or continue a run) and return a summary: folder, steps, minutes, final validation."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    torch.manual_seed(cfg.seed)
    env = make_vec_env(cfg, cfg.seed)
    if resume is not None:
        checkpoint = Path(resume)
        if not checkpoint.is_file():
            raise SchedEnvError(f"--resume {checkpoint}: no such checkpoint")
        model = _algorithm(cfg.algo).load(checkpoint, env=env, device=device)
        folder = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    else:
        model = make_model(cfg, env, device)
        if cfg.init_from:
            start_weights(model, cfg.init_from)
        folder = Path(cfg.out) / cfg.run_name
        if (folder / "final.zip").exists() or any((folder / "checkpoints").glob("*.zip")):
            raise SchedEnvError(
                f"{folder} already holds a run; pass --resume {folder}/final.zip to continue it, or a new --set name="
            )
    run = Run(cfg, model, folder, progress)
    started = time.perf_counter()
    if cfg.algo == "self-labeling":
        self_label(run)
    else:
        remaining = cfg.timesteps - model.num_timesteps
        if remaining > 0:
            model.learn(remaining, callback=_sb3_callback(run), reset_num_timesteps=False)
    result = run.evaluate()
    final = run.close()
    return {
        "folder": str(folder), "final": str(final), "best": str(folder / "best.zip"), "steps": model.num_timesteps,
        "minutes": (time.perf_counter() - started) / 60, "validation": result, "best_gap": run.best_gap,
    }  # fmt: skip
