"""The flexible instance type: alternatives, the .fjs and JSON formats, the shipped families, generators."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import instances
from instances import BrandimarteGenerator, InvalidInstanceError, JobShopInstance, SD1Generator
from instances.catalogue import FJSP_FOLDERS, FLEXIBLE_FAMILIES


def test_alternatives_define_the_shortest_machine_and_the_table(flexible_tiny):
    inst = flexible_tiny
    assert inst.is_flexible and not inst.is_classic
    assert inst.alternatives(0, 0) == [(0, 3), (1, 5)]
    assert inst.machines[0].tolist() == [0, 1, 2] and inst.durations[0].tolist() == [3, 2, 2]
    assert inst.machines[2, 0] == 0  # ties go to the lowest machine
    assert inst.processing_table()[1, 2].tolist() == [-1, -1, -1]  # padding past a job's operations
    assert inst.flexibility == pytest.approx(14 / 8)
    # bounds: the longest job at its shortest times, and the shortest work spread over the machines
    assert inst.simple_lower_bound() == max(7, 5, 6, -(-(7 + 5 + 6) // 3))


def test_one_alternative_each_is_the_classic_instance(tiny):
    again = JobShopInstance.from_alternatives([[[pair] for pair in tiny.operations(j)] for j in range(tiny.n_jobs)])
    assert not again.is_flexible and again.same_data(tiny)
    assert np.array_equal(tiny.processing_table().max(axis=2), tiny.durations)


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ([[[]]], "job 0 operation 0 has no alternative"),
        ([[[(0, 1), (0, 2)]]], "machine 0 is listed twice"),
        ([[[(0, -1)]]], "duration -1 on machine 0 is negative"),
        ([[[(0, 1)], [(7, 1)]]], "job 0 operation 1: machine 7 is out of range"),
        ([[[(0, 1, 2)]]], "expected \\(machine, duration\\) pairs"),
    ],
)
def test_bad_alternatives_are_named(jobs, message):
    with pytest.raises(InvalidInstanceError, match=message):
        JobShopInstance.from_alternatives(jobs, n_machines=2)


def test_json_and_fjs_round_trips(flexible_tiny, tmp_path):
    for suffix in (".json", ".fjs"):
        path = instances.write_instance(flexible_tiny, tmp_path / f"x{suffix}")
        back = instances.read_instance(path)
        assert back.same_data(flexible_tiny) and back.is_flexible, suffix
    assert instances.write_instance(flexible_tiny, tmp_path / "y.txt").read_text().splitlines()[0].startswith("3 3")
    with pytest.raises(InvalidInstanceError, match="is flexible: write it as .fjs or JSON"):
        instances.format_jsplib(flexible_tiny)
    assert JobShopInstance.from_dict(flexible_tiny.to_dict()) == flexible_tiny


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2 2\n1 1 3 5\n1 1 1 5", "f.fjs:2: job 0 operation 0: machine 3 is out of range"),
        ("1 2\n1 0", "f.fjs:2: job 0 operation 0: it has 0 alternatives"),
        ("1 2\n1 2 1 5 1 6", "f.fjs:2: job 0 operation 0: machine 1 is listed twice"),
        ("1 2\n1 1 1 -5", "f.fjs:2: job 0 operation 0: duration -5 is negative"),
        ("1 2\n2 1 1 5", "f.fjs:2: job 0 operation 1: the line ends early"),
        ("1 2\n1 1 1 5 7", "f.fjs:2: job 0: 1 number\\(s\\) after its last operation"),
        ("2 2 1.5\n1 1 1 5", "f.fjs:2: file ends early: expected job 1"),
        ("1 2\n1 1 x 5", "f.fjs:2: 'x' is not an integer"),
        ("", "f.fjs: file is empty"),
    ],
)
def test_bad_fjs_files_are_named_by_file_line_job_and_operation(text, message):
    with pytest.raises(InvalidInstanceError, match=message):
        instances.parse_fjs(text, source="f.fjs")


def test_flexible_families_are_shipped_with_bounds_and_published_results():
    assert {instances.family_of(n) for n in instances.names()} >= FLEXIBLE_FAMILIES
    mk10 = instances.load("mk10")
    assert mk10.is_flexible and mk10.shape == (20, 11)
    assert instances.bounds("mk10").upper == 193
    assert instances.published("mk10")["cpsat_900s_8workers"] == 205
    assert instances.load("la01_edata").is_flexible and not instances.load("la01").is_flexible
    assert instances.family_of("la01_edata") == "hurink_edata" and instances.family_of("sd1_10x5_001") == "sd1"
    sd1 = instances.published("sd1_10x5_001")
    assert sd1["ortools_1800s"] == instances.bounds("sd1_10x5_001").upper == 109
    assert {"MWKR", "DANIELG+10x5", "DRLG+10x5"} <= set(sd1)
    for name in ("kacem1", "mfjs10", "bv096", "mt20_vdata", "sd1_40x10_100"):
        assert instances.load(name).simple_lower_bound() <= instances.bounds(name).upper, name


def test_shipped_flexible_instances_equal_the_shared_files(fjsp):
    checked = 0
    for family, pattern in FJSP_FOLDERS.items():
        for path in sorted((fjsp / family).glob("*.fjs")):
            assert instances.load(pattern.format(stem=path.stem)).same_data(instances.read_instance(path)), path
            checked += 1
    for path in sorted((fjsp / "sd1").glob("*/*.fjs"))[::25]:
        assert instances.load(path.stem).same_data(instances.read_instance(path)), path
        checked += 1
    rows = list(csv.DictReader((fjsp / "bounds.csv").open()))
    for row in rows:
        name = FJSP_FOLDERS[row["family"]].format(stem=row["name"])
        solvers = min(float(row["cpsat_900s_8workers"]), float(row["cpoptimizer_900s_8workers"]))
        bounds = instances.bounds(name)
        assert bounds.upper in (int(row["best_known"]), solvers) and bounds.upper <= solvers, name
        assert instances.load(name).simple_lower_bound() <= bounds.lower <= bounds.upper, name
    assert checked >= 250 + 24


def test_generators_are_seeded_and_follow_their_distributions():
    sd1 = SD1Generator(10, 5)
    a, b = sd1(np.random.default_rng(3)), sd1(np.random.default_rng(3))
    assert a == b and a.is_flexible and (a.n_ops >= 4).all() and (a.n_ops <= 6).all()
    table = a.processing_table()
    real = table[table >= 0]
    assert real.min() >= 1 and real.max() <= 20
    counts = (table >= 0).sum(axis=2)[np.arange(a.max_ops)[None, :] < a.n_ops[:, None]]
    assert counts.min() >= 1 and counts.max() <= 5
    brandimarte = BrandimarteGenerator(8, 6, alternatives=(2, 2))
    inst = brandimarte(7)
    counts = (inst.processing_table() >= 0).sum(axis=2)
    assert set(counts[np.arange(inst.max_ops)[None, :] < inst.n_ops[:, None]].tolist()) == {2}
    assert sd1.max_ops == 6 and brandimarte.max_ops == 10
    with pytest.raises(InvalidInstanceError, match="alternatives must be"):
        BrandimarteGenerator(3, 2, alternatives=(1, 3))


def test_fjs_files_we_write_read_the_same_in_the_fjsplib_package(tmp_path):
    fjsplib = pytest.importorskip("fjsplib")
    for name in ("mk03", "la05_vdata", "kacem2"):
        ours = instances.load(name)
        path = instances.write_instance(ours, tmp_path / f"{name}.fjs")
        theirs = fjsplib.read(path)
        assert (theirs.num_jobs, theirs.num_machines, theirs.num_operations) == (
            ours.n_jobs,
            ours.n_machines,
            ours.n_operations,
        )
        alternatives = [[sorted(op) for op in job] for job in theirs.jobs]
        assert alternatives == [
            [instances.load(name).alternatives(j, k) for k in range(ours.n_ops[j])] for j in range(ours.n_jobs)
        ]
