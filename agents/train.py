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

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import REFERENCE_RULES, TrainConfig, env_options, objective_keys, parse_size
from instances import MixedSizeGenerator, SchedEnvError, ShopMixGenerator


# ---------------------------------------------------------------------- the problems
def problem_source(cfg: TrainConfig):
    """The training distribution: a generator ``gen(rng) -> instance or scenario``."""
    if cfg.shop == "static":
        return MixedSizeGenerator([parse_size(s) for s in cfg.sizes], low=cfg.low, high=cfg.high)
    if cfg.shop == "flexible":
        return ShopMixGenerator(cfg.shops)
    from sched_env.events import ScenarioGenerator, ScenarioMixture

    if cfg.streams == "standard":
        return StandardStreams(*cfg.stream_jobs)
    flexible = {"alternatives": cfg.alternatives, "speed_spread": cfg.speed_spread} if cfg.alternatives[1] > 1 else {}
    base = ScenarioGenerator(
        initial_jobs=cfg.initial_jobs, arriving_jobs=cfg.arriving_jobs, mtbf=cfg.mtbf, mttr=cfg.mttr, noise=cfg.noise,
        tightness=cfg.tightness, **flexible,
    )  # fmt: skip
    return ScenarioMixture(base, cfg.machines, cfg.utilisation, cfg.breakdown_probability)


