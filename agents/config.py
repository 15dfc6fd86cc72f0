"""The configs of ``sched-env train`` (:class:`TrainConfig`, read from YAML and ``--set key=value``
with values coerced to each field's type) and ``sched-env evolve`` (:class:`EvolutionConfig`): each
field documents itself once (:func:`documented`), and that text reaches ``--help`` one way
(:func:`config_help`, :func:`add_config_options`). Also the env options and ranking keys a config
implies. No torch and no numba here: the CLI builds its parser from these without loading either.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instances import SchedEnvError

ALGOS = ("self-labeling", "maskable-ppo", "ppo", "a2c", "dqn")
SHOPS = ("static", "dynamic", "flexible")
#: The flexible training mix: the SD1 sizes the learned-FJSP papers train on (listed twice: drawn
#: twice as often), and other routings and classic shops.
FLEXIBLE_MIX = (
    *("sd1:10x5", "sd1:20x5", "sd1:15x10", "sd1:20x10") * 2, "brandimarte:15x8", "flow:12x6", "few:20x10",
    "reentrant:10x5", "classic:10x10", "classic:15x10",
)  # fmt: skip
#: The rules whose best schedule is the static validation reference.
REFERENCE_RULES = ("mwkr", "mopnr", "spt", "fifo", "lwkr", "lpt")


def documented(text: str, default: Any, *, option: bool = False) -> Any:
    """A config field with its meaning (shown by ``--help``); ``option``: also a command-line option
    of its own (``--field-name``), not only a config key."""
    return field(default=default, metadata={"help": text, "option": option})


@dataclass
class TrainConfig:
    """What to train, on what, and how long. Load from YAML; override with ``--set key=value``."""

    name: str = documented("run name (default: SHOP-ALGO-sSEED)", "")
    shop: str = documented(
        "static (JobShop-v0, makespan), flexible (JobShop-v0 with (job, machine) actions: flexible and classic"
        " shops, makespan) or dynamic (DynamicJobShop-v0)", "static",
    )  # fmt: skip
    algo: str = documented("self-labeling, maskable-ppo, or SB3's unmasked ppo, a2c, dqn", "self-labeling")
    # --- the static shop
    sizes: tuple[str, ...] = documented(
        "static: instance sizes JOBSxMACHINES drawn uniformly", ("10x10", "15x10", "15x15", "20x10")
    )
    low: int = documented("shortest operation duration", 1)
    high: int = documented("longest operation duration (Taillard: 1..99)", 99)
    reward_mode: str = documented("static PPO reward: dense (lower-bound increase) or sparse", "dense")
    action_set: str = documented("static action set: non_delay, giffler_thompson or any", "non_delay")
    # --- the flexible shop
    shops: tuple[str, ...] = documented(
        "flexible: shops KIND:JOBSxMACHINES drawn uniformly (kinds sd1, brandimarte, flow, few, reentrant, classic)",
        FLEXIBLE_MIX,
    )
    # --- the dynamic shop
    machines: tuple[int, ...] = documented("dynamic: machine counts drawn uniformly (random routes)", (10, 15, 20))
    initial_jobs: int = documented("dynamic: jobs present at time 0", 5)
    arriving_jobs: int = documented("dynamic: jobs arriving later", 15)
    utilisation: tuple[float, float] = documented(
        "dynamic: target utilisation drawn uniformly in [low, high]", (0.75, 0.95)
    )
    breakdown_probability: float = documented("dynamic: share of scenarios with breakdowns", 0.5)
    mtbf: float = documented("dynamic: mean time between failures per machine", 2000.0)
    mttr: float = documented("dynamic: mean time to repair", 100.0)
    noise: float = documented("dynamic: processing-time noise (real = planned x U[1-noise, 1+noise])", 0.1)
    tightness: float = documented("dynamic: due date = arrival + tightness x job work", 1.5)
    objective: str = documented(
        "dynamic objective: total_weighted_tardiness, makespan or mean_flow_time", "total_weighted_tardiness"
    )
    alternatives: tuple[int, int] = documented(
        "dynamic: machines per operation, uniform in [low, high] (above 1: a flexible shop, (job, machine) actions)",
        (1, 1),
    )
    speed_spread: float = documented("dynamic flexible: machine speeds drawn in [1 - spread, 1 + spread]", 0.0)
    allow_wait: bool = documented(
        "dynamic: offer the wait action (keep idle machines idle until the next event)", False
    )
    streams: str = documented(
        "dynamic: 'generated' (the scenario fields above) or 'standard' (long streams of the standard simulation's"
        " training mix, agents.evolve.training_setting, train seeds)", "generated",
    )  # fmt: skip
    stream_jobs: tuple[int, int] = documented("streams: standard: warm-up and recorded jobs per stream", (300, 1500))
    # --- the policy
    net: str = documented(
        "maskable algorithms: 'attention' (jobs attend to each other) or 'priority' (a linear priority per job, the"
        " evolved dispatcher's form: init_from=dynamic starts as the shipped one; exported for the kernels)", "attention",
    )  # fmt: skip
    embed_dim: int = documented("job embedding width", 64)
    n_layers: int = documented("attention layers over the jobs", 2)
    n_heads: int = documented("attention heads", 4)
    ff_dim: int = documented("feed-forward width (attention blocks, score and value heads)", 128)
    # --- the run
    timesteps: int = documented(
        "environment decisions to train for (self-labeling counts every sampled decision)", 2_000_000
    )
    seed: int = documented("seed of everything (instances, sampling, weights)", 0)
    device: str = documented("torch device: cpu, cuda or auto", "cpu")
    threads: int = documented("torch CPU threads (0: torch's default)", 0)
    learning_rate: float = documented("initial learning rate", 3e-4)
    final_learning_rate: float = documented("learning rate at the end (cosine decay; = learning_rate for none)", 1e-5)
    init_from: str = documented("start from this checkpoint's weights (fine-tuning; a new run, new step count)", "")
    # --- self-labeling
    samples: int = documented("self-labeling: schedules sampled per iteration (K)", 128)
    pool_rule: str = documented(
        "self-labeling: a dispatching rule whose schedule joins the K candidates ('' for none)", ""
    )
    grad_clip: float = documented("gradient-norm clip", 1.0)
    # --- PPO family
    n_envs: int = documented("PPO family: shops stepped together in the batched env", 32)
    n_steps: int = documented("PPO/A2C: steps per env per update", 128)
    batch_size: int = documented("PPO/DQN: minibatch size", 256)
    n_epochs: int = documented("PPO: epochs per update", 4)
    gamma: float = documented("discount (1: the return is the objective)", 1.0)
    gae_lambda: float = documented("GAE lambda", 0.95)
    clip_range: float = documented("PPO clip range", 0.2)
    ent_coef: float = documented("entropy bonus", 0.01)
    vf_coef: float = documented("value-loss weight", 0.5)
    # --- evaluation and checkpoints
    eval_items: int = documented(
        "validation set size (random instances or scenarios from the training distribution)", 100
    )
    eval_seed: int = documented("seed of the validation set (kept apart from training seeds)", 10_000)
    eval_every: int = documented("evaluate every N decisions", 500_000)
    checkpoint_every: int = documented("checkpoint every N decisions", 1_000_000)
    checkpoint_minutes: float = documented(
        "also checkpoint after this many minutes of training since the last one", 2.0
    )
    out: str = documented("folder of runs: OUT/NAME holds tb/, checkpoints/, best.zip, final.zip", "runs")

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
        self.shops = tuple(self.shops)
        if self.shop == "flexible":
            from instances.generators import shop_generator

            for spec in self.shops:
                try:
                    shop_generator(spec)
                except SchedEnvError as error:
                    raise SchedEnvError(f"config shops: {error}") from None
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
        self.alternatives = tuple(int(a) for a in self.alternatives)
        if len(self.alternatives) != 2 or not 1 <= self.alternatives[0] <= self.alternatives[1]:
            raise SchedEnvError(f"config alternatives={self.alternatives}: give [low, high] with 1 <= low <= high")
        self.stream_jobs = tuple(int(n) for n in self.stream_jobs)
        if len(self.stream_jobs) != 2 or min(self.stream_jobs) < 1:
            raise SchedEnvError(f"config stream_jobs={self.stream_jobs}: give [warm-up, recorded], both >= 1")
        if self.net not in ("attention", "priority") or self.streams not in ("generated", "standard"):
            raise SchedEnvError(f"config net={self.net!r} / streams={self.streams!r}: net is attention or priority,"
                                " streams generated or standard")  # fmt: skip
        if self.net == "priority" and (self.shop != "dynamic" or self.allow_wait or self.alternatives[1] > 1):
            raise SchedEnvError("config net=priority: a job priority for the classic dynamic shop (shop: dynamic, no"
                                " allow_wait, no alternatives)")  # fmt: skip
        if self.allow_wait and self.alternatives[1] > 1:
            raise SchedEnvError("config allow_wait=true: the pair policy of a flexible shop has no wait action; drop"
                                " one of allow_wait and alternatives")  # fmt: skip
        if self.allow_wait and self.shop != "dynamic":
            raise SchedEnvError(
                "config allow_wait=true: the wait action exists in the dynamic shop only (shop: dynamic)"
            )
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
            values[key.strip()] = _parse_value(known.get(key.strip()), text.strip(), "--set")
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
        return _parse_value(spec, value, "config")
    if isinstance(spec.default, tuple) and isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _parse_value(spec, text: str, where: str) -> Any:
    """A value read from ``where`` (``--set`` or the config file) by the field's type: lists split
    on commas, numbers and booleans parsed."""
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
            raise SchedEnvError(f"{where} {spec.name}={text!r}: expected a number") from None
    return text


def parse_size(text: str) -> tuple[int, int]:
    try:
        jobs, machines = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise SchedEnvError(f"size {text!r}: write JOBSxMACHINES, e.g. 15x15") from None
    if jobs < 1 or machines < 1:
        raise SchedEnvError(f"size {text!r}: jobs and machines must be positive")
    return jobs, machines


#: The training mixes of ``sched-env evolve --mix`` (``agents.evolve.training_setting`` draws each).
EVOLUTION_MIXES = ("standard", "wide", "broad", "episodes", "flexible", "flexible-episodes")


@dataclass
class EvolutionConfig:
    """The recipe of a run; its option fields are ``sched-env evolve`` options, every field is in
    ``sched-env evolve --help`` (and stored with the run, so ``--resume`` continues the same recipe)."""

    hidden: int = documented("hidden units of the priority network (0: a linear priority over the features)", 0,
                             option=True)  # fmt: skip
    pairs: int = documented("antithetic pairs per generation (2 x pairs perturbed networks)", 8, option=True)
    streams: int = documented("training streams per generation, shared by every perturbation", 8, option=True)
    sigma: float = documented("perturbation scale, in standard units of each feature", 0.1, option=True)
    learning_rate: float = documented("Adam step on the mean, in the same units", 0.01, option=True)
    final_learning_rate: float | None = documented(
        "if given, the step decays from learning_rate to this along a cosine over the run's length (minutes or"
        " generations, whichever ends it): large steps far from a good network, small ones to settle on it; a"
        " resumed run stretches the curve over its new length", None, option=True)  # fmt: skip
    minutes: float = documented("wall-time budget of this call (a resumed run adds to it)", 30.0, option=True)
    generations: int = documented("the run ends at this many generations (the recipe's length), or at minutes; with"
                                  " --resume the run's own unless given, with --minutes alone no limit", 150,
                                  option=True)  # fmt: skip
    seed: int = documented("training seed (streams, perturbations)", 0, option=True)
    train_warmup: int = documented("jobs per training stream before recording", 300)
    train_recorded: int = documented("jobs per training stream recorded", 1500)
    validate_every: int = documented("generations between validation runs (and checkpoints)", 5)
    validation_seeds: int = documented("validation streams per validation setting", 2)
    validation_length: tuple[int, int] = documented("validation streams' warm-up and recorded jobs", (1000, 5000))
    machines: tuple[int, ...] = documented("machine counts of the training settings", (5, 10, 10, 10, 15))
    utilisation: tuple[float, float] = documented("utilisation range of the training settings", (0.80, 0.97))
    allowance: tuple[float, float] = documented("due-date allowance range of the training settings", (1.5, 6.0))
    breakdown_probability: float = documented("share of training streams with breakdowns", 0.4)
    mix: str = documented("the training mix: 'standard' (the fields above), 'wide' (3-30 machines, allowance 1.2-8,"
                          " utilisation 0.70-0.98, four breakdown patterns, finite episodes), 'broad' (the wide mix,"
                          " short episodes that start with work waiting and noisy durations, loaded shops), 'episodes'"
                          " (the broad mix's short episodes only), 'flexible' (flexible shops: the network picks the"
                          " machine too) or 'flexible-episodes' (short episodes of flexible shops); validated on"
                          " generated settings of that mix", "standard", option=True)  # fmt: skip
    reference: str = documented("what the fitness compares each stream with: 'atc', or 'best' (the better of ATC and"
                                " WSPT on that stream)", "atc", option=True)  # fmt: skip
    loss_penalty: float = documented("a stream (and a validation setting) worse than the reference counts 1 + this"
                                     " times: 0 weighs gains and losses alike", 0.0, option=True)  # fmt: skip
    shop: str | None = documented("train on this shop spec (JSON, from `sched-env fit-shop`) instead of the standard"
                                  " mix; validation on its own validation streams", None, option=True)  # fmt: skip
    start: str = documented("where the network starts: 'atc' (ATC exactly), 'shipped' (the shipped dispatcher) or"
                            " an evolved network's .onnx file", "atc", option=True)  # fmt: skip
    context: bool = documented("gate every per-job weight by the shop's context (jobs and work per machine, share"
                               " late, mean critical ratio, share down, machines, how early in its episode): one"
                               " priority for a light shop and another for a loaded one", True, option=True)  # fmt: skip
    early_only: bool = documented("search only the gates on shop_early (how the priority moves while the shop takes"
                                  " its first 100 jobs) and keep the rest of the start network: a short-episode"
                                  " specialisation that leaves long-run dispatching as it was", False,
                                  option=True)  # fmt: skip
    drain_only: bool = documented("search only the gates on shop_draining (how the priority moves once the episode's"
                                  " last job has arrived) and keep the rest of the start network: a specialisation"
                                  " for a shift's last jobs that leaves its fill and long runs as they were; with"
                                  " --early-only, both sets of gates", False, option=True)  # fmt: skip

    @property
    def picks_machines(self) -> bool:
        """A network of the flexible mix scores (job, machine) pairs (it has the context gates too)."""
        return self.mix in ("flexible", "flexible-episodes")

    def check(self) -> None:
        if self.hidden < 0 or self.pairs < 1 or self.streams < 1 or self.validation_seeds < 1:
            raise SchedEnvError("hidden must be >= 0; pairs, streams and validation_seeds >= 1")
        if not (self.sigma > 0 and self.learning_rate > 0 and self.minutes > 0):
            raise SchedEnvError("sigma, learning_rate and minutes must be > 0")
        if self.final_learning_rate is not None and not 0 < self.final_learning_rate <= self.learning_rate:
            raise SchedEnvError(f"final_learning_rate must be > 0 and at most learning_rate ({self.learning_rate}),"
                                f" got {self.final_learning_rate}")  # fmt: skip
        if self.mix not in EVOLUTION_MIXES:
            raise SchedEnvError(f"mix must be one of {', '.join(EVOLUTION_MIXES)}, got {self.mix!r}")
        if self.reference not in ("atc", "best") or self.loss_penalty < 0:
            raise SchedEnvError(f"reference must be 'atc' or 'best' and loss_penalty >= 0, got {self.reference!r}"
                                f" and {self.loss_penalty}")  # fmt: skip
        if self.start not in ("atc", "shipped") and not (self.start.endswith(".onnx") and Path(self.start).is_file()):
            raise SchedEnvError(
                f"start must be 'atc', 'shipped' or an evolved network's .onnx file, got {self.start!r}"
            )
        if (self.early_only or self.drain_only) and not (self.context and self.start != "atc"):
            raise SchedEnvError("early_only and drain_only search the gates on shop_early or shop_draining of a start"
                                " network: give --start shipped or an evolved network's .onnx file, with --context")  # fmt: skip
        if self.shop:
            from sched_env.shop_spec import ShopSpec

            ShopSpec.load(self.shop)  # a missing or malformed spec is refused before the run starts


def _shown(default: Any) -> str:
    return ",".join(str(v) for v in default) if isinstance(default, tuple) else repr(default)


def config_help(cls: type = TrainConfig, title: str = "config keys (YAML or --set KEY=VALUE)") -> str:
    """Every field of a config dataclass with its default and meaning, for a command's ``--help``:
    the one way a config's documentation reaches the command line."""
    lines = [f"  {spec.name:<22} {spec.metadata.get('help', '')} (default {_shown(spec.default)})"
             for spec in dataclasses.fields(cls)]  # fmt: skip
    return f"{title}:\n" + "\n".join(lines)


