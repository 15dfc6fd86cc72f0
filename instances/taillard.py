"""Taillard's 1993 job-shop generator: ta01..ta80 rebuilt bit-exact from the published seeds.

É. D. Taillard, "Benchmarks for basic scheduling problems", EJOR 64(2):278-285, 1993.
A Lehmer generator (a = 16807, m = 2^31 - 1) draws all durations job by job from the time
seed, then shuffles each job's identity route with a forward Fisher-Yates from the machine seed.
"""

from __future__ import annotations

import numpy as np

from instances.errors import InvalidInstanceError, UnknownInstanceError
from instances.instance import JobShopInstance

_MODULUS = 2**31 - 1
_MULTIPLIER = 16807

#: name -> (n_jobs, n_machines, time_seed, machine_seed), from Taillard's instance headers.
TAILLARD_SEEDS: dict[str, tuple[int, int, int, int]] = {}
_SEED_TABLE = {
    (15, 15): [
        (840612802, 398197754),
        (1314640371, 386720536),
        (1227221349, 316176388),
        (342269428, 1806358582),
        (1603221416, 1501949241),
        (1357584978, 1734077082),
        (44531661, 1374316395),
        (302545136, 2092186050),
        (1153780144, 1393392374),
        (73896786, 1544979948),
    ],
    (20, 15): [
        (533484900, 317419073),
        (1894307698, 1474268163),
        (874340513, 509669280),
        (1124986343, 1209573668),
        (1463788335, 529048107),
        (1056908795, 25321885),
        (195672285, 1717580117),
        (961965583, 1353003786),
        (1610169733, 1734469503),
        (532794656, 998486810),
    ],
    (20, 20): [
        (1035939303, 773961798),
        (5997802, 1872541150),
        (1357503601, 722225039),
        (806159563, 1166962073),
        (1902815253, 1879990068),
        (1503184031, 1850351876),
        (1032645967, 99711329),
        (229894219, 1158117804),
        (823349822, 108033225),
        (1297900341, 489486403),
    ],
    (30, 15): [
        (98640593, 1981283465),
        (1839268120, 248890888),
        (573875290, 2081512253),
        (1670898570, 788294565),
        (1118914567, 1074349202),
        (178750207, 294279708),
        (1549372605, 596993084),
        (798174738, 151685779),
        (553410952, 1329272528),
        (1661531649, 1173386294),
    ],
    (30, 20): [
        (1841414609, 1357882888),
        (2116959593, 1546338557),
        (796392706, 1230864158),
        (532496463, 254174057),
        (2020525633, 978943053),
        (524444252, 185526083),
        (1569394691, 487269855),
        (1460267840, 1631446539),
        (198324822, 1937476577),
        (38071822, 1541985579),
    ],
    (50, 15): [
        (17271, 718939),
        (660481279, 449650254),
        (352229765, 949737911),
        (1197518780, 166840558),
        (1376020303, 483922052),
        (2106639239, 955932362),
        (1765352082, 1209982549),
        (1105092880, 1349003108),
        (907248070, 919544535),
        (2011630757, 1845447001),
    ],
    (50, 20): [
        (8493988, 2738939),
        (1991925010, 709517751),
        (342093237, 786960785),
        (1634043183, 973178279),
        (341706507, 286513148),
        (320167954, 1411193018),
        (1089696753, 298068750),
        (433032965, 1589656152),
        (615974477, 331205412),
        (236150141, 592292984),
    ],
    (100, 20): [
        (302034063, 1203569070),
        (1437643198, 1692025209),
        (1792475497, 1039908559),
        (1647273132, 1012841433),
        (696480901, 1689682358),
        (1785569423, 1092647459),
        (117806902, 739059626),
        (1639154709, 1319962509),
        (2007423389, 749368241),
        (682761130, 262763021),
    ],
}
for _group, ((_n, _m), _seeds) in enumerate(_SEED_TABLE.items()):
    for _i, (_time_seed, _machine_seed) in enumerate(_seeds):
        TAILLARD_SEEDS[f"ta{10 * _group + _i + 1:02d}"] = (_n, _m, _time_seed, _machine_seed)


class _Lehmer:
    """Park-Miller 'minimal standard' generator as Taillard used it."""

    def __init__(self, seed: int) -> None:
        if not 0 < seed < _MODULUS:
            raise InvalidInstanceError(f"a Taillard seed must be in 1..{_MODULUS - 1}, got {seed}")
        self.state = seed

    def uniform(self, low: int, high: int) -> int:
        """Advance once, then map to an integer in [low, high] (exact-integer form of Taillard's floor)."""
        self.state = (_MULTIPLIER * self.state) % _MODULUS
        return low + (self.state * (high - low + 1)) // _MODULUS


def generate_taillard(
    n_jobs: int, n_machines: int, time_seed: int, machine_seed: int, *, name: str | None = None
) -> JobShopInstance:
    """One instance of Taillard's generator from its two seeds (durations 1..99, random routes)."""
    if n_jobs < 1 or n_machines < 1:
        raise InvalidInstanceError(f"n_jobs and n_machines must be >= 1, got {n_jobs} and {n_machines}")
    times, routes = _Lehmer(time_seed), _Lehmer(machine_seed)
    durations = np.array([[times.uniform(1, 99) for _ in range(n_machines)] for _ in range(n_jobs)])
    machines = np.empty((n_jobs, n_machines), dtype=np.int64)
    for job in range(n_jobs):
        route = list(range(n_machines))
        for j in range(n_machines):
            k = routes.uniform(j, n_machines - 1)
            route[j], route[k] = route[k], route[j]
        machines[job] = route
    return JobShopInstance(
        machines,
        durations,
        n_machines=n_machines,
        name=name or f"taillard_{n_jobs}x{n_machines}_{time_seed}_{machine_seed}",
        metadata={"family": "ta", "time_seed": time_seed, "machine_seed": machine_seed},
    )


def taillard(name: str) -> JobShopInstance:
    """Taillard's instance ``ta01`` .. ``ta80`` regenerated from its seeds."""
    key = name.lower()
    if key not in TAILLARD_SEEDS:
        raise UnknownInstanceError(f"{name!r} is not a Taillard job-shop instance; use ta01 .. ta80")
    n_jobs, n_machines, time_seed, machine_seed = TAILLARD_SEEDS[key]
    return generate_taillard(n_jobs, n_machines, time_seed, machine_seed, name=key)
