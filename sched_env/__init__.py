"""sched-env's simulator: the job-shop Gymnasium environments on one compiled kernel module.

>>> import gymnasium, sched_env
>>> env = gymnasium.make("sched_env/JobShop-v0", instance="ta01")
"""

from gymnasium.envs.registration import register, registry

from instances import (
    InfeasibleScheduleError,
    InvalidActionError,
    InvalidInstanceError,
    JobShopInstance,
    SchedEnvError,
)
from sched_env.dynamic import BatchDynamicJobShopEnv, DynamicJobShopEnv
from sched_env.env import JobShopEnv, replay
from sched_env.events import Scenario, ScenarioGenerator, generate_scenario
from sched_env.schedule import Schedule, Violation, find_violations, validate_schedule
from sched_env.shop import ACTION_SETS, FEATURE_NAMES, PLACEMENTS, REWARD_MODES
from sched_env.snapshot import ShopState
from sched_env.vector import BatchJobShopEnv, JobShopVectorEnv
from sched_env.warmup import warm_up

__version__ = "0.1.0"

if "sched_env/JobShop-v0" not in registry:
    register(
        id="sched_env/JobShop-v0",
        entry_point="sched_env.env:JobShopEnv",
        vector_entry_point="sched_env.vector:make_vector_env",
    )
if "sched_env/DynamicJobShop-v0" not in registry:
    register(
        id="sched_env/DynamicJobShop-v0",
        entry_point="sched_env.dynamic:DynamicJobShopEnv",
        vector_entry_point="sched_env.vector:make_dynamic_vector_env",
    )

__all__ = [
    "ACTION_SETS",
    "FEATURE_NAMES",
    "PLACEMENTS",
    "REWARD_MODES",
    "BatchDynamicJobShopEnv",
    "BatchJobShopEnv",
    "DynamicJobShopEnv",
    "InfeasibleScheduleError",
    "InvalidActionError",
    "InvalidInstanceError",
    "JobShopEnv",
    "JobShopInstance",
    "JobShopVectorEnv",
    "SchedEnvError",
    "Scenario",
    "ScenarioGenerator",
    "Schedule",
    "ShopState",
    "Violation",
    "find_violations",
    "generate_scenario",
    "replay",
    "validate_schedule",
    "warm_up",
]