def _optional_type(spec: dataclasses.Field) -> type:
    """The type an option of a field without a default value reads (``float | None``: float)."""
    annotation = str(spec.type)
    return float if annotation.startswith("float") else int if annotation.startswith("int") else str


def add_config_options(parser, cls: type) -> None:
    """An option ``--field-name`` for every field of ``cls`` documented with ``option=True``, typed by
    its default, its help the field's (default None: the config's own default applies)."""
    for spec in dataclasses.fields(cls):
        if spec.metadata.get("option") and isinstance(spec.default, bool):  # --name / --no-name
            parser.add_argument(f"--{spec.name.replace('_', '-')}", action=argparse.BooleanOptionalAction,
                                default=None, help=f"{spec.metadata['help']} (default {spec.default})")  # fmt: skip
        elif spec.metadata.get("option"):
            kind = type(spec.default) if isinstance(spec.default, (int, float, str)) else _optional_type(spec)
            parser.add_argument(f"--{spec.name.replace('_', '-')}", type=kind, default=None,
                                help=f"{spec.metadata['help']} (default {_shown(spec.default)})")  # fmt: skip


def config_options(args, cls: type) -> dict[str, Any]:
    """The values of :func:`add_config_options`' options that were given."""
    names = [spec.name for spec in dataclasses.fields(cls) if spec.metadata.get("option")]
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def env_options(cfg: TrainConfig) -> dict[str, Any]:
    """The env options a trained policy must be run under (stored with the model)."""
    if cfg.shop != "dynamic":
        return {"placement": "active", "action_set": cfg.action_set}
    return {"objective": cfg.objective, "allow_wait": cfg.allow_wait}


def objective_keys(cfg: TrainConfig) -> tuple[str, ...]:
    """Final-info keys that rank episodes: the objective, then a tie-breaker."""
    if cfg.shop != "dynamic":
        return ("makespan",)
    return (cfg.objective, "makespan" if cfg.objective != "makespan" else "mean_flow_time")
