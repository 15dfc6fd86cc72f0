"""The benchmark catalogue: names, families, sizes, best-known bounds, and where data comes from.

Taillard's ta01-ta80 are generated from their seeds, so they always load. The other classic
benchmarks (ft, la, abz, orb, swv, yn, dmu) ship as one compressed file of JSPLIB texts
(``data/jsplib.json.xz``, public benchmark data; rebuild it with ``python -m
instances.bundle FOLDER``). A folder of instance files given with ``directory=`` or
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
from instances.formats import PathLike, parse_jsplib, read_instance
from instances.instance import JobShopInstance
from instances.taillard import TAILLARD_SEEDS, taillard

#: Environment variable naming extra instance folders (``os.pathsep``-separated).
INSTANCES_ENV_VAR = "SCHED_ENV_INSTANCES"
_SUFFIXES = ("", ".txt", ".jss", ".json")

FAMILIES = {
    "abz": "Adams, Balas & Zawack 1988",
    "dmu": "Demirkol, Mehta & Uzsoy 1998",
    "ft": "Fisher & Thompson 1963",
    "la": "Lawrence 1984",
    "orb": "Applegate & Cook 1991",
    "swv": "Storer, Wu & Vaccari 1992",
    "ta": "Taillard 1993 (generated from seeds)",
    "yn": "Yamada & Nakano 1992",
}


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
    """The family prefix of a benchmark name ('ta' for 'ta01', 'la' for 'la16')."""
    match = re.match(r"[a-z]+", name.lower())
    return match.group(0) if match else ""


def _natural_key(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower()))


@functools.lru_cache(maxsize=1)
def _known() -> dict[str, tuple[int, int, Bounds]]:
    text = resources.files("instances").joinpath("data", "bounds.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    known = {}
    for row in rows:
        optimum = int(row["optimum"]) if row["optimum"] else None
        bounds = Bounds(int(row["lower_bound"]), int(row["upper_bound"]), optimum)
        known[row["name"]] = (int(row["jobs"]), int(row["machines"]), bounds)
    return known


BUNDLE = "jsplib.json.xz"


@functools.lru_cache(maxsize=1)
def _bundled_texts() -> dict[str, str]:
    """Name -> JSPLIB text of every shipped instance (empty if the file is absent)."""
    path = resources.files("instances").joinpath("data", BUNDLE)
    if not path.is_file():
        return {}
    return json.loads(lzma.decompress(path.read_bytes()).decode())


@functools.cache
def _bundled(name: str) -> JobShopInstance:
    return parse_jsplib(_bundled_texts()[name], name=name, source=f"{BUNDLE}:{name}")


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
    if name in _bundled_texts():
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
    elif key in _bundled_texts():
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