@dataclass(frozen=True)
class StandardStreams:
    """``gen(rng) -> Scenario``: a stream of the standard simulation's training mix (the evolved
    dispatcher's, ``agents.evolve.training_setting``; train seeds, never a test stream)."""

    warmup: int = 300
    recorded: int = 1500
    max_machines: int = 15
    max_ops: int = 15
    flexible: bool = False

    def env_sizes(self) -> dict[str, int]:
        """The batched env's room: 320 job slots (a 15-machine shop at 0.97 stays below), every job
        of a stream, and its downtime windows."""
        return {"max_jobs": 320, "max_stream": self.warmup + self.recorded + max(200, self.recorded // 5),
                "max_windows": 4000}  # fmt: skip

    def __call__(self, rng: np.random.Generator):
        from agents.config import EvolutionConfig
        from agents.evolve import training_setting

        config = EvolutionConfig(train_warmup=self.warmup, train_recorded=self.recorded)
        return training_setting(config, rng).scenario(int(rng.integers(2**31)), "train")


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
        if cfg.shop != "dynamic":
            from baselines.rules import dispatch_many

            per_rule = np.array(
                [
                    [r.objective for r in dispatch_many(items, rule, action_set=cfg.action_set)]
                    for rule in REFERENCE_RULES
                ]
            )
            return cls(items, per_rule.min(axis=0).astype(float), "best rule of " + "/".join(REFERENCE_RULES))
        from baselines.rules import dispatch_dynamic_many

        rule = "atc+eet" if cfg.alternatives[1] > 1 else "atc"
        atc = dispatch_dynamic_many(items, rule, objective=cfg.objective)
        return cls(items, np.array([r.objective for r in atc], dtype=float), rule)


def evaluate(policy, cfg: TrainConfig, validation: ValidationSet, layout: dict[str, int] | None = None) -> dict:
    """Greedy objective of ``policy`` (a LoadedPolicy) on every validation item, stepped together;
    the gap to the reference rule: mean of per-item ratios (static) or ratio of sums (dynamic,
    where single scenarios can have zero tardiness)."""
    from agents.rollouts import run_episodes

    items, layout = validation.items, layout or {}
    keys = objective_keys(cfg)[:1]
    if cfg.shop != "dynamic":
        from sched_env.vector import BatchJobShopEnv

        pairs = {"pair_actions": True} if policy.pairs else {}
        batch = BatchJobShopEnv(len(items), instance=items, action_set=cfg.action_set, **pairs, **layout)
        run = run_episodes(batch, policy.score, keys, greedy=True, options={"instances": items})
        values = run.objectives
        gap = float(np.mean(values / validation.reference - 1.0))
    else:
        from sched_env.dynamic import BatchDynamicJobShopEnv

        batch = BatchDynamicJobShopEnv(len(items), items, objective=cfg.objective, allow_wait=cfg.allow_wait, **layout)
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
    if cfg.shop != "dynamic":
        pairs = {"pair_actions": True} if cfg.shop == "flexible" else {}
        return JobShopVecEnv(cfg.n_envs, seed=seed, instance=source, reward_mode=cfg.reward_mode,
                             action_set=cfg.action_set, **pairs)  # fmt: skip
    sizes = source.env_sizes() if isinstance(source, StandardStreams) else {}
    return DynamicJobShopVecEnv(cfg.n_envs, seed=seed, scenario=source, objective=cfg.objective,
                                allow_wait=cfg.allow_wait, **sizes)  # fmt: skip


def make_model(cfg: TrainConfig, env, device: str):
    from agents.policy import JobShopPolicy

    algorithm = _algorithm(cfg.algo)
    schedule = learning_rate_schedule(cfg)
    common = {"learning_rate": schedule, "seed": cfg.seed, "device": device, "verbose": 0, "gamma": cfg.gamma}
    if cfg.algo in ("self-labeling", "maskable-ppo"):
        kwargs = {"embed_dim": cfg.embed_dim, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "ff_dim": cfg.ff_dim,
                  "net": cfg.net}  # fmt: skip
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

    from agents.loading import LoadedPolicy

    policy = model.policy

    if hasattr(policy, "scores"):

        def score(jobs, mask, pairs=None):
            device = policy.device
            extra = () if pairs is None else (torch.as_tensor(pairs, device=device),)
            with torch.inference_mode():
                return policy.scores(torch.as_tensor(jobs, device=device),
                                     torch.as_tensor(mask, dtype=torch.float32, device=device), *extra).cpu().numpy()  # fmt: skip
    else:

        def score(jobs, mask):
            kwargs = {"action_masks": mask.astype(bool)} if cfg.algo == "maskable-ppo" else {}
            actions, _ = model.predict({"jobs": jobs, "action_mask": mask}, deterministic=True, **kwargs)
            logits = np.zeros(mask.shape, dtype=np.float32)
            logits[np.arange(len(actions)), actions] = 1.0
            return logits

    n_features = int(model.observation_space["jobs"].shape[-1])
    return LoadedPolicy(cfg.run_name, Path("."), cfg.shop, "torch", n_features, "", cfg.to_dict(), env_options(cfg),
                        score, pairs=bool(getattr(policy, "pairs", False)))  # fmt: skip


# ---------------------------------------------------------------------- the run
class Run:
    """A training run's folder, logger, checkpoints, validation and progress bar."""

    def __init__(self, cfg: TrainConfig, model, folder: Path, progress: bool) -> None:
        from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat

        self.cfg, self.model, self.folder = cfg, model, folder
        (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        (folder / "tb").mkdir(parents=True, exist_ok=True)
        formats = [TensorBoardOutputFormat(str(folder / "tb")), _appending_csv(folder / "tb" / "progress.csv")]
        self.logger = Logger(str(folder / "tb"), formats)  # a resumed run appends to the same curve and CSV
        model.set_logger(self.logger)
        meta = getattr(model, "sched_env", None) or {}
        self.iteration = int(meta.get("iteration", 0))
        self.best_gap = float(meta.get("best_gap", math.inf))
        self.minutes_before = float(meta.get("minutes", 0.0))  # training time of the run before this resume
        self.last_checkpoint = time.perf_counter()
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
            "best_gap": self.best_gap, "kind": self.cfg.shop, "minutes": self.minutes,
        }  # fmt: skip
        self.model.save(path)
        return path

    @property
    def minutes(self) -> float:
        """Training minutes of the whole run, resumes included."""
        return self.minutes_before + (time.perf_counter() - self.started) / 60

    def checkpoint(self) -> Path:
        self.last_checkpoint = time.perf_counter()
        return self.save(self.folder / "checkpoints" / f"step_{self.model.num_timesteps:010d}.zip")

    def tick(self, steps: int) -> None:
        """After each update: progress, evaluation and checkpoints when their step comes."""
        self.bar.update(steps)
        now = self.model.num_timesteps
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.logger.record("time/steps_per_second", (now - self.steps_at_start) / elapsed)
        if now >= self.next_eval:
            self.next_eval += self.cfg.eval_every
            self.evaluate()
        due = time.perf_counter() - self.last_checkpoint >= 60 * self.cfg.checkpoint_minutes
        if now >= self.next_checkpoint or due:
            while self.next_checkpoint <= now:
                self.next_checkpoint += self.cfg.checkpoint_every
            self.checkpoint()

    def evaluate(self) -> dict[str, Any]:
        result = evaluate(in_memory_policy(self.model, self.cfg), self.cfg, self.validation, self.layout)
        for key, value in result.items():
            self.logger.record(f"eval/{key}", value)
        self.logger.record("eval/gap_to_best_rule", result["gap_to_reference"])
        self.logger.dump(self.model.num_timesteps)
        row = {"steps": self.model.num_timesteps, "minutes": self.minutes, **result}
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


def _appending_csv(path: Path):
    """SB3's CSV output, continuing an existing file (its columns kept) instead of truncating it."""
    from stable_baselines3.common.logger import CSVOutputFormat

    writer = CSVOutputFormat.__new__(CSVOutputFormat)
    path.touch()
    writer.file = open(path, "r+")  # noqa: SIM115  (SB3 closes it; it rewrites the header in place)
    header = writer.file.readline().strip()
    writer.keys = header.split(",") if header else []
    writer.separator, writer.quotechar = ",", '"'
    writer.file.seek(0, 2)
    return writer


class TrainingInterruptedError(SchedEnvError):
    """Ctrl-C during training: the run was checkpointed; ``checkpoint`` continues it with ``--resume``
    (the command exits with 130)."""

    interrupted = True

    def __init__(self, checkpoint: Path, steps: int) -> None:
        super().__init__(
            f"interrupted at {steps:,} decisions; saved {checkpoint}. Continue with: sched-env train --resume {checkpoint}"
        )
        self.checkpoint = checkpoint


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

    from agents.rollouts import dynamic_batch, run_episodes, static_batch
    from baselines.rules import rule_id

    cfg, model = run.cfg, run.model
    policy = model.policy
    source, keys = problem_source(cfg), objective_keys(cfg)
    trained = in_memory_policy(model, cfg)
    rule = rule_id(cfg.pool_rule) if cfg.pool_rule else None
    schedule = learning_rate_schedule(cfg)
    while model.num_timesteps < cfg.timesteps:
        rng = np.random.default_rng([cfg.seed, run.iteration])  # resumable: iteration i always draws the same
        problem = source(rng)
        if cfg.shop != "dynamic":
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
            extra = () if trajectory.pairs is None else (torch.as_tensor(trajectory.pairs, device=device),)
            logits = policy.scores(torch.as_tensor(trajectory.jobs, device=device),
                                   torch.as_tensor(trajectory.masks, dtype=torch.float32, device=device), *extra)  # fmt: skip
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
    """Load a checkpoint's policy weights into a new model (same architecture), for fine-tuning; a
    priority net also starts from a priority network (``dynamic``: the shipped one, or its ONNX file)."""
    from agents.policy import PriorityNet

    if isinstance(getattr(model.policy, "net", None), PriorityNet):
        from agents.loading import PolicyLoadError, load_policy

        try:
            network = load_policy(checkpoint if checkpoint != "dynamic" else None, kind="dynamic").network
        except PolicyLoadError as error:
            raise SchedEnvError(f"config init_from={checkpoint!r}: {error}") from None
        if network is None or network[0] != 0:
            raise SchedEnvError(f"config init_from={checkpoint!r}: not a priority network without hidden units")
        model.policy.net.load_theta(network[1])
        return
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
    try:
        if cfg.algo == "self-labeling":
            self_label(run)
        else:
            remaining = cfg.timesteps - model.num_timesteps
            if remaining > 0:
                model.learn(remaining, callback=_sb3_callback(run), reset_num_timesteps=False)
    except KeyboardInterrupt:
        run.bar.close()
        raise TrainingInterruptedError(run.checkpoint(), model.num_timesteps) from None
    result = run.evaluate()
    final = run.close()
    return {
        "folder": str(folder), "final": str(final), "best": str(folder / "best.zip"), "steps": model.num_timesteps,
        "minutes": run.minutes, "validation": result, "best_gap": run.best_gap,
    }  # fmt: skip
