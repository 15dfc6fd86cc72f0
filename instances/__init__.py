"""sched-env problem data: the job-shop instance type, file formats, benchmarks and generators.

>>> import instances
>>> ta01 = instances.load("ta01")          # generated from Taillard's seeds
>>> instances.bounds("ta01").optimum
1231
"""

from instances.catalogue import (
    FAMILIES,
    INSTANCES_ENV_VAR,
    Bounds,
    CatalogueEntry,
    best_known,
    bounds,
    entry,
    family_of,
    load,
    names,
    published,
)
from instances.errors import (
    InfeasibleScheduleError,
    InvalidActionError,
    InvalidInstanceError,
    InvalidPlanError,
    InvalidScenarioError,
    InvalidScheduleFileError,
    SchedEnvError,
    SolverError,
    UnknownInstanceError,
)
from instances.formats import (
    format_fjs,
    format_instance,
    format_jsplib,
    format_taillard,
    parse_fjs,
    parse_instance,
    parse_jsplib,
    parse_taillard,
    read_instance,
    write_instance,
)
from instances.generators import (
    BrandimarteGenerator,
    MixedSizeGenerator,
    RandomInstanceGenerator,
    SD1Generator,
    ShopMixGenerator,
    random_instance,
    shop_generator,
)
from instances.instance import JobShopInstance
from instances.taillard import TAILLARD_SEEDS, generate_taillard, taillard

__all__ = [
    "FAMILIES",
    "INSTANCES_ENV_VAR",
    "TAILLARD_SEEDS",
    "Bounds",
    "BrandimarteGenerator",
    "SD1Generator",
    "ShopMixGenerator",
    "shop_generator",
    "CatalogueEntry",
    "InfeasibleScheduleError",
    "InvalidActionError",
    "InvalidInstanceError",
    "InvalidScenarioError",
    "InvalidScheduleFileError",
    "JobShopInstance",
    "MixedSizeGenerator",
    "RandomInstanceGenerator",
    "SchedEnvError",
    "SolverError",
    "InvalidPlanError",
    "UnknownInstanceError",
    "best_known",
    "bounds",
    "entry",
    "family_of",
    "format_instance",
    "format_jsplib",
    "format_taillard",
    "generate_taillard",
    "load",
    "names",
    "parse_fjs",
    "format_fjs",
    "published",
    "parse_instance",
    "parse_jsplib",
    "parse_taillard",
    "random_instance",
    "read_instance",
    "taillard",
    "write_instance",
]
