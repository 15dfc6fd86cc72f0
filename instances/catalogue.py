"""The benchmark catalogue: names, families, sizes, best-known bounds, and where data comes from.

Taillard's ta01-ta80 are generated from their seeds, so they always load. The other classic
benchmarks (ft, la, abz, orb, swv, yn, dmu) ship as one compressed file of JSPLIB texts
(``data/jsplib.json.xz``, public benchmark data; rebuild it with ``python -m
instances.bundle FOLDER``). The flexible families (Brandimarte ``mk``, Hurink ``la01_edata``
... ``mt20_vdata``, Kacem, Fattahi ``mfjs``, ``bv``, and the 600 generated ``sd1`` test instances
of the learned-FJSP papers) ship the same way as ``.fjs`` texts (``data/fjsp.json.xz``) with their
bounds and published results (``data/fjsp_bounds.csv``, ``data/sd1_results.csv``; rebuild with
``python -m instances.bundle --fjsp FOLDER``). A folder of instance files given with ``directory=`` or
the ``SCHED_ENV_INSTANCES`` environment variable (several folders separated by ``os.pathsep``)
comes first.
"""

from __future__ import annotations

import csv
import difflib
import functools
import json
import lzma
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from instances.errors import UnknownInstanceError
from instances.formats import PathLike, parse_fjs, parse_jsplib, read_instance
from instances.instance import JobShopInstance
from instances.taillard import TAILLARD_SEEDS, taillard

#: Environment variable naming extra instance folders (``os.pathsep``-separated).
INSTANCES_ENV_VAR = "SCHED_ENV_INSTANCES"
_SUFFIXES = ("", ".txt", ".jss", ".fjs", ".json")

FAMILIES = {
    "abz": "Adams, Balas & Zawack 1988",
    "dmu": "Demirkol, Mehta & Uzsoy 1998",
    "ft": "Fisher & Thompson 1963",
    "la": "Lawrence 1984",
    "orb": "Applegate & Cook 1991",
    "swv": "Storer, Wu & Vaccari 1992",
    "ta": "Taillard 1993 (generated from seeds)",
    "yn": "Yamada & Nakano 1992",
    "mk": "Brandimarte 1993 (flexible)",
    "hurink_edata": "Hurink, Jurisch & Thole 1994, few alternatives (flexible)",
    "hurink_rdata": "Hurink, Jurisch & Thole 1994, some alternatives (flexible)",
    "hurink_vdata": "Hurink, Jurisch & Thole 1994, many alternatives (flexible)",
    "kacem": "Kacem, Hammadi & Borne 2002 (flexible)",
    "mfjs": "Fattahi, Mehrabad & Jolai 2007 (flexible)",
    "bv": "Naderi et al. 2023, large BV category (flexible)",
    "sd1": "Song et al. 2022, generated test sets of the learned-FJSP papers (flexible)",
}
#: The families whose operations have alternative machines.
FLEXIBLE_FAMILIES = frozenset(("mk", "hurink_edata", "hurink_rdata", "hurink_vdata", "kacem", "mfjs", "bv", "sd1"))
#: Folder of each flexible family in the shared benchmark tree, and the catalogue name of a file there.
FJSP_FOLDERS = {
    "brandimarte": "{stem}", "bv": "{stem}", "fattahi": "{stem}", "kacem": "{stem}",
    "hurink_edata": "{stem}_edata", "hurink_rdata": "{stem}_rdata", "hurink_vdata": "{stem}_vdata",
}  # fmt: skip
SD1_SIZES = ("10x5", "20x5", "15x10", "20x10", "30x10", "40x10")


@dataclass(frozen=True)
class Bounds:
    """Published bounds on the optimal makespan; ``optimum`` is set when they meet."""

    lower: int
    upper: int
    optimum: int | None

    @property
    def is_closed(self) -> bool:
        return self.optimum is not None


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    family: str
    n_jobs: int
    n_machines: int
    bounds: Bounds | None
    source: str  # "generated", a file path, or "missing"


