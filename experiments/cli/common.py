"""What every ``sched-env`` command shares: the one-line error, option types that refuse bad values
naming the option, output paths checked before any work, instance loading."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DIR_HELP = "folder of JSPLIB instance files (default: $SCHED_ENV_INSTANCES)"
#: Image formats a Gantt chart can be written in (matplotlib's raster and vector writers).
CHART_FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".webp", ".eps", ".ps", ".tif", ".tiff")


class UserError(Exception):
    """A mistake in the command line; printed as one line (exit status 2)."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose refusals are one line naming the option (not a usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text: str, parse, low: float, high: float, what: str):
    """``text`` parsed as a number in [low, high], or an argparse refusal saying ``what`` it must be."""
    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (argparse names the option when it refuses)."""
    return _number(text, int, 1, float("inf"), "a whole number, 1 or more")


def positive_seconds(text: str) -> float:
    """An argparse type: seconds > 0 (and finite)."""
    return _number(text, float, 1e-9, 1e12, "a positive number of seconds")


def port(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    return _number(text, int, 1, 65535, "a port number from 1 to 65535")


def existing_dir(text: str) -> str:
    """An argparse type: a folder that exists."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {text}")
    return text


def output_file(option: str, path: str | None, formats: tuple[str, ...] | None = None) -> Path | None:
    """``path`` for ``option``, checked before any work: its folder exists and is writable, its
    suffix is one of ``formats`` (when given); one line naming the option otherwise."""
    if path is None:
        return None
    target = Path(path)
    if formats is not None and target.suffix.lower() not in formats:
        raise UserError(f"{option} {path}: write one of {', '.join(formats)} (the suffix chooses the format)")
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UserError(f"{option} {path}: that is a folder; give a file name")
    if not folder.is_dir():
        raise UserError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{option} {path}: the folder {folder} is not writable")
    return target


def output_dir(option: str, path: str) -> Path:
    """A folder for ``option``'s outputs, created now (with its parents); one line if it cannot be."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{option} {path}: cannot create that folder ({error.strerror or error})") from None
    if not os.access(folder, os.W_OK):
        raise UserError(f"{option} {path}: the folder is not writable")
    return folder


def expand_names(spec: str) -> list[str]:
    """'ta01-ta03,ft06' -> ['ta01', 'ta02', 'ta03', 'ft06']: ranges within one family, also with
    a suffix ('la01_edata-la40_edata') or a prefix with digits ('sd1_10x5_001-sd1_10x5_020');
    'sd1:10x5' is the 100 generated test instances of that size."""
    import re

    import instances

    names: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        part = part.lower()
        match = re.fullmatch(r"(.*?)(\d+)(\D*)-(?:\1)?(\d+)(?:\3)?", part)
        if part.startswith("sd1:"):
            size = part.partition(":")[2]
            if size not in instances.catalogue.SD1_SIZES:
                raise UserError(f"{part!r}: sd1 sizes are {', '.join(instances.catalogue.SD1_SIZES)}")
            names += [n for n in instances.names("sd1") if n.startswith(f"sd1_{size}_")]
        elif match:
            prefix, first, suffix, last = match.groups()
            if int(last) < int(first):
                raise UserError(f"empty range {part!r}: the second number must not be smaller")
            names += [f"{prefix}{i:0{len(first)}d}{suffix}" for i in range(int(first), int(last) + 1)]
        else:
            names.append(part)
    if not names:
        raise UserError(f"no instance names in {spec!r}")
    return names


def load_instance(name: str, directory: str | None):
    import instances

    return instances.load(name, directory=directory)
