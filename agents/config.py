"""The training config of ``sched-env train``: one dataclass whose fields document themselves
(``sched-env train --help``), read from YAML and ``--set key=value`` with values coerced to each
field's type, and the env options and ranking keys a config implies. No torch here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instances import SchedEnvError

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
    allow_wait: bool = _help("dynamic: offer the wait action (keep idle machines idle until the next event)", False)
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
    checkpoint_minutes: float = _help("also checkpoint after this many minutes of training since the last one", 2.0)
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
        if self.allow_wait and self.shop != "dynamic":
            raise SchedEnvError("config allow_wait=true: the wait action exists in the dynamic shop only (shop: dynamic)")
        if not self.checkpoint_minutes > 0:
            raise SchedEnvError(f"config checkpoint_minutes={self.checkpoint_minutes}: must be a positive number")
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
            try:
                text = Path(path).read_text()
            except OSError as error:
                raise SchedEnvError(f"training config {path}: {error.strerror or error}") from None
            data = _read_mapping(text, path)
            if not isinstance(data, dict):
                raise SchedEnvError(f"{path}: a training config is a mapping of keys to values")
        return cls.from_dict(data, overrides)


def _read_mapping(text: str, path) -> Any:
    """YAML (or JSON without PyYAML), with a syntax error said in one line with its place."""
    try:
        import yaml
    except ImportError:
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise SchedEnvError(f"training config {path}: not valid JSON (install pyyaml for YAML): {error}") from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SchedEnvError(f"training config {path}: YAML syntax error{where}: {problem}") from None


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


def env_options(cfg: TrainConfig) -> dict[str, Any]:
    """The env options a trained policy must be run under (stored with the model)."""
    if cfg.shop == "static":
        return {"placement": "active", "action_set": cfg.action_set}
    return {"objective": cfg.objective, "allow_wait": cfg.allow_wait}


def objective_keys(cfg: TrainConfig) -> tuple[str, ...]:
    """Final-info keys that rank episodes: the objective, then a tie-breaker."""
    if cfg.shop == "static":
        return ("makespan",)
    return (cfg.objective, "makespan" if cfg.objective != "makespan" else "mean_flow_time")