def family_of(name: str) -> str:
    """The family of a benchmark name: its prefix ('ta' for 'ta01', 'la' for 'la16'), or for
    the flexible sets 'hurink_edata' ('la01_edata'), 'sd1' ('sd1_10x5_001')."""
    name = name.lower()
    hurink = re.fullmatch(r"[a-z]+\d+_([erv]data)", name)
    if hurink:
        return f"hurink_{hurink.group(1)}"
    if name.startswith("sd1_"):
        return "sd1"
    match = re.match(r"[a-z]+", name)
    return match.group(0) if match else ""


def _natural_key(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower()))


def _data_rows(filename: str) -> list[dict[str, str]]:
    text = resources.files("instances").joinpath("data", filename).read_text()
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


@functools.lru_cache(maxsize=1)
def _known() -> dict[str, tuple[int, int, Bounds]]:
    known = {}
    for row in _data_rows("bounds.csv") + _data_rows(FJSP_BOUNDS):
        optimum = int(row["optimum"]) if row["optimum"] else None
        bounds = Bounds(int(row["lower_bound"]), int(row["upper_bound"]), optimum)
        known[row["name"]] = (int(row["jobs"]), int(row["machines"]), bounds)
    return known


BUNDLE = "jsplib.json.xz"
FJSP_BUNDLE = "fjsp.json.xz"
FJSP_BOUNDS = "fjsp_bounds.csv"
SD1_RESULTS = "sd1_results.csv"


@functools.cache
def _read_bundle(filename: str) -> dict[str, str]:
    path = resources.files("instances").joinpath("data", filename)
    if not path.is_file():
        return {}
    return json.loads(lzma.decompress(path.read_bytes()).decode())


def _bundled_texts() -> dict[str, str]:
    """Name -> JSPLIB or ``.fjs`` text of every shipped instance (empty if the files are absent)."""
    return {**_read_bundle(BUNDLE), **_read_bundle(FJSP_BUNDLE)}


def _is_bundled(name: str) -> bool:
    """Is ``name`` shipped? (The flexible bundle is read only for names the classic one lacks.)"""
    return name in _read_bundle(BUNDLE) or name in _read_bundle(FJSP_BUNDLE)


@functools.cache
def _bundled(name: str) -> JobShopInstance:
    if name in _read_bundle(BUNDLE):
        return parse_jsplib(_read_bundle(BUNDLE)[name], name=name, source=f"{BUNDLE}:{name}")
    return parse_fjs(_read_bundle(FJSP_BUNDLE)[name], name=name, source=f"{FJSP_BUNDLE}:{name}")


@functools.lru_cache(maxsize=1)
def _published() -> dict[str, dict[str, float]]:
    """Name -> published makespans (CP solvers at 900 s, OR-Tools at 1 800 s, the learned-FJSP
    papers' policies and rules), as shipped in the flexible families' data files."""
    published: dict[str, dict[str, float]] = {}
    for row in _data_rows(FJSP_BOUNDS) + _data_rows(SD1_RESULTS):
        values = {key: float(value) for key, value in row.items() if key not in _NOT_PUBLISHED and value}
        published[row["name"]] = values
    return published


_NOT_PUBLISHED = {"name", "family", "size", "jobs", "machines", "lower_bound", "upper_bound", "optimum",
                  "bound_source", "cpsat_900s_status", "cpoptimizer_900s_status", "ortools_seconds"}  # fmt: skip


def published(name: str) -> dict[str, float]:
    """The published results of a flexible benchmark (empty for other names): for the classic
    FJSP families ``cpsat_900s_8workers`` and ``cpoptimizer_900s_8workers`` (makespans, 900 s on
    8 workers, PyJobShop's study); for ``sd1`` ``ortools_1800s`` and the papers' columns
    (``DANIELG+10x5`` greedy, ``DANIELS+10x5`` best of 100, ``DRLG``/``DRLS`` for HGNN, the rules
    ``FIFO``, ``MOR``, ``MWKR``, ``SPT`` with the earliest-end-time machine)."""
    return dict(_published().get(name.lower(), {}))


def write_bundle(folder: PathLike, path: PathLike) -> int:
    """Pack every catalogued non-Taillard JSPLIB file of ``folder`` into one xz-compressed
    JSON file (name -> text); returns how many. Each text is parsed first, so only valid data ships."""
    texts = {}
    for name in sorted(_known(), key=_natural_key):
        file = Path(folder) / f"{name}.txt"
        if name not in TAILLARD_SEEDS and file.is_file():
            text = file.read_text()
            parse_jsplib(text, name=name, source=str(file))
            texts[name] = text
    Path(path).write_bytes(lzma.compress(json.dumps(texts, sort_keys=True).encode(), preset=9 | lzma.PRESET_EXTREME))
    return len(texts)


def write_fjsp_bundle(folder: PathLike, data_dir: PathLike) -> int:
    """Pack the shared flexible benchmark tree (``folder``: the family folders, ``bounds.csv``,
    ``sd1/``) into ``data_dir``: the ``.fjs`` texts, their bounds and the published results.
    Each text is parsed first, so only valid data ships; returns how many instances."""
    folder, data_dir = Path(folder), Path(data_dir)
    texts, sizes = {}, {}
    for family, pattern in FJSP_FOLDERS.items():
        for file in sorted((folder / family).glob("*.fjs")):
            texts[pattern.format(stem=file.stem.lower())] = file.read_text()
    for size in SD1_SIZES:
        for file in sorted((folder / "sd1" / size).glob("*.fjs")):
            texts[file.stem.lower()] = file.read_text()
    for name, text in texts.items():
        sizes[name] = parse_fjs(text, name=name, source=name)
    header = ["name", "family", "jobs", "machines", "lower_bound", "upper_bound", "optimum", "bound_source",
              "cpsat_900s_8workers", "cpsat_900s_lower_bound", "cpsat_900s_status", "cpoptimizer_900s_8workers",
              "cpoptimizer_900s_status"]  # fmt: skip
    rows = []
    for row in csv.DictReader((folder / "bounds.csv").open()):
        name = FJSP_FOLDERS[row["family"]].format(stem=row["name"].lower())
        lower = max(int(row["lower_bound"] or 0), int(float(row["cpsat_900s_lower_bound"])))
        upper, source = _best_upper_bound(row, lower, sizes[name].simple_lower_bound())
        rows.append({**row, "name": name, "bound_source": source, "family": family_of(name), "jobs": sizes[name].n_jobs,
                     "machines": sizes[name].n_machines, "lower_bound": lower, "upper_bound": upper,
                     "optimum": upper if lower == upper else ""})  # fmt: skip
    results = list(csv.DictReader((folder / "sd1" / "results.csv").open()))
    for row in results:
        instance = sizes[row["name"]]
        rows.append({"name": row["name"], "family": "sd1", "jobs": instance.n_jobs, "machines": instance.n_machines,
                     "lower_bound": instance.simple_lower_bound(), "upper_bound": row["ortools_1800s"], "optimum": "",
                     "bound_source": "OR-Tools 1800 s (Song et al. / DANIEL test sets)"})  # fmt: skip
    with (data_dir / FJSP_BOUNDS).open("w", newline="") as out:
        writer = csv.DictWriter(out, header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (data_dir / SD1_RESULTS).write_text((folder / "sd1" / "results.csv").read_text())
    packed = json.dumps(texts, sort_keys=True).encode()
    (data_dir / FJSP_BUNDLE).write_bytes(lzma.compress(packed, preset=9 | lzma.PRESET_EXTREME))
    return len(texts)


def _best_upper_bound(row: dict[str, str], lower: int, simple_bound: int) -> tuple[int, str]:
    """The best makespan known for a shared FJSP row, and its source: the listed best known,
    unless a published CP solver run (900 s) found a better one, or the listed value is below a
    proven lower bound (bv019's listed 452 is below its longest job, 534: a stale entry)."""
    listed = int(row["best_known"])
    solvers = {key: int(float(row[key])) for key in ("cpsat_900s_8workers", "cpoptimizer_900s_8workers") if row[key]}
    solver, best = min(solvers.items(), key=lambda item: item[1])
    if listed < max(lower, simple_bound):
        return best, f"{solver} (listed best known {listed} is below a proven lower bound)"
    if best < listed:
        return best, f"{solver} (better than the listed {listed})"
    return listed, row["bound_source"]


def search_directories(directory: PathLike | None = None) -> list[Path]:
    """The folders searched for instance files: ``directory`` first, then ``$SCHED_ENV_INSTANCES``."""
    folders = [Path(directory)] if directory is not None else []
    folders += [Path(p) for p in os.environ.get(INSTANCES_ENV_VAR, "").split(os.pathsep) if p]
    return folders


def _find_file(name: str, directory: PathLike | None) -> Path | None:
    for folder in search_directories(directory):
        for suffix in _SUFFIXES:
            candidate = folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or Path(name).suffix.lower() in _SUFFIXES[1:]


@functools.lru_cache(maxsize=128)
def _load_file_cached(path: str, mtime: float) -> JobShopInstance:
    return read_instance(path)


def load(name_or_path: PathLike, *, directory: PathLike | None = None) -> JobShopInstance:
    """Load a benchmark by name ('ta01', 'ft06', ...) or read an instance file by path.

    Names are looked up in ``directory`` and ``$SCHED_ENV_INSTANCES`` first, then Taillard's
    instances are generated. A known benchmark whose file is missing raises
    :class:`UnknownInstanceError` saying where to put it.
    """
    text = os.fspath(name_or_path)
    if Path(text).is_file():
        return _load_file_cached(str(Path(text).resolve()), Path(text).stat().st_mtime)
    if _looks_like_path(text):
        raise UnknownInstanceError(f"no instance file at {text!r}")
    name = text.lower()
    found = _find_file(name, directory)
    if found is not None:
        instance = _load_file_cached(str(found.resolve()), found.stat().st_mtime)
        return instance if instance.name == name else instance.replace(name=name)
    if name in TAILLARD_SEEDS:
        return _taillard_cached(name)
    if _is_bundled(name):
        return _bundled(name)
    if name in _known():
        raise UnknownInstanceError(
            f"{name!r} is a known benchmark ({FAMILIES.get(family_of(name), family_of(name))}) but its"
            f" data is not bundled: put {name}.txt (JSPLIB format) in a folder and pass"
            f" directory=FOLDER or set {INSTANCES_ENV_VAR}=FOLDER"
        )
    close = difflib.get_close_matches(name, names(directory=directory), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `sched-env instances list` shows the names"
    raise UnknownInstanceError(f"unknown instance {name!r}{hint}")


@functools.cache
def _taillard_cached(name: str) -> JobShopInstance:
    return taillard(name)


def _folder_names(directory: PathLike | None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in reversed(search_directories(directory)):
        if folder.is_dir():
            for path in folder.iterdir():
                if path.is_file() and path.suffix.lower() in _SUFFIXES and path.stem.lower() != "readme":
                    found[path.stem.lower()] = path
    return found


def names(family: str | None = None, *, directory: PathLike | None = None) -> list[str]:
    """Catalogue names (all known benchmarks plus files in the instance folders), naturally sorted."""
    all_names = set(_known()) | set(TAILLARD_SEEDS) | set(_folder_names(directory))
    if family is not None:
        family = family.lower()
        all_names = {n for n in all_names if family_of(n) == family}
    return sorted(all_names, key=_natural_key)


def bounds(name: str) -> Bounds:
    """Published lower/upper bound (and optimum if proven) of a benchmark's makespan."""
    entry = _known().get(name.lower())
    if entry is None:
        raise UnknownInstanceError(f"no published bounds for {name!r}; known families: {', '.join(FAMILIES)}")
    return entry[2]


def entry(name: str, *, directory: PathLike | None = None) -> CatalogueEntry:
    """What the catalogue knows of one name: family, size, bounds, and where its data comes from."""
    key = name.lower()
    files = _folder_names(directory)
    known = _known().get(key)
    if key in files:
        source = str(files[key])
    elif key in TAILLARD_SEEDS:
        source = "generated"
    elif _is_bundled(key):
        source = "bundled"
    elif known is not None:
        source = "missing"
    else:
        raise UnknownInstanceError(f"unknown instance {name!r}")
    if known is not None:
        n_jobs, n_machines, bound = known
    else:
        instance = load(key, directory=directory)
        n_jobs, n_machines, bound = instance.n_jobs, instance.n_machines, None
    return CatalogueEntry(key, family_of(key), n_jobs, n_machines, bound, source)


def best_known(name: str) -> int | None:
    """The best-known makespan (upper bound) of a benchmark, or None if it is not catalogued."""
    entry_ = _known().get(name.lower())
    return entry_[2].upper if entry_ else None
